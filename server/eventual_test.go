package server_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"

	"github.com/synod-io/synod/server"
)

// TestEventualRefusals checks that in eventually consistent mode
// (server.ProtocolGossip) the server refuses what the mode cannot honour
// before the backend sees it, serves the rest locally, and that the same
// requests work under a consensus protocol.
func TestEventualRefusals(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		peer     bool
	}{
		{server.ProtocolGossip, true},
		{"raft", false},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			b := newFakeBackend(1, &fakeCluster{})
			b.setProtocol(tc.protocol, tc.peer)
			c := newClient(t, startMember(t, b, server.Config{}))
			ctx := testCtx(t)
			eventual := tc.protocol == server.ProtocolGossip
			// refused checks err: nil under raft, else InvalidArgument
			// with the mode's text, without the backend seeing the request.
			refused := func(what string, before int, err error, substr string) {
				t.Helper()
				if !eventual {
					if err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					return
				}
				wantStatus(t, err, codes.InvalidArgument, "etcdserver: "+substr)
				wantStatus(t, err, codes.InvalidArgument, "eventually consistent mode (gossip)")
				if b.calls() != before {
					t.Fatalf("%s: refused, but the backend saw it", what)
				}
			}

			put, err := c.Put(ctx, "k", "v1")
			if err != nil {
				t.Fatal(err)
			}
			rev := put.Header.Revision

			// A linearizable Range (etcd's default) is served, by the backend.
			before := b.calls()
			get, err := c.Get(ctx, "k")
			if err != nil || len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "v1" {
				t.Fatalf("linearizable get: %v, %v", get, err)
			}
			if b.calls() != before+1 {
				t.Fatal("linearizable get did not reach the backend")
			}

			before = b.calls()
			_, err = c.Get(ctx, "k", clientv3.WithRev(rev))
			refused("range at a revision", before, err, "reads at a revision are not supported")

			before = b.calls()
			_, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v1")).Then(clientv3.OpPut("k", "v2")).Commit()
			refused("txn with a compare", before, err, "transactions with compares are not supported")

			before = b.calls()
			_, err = c.Txn(ctx).Then(clientv3.OpGet("k", clientv3.WithRev(rev))).Commit()
			if !eventual {
				err = nil // the write above moved the revision on: compacted under raft
			}
			refused("txn reading at a revision", before, err, "reads at a revision are not supported")

			// A Txn without compares reaches the backend.
			before = b.calls()
			txn, err := c.Txn(ctx).Then(clientv3.OpPut("n", "1"), clientv3.OpGet("n")).Commit()
			if err != nil || !txn.Succeeded || len(txn.Responses) != 2 {
				t.Fatalf("txn without compares: %v, %v", txn, err)
			}
			if b.calls() != before+1 {
				t.Fatal("txn without compares did not reach the backend")
			}

			rev = b.Status().Revision
			before = b.calls()
			_, err = c.Compact(ctx, rev)
			refused("compact", before, err, "compaction is not supported")

			// watchRefused checks, in eventually consistent mode, that a
			// watch is refused on its channel with the reason, which
			// is then closed; under raft it returns the first response.
			watchRefused := func(what string, wc clientv3.WatchChan, reason string) clientv3.WatchResponse {
				t.Helper()
				select {
				case wr, ok := <-wc:
					if !eventual {
						if !ok {
							t.Fatalf("%s: watch channel closed", what)
						}
						return wr
					}
					if !ok || !wr.Canceled || wr.Err() == nil ||
						!strings.Contains(wr.Err().Error(), "etcdserver: "+reason+" not supported in eventually consistent mode (gossip)") {
						t.Fatalf("%s: %v (open %v), err %v", what, wr, ok, wr.Err())
					}
					if _, ok := <-wc; ok {
						t.Fatalf("%s: refused watch channel not closed", what)
					}
					return wr
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: no watch response", what)
				}
				return clientv3.WatchResponse{} // not reached: t.Fatalf
			}

			// A watch from a revision: refused on the watch channel.
			wr := watchRefused("watch from a revision", c.Watch(ctx, "n", clientv3.WithRev(rev)),
				"watch from a revision is")
			if !eventual {
				if err := wr.Err(); err != nil || len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "1" {
					t.Fatalf("watch from a revision: %v, %v", wr, err)
				}
			}

			// A watch with prev_kv: refused the same way, since merged
			// changes do not carry the value they replaced.
			wc := c.Watch(ctx, "p", clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
			wr = watchRefused("watch with prev_kv", wc, "prev_kv on watches is")
			if !eventual {
				if !wr.Created || wr.Canceled {
					t.Fatalf("watch with prev_kv: %v, want created", wr)
				}
				mustPut(t, c, "p", "1")
				mustPut(t, c, "p", "2")
				if got := collect(t, wc, 2); len(got) != 2 || !strings.HasSuffix(got[1], " prev=1") {
					t.Fatalf("watch with prev_kv: %v, want the second event with prev=1", got)
				}
			}

			// A watch from now works in both modes (also requiring a
			// leader: a leaderless member always passes).
			wctx := clientv3.WithRequireLeader(ctx)
			wc = c.Watch(wctx, "w")
			waitCreated(t, c, wctx)
			mustPut(t, c, "w", "x")
			if got := collect(t, wc, 1); len(got) != 1 || !strings.HasPrefix(got[0], "PUT w=x") {
				t.Fatalf("watch from now: %v", got)
			}
		})
	}
}

// TestEventualNeverForwards: in eventually consistent mode a NotLeader
// error from the backend (which a leaderless backend should never return)
// is answered with "no leader", not forwarded.
func TestEventualNeverForwards(t *testing.T) {
	cluster := &fakeCluster{}
	a, other := newFakeBackend(1, cluster), newFakeBackend(2, cluster)
	a.setProtocol(server.ProtocolGossip, true)
	a.setLeader(2) // misbehaving: names member 2 as the leader
	url := startMember(t, a, server.Config{})
	startMember(t, other, server.Config{})
	c := newClient(t, url)
	ctx := testCtx(t)
	if _, err := c.Put(ctx, "k", "v"); !errors.Is(err, rpctypes.ErrNoLeader) {
		t.Fatalf("put: got %v, want ErrNoLeader", err)
	}
	if other.calls() != 0 {
		t.Fatalf("the other member got %d requests: forwarded", other.calls())
	}
}

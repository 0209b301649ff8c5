package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/server"
)

func keys(resp *clientv3.GetResponse) string {
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return strings.Join(ks, ",")
}

func TestPutGetDelete(t *testing.T) {
	b, c := single(t, server.Config{})
	ctx := testCtx(t)

	put, err := c.Put(ctx, "a", "1")
	if err != nil {
		t.Fatal(err)
	}
	if h := put.Header; h.Revision != 2 || h.ClusterId != 0xc1 || h.MemberId != 1 || h.RaftTerm != 3 {
		t.Fatalf("put header = %v, want revision 2, cluster c1, member 1, term 3", h)
	}
	if put.PrevKv != nil {
		t.Fatalf("first put has prev_kv %v", put.PrevKv)
	}
	put, err = c.Put(ctx, "a", "2", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if put.PrevKv == nil || string(put.PrevKv.Value) != "1" || put.PrevKv.Version != 1 {
		t.Fatalf("prev_kv = %v, want value 1 version 1", put.PrevKv)
	}

	get, err := c.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "2" || get.Kvs[0].Version != 2 ||
		get.Kvs[0].CreateRevision != 2 || get.Kvs[0].ModRevision != 3 || get.Count != 1 || get.Header.Revision != 3 {
		t.Fatalf("get = %v", get)
	}
	get, err = c.Get(ctx, "missing")
	if err != nil || len(get.Kvs) != 0 || get.Count != 0 || get.Header.Revision != 3 {
		t.Fatalf("get missing = %v, %v", get, err)
	}
	// Serializable reads go to Backend.Read(linearizable=false).
	if get, err = c.Get(ctx, "a", clientv3.WithSerializable()); err != nil || len(get.Kvs) != 1 {
		t.Fatalf("serializable get = %v, %v", get, err)
	}

	del, err := c.Delete(ctx, "a", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if del.Deleted != 1 || len(del.PrevKvs) != 1 || string(del.PrevKvs[0].Value) != "2" || del.Header.Revision != 4 {
		t.Fatalf("delete = %v", del)
	}
	del, err = c.Delete(ctx, "a")
	if err != nil || del.Deleted != 0 || del.Header.Revision != 4 {
		t.Fatalf("delete missing = %v, %v", del, err)
	}
	if b.proposed() != 4 {
		t.Fatalf("proposals = %d, want 4 (reads must not be proposed)", b.proposed())
	}
}

func TestRangeOptions(t *testing.T) {
	_, c := single(t, server.Config{})
	ctx := testCtx(t)
	// Revisions: p/a=2, p/b=3, p/c=4, q=5, p/a again=6.
	for _, kv := range [][2]string{{"p/a", "z"}, {"p/b", "y"}, {"p/c", "x"}, {"q", "w"}, {"p/a", "v"}} {
		if _, err := c.Put(ctx, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name      string
		key       string
		opts      []clientv3.OpOption
		keys      string
		count     int64
		more      bool
		keysOnly  bool
		countOnly bool
	}{
		{name: "prefix", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix()}, keys: "p/a,p/b,p/c", count: 3},
		{name: "range", key: "p/b", opts: []clientv3.OpOption{clientv3.WithRange("q")}, keys: "p/b,p/c", count: 2},
		{name: "from key", key: "p/c", opts: []clientv3.OpOption{clientv3.WithFromKey()}, keys: "p/c,q", count: 2},
		{name: "all", key: "\x00", opts: []clientv3.OpOption{clientv3.WithFromKey()}, keys: "p/a,p/b,p/c,q", count: 4},
		{name: "empty range", key: "q", opts: []clientv3.OpOption{clientv3.WithRange("p")}, keys: "", count: 0},
		{name: "limit", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(2)}, keys: "p/a,p/b", count: 3, more: true},
		{name: "limit not reached", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(3)}, keys: "p/a,p/b,p/c", count: 3},
		{name: "count only", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}, keys: "", count: 3, countOnly: true},
		{name: "keys only", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}, keys: "p/a,p/b,p/c", count: 3, keysOnly: true},
		{name: "descend by key", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}, keys: "p/c,p/b,p/a", count: 3},
		{name: "last key", key: "p/", opts: append([]clientv3.OpOption{clientv3.WithPrefix()}, clientv3.WithLastKey()...), keys: "p/c", count: 3, more: true},
		{name: "first create", key: "p/", opts: append([]clientv3.OpOption{clientv3.WithPrefix()}, clientv3.WithFirstCreate()...), keys: "p/a", count: 3, more: true},
		{name: "last rev", key: "p/", opts: append([]clientv3.OpOption{clientv3.WithPrefix()}, clientv3.WithLastRev()...), keys: "p/a", count: 3, more: true},
		{name: "by value", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend)}, keys: "p/a,p/c,p/b", count: 3},
		{name: "by value keys only", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend), clientv3.WithLimit(2)}, keys: "p/a,p/c", count: 3, more: true, keysOnly: true},
		{name: "by version descend", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByVersion, clientv3.SortDescend)}, keys: "p/a,p/b,p/c", count: 3},
		{name: "min mod", key: "\x00", opts: []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithMinModRev(4)}, keys: "p/a,p/c,q", count: 4},
		{name: "max mod", key: "\x00", opts: []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithMaxModRev(4)}, keys: "p/b,p/c", count: 4},
		{name: "create window", key: "\x00", opts: []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithMinCreateRev(3), clientv3.WithMaxCreateRev(4)}, keys: "p/b,p/c", count: 4},
		{name: "filter and limit", key: "\x00", opts: []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithMinModRev(4), clientv3.WithLimit(1)}, keys: "p/a", count: 4, more: true},
		{name: "current revision", key: "q", opts: []clientv3.OpOption{clientv3.WithRev(6)}, keys: "q", count: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			get, err := c.Get(ctx, tc.key, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(get); got != tc.keys || get.Count != tc.count || get.More != tc.more || get.Header.Revision != 6 {
				t.Fatalf("keys %q count %d more %v revision %d; want %q %d %v 6",
					got, get.Count, get.More, get.Header.Revision, tc.keys, tc.count, tc.more)
			}
			for _, kv := range get.Kvs {
				if (len(kv.Value) == 0) != tc.keysOnly || kv.Version == 0 || kv.ModRevision == 0 {
					t.Fatalf("kv %v: keys only = %v", kv, tc.keysOnly)
				}
			}
		})
	}

	// No history: older revisions are compacted, newer ones in the future.
	if _, err := c.Get(ctx, "q", clientv3.WithRev(5)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("old revision: got %v, want ErrCompacted", err)
	}
	if _, err := c.Get(ctx, "q", clientv3.WithRev(7)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("future revision: got %v, want ErrFutureRev", err)
	}
	// Compact succeeds up to the current revision.
	if _, err := c.Compact(ctx, 6); err != nil {
		t.Fatalf("compact current: %v", err)
	}
	if _, err := c.Compact(ctx, 7); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("compact future: got %v, want ErrFutureRev", err)
	}
	// Invalid sort options get etcd's error.
	_, err := pb.NewKVClient(c.ActiveConnection()).Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortOrder: 7})
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrInvalidSortOption) {
		t.Fatalf("bad sort order: got %v, want ErrInvalidSortOption", err)
	}
}

func TestRangeStream(t *testing.T) {
	b, c := single(t, server.Config{})
	ctx := testCtx(t)
	const n = 2500 // three chunks
	for i := 0; i < n; i += kv.TxnOpsMax {
		var ops []kv.Request
		for j := i; j < min(i+kv.TxnOpsMax, n); j++ {
			ops = append(ops, kv.Put(fmt.Sprintf("k%05d", j), "v"))
		}
		res := b.apply(kv.Request{Txn: &kv.TxnRequest{
			Compare: kv.Compare{Key: []byte("k"), Target: kv.CompareVersion, Result: kv.CompareEqual},
			Success: ops,
		}})
		if res.Err != nil || !res.Succeeded {
			t.Fatal(res.Err)
		}
	}
	ch, err := c.GetStream(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	var got []string
	for r := range ch {
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		chunks++
		for _, kv := range r.Kvs {
			got = append(got, string(kv.Key))
		}
		if r.Header != nil && (r.Count != n || r.Header.Revision != b.Status().Revision) {
			t.Fatalf("final chunk: count %d revision %d", r.Count, r.Header.Revision)
		}
	}
	if chunks != 3 || len(got) != n || got[0] != "k00000" || got[n-1] != fmt.Sprintf("k%05d", n-1) {
		t.Fatalf("%d chunks, %d keys", chunks, len(got))
	}
}

func TestTxn(t *testing.T) {
	_, c := single(t, server.Config{})
	ctx := testCtx(t)
	if _, err := c.Put(ctx, "k", "v1"); err != nil { // revision 2
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", "v2"); err != nil { // revision 3, version 2
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cmp  clientv3.Cmp
		want bool
	}{
		{"value equal", clientv3.Compare(clientv3.Value("k"), "=", "v2"), true},
		{"value not equal", clientv3.Compare(clientv3.Value("k"), "!=", "v2"), false},
		{"value less", clientv3.Compare(clientv3.Value("k"), "<", "v3"), true},
		{"missing value", clientv3.Compare(clientv3.Value("nope"), "!=", "x"), false},
		{"version", clientv3.Compare(clientv3.Version("k"), "=", 2), true},
		{"version greater", clientv3.Compare(clientv3.Version("k"), ">", 2), false},
		{"missing version", clientv3.Compare(clientv3.Version("nope"), "=", 0), true},
		{"create", clientv3.Compare(clientv3.CreateRevision("k"), "=", 2), true},
		{"create less", clientv3.Compare(clientv3.CreateRevision("k"), "<", 2), false},
		{"mod", clientv3.Compare(clientv3.ModRevision("k"), "=", 3), true},
		{"mod greater", clientv3.Compare(clientv3.ModRevision("k"), ">", 1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Txn(ctx).If(tc.cmp).
				Then(clientv3.OpGet("k")).
				Else(clientv3.OpGet("k", clientv3.WithKeysOnly()), clientv3.OpGet("nope")).
				Commit()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Succeeded != tc.want {
				t.Fatalf("succeeded = %v, want %v", resp.Succeeded, tc.want)
			}
			wantOps := 1
			if !tc.want {
				wantOps = 2
			}
			if len(resp.Responses) != wantOps {
				t.Fatalf("%d responses, want %d", len(resp.Responses), wantOps)
			}
			r := resp.Responses[0].GetResponseRange()
			if len(r.Kvs) != 1 || (string(r.Kvs[0].Value) == "v2") != tc.want {
				t.Fatalf("range response %v", r)
			}
		})
	}

	// A writing txn: compare-and-swap with prev_kv, then a failing CAS.
	resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v2")).
		Then(clientv3.OpPut("k", "v3", clientv3.WithPrevKV()), clientv3.OpPut("k2", "x"), clientv3.OpGet("k")).
		Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || resp.Header.Revision != 4 {
		t.Fatalf("cas: %v", resp)
	}
	if pk := resp.Responses[0].GetResponsePut().PrevKv; pk == nil || string(pk.Value) != "v2" {
		t.Fatalf("prev kv %v", pk)
	}
	if g := resp.Responses[2].GetResponseRange(); string(g.Kvs[0].Value) != "v3" || g.Kvs[0].ModRevision != 4 {
		t.Fatalf("range after put in txn: %v", g)
	}
	resp, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v2")).
		Then(clientv3.OpPut("k", "v4")).
		Else(clientv3.OpDelete("k2", clientv3.WithPrevKV())).
		Commit()
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.Responses[0].GetResponseDeleteRange(); resp.Succeeded || d.Deleted != 1 || string(d.PrevKvs[0].Value) != "x" || resp.Header.Revision != 5 {
		t.Fatalf("failed cas: %v", resp)
	}

	// No compares: the success branch runs.
	resp, err = c.Txn(ctx).Then(clientv3.OpPut("n", "1"), clientv3.OpGet("n")).Commit()
	if err != nil || !resp.Succeeded || len(resp.Responses) != 2 {
		t.Fatalf("txn without compares: %v, %v", resp, err)
	}
	resp, err = c.Txn(ctx).Commit()
	if err != nil || !resp.Succeeded || len(resp.Responses) != 0 {
		t.Fatalf("empty txn: %v, %v", resp, err)
	}

	// Refused shapes.
	_, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v3"), clientv3.Compare(clientv3.Version("k"), ">", 0)).
		Then(clientv3.OpPut("k", "x")).Commit()
	wantStatus(t, err, codes.InvalidArgument, "at most one compare")
	_, err = c.Txn(ctx).Then(clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("a", "b")}, nil)).Commit()
	wantStatus(t, err, codes.InvalidArgument, "nested")
	_, err = c.Txn(ctx).Then(clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")).Commit()
	if !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Fatalf("duplicate put: got %v, want ErrDuplicateKey", err)
	}
	var many []clientv3.Op
	for i := 0; i <= kv.TxnOpsMax; i++ {
		many = append(many, clientv3.OpGet("x"))
	}
	if _, err = c.Txn(ctx).Then(many...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("too many ops: got %v, want ErrTooManyOps", err)
	}
	_, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v3").WithPrefix()).Commit()
	wantStatus(t, err, codes.InvalidArgument, "range_end")
}

func TestErrors(t *testing.T) {
	_, c := single(t, server.Config{MaxRequestBytes: 4096})
	ctx := testCtx(t)

	if _, err := c.Put(ctx, "", "v"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("empty key put: got %v, want ErrEmptyKey", err)
	}
	if _, err := c.Get(ctx, ""); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("empty key get: got %v, want ErrEmptyKey", err)
	}
	if _, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Version(""), "=", 0)).Commit(); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("empty compare key: got %v, want ErrEmptyKey", err)
	}
	if _, err := c.Put(ctx, "big", strings.Repeat("x", 5000)); !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Fatalf("oversized put: got %v, want ErrRequestTooLarge", err)
	}
	if _, err := c.Put(ctx, "k", "v", clientv3.WithLease(7)); err == nil || !strings.Contains(err.Error(), "leases are not supported") {
		t.Fatalf("put with lease: got %v", err)
	}
	_, err := c.Put(ctx, "k", "", clientv3.WithIgnoreValue())
	wantStatus(t, err, codes.InvalidArgument, "ignore_value")

	// ignore_lease needs an existing key, as in etcd.
	if _, err := c.Put(ctx, "k", "v", clientv3.WithIgnoreLease()); !errors.Is(err, rpctypes.ErrKeyNotFound) {
		t.Fatalf("ignore_lease on a missing key: got %v, want ErrKeyNotFound", err)
	}
	if _, err := c.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	put, err := c.Put(ctx, "k", "v2", clientv3.WithIgnoreLease(), clientv3.WithPrevKV())
	if err != nil || put.PrevKv == nil || string(put.PrevKv.Value) != "v1" {
		t.Fatalf("ignore_lease put: %v, %v", put, err)
	}

	_, err = c.Grant(ctx, 10)
	wantStatus(t, err, codes.Unimplemented, "leases")
	_, err = c.Defragment(ctx, c.Endpoints()[0])
	wantStatus(t, err, codes.Unimplemented, "Defragment")
	_, err = c.MemberAdd(ctx, []string{"http://x:1"})
	wantStatus(t, err, codes.Unimplemented, "MemberAdd")
	_, err = c.UserList(ctx) // Auth is not registered at all
	wantStatus(t, err, codes.Unimplemented, "Auth")

}

// wantStatus fails unless err has the gRPC code and a message containing
// substr (through clientv3's error wrapping).
func wantStatus(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v containing %q", code, substr)
	}
	var got codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		got = ee.Code()
	} else {
		got = status.Code(err)
	}
	if got != code || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got %v (%v), want %v containing %q", err, got, code, substr)
	}
}

func TestStatusAndMembers(t *testing.T) {
	cluster := &fakeCluster{}
	b := newFakeBackend(1, cluster)
	url := startMember(t, b, server.Config{})
	c := newClient(t, url) // RejectOldCluster: the version must pass
	ctx := testCtx(t)
	if _, err := c.Put(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != server.StatusVersion("fake") || server.ProtocolOfVersion(st.Version) != "fake" || st.Leader != 1 || st.RaftIndex != 1 || st.RaftAppliedIndex != 1 ||
		st.RaftTerm != 3 || st.DbSize != 4096 || st.Header.MemberId != 1 || st.Header.Revision != 2 {
		t.Fatalf("status = %v", st)
	}
	for _, v := range []string{server.Version, "3.6.8", "3.6.0+synodx.raft"} {
		if p := server.ProtocolOfVersion(v); p != "" {
			t.Errorf("ProtocolOfVersion(%q) = %q, want none", v, p)
		}
	}
	cluster.add(server.Member{ID: 9, Name: "n9", PeerURLs: []string{"http://p9"}, ClientURLs: []string{"http://c9"}})
	ml, err := c.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 2 || ml.Members[0].ID != 1 || ml.Members[0].Name != "n1" || ml.Members[0].ClientURLs[0] != url ||
		ml.Members[1].ID != 9 || ml.Members[1].PeerURLs[0] != "http://p9" || ml.Header.ClusterId != 0xc1 {
		t.Fatalf("members = %v", ml.Members)
	}
}

func TestForwardToLeader(t *testing.T) {
	cluster := &fakeCluster{}
	follower, leader := newFakeBackend(1, cluster), newFakeBackend(2, cluster)
	follower.setLeader(2)
	furl := startMember(t, follower, server.Config{})
	startMember(t, leader, server.Config{})
	c := newClient(t, furl)
	ctx := testCtx(t)

	put, err := c.Put(ctx, "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	if put.Header.Revision != 2 || put.Header.MemberId != 1 {
		t.Fatalf("forwarded put header %v: want revision 2 from member 1", put.Header)
	}
	if leader.proposed() != 1 || follower.proposed() != 0 {
		t.Fatalf("proposals: leader %d follower %d, want 1 and 0", leader.proposed(), follower.proposed())
	}
	// A linearizable read is forwarded and sees the write.
	get, err := c.Get(ctx, "k")
	if err != nil || len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "v" {
		t.Fatalf("forwarded get: %v, %v", get, err)
	}
	// A serializable read is served by the follower's own (empty) state.
	get, err = c.Get(ctx, "k", clientv3.WithSerializable())
	if err != nil || len(get.Kvs) != 0 {
		t.Fatalf("serializable get on follower: %v, %v", get, err)
	}
	txn, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v")).Then(clientv3.OpDelete("k")).Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("forwarded txn: %v, %v", txn, err)
	}
	if _, err := c.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// Errors the leader answers with pass through unchanged.
	if _, err := c.Get(ctx, "k", clientv3.WithRev(1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("forwarded old revision: got %v, want ErrCompacted", err)
	}
}

func TestNoLeader(t *testing.T) {
	b := newFakeBackend(1, &fakeCluster{})
	b.setLeader(consensus.None)
	c := newClient(t, startMember(t, b, server.Config{}))
	ctx := testCtx(t)
	if _, err := c.Put(ctx, "k", "v"); !errors.Is(err, rpctypes.ErrNoLeader) {
		t.Fatalf("put: got %v, want ErrNoLeader", err)
	}
	// clientv3 retries reads on Unavailable; it gives up at its deadline.
	gctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c.Get(gctx, "k"); err == nil {
		t.Fatal("linearizable get without a leader succeeded")
	}
	// Serializable reads still work.
	if _, err := c.Get(ctx, "k", clientv3.WithSerializable()); err != nil {
		t.Fatal(err)
	}
	// Unless the client requires a leader (a raw call: clientv3's Get
	// would retry Unavailable until its deadline).
	_, err := pb.NewKVClient(c.ActiveConnection()).Range(clientv3.WithRequireLeader(ctx), &pb.RangeRequest{Key: []byte("k"), Serializable: true})
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrNoLeader) {
		t.Fatalf("require leader: got %v, want ErrNoLeader", err)
	}
}

func TestForwardLoop(t *testing.T) {
	cluster := &fakeCluster{}
	a, b := newFakeBackend(1, cluster), newFakeBackend(2, cluster)
	a.setLeader(2)
	b.setLeader(1) // each thinks the other leads
	url := startMember(t, a, server.Config{})
	startMember(t, b, server.Config{})
	c := newClient(t, url)
	if _, err := c.Put(testCtx(t), "k", "v"); !errors.Is(err, rpctypes.ErrNoLeader) {
		t.Fatalf("put in a forwarding loop: got %v, want ErrNoLeader", err)
	}
	if a.proposed()+b.proposed() != 0 {
		t.Fatal("a proposal was applied")
	}
}

func TestForwardLeaderDown(t *testing.T) {
	cluster := &fakeCluster{}
	a := newFakeBackend(1, cluster)
	a.setLeader(2)
	url := startMember(t, a, server.Config{})
	cluster.add(server.Member{ID: 2, ClientURLs: []string{"http://127.0.0.1:1"}}) // nothing listens
	c := newClient(t, url)
	_, err := c.Put(testCtx(t), "k", "v")
	wantStatus(t, err, codes.Unavailable, "cannot reach leader 2")
}

func TestRequestTimeout(t *testing.T) {
	b := newFakeBackend(1, &fakeCluster{})
	c := newClient(t, startMember(t, b, server.Config{Backend: slowBackend{b}, RequestTimeout: 50 * time.Millisecond}))
	if _, err := c.Put(testCtx(t), "k", "v"); !errors.Is(err, rpctypes.ErrTimeout) {
		t.Fatalf("slow put: got %v, want ErrTimeout", err)
	}
}

// slowBackend never finishes a proposal before its context ends.
type slowBackend struct{ *fakeBackend }

func (s slowBackend) Propose(ctx context.Context, _ kv.Request) (kv.Result, error) {
	<-ctx.Done()
	return kv.Result{}, ctx.Err()
}

func TestConfig(t *testing.T) {
	if _, err := server.New(server.Config{}); err == nil {
		t.Fatal("New without a backend succeeded")
	}
	b := newFakeBackend(1, &fakeCluster{})
	if _, err := server.New(server.Config{Backend: b, MaxRequestBytes: -1}); err == nil {
		t.Fatal("negative MaxRequestBytes accepted")
	}
}

// TestAlarmList: synod raises no alarms, so the list (which etcdctl
// endpoint health asks for) is empty; raising one is refused.
func TestAlarmList(t *testing.T) {
	_, cli := single(t, server.Config{})
	resp, err := cli.AlarmList(testCtx(t))
	if err != nil {
		t.Fatalf("AlarmList: %v", err)
	}
	if len(resp.Alarms) != 0 || resp.Header == nil || resp.Header.ClusterId == 0 {
		t.Fatalf("AlarmList = %+v, want no alarms and a header", resp)
	}
}

package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/server"
)

// Watch reads the fake's history (fed by apply).
func (b *fakeBackend) Watch(key, end []byte, from int64, maxEvents int) (server.WatchBatch, error) {
	wb, err := b.watch.Read(key, end, from, maxEvents)
	if err != nil {
		if ce, ok := errors.AsType[*node.CompactedError](err); ok {
			return server.WatchBatch{}, &server.CompactedError{Revision: ce.Revision}
		}
		return server.WatchBatch{}, err
	}
	return server.WatchBatch{Events: wb.Events, Next: wb.Next, Revision: wb.Revision, More: wb.More, Changed: wb.Changed}, nil
}

// evString renders an event as "PUT k=v c2 m3 v2 prev=v0" (prev only if set).
func evString(ev *clientv3.Event) string {
	kv := ev.Kv
	s := fmt.Sprintf("%s %s", ev.Type, kv.Key)
	if ev.Type == mvccpb.PUT {
		s += fmt.Sprintf("=%s c%d m%d v%d", kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
	} else {
		s += fmt.Sprintf(" m%d", kv.ModRevision)
	}
	if ev.PrevKv != nil {
		s += fmt.Sprintf(" prev=%s", ev.PrevKv.Value)
	}
	return s
}

// collect reads n events from wc (failing on errors and timeouts) and
// returns them rendered, one per line. (How revisions are grouped into
// responses depends on timing: a watcher that is behind gets several in
// one, as from etcd; TestWatchOrderUnderLoad checks that a revision is
// never split.)
func collect(t *testing.T, wc clientv3.WatchChan, n int) []string {
	t.Helper()
	var out []string
	got := 0
	timeout := time.After(5 * time.Second)
	for got < n {
		select {
		case wr, ok := <-wc:
			if !ok {
				t.Fatalf("watch channel closed after %d events: %v", got, out)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch error after %v: %v", out, err)
			}
			if wr.IsProgressNotify() {
				continue
			}
			for _, ev := range wr.Events {
				out = append(out, evString(ev))
			}
			got += len(wr.Events)
		case <-timeout:
			t.Fatalf("timed out after %d of %d events: %v", got, n, out)
		}
	}
	return out
}

// expectQuiet fails if wc delivers events within a short while.
func expectQuiet(t *testing.T, wc clientv3.WatchChan) {
	t.Helper()
	select {
	case wr := <-wc:
		if len(wr.Events) > 0 {
			t.Fatalf("unexpected events: %v", wr.Events)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func same(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\ngot  %q\nwant %q", what, got, want)
	}
}

func TestWatchKeyAndPrefix(t *testing.T) {
	_, c := single(t, server.Config{})
	ctx := testCtx(t)
	mustPut(t, c, "a", "0") // rev 2, before the watches
	key := c.Watch(ctx, "a")
	prefix := c.Watch(ctx, "p/", clientv3.WithPrefix())
	from := c.Watch(ctx, "p/b", clientv3.WithFromKey())
	rng := c.Watch(ctx, "p/a", clientv3.WithRange("p/c"))
	waitCreated(t, c, ctx)

	mustPut(t, c, "a", "1")                                               // 3
	mustPut(t, c, "p/a", "x")                                             // 4
	mustPut(t, c, "p/c", "y")                                             // 5
	mustPut(t, c, "q", "z")                                               // 6
	if _, err := c.Delete(ctx, "p/", clientv3.WithPrefix()); err != nil { // 7
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "a"); err != nil { // 8
		t.Fatal(err)
	}

	same(t, "key", collect(t, key, 2), []string{"PUT a=1 c2 m3 v2", "DELETE a m8"})
	same(t, "prefix", collect(t, prefix, 4), []string{"PUT p/a=x c4 m4 v1", "PUT p/c=y c5 m5 v1", "DELETE p/a m7", "DELETE p/c m7"})
	same(t, "from key", collect(t, from, 3), []string{"PUT p/c=y c5 m5 v1", "PUT q=z c6 m6 v1", "DELETE p/c m7"})
	same(t, "range", collect(t, rng, 2), []string{"PUT p/a=x c4 m4 v1", "DELETE p/a m7"})
	expectQuiet(t, key)
}

func mustPut(t *testing.T, c *clientv3.Client, k, v string) *clientv3.PutResponse {
	t.Helper()
	r, err := c.Put(context.Background(), k, v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitCreated makes sure the client's watches so far are registered: a
// watch is created on its stream in order, so once a later watch with
// WithCreatedNotify reports, the earlier ones are too.
func waitCreated(t *testing.T, c *clientv3.Client, ctx context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wr := <-c.Watch(ctx, "\x00sync", clientv3.WithCreatedNotify())
	if !wr.Created {
		t.Fatalf("created notify: %+v", wr)
	}
}

func TestWatchPrevKVAndHeader(t *testing.T) {
	_, c := single(t, server.Config{})
	ctx := testCtx(t)
	wc := c.Watch(ctx, "k", clientv3.WithPrevKV())
	waitCreated(t, c, ctx)
	mustPut(t, c, "k", "1")
	mustPut(t, c, "k", "2")
	if _, err := c.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	same(t, "prev_kv", collect(t, wc, 3), []string{"PUT k=1 c2 m2 v1", "PUT k=2 c2 m3 v2 prev=1", "DELETE k m4 prev=2"})

	// The header is etcd's: cluster, member, term, and the revision.
	w2 := c.Watch(ctx, "k", clientv3.WithRev(3))
	wr := <-w2
	if h := wr.Header; h.ClusterId != 0xc1 || h.MemberId != 1 || h.RaftTerm != 3 || h.Revision != 4 || len(wr.Events) != 2 {
		t.Fatalf("response = %+v", wr)
	}
}

func TestWatchStartRevisionAndCompacted(t *testing.T) {
	b := newFakeBackend(1, &fakeCluster{})
	b.watch = node.NewWatchHub(1, 5, 0) // keep 5 events
	c := newClient(t, startMember(t, b, server.Config{}))
	ctx := testCtx(t)
	for i := range 8 { // revisions 2..9
		mustPut(t, c, fmt.Sprintf("k%d", i), "v")
	}
	// Revisions 5..9 are kept.
	same(t, "from 6", collect(t, c.Watch(ctx, "k", clientv3.WithPrefix(), clientv3.WithRev(6)), 4),
		[]string{"PUT k4=v c6 m6 v1", "PUT k5=v c7 m7 v1", "PUT k6=v c8 m8 v1", "PUT k7=v c9 m9 v1"})

	wr := <-c.Watch(ctx, "k", clientv3.WithPrefix(), clientv3.WithRev(3))
	if !errors.Is(wr.Err(), rpctypes.ErrCompacted) || wr.CompactRevision != 5 || !wr.Canceled {
		t.Fatalf("watch from a revision no longer kept: %+v, err %v; want compacted at 5", wr, wr.Err())
	}
	// Re-watching from the compact revision works, as with etcd.
	same(t, "from compact revision", collect(t, c.Watch(ctx, "k5", clientv3.WithRev(wr.CompactRevision)), 1),
		[]string{"PUT k5=v c7 m7 v1"})

	// A watch from a future revision waits for it.
	fut := c.Watch(ctx, "k", clientv3.WithPrefix(), clientv3.WithRev(11))
	waitCreated(t, c, ctx)
	mustPut(t, c, "k0", "10") // 10
	mustPut(t, c, "k0", "11") // 11
	same(t, "future", collect(t, fut, 1), []string{"PUT k0=11 c2 m11 v3"})
}

func TestWatchFilters(t *testing.T) {
	_, c := single(t, server.Config{})
	ctx := testCtx(t)
	noPut := c.Watch(ctx, "f", clientv3.WithPrefix(), clientv3.WithFilterPut())
	noDel := c.Watch(ctx, "f", clientv3.WithPrefix(), clientv3.WithFilterDelete())
	waitCreated(t, c, ctx)
	mustPut(t, c, "f1", "a")
	mustPut(t, c, "f2", "b")
	if _, err := c.Delete(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	same(t, "no put", collect(t, noPut, 1), []string{"DELETE f1 m4"})
	same(t, "no delete", collect(t, noDel, 2), []string{"PUT f1=a c2 m2 v1", "PUT f2=b c3 m3 v1"})
	expectQuiet(t, noDel)
}

func TestWatchProgress(t *testing.T) {
	_, c := single(t, server.Config{WatchProgressNotifyInterval: 50 * time.Millisecond})
	ctx := testCtx(t)
	mustPut(t, c, "x", "1") // 2
	wc := c.Watch(ctx, "w", clientv3.WithProgressNotify())
	waitCreated(t, c, ctx)
	mustPut(t, c, "x", "2") // 3: not watched
	progress := func(what string, wantRev int64) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case wr := <-wc:
				if !wr.IsProgressNotify() {
					t.Fatalf("%s: got %+v, want a progress notification", what, wr)
				}
				if wr.Header.Revision >= wantRev {
					return
				}
			case <-timeout:
				t.Fatalf("%s: no progress notification at revision %d", what, wantRev)
			}
		}
	}
	progress("periodic", 3)

	// RequestProgress answers on a stream without progress_notify too.
	_, c2 := single(t, server.Config{})
	wc = c2.Watch(ctx, "w")
	waitCreated(t, c2, ctx)
	mustPut(t, c2, "x", "1")
	mustPut(t, c2, "x", "2")
	if err := c2.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-wc:
		if !wr.IsProgressNotify() || wr.Header.Revision != 3 {
			t.Fatalf("RequestProgress gave %+v, want progress at revision 3", wr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to RequestProgress")
	}
}

func TestWatchCancel(t *testing.T) {
	_, c := single(t, server.Config{})
	ctx := testCtx(t)
	wctx, cancel := context.WithCancel(ctx)
	wc := c.Watch(wctx, "c")
	waitCreated(t, c, ctx)
	cancel()
	select {
	case _, ok := <-wc:
		if ok {
			// A last response may come; then the channel closes.
			for range wc {
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel not closed after cancel")
	}
}

// rawStream opens a Watch stream with the generated client, for what
// clientv3 hides.
func rawStream(t *testing.T, url string) pb.Watch_WatchClient {
	t.Helper()
	conn, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ws, err := pb.NewWatchClient(conn).Watch(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func recvResp(t *testing.T, ws pb.Watch_WatchClient) *pb.WatchResponse {
	t.Helper()
	wr, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return wr
}

func create(t *testing.T, ws pb.Watch_WatchClient, cr *pb.WatchCreateRequest) {
	t.Helper()
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}); err != nil {
		t.Fatal(err)
	}
}

func TestWatchProtocol(t *testing.T) {
	b := newFakeBackend(1, &fakeCluster{})
	url := startMember(t, b, server.Config{MaxRequestBytes: 1024})
	c := newClient(t, url)
	ws := rawStream(t, url)

	// IDs count from 0; the created response carries the revision.
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("a")})
	if wr := recvResp(t, ws); !wr.Created || wr.Canceled || wr.WatchId != 0 || wr.Header.Revision != 1 {
		t.Fatalf("created = %v", wr)
	}
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7})
	if wr := recvResp(t, ws); !wr.Created || wr.WatchId != 7 {
		t.Fatalf("created with id = %v", wr)
	}
	// Refused creates: duplicate ID, empty range.
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7})
	if wr := recvResp(t, ws); !wr.Created || !wr.Canceled || wr.WatchId != -1 || !strings.Contains(wr.CancelReason, "duplicate watch ID") {
		t.Fatalf("duplicate = %v", wr)
	}
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	if wr := recvResp(t, ws); !wr.Canceled || wr.WatchId != -1 || !strings.Contains(wr.CancelReason, "range is empty") {
		t.Fatalf("empty range = %v", wr)
	}

	// Cancel: answered, and no events after it.
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 0}}}); err != nil {
		t.Fatal(err)
	}
	if wr := recvResp(t, ws); !wr.Canceled || wr.WatchId != 0 || wr.Created {
		t.Fatalf("cancel = %v", wr)
	}
	mustPut(t, c, "a", "gone") // 2, watch 0 is canceled
	mustPut(t, c, "b", "1")    // 3
	if wr := recvResp(t, ws); wr.WatchId != 7 || len(wr.Events) != 1 || string(wr.Events[0].Kv.Key) != "b" || wr.Header.Revision != 3 {
		t.Fatalf("event = %v", wr)
	}

	// A txn's writes share a revision and come in one response; with
	// fragment, a response over MaxRequestBytes is split into fragments.
	// (prev_kv doubles the response, so that a request under the limit
	// makes a response over it.)
	var ops []clientv3.Op
	for i := range 10 {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("t/%d", i), strings.Repeat("v", 70)))
	}
	if _, err := c.Txn(context.Background()).Then(ops...).Commit(); err != nil { // 4
		t.Fatal(err)
	}
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("t/"), RangeEnd: []byte("t0"), Fragment: true, PrevKv: true, WatchId: 8})
	recvResp(t, ws)
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("t/"), RangeEnd: []byte("t0"), PrevKv: true, WatchId: 9})
	recvResp(t, ws)
	if _, err := c.Txn(context.Background()).Then(ops...).Commit(); err != nil { // 5
		t.Fatal(err)
	}
	pieces, events := map[int64]int{}, map[int64]int{}
	done := map[int64]bool{}
	for !done[8] || !done[9] {
		wr := recvResp(t, ws)
		if wr.WatchId != 8 && wr.WatchId != 9 || done[wr.WatchId] {
			t.Fatalf("unexpected %v", wr)
		}
		pieces[wr.WatchId]++
		events[wr.WatchId] += len(wr.Events)
		done[wr.WatchId] = !wr.Fragment
	}
	if pieces[9] != 1 || events[9] != 10 {
		t.Fatalf("without fragment: %d responses, %d events; want the txn's 10 events in one", pieces[9], events[9])
	}
	if pieces[8] < 2 || events[8] != 10 {
		t.Fatalf("with fragment: %d fragments, %d events; want 10 events in several fragments (MaxRequestBytes 1024)", pieces[8], events[8])
	}
	// clientv3 reassembles fragments.
	wc := c.Watch(context.Background(), "t/", clientv3.WithPrefix(), clientv3.WithFragment(), clientv3.WithPrevKV(), clientv3.WithRev(5))
	if wr := <-wc; len(wr.Events) != 10 {
		t.Fatalf("clientv3 with fragment got %d events, want 10", len(wr.Events))
	}
}

// TestWatchOrderUnderLoad checks that a watcher gets every write exactly
// once, in revision order, with a txn's writes in one response, while
// many clients put and txn concurrently.
func TestWatchOrderUnderLoad(t *testing.T) {
	_, c := single(t, server.Config{})
	ctx := testCtx(t)
	wc := c.Watch(ctx, "o/", clientv3.WithPrefix())
	waitCreated(t, c, ctx)
	const writers, each = 8, 40
	var (
		mu   sync.Mutex
		want = map[int64]int{} // revision -> events
	)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := fmt.Sprintf("o/%d/%d", w, i)
				var rev int64
				n := 1
				if i%3 == 0 {
					r, err := c.Txn(ctx).Then(clientv3.OpPut(k+"a", "x"), clientv3.OpPut(k+"b", "y"), clientv3.OpDelete(fmt.Sprintf("o/%d/%d", w, i-1))).Commit()
					if err != nil {
						t.Error(err)
						return
					}
					rev = r.Header.Revision
					n = 2
					if i > 0 {
						n = 3 // the delete hits o/w/(i-1), put by the previous iteration
					}
				} else {
					r, err := c.Put(ctx, k, "v")
					if err != nil {
						t.Error(err)
						return
					}
					rev = r.Header.Revision
				}
				mu.Lock()
				want[rev] = n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := 0
	for _, n := range want {
		total += n
	}
	got := map[int64]int{}
	last := int64(0)
	seen := 0
	timeout := time.After(10 * time.Second)
	for seen < total {
		select {
		case wr := <-wc:
			if err := wr.Err(); err != nil {
				t.Fatal(err)
			}
			for _, ev := range wr.Events {
				r := ev.Kv.ModRevision
				if r < last {
					t.Fatalf("event at revision %d after %d", r, last)
				}
				if r > last && got[r] != 0 {
					t.Fatalf("revision %d split across responses", r)
				}
				last = r
				got[r]++
				seen++
			}
			// Every response ends a revision: a txn's writes are not split.
			if n := len(wr.Events); n > 0 {
				r := wr.Events[n-1].Kv.ModRevision
				if got[r] != want[r] {
					t.Fatalf("revision %d: %d events in its response, want %d", r, got[r], want[r])
				}
			}
		case <-timeout:
			t.Fatalf("got %d of %d events", seen, total)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("revisions: got %d, want %d", len(got), len(want))
	}
	for r, n := range want {
		if got[r] != n {
			t.Fatalf("revision %d: %d events, want %d", r, got[r], n)
		}
	}
	expectQuiet(t, wc)
}

// TestWatchGracefulStop: watch streams never end on their own, so a
// graceful stop ends them (with "server stopped") instead of waiting.
func TestWatchGracefulStop(t *testing.T) {
	b := newFakeBackend(1, &fakeCluster{})
	srv, err := server.New(server.Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	ws := rawStream(t, "http://"+l.Addr().String())
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("a")})
	recvResp(t, ws)
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
		t.Fatal("GracefulStop waited for an open watch stream")
	}
	if _, err := ws.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream ended with %v, want Unavailable (server stopped)", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

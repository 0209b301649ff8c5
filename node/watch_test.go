package node

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// hubApply applies requests to a store and publishes their results.
type hubApply struct {
	s   *kv.Store
	hub *WatchHub
}

func (h *hubApply) do(reqs ...kv.Request) {
	var results []kv.Result
	for _, r := range reqs {
		e := consensus.Entry{Index: h.s.AppliedIndex() + 1, Command: r.Command(consensus.Session{})}
		results = append(results, h.s.Apply(e))
	}
	h.hub.Publish(results)
}

func render(evs []kv.Event) string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%s %s@%d", ev.Type, ev.KV.Key, ev.KV.ModRevision))
	}
	return strings.Join(out, ", ")
}

func TestWatchHub(t *testing.T) {
	h := &hubApply{s: kv.New(), hub: NewWatchHub(1, 5, 0)}
	b, err := h.hub.Read([]byte("a"), nil, 0, 10)
	if err != nil || b.Next != 2 || b.Revision != 1 || len(b.Events) != 0 {
		t.Fatalf("from now: %+v, %v", b, err)
	}
	changed := b.Changed
	h.do(kv.Put("a", "1"), kv.Put("b", "1"), kv.Get("a")) // 2, 3, and a read
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by a publish")
	}
	b, _ = h.hub.Read([]byte("a"), nil, 2, 10)
	if render(b.Events) != "PUT a@2" || b.Next != 4 || b.More {
		t.Fatalf("key a from 2: %s, %+v", render(b.Events), b)
	}
	// A txn: three events at one revision; never split by maxEvents.
	h.do(kv.Request{Txn: &kv.TxnRequest{Compare: kv.Compare{Key: []byte("a"), Target: kv.CompareVersion, Result: kv.CompareGreater},
		Success: []kv.Request{kv.Put("c", "1"), kv.Put("d", "1"), {DeleteRange: &kv.DeleteRangeRequest{Key: []byte("a")}}}}}) // 4
	b, _ = h.hub.Read([]byte("a"), []byte{0}, 3, 2)
	if render(b.Events) != "PUT b@3, PUT c@4, PUT d@4, DELETE a@4" || b.More || b.Next != 5 {
		t.Fatalf("all from 3, max 2: %s, %+v", render(b.Events), b)
	}
	b, _ = h.hub.Read([]byte("a"), []byte{0}, 2, 1)
	if render(b.Events) != "PUT a@2" || !b.More || b.Next != 3 {
		t.Fatalf("all from 2, max 1: %s, %+v", render(b.Events), b)
	}
	if ev := b.Events[0]; ev.HasPrev() {
		t.Fatalf("a create has a prev: %+v", ev)
	}
	// Over 5 events: revision 2 goes.
	h.do(kv.Put("e", "1")) // 5
	var ce *CompactedError
	if _, err := h.hub.Read([]byte("a"), nil, 2, 10); !errors.As(err, &ce) || ce.Revision != 3 {
		t.Fatalf("compacted: %v, want revision 3", err)
	}
	b, err = h.hub.Read([]byte("a"), []byte{0}, 4, 10)
	if err != nil || render(b.Events) != "PUT c@4, PUT d@4, DELETE a@4, PUT e@5" {
		t.Fatalf("from 4: %s, %v", render(b.Events), err)
	}
	// The newest revision stays whole even over the bound.
	var many []kv.Request
	for i := range 6 {
		many = append(many, kv.Put(fmt.Sprintf("m%d", i), "x"))
	}
	h.do(kv.Request{Txn: &kv.TxnRequest{Compare: kv.Compare{Key: []byte("zz"), Target: kv.CompareVersion}, Success: many}}) // 6
	if b, err = h.hub.Read([]byte("m"), []byte("n"), 6, 1); err != nil || len(b.Events) != 6 {
		t.Fatalf("oversized newest revision: %d events, %v", len(b.Events), err)
	}
	// Future start: nothing yet, Next stays.
	if b, _ = h.hub.Read([]byte("a"), nil, 9, 10); b.Next != 9 || len(b.Events) != 0 {
		t.Fatalf("future: %+v", b)
	}
	// Reset (a snapshot restored): everything before is gone.
	changed = b.Changed
	h.hub.Reset(20)
	<-changed
	if _, err := h.hub.Read([]byte("a"), nil, 6, 10); !errors.As(err, &ce) || ce.Revision != 21 {
		t.Fatalf("after reset: %v", err)
	}
	b, _ = h.hub.Read([]byte("a"), nil, 0, 10)
	h.hub.Stop()
	<-b.Changed
	if _, err := h.hub.Read([]byte("a"), nil, 0, 10); !errors.Is(err, ErrStopped) {
		t.Fatalf("after stop: %v", err)
	}
}

// TestWatchHubConcurrent races one publisher against readers that each
// must see every revision exactly once, in order (run with -race).
func TestWatchHubConcurrent(t *testing.T) {
	h := &hubApply{s: kv.New(), hub: NewWatchHub(1, 64, 0)}
	const writes = 2000
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			next := int64(2)
			for next <= writes+1 {
				b, err := h.hub.Read([]byte("k"), []byte("l"), next, 1+r*7)
				var ce *CompactedError
				if errors.As(err, &ce) {
					// Fell behind the history: etcd's compacted answer, never a gap.
					if ce.Revision <= next {
						t.Errorf("compacted at %d for a read from %d", ce.Revision, next)
						return
					}
					next = ce.Revision
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				for _, ev := range b.Events {
					if ev.KV.ModRevision != next {
						t.Errorf("reader %d: event at %d, want %d", r, ev.KV.ModRevision, next)
						return
					}
					next++
				}
				if b.Next != next {
					t.Errorf("reader %d: Next %d after events up to %d", r, b.Next, next-1)
					return
				}
				if !b.More && next <= writes+1 {
					<-b.Changed
				}
			}
		})
	}
	for i := range writes {
		h.do(kv.Put(fmt.Sprintf("k%d", i%10), "v"))
	}
	wg.Wait()
}

// TestWatchFollowerAcrossLeaderChange watches on a follower while the
// leader stops and restarts: the watcher sees every write exactly once, in
// revision order.
func TestWatchFollowerAcrossLeaderChange(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	f := (l + 1) % 3
	w := c.nodes[f]
	start, err := w.Watch([]byte("w/"), []byte("w0"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		events []kv.Event
	)
	stop := make(chan struct{})
	watchDone := make(chan error, 1)
	go func() {
		next := start.Next
		for {
			b, err := w.Watch([]byte("w/"), []byte("w0"), next, 100)
			if err != nil {
				watchDone <- err
				return
			}
			mu.Lock()
			events = append(events, b.Events...)
			mu.Unlock()
			next = b.Next
			if !b.More {
				select {
				case <-b.Changed:
				case <-stop:
					watchDone <- nil
					return
				}
			}
		}
	}()

	for i := range 10 {
		c.put(fmt.Sprintf("w/%d", i), "a")
	}
	c.stop(l)
	if c.leader() == l {
		t.Fatal("stopped node leads")
	}
	for i := range 10 {
		c.put(fmt.Sprintf("w/%d", i), "b")
	}
	c.put("other", "x") // not watched
	c.start(l)
	for i := range 10 {
		c.put(fmt.Sprintf("w/%d", i), "c")
	}
	c.waitValue(f, "w/9", "c")
	res, err := w.Read(ctxT(t), kv.Get("w/9"), false)
	if err != nil {
		t.Fatal(err)
	}
	final := res.Revision
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(events)
		last := int64(0)
		if n > 0 {
			last = events[n-1].KV.ModRevision
		}
		mu.Unlock()
		if last >= final {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher at revision %d (%d events), store at %d", last, n, final)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	if err := <-watchDone; err != nil {
		t.Fatal(err)
	}

	// Every revision after the start, except the unwatched put, exactly
	// once and in order; the last value of each key is the store's.
	rev := start.Next
	values := map[string]string{}
	skipped := 0
	for _, ev := range events {
		for ev.KV.ModRevision > rev && skipped == 0 {
			skipped++ // the put of "other"
			rev++
		}
		if ev.KV.ModRevision != rev || ev.Type != kv.EventPut {
			t.Fatalf("event %s at %d, want a put at %d", ev.KV.Key, ev.KV.ModRevision, rev)
		}
		values[string(ev.KV.Key)] = string(ev.KV.Value)
		rev++
	}
	if skipped != 1 || len(events) < 30 {
		t.Fatalf("%d events, %d revisions skipped; want at least 30 and 1", len(events), skipped)
	}
	for i := range 10 {
		if v := values[fmt.Sprintf("w/%d", i)]; v != "c" {
			t.Fatalf("w/%d ends at %q in the watch", i, v)
		}
	}

	// The restarted member kept no history from before its restart.
	var ce *CompactedError
	if _, err := c.nodes[l].Watch([]byte("w/"), []byte("w0"), start.Next, 100); !errors.As(err, &ce) {
		t.Fatalf("watch from before a restart on the restarted member: %v, want a CompactedError", err)
	}
}

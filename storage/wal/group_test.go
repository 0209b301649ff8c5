package wal

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synod-io/synod/storage/vfs"
)

// slowSyncs makes every fsync take a little real time (in the test's
// hook, not in MemFS), so that appenders queue up behind it.
func slowSyncs(m *vfs.MemFS, d time.Duration) {
	m.SetFaults(vfs.Faults{OnSync: func(string) { time.Sleep(d) }})
}

func TestGroupCommitConcurrent(t *testing.T) {
	const writers, each = 16, 40
	m := vfs.NewMem()
	l, err := Open(m, testDir, Options{SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	slowSyncs(m, 200*time.Microsecond)
	c, err := NewCommitter(l, GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	syncsBefore := l.Stats().Syncs
	idx := make([][]uint64, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				last, err := c.Append(Record{Type: uint16(w), Data: fmt.Appendf(nil, "w%d-%d", w, i)})
				if err != nil {
					t.Error(err)
					return
				}
				if d := l.DurableIndex(); d < last {
					t.Errorf("Append returned %d but only %d is durable", last, d)
				}
				idx[w] = append(idx[w], last)
			}
		}()
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	total := uint64(writers * each)
	syncs := l.Stats().Syncs - syncsBefore
	gs := c.Stats()
	t.Logf("%d records, %d batches, %d fsyncs", total, gs.Batches, syncs)
	if syncs >= int64(total) || gs.Records != int64(total) {
		t.Fatalf("%d fsyncs for %d records (stats %+v): no sharing", syncs, total, gs)
	}
	// All durable, each writer's records in its order, at the indexes
	// Append reported.
	l2 := mustOpen(t, m.CrashClone(), testDir)
	if l2.LastIndex() != total {
		t.Fatalf("LastIndex %d, want %d", l2.LastIndex(), total)
	}
	got, err := readLog(t, l2)
	if err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		for i, at := range idx[w] {
			want := fmt.Sprintf("w%d-%d", w, i)
			if r := got[at]; r.Type != uint16(w) || string(r.Data) != want {
				t.Fatalf("record %d = %q, want %q", at, r.Data, want)
			}
			if i > 0 && at <= idx[w][i-1] {
				t.Fatalf("writer %d: record %d at %d, before %d", w, i, at, idx[w][i-1])
			}
		}
	}
	l.Close()
}

func TestCommitterAsyncAndMultiRecord(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), testDir)
	c, _ := NewCommitter(l, GroupOptions{})
	a := c.AppendAsync(recs(1, 3, 0)...)
	b := c.AppendAsync(recs(4, 4, 0)...)
	ra, rb := <-a, <-b
	if ra.Err != nil || rb.Err != nil || ra.Last != 3 || rb.Last != 4 {
		t.Fatalf("results %+v %+v", ra, rb)
	}
	if r := <-c.AppendAsync(Record{Data: make([]byte, l.opts.RecordBytesMax+1)}); !errors.Is(r.Err, ErrRecordTooLarge) {
		t.Fatalf("oversized = %v", r.Err)
	}
	c.Close()
	if _, err := c.Append(payload(5, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := c.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	checkContent(t, l, 1, 4, gen0)
}

func TestCommitterCloseLeaksNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		l := mustOpen(t, vfs.NewMem(), testDir)
		c, _ := NewCommitter(l, GroupOptions{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() { defer wg.Done(); c.Append(payload(1, 0)) }()
		}
		wg.Wait()
		c.Close()
		l.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}

func TestCommitterBackpressure(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	var blocked atomic.Bool
	m.SetFaults(vfs.Faults{OnSync: func(string) {
		if blocked.Load() {
			entered <- struct{}{}
			<-gate
		}
	}})
	blocked.Store(true)
	c, _ := NewCommitter(l, GroupOptions{QueueAppendsMax: 2})
	first := c.AppendAsync(payload(1, 0))
	<-entered // the writer is stuck in the fsync of the first append
	var queued atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := c.AppendAsync(Record{Data: []byte("x")})
			queued.Add(1)
			if r := <-ch; r.Err != nil {
				t.Error(r.Err)
			}
		}()
	}
	for deadline := time.Now().Add(2 * time.Second); queued.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // give the others a chance to get past the bound
	if n := queued.Load(); n != 2 {
		t.Fatalf("%d appends queued behind a stuck writer, want the queue bound 2", n)
	}
	blocked.Store(false)
	close(gate)
	if r := <-first; r.Err != nil || r.Last != 1 {
		t.Fatalf("first append: %+v", r)
	}
	wg.Wait()
	c.Close()
	if l.LastIndex() != 7 || l.DurableIndex() != 7 {
		t.Fatalf("last %d durable %d", l.LastIndex(), l.DurableIndex())
	}
}

func TestCommitterFsyncFailure(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	c, _ := NewCommitter(l, GroupOptions{})
	if _, err := c.Append(recs(1, 3, 0)...); err != nil {
		t.Fatal(err)
	}
	m.FailNextSync("")
	if _, err := c.Append(payload(4, 0)); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Append with failing fsync = %v", err)
	}
	if _, err := c.Append(payload(5, 0)); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after failed fsync = %v", err)
	}
	c.Close()
	checkContent(t, mustOpen(t, m.CrashClone(), testDir), 1, 3, gen0)
}

func TestGroupOptionsLimits(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), testDir)
	for _, o := range []GroupOptions{{QueueAppendsMax: -1}, {QueueAppendsMax: QueueAppendsLimit + 1}, {BatchBytesMax: -5}} {
		if _, err := NewCommitter(l, o); err == nil {
			t.Errorf("NewCommitter(%+v) succeeded", o)
		}
	}
}

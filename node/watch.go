package node

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/synod-io/synod/kv"
)

// Watch history bounds (see WatchHub).
const (
	// WatchHistoryEventsDefault is how many recent events a member keeps
	// for watchers to read (Config.WatchHistoryEvents).
	WatchHistoryEventsDefault = 10000
	// WatchHistoryEventsMax bounds Config.WatchHistoryEvents.
	WatchHistoryEventsMax = 1 << 22
	// WatchHistoryBytesDefault bounds the keys and values those events
	// hold (Config.WatchHistoryBytes).
	WatchHistoryBytesDefault = 64 << 20
	// WatchHistoryBytesMax bounds Config.WatchHistoryBytes.
	WatchHistoryBytesMax = 4 << 30
	// watchEventOverheadBytes is what an event costs beyond its bytes, for
	// the byte bound.
	watchEventOverheadBytes = 96
)

// CompactedError is returned by Watch when changes at revisions the
// watcher asked for are no longer kept (they left the bounded history, or
// the member restored a snapshot, or restarted, since). Revision is the
// oldest revision a watch can start from now, as etcd's compact_revision.
type CompactedError struct{ Revision int64 }

func (e *CompactedError) Error() string {
	return fmt.Sprintf("node: required revision has been compacted; the oldest revision kept for watchers is %d", e.Revision)
}

// WatchBatch is one read of a member's recent changes.
type WatchBatch struct {
	// Events are the matching changes at revisions From..Next-1, in
	// revision order (a request's events together, in the order it made
	// them). They share byte slices with the history: read-only.
	Events []kv.Event
	// Next is where the next read starts: every matching change before
	// Next (and from From) is in Events.
	Next int64
	// Revision is the member's revision at the read. Next-1 <= Revision,
	// unless From was in the future (then Next is From).
	Revision int64
	// More reports that maxEvents cut the read short: read again from Next
	// at once.
	More bool
	// Changed is closed when the member's revision passes Revision (or it
	// stops, or restores a snapshot). Wait on it when More is false.
	Changed <-chan struct{}
}

// WatchHub is a member's bounded history of recent changes, fed, in log
// order, by the apply path (Publish after each applied batch, Reset after
// a snapshot is restored) and read by any number of watchers, each with
// its own cursor (Read). It holds no per-watcher state: a watcher is a
// revision to read from, so memory is bounded by the history alone
// whatever the number or speed of watchers.
//
// A watcher that falls so far behind that its next revision has left the
// history gets a *CompactedError (etcd's compacted watch response); it
// never skips a change silently. The history keeps at most eventsMax
// events and bytesMax bytes of keys and values, dropping whole revisions,
// oldest first, except that the newest revision is always kept whole
// (one huge DeleteRange may exceed the bounds until the next write).
//
// WatchHub is safe for concurrent use: one writer (the apply path), many
// readers.
type WatchHub struct {
	eventsMax int
	bytesMax  int64

	mu sync.RWMutex
	// events[start:] is the history, in revision order.
	// Invariant: every event there has revision >= oldest, and every
	// change at a revision in oldest..rev is there.
	events []kv.Event
	start  int
	bytes  int64 // of events[start:]
	// rev is the member's revision; oldest <= rev+1.
	rev, oldest int64
	changed     chan struct{}
	stopped     bool
}

// NewWatchHub returns an empty history at revision rev (nothing before
// rev+1 can be read). eventsMax and bytesMax of 0 take the defaults.
func NewWatchHub(rev int64, eventsMax int, bytesMax int64) *WatchHub {
	if eventsMax == 0 {
		eventsMax = WatchHistoryEventsDefault
	}
	if bytesMax == 0 {
		bytesMax = WatchHistoryBytesDefault
	}
	if eventsMax < 1 || bytesMax < 1 {
		panic(fmt.Sprintf("node: watch history bounds %d events, %d bytes", eventsMax, bytesMax))
	}
	return &WatchHub{eventsMax: eventsMax, bytesMax: bytesMax, rev: rev, oldest: rev + 1, changed: make(chan struct{})}
}

func eventBytes(ev *kv.Event) int64 {
	return int64(len(ev.KV.Key)+len(ev.KV.Value)+len(ev.PrevKV.Key)+len(ev.PrevKV.Value)) + watchEventOverheadBytes
}

// Publish appends the events of applied results, which must come in
// apply order. Results without events (reads, no-ops, errors, retries,
// entries skipped as already applied) are ignored.
func (h *WatchHub) Publish(results []kv.Result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	grew := false
	for i := range results {
		r := &results[i]
		if len(r.Events) == 0 || r.Err != nil {
			continue
		}
		if r.Revision <= h.rev {
			panic(fmt.Sprintf("node: watch hub at revision %d got events at revision %d", h.rev, r.Revision))
		}
		for j := range r.Events {
			ev := &r.Events[j]
			if ev.KV.ModRevision != r.Revision {
				panic(fmt.Sprintf("node: event at revision %d in a result at revision %d", ev.KV.ModRevision, r.Revision))
			}
			h.events = append(h.events, *ev)
			h.bytes += eventBytes(ev)
		}
		h.rev = r.Revision
		grew = true
	}
	if !grew {
		return
	}
	h.evict()
	h.notify()
}

// evict drops the oldest revisions while the history is over its bounds,
// keeping the newest revision whole.
func (h *WatchHub) evict() {
	for len(h.events)-h.start > h.eventsMax || h.bytes > h.bytesMax {
		r := h.events[h.start].KV.ModRevision
		if r == h.rev {
			break
		}
		for h.start < len(h.events) && h.events[h.start].KV.ModRevision == r {
			h.bytes -= eventBytes(&h.events[h.start])
			h.events[h.start] = kv.Event{}
			h.start++
		}
		h.oldest = r + 1
	}
	if h.start > 0 && h.start >= len(h.events)/2 {
		n := copy(h.events, h.events[h.start:])
		clear(h.events[n:])
		h.events = h.events[:n]
		h.start = 0
	}
}

func (h *WatchHub) notify() {
	if h.stopped {
		return
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

// Reset empties the history at revision rev: the state was replaced (a
// snapshot restored), so the changes that led to it are unknown, and
// watchers behind rev get a CompactedError.
func (h *WatchHub) Reset(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.events)
	h.events, h.start, h.bytes = h.events[:0], 0, 0
	h.rev, h.oldest = rev, rev+1
	h.notify()
}

// Stop ends the history: Read returns ErrStopped from now on, and waiting
// readers wake.
func (h *WatchHub) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.stopped {
		h.stopped = true
		close(h.changed)
	}
}

// Revision returns the revision of the last change published.
func (h *WatchHub) Revision() int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.rev
}

// Read returns the changes to the keys in [key, end) (kv.RangeRequest's
// rules: an empty end is the single key, "\x00" no upper bound) at
// revisions >= from; from 0 means the next revision (nothing to read yet;
// use the returned Next). It returns at most about maxEvents events, whole
// revisions only (one revision may exceed maxEvents). If changes at from
// are no longer kept it returns a *CompactedError.
func (h *WatchHub) Read(key, end []byte, from int64, maxEvents int) (WatchBatch, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.stopped {
		return WatchBatch{}, ErrStopped
	}
	b := WatchBatch{Revision: h.rev, Changed: h.changed}
	if from <= 0 {
		from = h.rev + 1
	}
	if from > h.rev {
		b.Next = from
		return b, nil
	}
	if from < h.oldest {
		return WatchBatch{}, &CompactedError{Revision: h.oldest}
	}
	evs := h.events[h.start:]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].KV.ModRevision >= from })
	for ; i < len(evs); i++ {
		ev := &evs[i]
		if len(b.Events) >= maxEvents && ev.KV.ModRevision != b.Events[len(b.Events)-1].KV.ModRevision {
			b.More = true
			b.Next = ev.KV.ModRevision
			return b, nil
		}
		if watchMatches(ev.KV.Key, key, end) {
			b.Events = append(b.Events, *ev)
		}
	}
	b.Next = h.rev + 1
	return b, nil
}

// watchMatches reports whether k is in the range (key, end) under
// kv.RangeRequest's rules.
func watchMatches(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

// Watch reads this member's recent changes; see WatchHub.Read. Changes
// reach it as this member applies them, whatever its role, so a watch on
// a follower keeps going across leader changes. Revisions are this
// member's: under a protocol with local revisions (EPaxos) from means
// this member's revision in its current run, and events come in its own
// apply order (each key's in the same order on every member). After Stop
// it returns ErrStopped.
func (n *Node) Watch(key, end []byte, from int64, maxEvents int) (WatchBatch, error) {
	b, err := n.watch.Read(key, end, from, maxEvents)
	if errors.Is(err, ErrStopped) {
		return b, n.checkRunningOr(err)
	}
	return b, err
}

// checkRunningOr returns the error a request to a stopped node gets, or
// err if the loop is (still) running.
func (n *Node) checkRunningOr(err error) error {
	if e := n.checkRunning(); e != nil {
		return e
	}
	return err
}

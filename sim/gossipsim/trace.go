package gossipsim

import (
	"fmt"
)

// traceLog keeps a running hash of everything that happens in a run, so
// that two runs compare cheaply, and the last events in readable form
// for violation reports (messages are formatted only when a report needs
// them).
type traceLog struct {
	sum  uint64
	ring []traceEntry
	next int
	full bool
}

type traceEntry struct {
	at   int64
	note string
	ev   *event
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func newTraceLog(tail int) traceLog { return traceLog{sum: fnvOffset, ring: make([]traceEntry, tail)} }

func (t *traceLog) hash(vals ...uint64) {
	h := t.sum
	for _, v := range vals {
		for range 8 {
			h ^= v & 0xff
			h *= fnvPrime
			v >>= 8
		}
	}
	t.sum = h
}

func (t *traceLog) hashString(s string) {
	h := t.sum
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	t.sum = h
}

func (t *traceLog) add(e traceEntry) {
	if len(t.ring) == 0 {
		return
	}
	t.ring[t.next] = e
	t.next++
	if t.next == len(t.ring) {
		t.next, t.full = 0, true
	}
}

// delivery records a delivered message.
func (t *traceLog) delivery(ev *event, typ uint64) {
	t.hash(uint64(ev.at), uint64(ev.from)<<32|uint64(ev.node), typ)
	if len(t.ring) > 0 {
		cp := *ev
		t.add(traceEntry{at: ev.at, ev: &cp})
	}
}

// note records a readable event (a fault, a phase).
func (t *traceLog) note(at int64, s string) {
	t.hash(uint64(at))
	t.hashString(s)
	t.add(traceEntry{at: at, note: s})
}

// tail formats the recorded events, oldest first.
func (t *traceLog) tail() []string {
	var out []string
	emit := func(e traceEntry) {
		tick := float64(e.at) / UnitsPerTick
		switch {
		case e.note != "":
			out = append(out, fmt.Sprintf("%10.3f  %s", tick, e.note))
		case e.ev.gmsg != nil:
			out = append(out, fmt.Sprintf("%10.3f  deliver to %d: %v", tick, e.ev.node+1, e.ev.gmsg))
		case e.ev.smsg != nil:
			out = append(out, fmt.Sprintf("%10.3f  deliver to %d: store %v", tick, e.ev.node+1, e.ev.smsg))
		default:
			out = append(out, fmt.Sprintf("%10.3f  deliver %d bytes %d->%d", tick, len(e.ev.data), e.ev.from+1, e.ev.node+1))
		}
	}
	if t.full {
		for _, e := range t.ring[t.next:] {
			emit(e)
		}
	}
	for _, e := range t.ring[:t.next] {
		emit(e)
	}
	return out
}

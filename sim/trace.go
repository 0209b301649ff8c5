package sim

import (
	"fmt"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/sim/check"
)

// traceLog keeps a running hash of everything that happens in a run (so two
// runs can be compared cheaply) and the last few events in readable form
// (for violation reports). Events are formatted only when a report needs
// them.
type traceLog struct {
	sum  uint64
	ring []traceEntry
	next int
	full bool
}

type traceEntry struct {
	at   int64
	note string
	msg  consensus.Message
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func newTraceLog(tail int) traceLog {
	return traceLog{sum: fnvOffset, ring: make([]traceEntry, tail)}
}

// hash folds values into the running trace hash.
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

// message records a delivered message.
func (t *traceLog) message(at int64, m consensus.Message) {
	t.hash(uint64(at), uint64(m.From)<<32|uint64(m.To))
	t.hashString(m.Payload.MessageType())
	t.add(traceEntry{at: at, msg: m})
}

// note records a readable event (a fault, an election).
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
		if e.note != "" {
			out = append(out, fmt.Sprintf("%10.3f  %s", tick, e.note))
		} else {
			out = append(out, fmt.Sprintf("%10.3f  deliver %v", tick, e.msg))
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

func badMessage(w *world, m consensus.Message) *check.Violation {
	return &check.Violation{Checker: "message", Tick: w.tick(),
		Detail: fmt.Sprintf("a replica sent a message with bad endpoints: %v", m)}
}

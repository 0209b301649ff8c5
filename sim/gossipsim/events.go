package gossipsim

import (
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
)

type eventKind uint8

const (
	evTick    eventKind = iota // a node's clock ticks
	evFaults                   // the fault scheduler runs (once per tick)
	evDeliver                  // a message reaches a node
	evClient                   // a client issues its next operation
	evRestart                  // a crashed node restarts
	evHeal                     // a partition heals
	evQuiet                    // the fault phase ends
	evCheck                    // the quiet phase's convergence check (once per tick)
)

// event is one scheduled happening, ordered by time and then by the
// order of scheduling, so that a run is deterministic.
type event struct {
	at   int64  // virtual time in units
	seq  uint64 // tie-break: scheduling order
	kind eventKind
	// node is the node index (evTick, evDeliver, evRestart), the client
	// index (evClient) or the partition index (evHeal).
	node int32
	from int32 // evDeliver: the sender's index
	// A message: one of gmsg and smsg, or its encoding in data (with
	// Config.Codec; isStore says which codec).
	gmsg    *gossip.Message
	smsg    *store.Message
	data    []byte
	isStore bool
}

// eventQueue is a binary min-heap of events by (at, seq).
type eventQueue struct{ h []event }

func (q *eventQueue) len() int { return len(q.h) }

func (q *eventQueue) less(i, j int) bool {
	a, b := &q.h[i], &q.h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

func (q *eventQueue) push(e event) {
	q.h = append(q.h, e)
	for i := len(q.h) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q.h[i], q.h[p] = q.h[p], q.h[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	top := q.h[0]
	last := len(q.h) - 1
	q.h[0] = q.h[last]
	q.h[last] = event{}
	q.h = q.h[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q.h[i], q.h[m] = q.h[m], q.h[i]
		i = m
	}
	return top
}

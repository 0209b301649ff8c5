package sim

import "github.com/synod-io/synod/consensus"

type eventKind uint8

const (
	evTick          eventKind = iota // a node's clock ticks
	evFaults                         // the fault scheduler runs (once per tick)
	evDeliver                        // a peer message reaches a node
	evClientRequest                  // a client request reaches a node
	evClientReply                    // a node's reply reaches a client
	evClientTimeout                  // a client gives up on an attempt
	evClientNext                     // a client issues its next operation
	evRestart                        // a crashed node restarts
	evUnblock                        // a partition heals
	evQuiet                          // the fault phase ends
)

var eventNames = [...]string{"tick", "faults", "deliver", "client-request", "client-reply",
	"client-timeout", "client-next", "restart", "unblock", "quiet"}

func (k eventKind) String() string { return eventNames[k] }

// event is one scheduled happening. Events are ordered by time, then by
// the order in which they were scheduled, so a run is deterministic.
type event struct {
	at   int64  // virtual time in units
	seq  uint64 // tie-break: scheduling order
	kind eventKind
	node int32 // node index, or -1
	// client index (client events) or block index (evUnblock).
	client  int32
	attempt uint64
	msg     consensus.Message
	req     *request
	reply   *reply
}

// eventQueue is a binary min-heap of events by (at, seq). It is written out
// rather than using container/heap to avoid boxing every event.
type eventQueue struct {
	items []event
}

func (q *eventQueue) len() int { return len(q.items) }

func (q *eventQueue) less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

func (q *eventQueue) push(e event) {
	q.items = append(q.items, e)
	i := len(q.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items[last] = event{} // drop references
	q.items = q.items[:last]
	i, n := 0, last
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}

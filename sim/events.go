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

// eventQueue is a min-heap of events by (at, seq). The heap holds small
// pointer-free items that name a slot in a slab of events, so sifting moves
// 24 bytes without write barriers rather than whole events.
type eventQueue struct {
	heap  []queueItem
	slots []event
	free  []int32
}

type queueItem struct {
	at   int64
	seq  uint64
	slot int32
}

func (q *eventQueue) len() int { return len(q.heap) }

func (q *eventQueue) less(i, j int) bool {
	a, b := &q.heap[i], &q.heap[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

func (q *eventQueue) push(e event) {
	var slot int32
	if n := len(q.free); n > 0 {
		slot = q.free[n-1]
		q.free = q.free[:n-1]
		q.slots[slot] = e
	} else {
		slot = int32(len(q.slots))
		q.slots = append(q.slots, e)
	}
	q.heap = append(q.heap, queueItem{at: e.at, seq: e.seq, slot: slot})
	i := len(q.heap) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q.heap[i], q.heap[p] = q.heap[p], q.heap[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	slot := q.heap[0].slot
	last := len(q.heap) - 1
	q.heap[0] = q.heap[last]
	q.heap = q.heap[:last]
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
		q.heap[i], q.heap[m] = q.heap[m], q.heap[i]
		i = m
	}
	e := q.slots[slot]
	q.slots[slot] = event{} // drop references
	q.free = append(q.free, slot)
	return e
}

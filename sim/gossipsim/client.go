package gossipsim

import (
	"fmt"
	"strconv"

	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/sim/check"
)

// client issues one store operation at a time at a node: its home node
// with chance Workload.Home, else a random one (nodes, if set, limits the
// choice).
type client struct {
	index int
	home  int
	seq   uint64
	// nodes, if set, are the only nodes the client uses (a client on one
	// side of a scripted partition).
	nodes []int
	// mine holds the client's latest write of each key at each node, for
	// read-your-writes.
	mine map[mineKey]mineWrite
	// stats counts the client's operations.
	stats ClientStats
	// record, if set, sees each operation (experiments).
	record func(op Op)
}

type mineKey struct {
	key  string
	node int
}

type mineWrite struct {
	dataLife uint64
	e        store.Entry
}

// OpKind says what a client operation did.
type OpKind uint8

const (
	OpPut OpKind = iota + 1
	OpDelete
	OpDeleteRange
	OpGet
)

// Op is one client operation, for experiments that watch them.
type Op struct {
	Client int
	Node   int // node index
	Kind   OpKind
	Key    string
	// OK: the node took the operation (false: it was down).
	OK bool
	// Entries are the writes the operation made.
	Entries []store.Entry
	AtTicks float64
}

// ClientStats counts a client's operations.
type ClientStats struct {
	Puts, Deletes, DeleteRanges, Gets int
	// Unavailable counts operations at a node that was down.
	Unavailable int
}

func (s *ClientStats) add(o ClientStats) {
	s.Puts += o.Puts
	s.Deletes += o.Deletes
	s.DeleteRanges += o.DeleteRanges
	s.Gets += o.Gets
	s.Unavailable += o.Unavailable
}

func (w *world) bootClients() {
	for i := range w.cfg.Workload.Clients {
		c := &client{index: i, home: w.wrng.IntN(len(w.nodes)), mine: map[mineKey]mineWrite{}}
		w.clients = append(w.clients, c)
		w.schedule(w.wrng.Int64N(UnitsPerTick)+1, event{kind: evClient, node: int32(i)})
	}
}

func (w *world) think(c *client) {
	d := int64(1)
	if m := w.cfg.Workload.ThinkTicksMax * UnitsPerTick; m > 0 {
		d += w.wrng.Int64N(m)
	}
	w.schedule(w.now+d, event{kind: evClient, node: int32(c.index)})
}

// clientNext runs the client's next operation, during the fault phase.
func (w *world) clientNext(c *client) {
	if w.quiet || w.stopClients {
		return
	}
	wl := &w.cfg.Workload
	var ni int
	switch {
	case len(c.nodes) > 0 && w.wrng.Float64() < wl.Home:
		ni = c.nodes[0]
	case len(c.nodes) > 0:
		ni = c.nodes[w.wrng.IntN(len(c.nodes))]
	case w.wrng.Float64() < wl.Home:
		ni = c.home
	default:
		ni = w.wrng.IntN(len(w.nodes))
	}
	n := w.nodes[ni]
	if n.up && w.now < n.pausedUntil {
		// The node answers when it resumes.
		w.schedule(n.pausedUntil+1, event{kind: evClient, node: int32(c.index)})
		return
	}
	key := "k" + strconv.Itoa(w.wrng.IntN(wl.Keys))
	total := wl.PutWeight + wl.GetWeight + wl.DeleteWeight + wl.DeleteRangeWeight
	x := w.wrng.IntN(total)
	op := Op{Client: c.index, Node: ni, Key: key, OK: n.up, AtTicks: w.tick()}
	switch {
	case x < wl.PutWeight:
		op.Kind = OpPut
	case x < wl.PutWeight+wl.GetWeight:
		op.Kind = OpGet
	case x < wl.PutWeight+wl.GetWeight+wl.DeleteWeight:
		op.Kind = OpDelete
	default:
		op.Kind = OpDeleteRange
		op.Key = "k" + strconv.Itoa(w.wrng.IntN(10))
	}
	defer w.think(c)
	if !n.up {
		c.stats.Unavailable++
		if c.record != nil {
			c.record(op)
		}
		return
	}
	now := w.nowMs(n)
	var err error
	switch op.Kind {
	case OpGet:
		c.stats.Gets++
		kv, found := n.st.Get(key)
		var mine *store.Entry
		if m, ok := c.mine[mineKey{key, ni}]; ok && m.dataLife == n.dataLife {
			mine = &m.e
		}
		w.violate(w.model.Read(n.id, key, kv, found, mine, w.tick()))
		if c.record != nil {
			if found {
				op.Entries = []store.Entry{{Key: key, Value: kv.Value, TS: kv.TS, Origin: kv.Origin}}
			}
			c.record(op)
		}
		return
	case OpPut:
		c.stats.Puts++
		c.seq++
		_, err = n.st.Put(key, []byte(fmt.Sprintf("c%d.%d", c.index+1, c.seq)), now)
	case OpDelete:
		c.stats.Deletes++
		_, err = n.st.Delete(key, now)
	case OpDeleteRange:
		c.stats.DeleteRanges++
		_, err = n.st.DeleteRange(op.Key, store.PrefixEnd(op.Key), now)
	}
	if err != nil {
		w.violate(&check.Violation{Checker: "store-write", Tick: w.tick(), Detail: fmt.Sprintf("replica %d refused a client's write: %v", n.id, err)})
		return
	}
	// The flush persists the writes; the records of this flush are all
	// the replica's own writes.
	w.written = w.written[:0]
	w.flush(n, true)
	for _, e := range w.written {
		c.mine[mineKey{e.Key, ni}] = mineWrite{dataLife: n.dataLife, e: e}
		op.Entries = append(op.Entries, e)
	}
	if c.record != nil {
		c.record(op)
	}
}

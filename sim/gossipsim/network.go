package gossipsim

import (
	"errors"
	"fmt"
	"math"

	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/sim/check"
)

// linkLatency is the base one-way latency of the link from node a to node
// b, drawn from the seed (a hash, so that a thousand nodes need no
// matrix).
func (w *world) linkLatency(a, b int) int64 {
	span := uint64(w.net.LatencyMaxUnits - w.net.LatencyMinUnits + 1)
	h := uint64(w.cfg.Seed)*0x9e3779b97f4a7c15 ^ uint64(a)<<32 ^ uint64(b)
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return w.net.LatencyMinUnits + int64(h%span)
}

// sendGossip puts a membership message on the network.
func (w *world) sendGossip(n *node, out gossip.Outbound) {
	to, ok := w.byAddr[out.Addr]
	if !ok {
		w.violate(&check.Violation{Checker: "gossip-address", Tick: w.tick(), Detail: fmt.Sprintf("node %d sent to unknown address %q: %v", n.id, out.Addr, out.Message)})
		return
	}
	n.gossipSent++
	if w.onGossipSend != nil {
		w.onGossipSend(n, to, out.Message)
	}
	ev := event{kind: evDeliver, node: int32(to), from: int32(n.index), gmsg: out.Message}
	if w.cfg.Codec {
		buf, err := gossip.MessageCodec.AppendMessage(nil, out.Message)
		if err != nil {
			w.violate(&check.Violation{Checker: "gossip-codec", Tick: w.tick(), Detail: fmt.Sprintf("node %d sent a message that does not encode: %v: %v", n.id, out.Message, err)})
			return
		}
		ev.gmsg, ev.data = nil, buf
	}
	w.transmit(n.index, to, ev)
}

// sendStore puts a store message on the network.
func (w *world) sendStore(n *node, m *store.Message) {
	to := int(m.To) - 1
	if to < 0 || to >= len(w.nodes) || to == n.index {
		w.violate(&check.Violation{Checker: "store-address", Tick: w.tick(), Detail: fmt.Sprintf("replica %d sent a message to %d: %v", n.id, m.To, m)})
		return
	}
	w.res.StoreMessages++
	ev := event{kind: evDeliver, node: int32(to), from: int32(n.index), smsg: m, isStore: true}
	if w.cfg.Codec {
		buf, err := store.MessageCodec.AppendMessage(nil, m)
		if err != nil {
			w.violate(&check.Violation{Checker: "store-codec", Tick: w.tick(), Detail: fmt.Sprintf("replica %d sent a message that does not encode: %v: %v", n.id, m, err)})
			return
		}
		ev.smsg, ev.data = nil, buf
	}
	w.transmit(n.index, to, ev)
}

// transmit schedules a message's delivery: it may be lost, duplicated,
// delayed (jitter, a slow endpoint) or held back so that later ones
// overtake it.
func (w *world) transmit(from, to int, ev event) {
	w.res.MessagesSent++
	if w.net.Loss > 0 && w.rng.Float64() < w.net.Loss {
		w.res.MessagesDropped++
		return
	}
	copies := 1
	if w.net.Duplicate > 0 && w.rng.Float64() < w.net.Duplicate {
		copies = 2
		w.res.MessagesDuplicated++
	}
	f := &w.cfg.Faults
	for range copies {
		at := w.now + w.linkLatency(from, to)
		if w.net.JitterUnits > 0 {
			at += w.rng.Int64N(w.net.JitterUnits + 1)
		}
		if w.net.Reorder > 0 && w.rng.Float64() < w.net.Reorder {
			at += w.rng.Int64N(w.net.ReorderDelayUnits + 1)
		}
		if !w.quiet && (w.nodes[from].slow || w.nodes[to].slow) && w.rng.Float64() < f.SlowChance {
			at += (1 + w.rng.Int64N(f.SlowDelayMaxTicks)) * UnitsPerTick
		}
		w.schedule(at, ev)
	}
}

// blocked reports whether a partition cuts the link between a and b.
func (w *world) blocked(a, b int) bool {
	if w.active == 0 {
		return false
	}
	for _, p := range w.partitions {
		if !p.healed && p.side[a] != p.side[b] {
			return true
		}
	}
	return false
}

// deliver hands a message to its node, unless the node is down or a
// partition cuts the link; a paused node gets it when it resumes.
func (w *world) deliver(ev event) {
	n := w.nodes[ev.node]
	if !n.up || w.blocked(int(ev.from), n.index) {
		w.res.MessagesDropped++
		return
	}
	if w.now < n.pausedUntil {
		w.schedule(n.pausedUntil+w.rng.Int64N(w.net.JitterUnits+1), ev)
		return
	}
	w.res.MessagesDelivered++
	if ev.data != nil {
		codec := gossip.MessageCodec
		if ev.isStore {
			codec = store.MessageCodec
		}
		p, err := codec.DecodeMessage(ev.data)
		if err != nil {
			w.violate(&check.Violation{Checker: "codec", Tick: w.tick(), Detail: fmt.Sprintf("a message to node %d does not decode: %v", n.id, err)})
			return
		}
		if ev.isStore {
			ev.smsg = p.(*store.Message)
		} else {
			ev.gmsg = p.(*gossip.Message)
		}
	}
	if ev.isStore {
		w.trace.delivery(&ev, uint64(ev.smsg.Type)|0x100)
		if err := n.st.Step(ev.smsg, w.nowMs(n)); err != nil && !errors.Is(err, store.ErrClockDrift) {
			w.violate(&check.Violation{Checker: "store-step", Tick: w.tick(), Detail: fmt.Sprintf("replica %d refused %v: %v", n.id, ev.smsg, err)})
			return
		} else if err != nil {
			w.res.DriftRefusals++
		}
	} else {
		w.trace.delivery(&ev, uint64(ev.gmsg.Type))
		if err := n.g.Step(ev.gmsg); err != nil {
			w.violate(&check.Violation{Checker: "gossip-step", Tick: w.tick(), Detail: fmt.Sprintf("node %d refused %v: %v", n.id, ev.gmsg, err)})
			return
		}
	}
	w.flush(n, false)
}

// partitionNow splits the nodes in two sides for ticks ticks. side, if
// nil, is drawn at random (both sides non-empty).
func (w *world) partitionNow(side []bool, ticks int64) *partition {
	n := len(w.nodes)
	if side == nil {
		side = make([]bool, n)
		for i := range side {
			side[i] = w.rng.IntN(2) == 0
		}
		a := 0
		for _, s := range side {
			if s {
				a++
			}
		}
		if a == 0 || a == n {
			i := w.rng.IntN(n)
			side[i] = !side[i]
		}
	}
	p := &partition{side: side, start: w.now, end: math.MaxInt64}
	for _, s := range side {
		if s {
			p.sizeA++
		} else {
			p.sizeB++
		}
	}
	w.partitions = append(w.partitions, p)
	w.active++
	w.res.Faults.Partition++
	w.schedule(w.now+ticks*UnitsPerTick, event{kind: evHeal, node: int32(len(w.partitions) - 1)})
	w.trace.note(w.now, fmt.Sprintf("partition %d|%d nodes for %d ticks", p.sizeA, p.sizeB, ticks))
	return p
}

func (w *world) heal(p *partition) {
	if p.healed {
		return
	}
	p.healed, p.end = true, w.now
	w.active--
	w.trace.note(w.now, fmt.Sprintf("heal partition %d|%d", p.sizeA, p.sizeB))
}

package sim

import (
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// send puts a message on the network after delayUnits (a slow fsync): it
// may be lost, duplicated, delayed, held back (reordered) or held by a
// clogged link. With a latency matrix, links keep their order except when
// the Reorder fault holds a message back.
func (w *world) send(m consensus.Message, delayUnits int64) {
	from, to := int(m.From)-1, int(m.To)-1
	if from < 0 || from >= len(w.nodes) || to < 0 || to >= len(w.nodes) || from == to {
		w.violate(badMessage(w, m))
		return
	}
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
	for range copies {
		at := w.now + delayUnits + w.latency[from][to]
		if w.net.JitterUnits > 0 {
			at += w.rng.Int64N(w.net.JitterUnits + 1)
		}
		if w.linkLast != nil {
			// A wide-area link is a stream (as TCP is): jitter delays a
			// message but does not let it overtake an earlier one.
			at = max(at, w.linkLast[from][to])
			w.linkLast[from][to] = at
		}
		if w.net.Reorder > 0 && w.rng.Float64() < w.net.Reorder {
			at += w.rng.Int64N(w.net.ReorderDelayUnits + 1)
		}
		if c := w.clogUntil[from][to]; c > at {
			at = c + w.rng.Int64N(w.net.JitterUnits+1)
		}
		w.schedule(at, event{kind: evDeliver, node: int32(to), msg: m})
	}
}

// deliver hands a message to its node, unless the node is down or the link
// is cut; a paused node gets it when it resumes.
func (w *world) deliver(ev event) {
	n := w.nodes[ev.node]
	from := int(ev.msg.From) - 1
	if !n.alive || w.blocked[from][n.index] > 0 {
		w.res.MessagesDropped++
		return
	}
	if w.now < n.pausedUntil {
		w.schedule(n.pausedUntil+w.rng.Int64N(w.net.JitterUnits+1), ev)
		return
	}
	w.res.MessagesDelivered++
	w.trace.message(w.now, ev.msg)
	if err := n.replica.Step(ev.msg); err != nil {
		w.trace.note(w.now, fmt.Sprintf("node %d rejected %v: %v", n.id, ev.msg, err))
	}
	w.process(n)
	w.powerLost(n)
}

// block cuts the given directed links until the block is lifted.
func (w *world) block(links [][2]int, ticks int64, what string) {
	for _, l := range links {
		w.blocked[l[0]][l[1]]++
	}
	id := len(w.blocks)
	w.blocks = append(w.blocks, links)
	w.schedule(w.now+ticks*UnitsPerTick, event{kind: evUnblock, node: -1, client: int32(id)})
	w.trace.note(w.now, fmt.Sprintf("%s for %d ticks", what, ticks))
}

func (w *world) unblock(id int) {
	links := w.blocks[id]
	if links == nil {
		return // already lifted
	}
	for _, l := range links {
		w.blocked[l[0]][l[1]]--
	}
	w.blocks[id] = nil
	w.trace.note(w.now, fmt.Sprintf("heal block %d", id))
}

// injectFaults runs once per tick during the fault phase.
func (w *world) injectFaults() {
	f := &w.cfg.Faults
	n := len(w.nodes)
	if f.Crash > 0 && w.rng.Float64() < f.Crash {
		w.crashSoon(w.nodes[w.rng.IntN(n)])
	}
	if f.CrashLeader > 0 && w.rng.Float64() < f.CrashLeader {
		var leaders []*node
		for _, nd := range w.nodes {
			if nd.alive && nd.role == consensus.RoleLeader {
				leaders = append(leaders, nd)
			}
		}
		if len(leaders) > 0 {
			w.res.Faults.CrashLeader++
			w.crashSoon(leaders[w.rng.IntN(len(leaders))])
		}
	}
	if f.Partition > 0 && n > 1 && w.rng.Float64() < f.Partition {
		side := make([]bool, n)
		for i := range side {
			side[i] = w.rng.IntN(2) == 0
		}
		var links [][2]int
		for i := range n {
			for j := range n {
				if side[i] != side[j] {
					links = append(links, [2]int{i, j})
				}
			}
		}
		w.res.Faults.Partition++
		w.block(links, 1+w.rng.Int64N(f.PartitionMaxTicks), fmt.Sprintf("partition %v", sides(side)))
	}
	if f.AsymmetricPartition > 0 && n > 1 && w.rng.Float64() < f.AsymmetricPartition {
		victim := w.rng.IntN(n)
		inbound := w.rng.IntN(2) == 0
		var links [][2]int
		for j := range n {
			if j == victim {
				continue
			}
			if inbound {
				links = append(links, [2]int{j, victim})
			} else {
				links = append(links, [2]int{victim, j})
			}
		}
		dir := "cannot send"
		if inbound {
			dir = "cannot receive"
		}
		w.res.Faults.AsymmetricPartition++
		w.block(links, 1+w.rng.Int64N(f.PartitionMaxTicks), fmt.Sprintf("node %d %s", victim+1, dir))
	}
	if f.Clog > 0 && n > 1 && w.rng.Float64() < f.Clog {
		from := w.rng.IntN(n)
		to := (from + 1 + w.rng.IntN(n-1)) % n
		until := w.now + (1+w.rng.Int64N(f.ClogMaxTicks))*UnitsPerTick
		w.clogUntil[from][to] = max(w.clogUntil[from][to], until)
		w.res.Faults.Clog++
		w.trace.note(w.now, fmt.Sprintf("clog %d->%d until tick %d", from+1, to+1, until/UnitsPerTick))
	}
	if dc := &w.cfg.Disk; dc.Enabled && dc.Corrupt > 0 && w.rng.Float64() < dc.Corrupt {
		var faulty []*node
		for _, nd := range w.nodes {
			if nd.alive && nd.disk.faulty {
				faulty = append(faulty, nd)
			}
		}
		if len(faulty) > 0 {
			w.corruptLog(faulty[w.rng.IntN(len(faulty))])
		}
	}
	if f.Pause > 0 && w.rng.Float64() < f.Pause {
		nd := w.nodes[w.rng.IntN(n)]
		if nd.alive && w.now >= nd.pausedUntil {
			nd.pausedUntil = w.now + (1+w.rng.Int64N(f.PauseMaxTicks))*UnitsPerTick
			w.res.Faults.Pause++
			w.trace.note(w.now, fmt.Sprintf("pause node %d until tick %d", nd.id, nd.pausedUntil/UnitsPerTick))
		}
	}
}

// crashSoon crashes a live node now or, one time in four, in the middle of
// handling its next Ready (after persisting, before sending); with disks,
// sometimes between writing a Ready's records and syncing them.
func (w *world) crashSoon(nd *node) {
	if !nd.alive || nd.crashAfterPersist || nd.crashMidPersist {
		return
	}
	if nd.disk != nil && w.rng.Float64() < w.cfg.Disk.CrashAtDiskOp {
		k := 1 + w.rng.IntN(8)
		nd.disk.cfs.arm(k)
		w.trace.note(w.now, fmt.Sprintf("arm power loss on node %d before its disk operation %d from now", nd.id, k))
		return
	}
	if nd.disk != nil && w.rng.Float64() < w.cfg.Disk.CrashMidPersist {
		nd.crashMidPersist = true
		w.trace.note(w.now, fmt.Sprintf("arm crash-mid-persist on node %d", nd.id))
		return
	}
	if w.rng.IntN(4) == 0 {
		nd.crashAfterPersist = true
		w.trace.note(w.now, fmt.Sprintf("arm crash-after-persist on node %d", nd.id))
		return
	}
	w.crash(nd)
	w.scheduleRestart(nd)
}

// beginQuiet stops every fault: the network becomes reliable, partitions
// and clogs clear, paused nodes resume and crashed nodes restart.
func (w *world) beginQuiet() {
	w.quiet = true
	w.net.Loss, w.net.Duplicate, w.net.Reorder = 0, 0, 0
	for id := range w.blocks {
		w.unblock(id)
	}
	for i := range w.clogUntil {
		clear(w.clogUntil[i])
	}
	for _, n := range w.nodes {
		n.pausedUntil = 0
		n.crashAfterPersist = false
		n.crashMidPersist = false
		if n.disk != nil {
			n.disk.cfs.arm(0)
			w.setDiskFaults(n.disk)
		}
		if !n.alive && !n.refused {
			w.schedule(w.now+1, event{kind: evRestart, node: int32(n.index)})
		}
	}
	w.trace.note(w.now, "faults stop")
}

func sides(side []bool) string {
	var a, b []int
	for i, s := range side {
		if s {
			a = append(a, i+1)
		} else {
			b = append(b, i+1)
		}
	}
	return fmt.Sprintf("%v | %v", a, b)
}

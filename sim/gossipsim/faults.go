package gossipsim

import (
	"fmt"

	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/sim/check"
)

// injectFaults runs once per tick during the fault phase.
func (w *world) injectFaults() {
	f := &w.cfg.Faults
	n := len(w.nodes)
	if f.Crash > 0 && w.rng.Float64() < f.Crash {
		nd := w.nodes[w.rng.IntN(n)]
		if nd.up {
			permanent := w.permanents < f.PermanentMax && w.rng.Float64() < f.Permanent
			w.crash(nd, permanent)
			if !permanent {
				w.schedule(w.now+(1+w.rng.Int64N(f.CrashDowntimeMaxTicks))*UnitsPerTick, event{kind: evRestart, node: int32(nd.index)})
			}
		}
	}
	if f.Partition > 0 && w.rng.Float64() < f.Partition {
		w.partitionNow(nil, 1+w.rng.Int64N(f.PartitionMaxTicks))
	}
	if f.Pause > 0 && w.rng.Float64() < f.Pause {
		w.pause(w.nodes[w.rng.IntN(n)], 1+w.rng.Int64N(f.PauseMaxTicks))
	}
	for _, nd := range w.slowNodes {
		if f.SlowPauseTicks > 0 && w.rng.Int64N(f.SlowPauseEveryTicks) == 0 {
			w.pause(nd, f.SlowPauseTicks)
		}
	}
}

// pause stops a running node for ticks ticks.
func (w *world) pause(nd *node, ticks int64) {
	if !nd.up || w.now < nd.pausedUntil {
		return
	}
	nd.pausedUntil = w.now + ticks*UnitsPerTick
	nd.pauseEnd = nd.pausedUntil
	w.res.Faults.Pause++
	w.trace.note(w.now, fmt.Sprintf("pause node %d for %d ticks", nd.id, ticks))
}

// beginQuiet stops every fault: partitions heal, the network stops
// losing, duplicating and reordering, paused nodes resume, slow nodes
// are slow no more, crashed nodes restart (unless crashed for good), and
// clients stop. From now on the checkers wait for convergence.
func (w *world) beginQuiet() {
	w.quiet = true
	w.quietAt = w.now
	w.net.Loss, w.net.Duplicate, w.net.Reorder = 0, 0, 0
	for _, p := range w.partitions {
		w.heal(p)
	}
	for _, n := range w.nodes {
		if n.pausedUntil > w.now {
			n.pausedUntil, n.pauseEnd = 0, w.now
		}
		if !n.up && !n.permanent {
			w.schedule(w.now+1, event{kind: evRestart, node: int32(n.index)})
		}
	}
	w.trace.note(w.now, "faults stop")
	w.schedule(w.now+2, event{kind: evCheck, node: -1})
}

// checkConvergence runs once per tick after the faults stopped. It
// follows the membership's accuracy and the replicas' agreement (each may
// be lost again, to news from the fault phase still on its way), reports
// a violation if either does not hold by its bound, and ends the run,
// with the final checks, once both have held for StableTicks.
func (w *world) checkConvergence() {
	since := w.now - w.quietAt
	switch acc := w.members.Accurate(); {
	case acc && w.membershipAt < 0:
		w.membershipAt = w.now
		w.trace.note(w.now, "membership accurate")
	case !acc && w.membershipAt >= 0:
		w.membershipAt = -1
		w.trace.note(w.now, "membership inaccurate again: "+w.members.Example(1))
	}
	switch conv := w.storeConverged(); {
	case conv && w.storeAt < 0:
		w.storeAt = w.now
		w.trace.note(w.now, "store replicas converged")
	case !conv && w.storeAt >= 0:
		w.storeAt = -1
		w.trace.note(w.now, "store replicas differ again")
	}
	switch {
	case w.membershipAt < 0 && since > w.membershipBound*UnitsPerTick:
		w.violate(w.members.Check(w.tick(), fmt.Sprintf("%d ticks after the faults stopped (bound %d)", since/UnitsPerTick, w.membershipBound)))
	case w.storeAt < 0 && since > w.storeBound*UnitsPerTick:
		w.violate(&check.Violation{Checker: "store-convergence", Tick: w.tick(),
			Detail: fmt.Sprintf("%d ticks after the faults stopped (bound %d): %s", since/UnitsPerTick, w.storeBound, w.storeDifference())})
	case w.membershipAt >= 0 && w.storeAt >= 0 && w.now-max(w.membershipAt, w.storeAt) >= w.cfg.StableTicks*UnitsPerTick:
		w.finalChecks()
		w.done = true
	}
}

// finalMarginMs is how close to its expiry a tombstone may be and still
// be either present or purged: clocks differ by up to twice the skew,
// and replicas purge at their ticks.
func (w *world) finalMarginMs() uint64 {
	return uint64(2*w.cfg.Faults.ClockSkewMs) + 2*MsPerTick
}

// storeConverged reports whether every running replica holds the same
// entries: the same Merkle root, or the same entries once tombstones
// about to expire (which replicas purge at slightly different times) are
// set aside.
func (w *world) storeConverged() bool {
	var first *node
	same := true
	for _, n := range w.nodes {
		if !n.up {
			continue
		}
		if first == nil {
			first = n
			continue
		}
		if n.st.Status().Root != first.st.Status().Root {
			same = false
			break
		}
	}
	if same || (w.now/UnitsPerTick)%10 != 0 {
		return same
	}
	return w.storeDifference() == ""
}

// storeDifference describes how two running replicas differ, ignoring
// tombstones near their expiry; "" if none do.
func (w *world) storeDifference() string {
	var first *node
	var want []store.Entry
	margin := w.finalMarginMs()
	for _, n := range w.nodes {
		if !n.up {
			continue
		}
		got := w.settled(n, margin)
		if first == nil {
			first, want = n, got
			continue
		}
		if d := diffEntries(want, got); d != "" {
			return fmt.Sprintf("replicas %d and %d differ: %s", first.id, n.id, d)
		}
	}
	return ""
}

// settled is a replica's entries without the tombstones that expire
// within margin of now on any replica.
func (w *world) settled(n *node, marginMs uint64) []store.Entry {
	ttl := w.cfg.storeConfig().TombstoneTTLMs
	trueMs := uint64(w.now * MsPerTick / UnitsPerTick)
	var out []store.Entry
	for _, e := range n.st.Snapshot().Entries {
		if e.Tombstone && e.TS.WallMs+ttl <= trueMs+marginMs+uint64(w.cfg.Faults.ClockSkewMs) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// diffEntries describes the first difference between two sorted entry
// lists, or "".
func diffEntries(a, b []store.Entry) string {
	for i := 0; i < len(a) || i < len(b); i++ {
		switch {
		case i >= len(a):
			return fmt.Sprintf("only the second holds %v", b[i])
		case i >= len(b):
			return fmt.Sprintf("only the first holds %v", a[i])
		case a[i].Key != b[i].Key || a[i].Compare(&b[i]) != 0:
			return fmt.Sprintf("%v against %v", a[i], b[i])
		}
	}
	return ""
}

// finalChecks runs at the end of a converged run: the membership is
// still accurate, and checked against every node's own view; the
// replicas still agree, and hold the model's last writes.
func (w *world) finalChecks() {
	if d := w.storeDifference(); d != "" {
		w.violate(&check.Violation{Checker: "store-convergence", Tick: w.tick(), Detail: "at the end of the run, " + d})
		return
	}
	for _, o := range w.nodes {
		if !o.up {
			continue
		}
		for _, s := range w.nodes {
			if s == o {
				continue
			}
			m, ok := o.g.Member(s.id)
			var got gossip.State
			if ok {
				got = m.State
			}
			want := w.members.View(o.id, s.id)
			// A dead or left member may have been reaped since.
			if got != want && !(got == 0 && (want == gossip.StateDead || want == gossip.StateLeft)) {
				w.violate(&check.Violation{Checker: "membership-events", Tick: w.tick(),
					Detail: fmt.Sprintf("node %d holds %d as %v but its events said %v", o.id, s.id, got, want)})
				return
			}
		}
	}
	margin := w.finalMarginMs()
	for _, n := range w.nodes {
		if !n.up {
			continue
		}
		if v := w.model.Final(n.id, n.st.Snapshot().Entries, w.nowMs(n), margin, w.liveData, w.tick()); v != nil {
			w.violate(v)
			return
		}
	}
	w.trace.note(w.now, "final checks passed")
}

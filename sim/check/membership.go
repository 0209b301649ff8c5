package check

import (
	"fmt"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
)

// Cause says why a node may have declared a live member dead, as the
// simulator that reports the declaration knows it (see
// Membership.Observe).
type Cause uint8

const (
	// CauseNone: the two were connected and neither was paused or slow:
	// a plain false positive of the failure detector.
	CauseNone Cause = iota
	// CausePartition: a partition separated observer and subject
	// recently. Declaring the other side dead is what SWIM is meant to
	// do; it is not counted as a false positive.
	CausePartition
	// CausePause: observer or subject was paused recently (alive but not
	// answering): a false positive of the slow-but-alive kind.
	CausePause
	// CauseSlow: observer or subject is a slow member (its messages are
	// often late): the false positive Lifeguard is built to avoid.
	CauseSlow

	causeCount = 4
)

// String names the cause.
func (c Cause) String() string {
	switch c {
	case CauseNone:
		return "none"
	case CausePartition:
		return "partition"
	case CausePause:
		return "pause"
	case CauseSlow:
		return "slow"
	}
	return fmt.Sprintf("Cause(%d)", uint8(c))
}

// Membership checks a SWIM group's views against the truth the simulator
// knows: which nodes run and which are crashed. Nodes are 1..n. It keeps
// every node's view of every other, fed from the membership events each
// node reports, and counts the pairs that disagree with the truth, so
// that accuracy is known at any moment in O(1):
//
//   - a running observer must see every other running node alive;
//   - and every crashed node dead, left or not at all (reaped, or never
//     heard of).
//
// It also classifies every death declared: true (the subject is crashed,
// or the death concerns an incarnation of an earlier life), or a live
// node declared dead, by Cause. A death is counted once, when the first
// node declares it (a member's death at one incarnation), whoever hears
// of it later: the first to report it is the node whose suspicion timer
// ran out.
type Membership struct {
	n int
	// view[o*n+s] is what node o+1 believes of node s+1, 0 if it does not
	// know it. A crashed observer's row is meaningless until it restarts.
	view []gossip.State
	up   []bool
	// lifeInc is the incarnation each node's current life started at: a
	// death at a lower incarnation is about an earlier life.
	lifeInc []uint64
	// wrong counts the pairs (o, s), o running and s != o, whose view
	// disagrees with the truth. Invariant: equal to a full recount.
	wrong int

	deadTrue int
	deadLive [causeCount]int
	// declared holds the deaths counted, by member and incarnation.
	declared map[death]bool
}

type death struct {
	id  consensus.NodeID
	inc uint64
}

// NewMembership returns a checker for nodes 1..n, all crashed (not yet
// started).
func NewMembership(n int) *Membership {
	return &Membership{n: n, view: make([]gossip.State, n*n), up: make([]bool, n), lifeInc: make([]uint64, n), declared: map[death]bool{}}
}

func (m *Membership) ok(o, s int) bool {
	v := m.view[o*m.n+s]
	if m.up[s] {
		return v == gossip.StateAlive
	}
	return v == 0 || v == gossip.StateDead || v == gossip.StateLeft
}

// contrib is 1 if the pair counts as wrong.
func (m *Membership) contrib(o, s int) int {
	if o == s || !m.up[o] || m.ok(o, s) {
		return 0
	}
	return 1
}

// around counts the wrong pairs in node i's row and column.
func (m *Membership) around(i int) int {
	c := 0
	for j := range m.n {
		c += m.contrib(i, j) + m.contrib(j, i)
	}
	return c
}

func (m *Membership) index(id consensus.NodeID) int {
	i := int(id) - 1
	if i < 0 || i >= m.n {
		panic(fmt.Sprintf("check: node %d outside 1..%d", id, m.n))
	}
	return i
}

// Start records that node id starts a life (first start or restart) at
// incarnation inc, knowing nobody yet.
func (m *Membership) Start(id consensus.NodeID, inc uint64) {
	i := m.index(id)
	before := m.around(i)
	clear(m.view[i*m.n : (i+1)*m.n])
	m.up[i] = true
	m.lifeInc[i] = inc
	m.wrong += m.around(i) - before
}

// Crash records that node id stopped.
func (m *Membership) Crash(id consensus.NodeID) {
	i := m.index(id)
	before := m.around(i)
	m.up[i] = false
	m.wrong += m.around(i) - before
}

// Observe records that observer now believes subject is in state st at
// incarnation inc (a membership event). For a death, cause says what the
// simulator knows of the two: it decides how a live subject's death is
// counted, if this is the first report of it.
func (m *Membership) Observe(observer, subject consensus.NodeID, st gossip.State, inc uint64, cause Cause) {
	o, s := m.index(observer), m.index(subject)
	if o == s {
		return
	}
	before := m.contrib(o, s)
	m.view[o*m.n+s] = st
	m.wrong += m.contrib(o, s) - before
	if st != gossip.StateDead || m.declared[death{subject, inc}] {
		return
	}
	m.declared[death{subject, inc}] = true
	if !m.up[s] || inc < m.lifeInc[s] {
		m.deadTrue++
		return
	}
	m.deadLive[cause]++
}

// Wrong is the number of (observer, subject) pairs whose view disagrees
// with the truth; zero means every running node's view is accurate.
func (m *Membership) Wrong() int { return m.wrong }

// Accurate reports whether every running node sees every other running
// node alive and every crashed node dead or not at all.
func (m *Membership) Accurate() bool { return m.wrong == 0 }

// Example describes up to max wrong pairs, for a report.
func (m *Membership) Example(max int) string {
	var out []string
	for o := 0; o < m.n && len(out) < max; o++ {
		for s := 0; s < m.n && len(out) < max; s++ {
			if m.contrib(o, s) == 0 {
				continue
			}
			want := "alive"
			if !m.up[s] {
				want = "dead or unknown"
			}
			got := "unknown"
			if v := m.view[o*m.n+s]; v != 0 {
				got = v.String()
			}
			out = append(out, fmt.Sprintf("node %d sees %d %s (want %s)", o+1, s+1, got, want))
		}
	}
	return fmt.Sprintf("%d wrong views, e.g. %v", m.wrong, out)
}

// Check returns a "membership-accuracy" violation unless the views are
// accurate.
func (m *Membership) Check(tick float64, context string) *Violation {
	if m.wrong == 0 {
		return nil
	}
	return &Violation{Checker: "membership-accuracy", Tick: tick, Detail: context + ": " + m.Example(3)}
}

// View returns observer's recorded view of subject (0: unknown).
func (m *Membership) View(observer, subject consensus.NodeID) gossip.State {
	return m.view[m.index(observer)*m.n+m.index(subject)]
}

// Up reports whether node id is running.
func (m *Membership) Up(id consensus.NodeID) bool { return m.up[m.index(id)] }

// DeathCounts are the deaths declared (each member's death at one
// incarnation once), classified.
type DeathCounts struct {
	// True: the subject was crashed, or the death concerned an earlier
	// life of it.
	True int
	// Partition: a live subject on the other side of a recent partition
	// (expected; not a false positive).
	Partition int
	// FalsePositives: a live, connected subject; of which Paused and Slow
	// involved a paused or slow node.
	FalsePositives, Paused, Slow int
}

// Deaths returns the deaths declared so far, classified.
func (m *Membership) Deaths() DeathCounts {
	d := m.deadLive
	return DeathCounts{
		True: m.deadTrue, Partition: d[CausePartition],
		FalsePositives: d[CauseNone] + d[CausePause] + d[CauseSlow], Paused: d[CausePause], Slow: d[CauseSlow],
	}
}

// recount recomputes wrong from scratch (tests).
func (m *Membership) recount() int {
	c := 0
	for o := range m.n {
		for s := range m.n {
			c += m.contrib(o, s)
		}
	}
	return c
}

package gossipsim

import (
	"fmt"
	"strings"
	"time"

	"github.com/synod-io/synod/sim/check"
)

// FaultCounts counts the faults injected in a run.
type FaultCounts struct {
	Crash, Permanent, Restart, Wiped int
	Partition, Pause                 int
}

// Total is the number of faults injected (restarts and wipes are not
// faults).
func (f FaultCounts) Total() int { return f.Crash + f.Partition + f.Pause }

// Result is what a run did and what the checkers found.
type Result struct {
	// Config is the exact configuration run; Run(Config) replays it.
	Config Config
	Seed   int64
	Nodes  int
	// Live is the number of nodes running at the end.
	Live int
	// Ticks is the simulated time covered.
	Ticks float64
	// Wall is the wall-clock time the run took, checks included; SimWall
	// without the final checks.
	Wall, SimWall time.Duration
	Faults        FaultCounts

	MessagesSent, MessagesDelivered, MessagesDropped, MessagesDuplicated int
	// GossipMessages and StoreMessages split MessagesSent by core.
	GossipMessages, StoreMessages int
	// DriftRefusals counts store messages whose entries were partly
	// refused as stamped too far ahead (not expected with the clock skew
	// within the store's drift bound).
	DriftRefusals int

	// Client operations.
	Ops ClientStats
	// Writes is the number of writes replicas accepted; WritesLost those
	// no running replica ever held (lost with replicas that crashed for
	// good or were wiped).
	Writes, WritesLost int
	// RYWChecked counts the reads checked for read-your-writes.
	RYWChecked int
	// Resurrections counts deleted keys that came back after their
	// tombstone expired (the store's documented caveat).
	Resurrections int
	// Keys and Tombstones are held by the replicas at the end.
	Keys, Tombstones int

	// Deaths are the deaths members declared, classified.
	Deaths check.DeathCounts
	// MembershipTicks and StoreTicks are how long after the faults
	// stopped the membership became accurate and the replicas converged
	// (-1: not within the bounds).
	MembershipTicks, StoreTicks float64
	// MembershipBoundTicks and StoreBoundTicks are the bounds checked.
	MembershipBoundTicks, StoreBoundTicks int64

	Violations []*check.Violation
	// TraceTail is the last events before the first violation.
	TraceTail []string
	// TraceHash is a digest of the whole run; equal configs give equal
	// hashes.
	TraceHash uint64
}

// OK reports whether no checker found a violation.
func (r *Result) OK() bool { return len(r.Violations) == 0 }

// Report formats the violations and the trace tail for a human.
func (r *Result) Report() string {
	if r.OK() {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d (gossip, %d nodes): %d violation(s)\n", r.Seed, r.Nodes, len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  %v\n", v)
	}
	if len(r.TraceTail) > 0 {
		fmt.Fprintf(&b, "  last %d events:\n", len(r.TraceTail))
		for _, l := range r.TraceTail {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	return b.String()
}

// SimSpeed is simulated ticks per wall-clock second.
func (r *Result) SimSpeed() float64 {
	if r.SimWall <= 0 {
		return 0
	}
	return r.Ticks / r.SimWall.Seconds()
}

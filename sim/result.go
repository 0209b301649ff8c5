package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/sim/check"
)

// FaultCounts counts the faults injected in a run.
type FaultCounts struct {
	Crash, CrashMidReady, Restart        int
	Partition, AsymmetricPartition, Clog int
	Pause                                int
	// CrashLeader counts crashes aimed at a leader (also counted in Crash
	// or CrashMidReady).
	CrashLeader int
	// Disk faults: crashes between writing and syncing a Ready's records,
	// nodes stopped by a failed fsync, bits flipped in stored logs, starts
	// refused over an untrustworthy log, and corrupted logs that a
	// restart did not notice (the flipped bit was in unread space).
	CrashMidPersist, DiskFailure, Corruption, RefusedStart, CorruptionUnnoticed int
	// CrashAtDiskOp counts power failures cut just before an exact disk
	// operation.
	CrashAtDiskOp int
}

// Total is the number of faults injected (restarts are not faults).
func (f FaultCounts) Total() int {
	return f.Crash + f.Partition + f.AsymmetricPartition + f.Clog + f.Pause
}

// LatencyTicks summarises the latency of completed operations, in ticks.
type LatencyTicks struct {
	P50, P90, P99, Max float64
}

// Result is what a run did and what the checkers found.
type Result struct {
	// Config is the exact configuration run; Run(Config) replays it.
	Config   Config
	Seed     int64
	Protocol string
	Nodes    int
	// Ticks is the simulated time covered.
	Ticks float64
	// Wall is the wall-clock time the run took, checks included.
	Wall time.Duration
	// SimWall is the wall-clock time of the simulation alone, without the
	// final checks.
	SimWall time.Duration

	OpsOK      int // completed, outcome known
	OpsFailed  int // given up on, certainly without effect
	OpsUnknown int // given up on, may have taken effect
	OpsPending int // still in flight when the run ended
	Latency    LatencyTicks
	// LeaderChanges counts terms that had a leader.
	LeaderChanges int
	// LastLeader is the node seen becoming leader last (None if none did,
	// as under a leaderless protocol).
	LastLeader consensus.NodeID
	// Sites is the latency seen at each site of the network's latency
	// matrix (nil without one), in the order of the matrix's sites.
	Sites []SiteLatency
	// Committed is the highest index applied on any node.
	Committed uint64
	Faults    FaultCounts
	// Snapshots taken, and snapshots installed from a peer.
	Snapshots, SnapshotsInstalled int

	MessagesSent, MessagesDelivered, MessagesDropped, MessagesDuplicated int

	// Linearizability is porcupine's verdict: Ok, Illegal or Unknown (the
	// check ran out of time); empty if it did not run.
	Linearizability string
	Violations      []*check.Violation
	// TraceTail is the last events before the first violation.
	TraceTail []string
	// TraceHash is a digest of the whole run; equal configs give equal
	// hashes.
	TraceHash uint64

	latencyUnits []int64
	lin          *check.LinearizabilityResult
	// Per-site samples behind Sites, in units.
	siteCommitUnits, siteExecUnits [][]int64
}

// SiteLatency is the latency of the operations that the clients at one
// site completed, leaving out those issued during Config.WarmupTicks, in
// milliseconds. Both are measured from the moment the request reaches
// the client's own site's node (the client's send plus
// WorkloadConfig.ClientLatencyUnits): a client that sends straight to a
// leader at another site is counted as if its own site's node had
// forwarded the request, so the trip to the leader is part of the
// latency.
type SiteLatency struct {
	Site string
	// CommitMs, sorted: until the node that accepted the proposal (the
	// leader, or EPaxos's command leader) learned the command committed,
	// as Protocol.Commits reports. Empty if the protocol has no Commits.
	CommitMs []float64
	// ExecuteMs, sorted: until the client has the result, executed at the
	// node that answered.
	ExecuteMs []float64
}

// Quantile returns the q-quantile (0 <= q <= 1) of sorted samples, the
// nearest rank at or below q, as Result.Latency does; 0 for no samples.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

func (r *Result) siteLatencies() {
	m := r.Config.Network.Matrix
	if m == nil {
		return
	}
	ms := func(units []int64) []float64 {
		out := make([]float64, len(units))
		for i, u := range units {
			out[i] = float64(u) / float64(r.Config.Network.UnitsPerMs)
		}
		slices.Sort(out)
		return out
	}
	r.Sites = make([]SiteLatency, m.Len())
	for i, name := range m.Sites {
		r.Sites[i] = SiteLatency{Site: name, CommitMs: ms(r.siteCommitUnits[i]), ExecuteMs: ms(r.siteExecUnits[i])}
	}
}

// OK reports whether no checker found a violation.
func (r *Result) OK() bool { return len(r.Violations) == 0 }

// Throughput is completed operations per 1,000 simulated ticks.
func (r *Result) Throughput() float64 {
	if r.Ticks == 0 {
		return 0
	}
	return float64(r.OpsOK) / r.Ticks * 1000
}

// SimSpeed is simulated ticks per wall-clock second.
func (r *Result) SimSpeed() float64 {
	if r.SimWall <= 0 {
		return 0
	}
	return r.Ticks / r.SimWall.Seconds()
}

func (r *Result) latencies() {
	l := r.latencyUnits
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	at := func(q float64) float64 {
		i := int(q * float64(len(l)-1))
		return float64(l[i]) / UnitsPerTick
	}
	r.Latency = LatencyTicks{P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: float64(l[len(l)-1]) / UnitsPerTick}
}

// WriteVisualization writes porcupine's HTML view of the run's history to
// path. It reports an error if linearizability was not checked.
func (r *Result) WriteVisualization(path string) error {
	if r.lin == nil {
		return fmt.Errorf("sim: no linearizability check ran for seed %d", r.Seed)
	}
	return r.lin.WriteVisualization(path, time.Duration(r.Config.CheckTimeoutSec)*time.Second)
}

// Report formats the violations and the trace tail for a human.
func (r *Result) Report() string {
	if r.OK() {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d (%s, %d nodes): %d violation(s)\n", r.Seed, r.Protocol, r.Nodes, len(r.Violations))
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

// LatencySamplesTicks returns the latency of every completed operation, in
// ticks, sorted.
func (r *Result) LatencySamplesTicks() []float64 {
	out := make([]float64, len(r.latencyUnits))
	for i, u := range r.latencyUnits {
		out[i] = float64(u) / UnitsPerTick
	}
	return out
}

package epaxos

import (
	"errors"
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// Bounds checked by Config.Validate.
const (
	// PeersMax bounds the cluster size. Nothing in the core is a fixed-size
	// array; the bound only keeps a corrupt configuration from allocating
	// without limit.
	PeersMax = 1 << 10
	// ExecuteStepsMaxLimit bounds Config.ExecuteStepsMax.
	ExecuteStepsMaxLimit = 1 << 24
	// InflightMaxLimit bounds Config.InflightMax.
	InflightMaxLimit = 1 << 20
	// RetryTicksMax bounds Config.RetryTicks.
	RetryTicksMax = 1 << 20
	// RecoveryTimeoutTicksMax bounds Config.RecoveryTimeoutTicks.
	RecoveryTimeoutTicksMax = 1 << 20
	// DepsMax bounds the dependencies an encoded instance may carry, so a
	// corrupt count never makes a decoder allocate without limit.
	DepsMax = 1 << 20
)

// DefaultExecuteStepsMax is the default Config.ExecuteStepsMax.
const DefaultExecuteStepsMax = 4096

// ErrReadThroughLog is returned by ReadIndex: EPaxos has no leader that can
// confirm a read point, so a linearizable read is proposed as a command
// whose Keys are the keys it reads; it conflicts with every write of those
// keys and is executed in their order (see the package doc).
var ErrReadThroughLog = errors.New("epaxos: ReadIndex is not supported; propose linearizable reads as commands that conflict with the keys they read")

// Config configures one EPaxos replica.
type Config struct {
	// ID is this replica's ID; it must appear in Peers.
	ID consensus.NodeID
	// Peers lists every replica, including ID. N = len(Peers) should be
	// odd (N = 2F+1); an even N tolerates the same F as N-1.
	Peers []consensus.NodeID
	// RetryTicks is how long a leader waits for replies before it resends
	// a phase's messages to the replicas that have not answered, and how
	// long it waits for a fast quorum once it holds a majority of
	// PreAccept replies before it takes the slow path.
	RetryTicks int
	// ExecuteStepsMax bounds the executor's work per Ready: the number of
	// dependency-graph steps (an instance visited or an edge followed). A
	// traversal that runs out is suspended and resumed at the next Ready,
	// never restarted, so a large strongly connected component still
	// executes (see the package doc).
	ExecuteStepsMax int
	// InflightMax bounds the instances this replica leads that are not yet
	// committed; beyond it Propose returns consensus.ErrProposalDropped.
	InflightMax int
	// RecoveryTimeoutTicks is how long an instance this replica knows of
	// (or needs for execution) may stay uncommitted before the replica
	// suspects its leader and recovers it (explicit Prepare). Each wait is
	// drawn from [RecoveryTimeoutTicks, 2*RecoveryTimeoutTicks) with Rand,
	// so competing recoverers do not duel forever. It should be several
	// RetryTicks.
	RecoveryTimeoutTicks int
	// Rand draws the recovery jitter; nil uses a fixed per-replica offset.
	Rand consensus.Rand
	// Logger receives log lines; nil discards them.
	Logger consensus.Logger

	// noRecovery switches failure suspicion, and so recovery, off (tests
	// only; the zero value has recovery on). A replica answers Prepare and
	// TryPreAccept whatever it says.
	noRecovery bool
}

// DefaultConfig returns a Config with default timing and limits.
func DefaultConfig(id consensus.NodeID, peers []consensus.NodeID) Config {
	return Config{
		ID:              id,
		Peers:           slices.Clone(peers),
		RetryTicks:      4,
		ExecuteStepsMax: DefaultExecuteStepsMax,
		InflightMax:     1024,
		// A healthy leader commits within a few RetryTicks.
		RecoveryTimeoutTicks: 25 * 4,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.ID == consensus.None {
		return errors.New("epaxos: config ID is zero")
	}
	if len(c.Peers) == 0 || len(c.Peers) > PeersMax {
		return fmt.Errorf("epaxos: config has %d peers; want 1..%d", len(c.Peers), PeersMax)
	}
	seen := map[consensus.NodeID]bool{}
	for _, p := range c.Peers {
		if p == consensus.None || seen[p] {
			return fmt.Errorf("epaxos: config peer %d is zero or repeated", p)
		}
		seen[p] = true
	}
	if !seen[c.ID] {
		return fmt.Errorf("epaxos: config ID %d is not among the peers %v", c.ID, c.Peers)
	}
	if c.RetryTicks < 1 || c.RetryTicks > RetryTicksMax {
		return fmt.Errorf("epaxos: RetryTicks %d outside 1..%d", c.RetryTicks, RetryTicksMax)
	}
	if c.ExecuteStepsMax < 1 || c.ExecuteStepsMax > ExecuteStepsMaxLimit {
		return fmt.Errorf("epaxos: ExecuteStepsMax %d outside 1..%d", c.ExecuteStepsMax, ExecuteStepsMaxLimit)
	}
	if c.RecoveryTimeoutTicks < 1 || c.RecoveryTimeoutTicks > RecoveryTimeoutTicksMax {
		return fmt.Errorf("epaxos: RecoveryTimeoutTicks %d outside 1..%d", c.RecoveryTimeoutTicks, RecoveryTimeoutTicksMax)
	}
	if c.InflightMax < 1 || c.InflightMax > InflightMaxLimit {
		return fmt.Errorf("epaxos: InflightMax %d outside 1..%d", c.InflightMax, InflightMaxLimit)
	}
	return nil
}

// MaxFailures is F for n replicas: the most that may fail, ⌊(n-1)/2⌋.
func MaxFailures(n int) int { return (n - 1) / 2 }

// FastQuorum is the size of an EPaxos fast quorum of n replicas, leader
// included: F + ⌊(F+1)/2⌋ (the optimized EPaxos of the paper, §4.3 and
// the technical report). For n = 3, 5, 7, 9 it is 2, 3, 5, 6. It is never
// smaller than a majority.
func FastQuorum(n int) int {
	f := MaxFailures(n)
	return max(f+(f+1)/2, consensus.Majority(n))
}

// decision is what a leader does with the PreAccept replies it holds.
type decision uint8

const (
	decideWait decision = iota // keep waiting
	decideFast                 // commit the original attributes
	decideSlow                 // run Accept with the merged attributes
)

// preAcceptDecision decides the fate of a PreAccept round among n replicas
// given replies, the PreAcceptOK replies received from other replicas (the
// leader's own pre-accept is counted on top), changed, whether any of them
// differs from the leader's original attributes, initial, whether the
// round runs at the instance's initial ballot, and timedOut, whether the
// leader gave up waiting for a fast quorum.
//
// Fast: the leader and FastQuorum(n)-1 others, all unchanged, at the
// initial ballot. Slow: a majority replied and the fast path is impossible
// (a reply changed, the ballot is not initial) or the wait timed out.
func preAcceptDecision(n, replies int, changed, initial, timedOut bool) decision {
	have := replies + 1
	if initial && !changed && have >= FastQuorum(n) {
		return decideFast
	}
	if have >= consensus.Majority(n) && (changed || !initial || timedOut || have >= n) {
		return decideSlow
	}
	return decideWait
}

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
	// BatchCommandsMaxLimit bounds Config.BatchCommandsMax, and the
	// commands an encoded instance or message may carry.
	BatchCommandsMaxLimit = 1 << 16
	// BatchBytesMaxLimit bounds Config.BatchBytesMax.
	BatchBytesMaxLimit = consensus.EncodedBytesMax
	// SnapshotEntriesMaxLimit bounds Config.SnapshotEntries.
	SnapshotEntriesMaxLimit = 1 << 30
	// SnapshotChunkBytesMax bounds Config.SnapshotChunkBytes.
	SnapshotChunkBytesMax = 16 << 20
	// SnapshotStateBytesMax bounds a snapshot's protocol state
	// (consensus.SnapshotMeta.Protocol, see DescribeSnapshot), so that it
	// fits the snapshot file's metadata section (storage/snap's
	// ProtocolBytesMax, a little under 1 MiB) and one message. A larger
	// conflict index is folded into a floor (see the package doc).
	SnapshotStateBytesMax = 960 << 10
	// SnapshotRetriesMax bounds how many times in a row a replica asks
	// again for a snapshot chunk that does not come before it abandons
	// the transfer (and starts over later).
	SnapshotRetriesMax = 8
	// CheckpointInstancesMax bounds the instances one Checkpoint record
	// may hold when decoded.
	CheckpointInstancesMax = 1 << 24
)

// Defaults of Config.
const (
	// DefaultExecuteStepsMax is the default Config.ExecuteStepsMax.
	DefaultExecuteStepsMax = 4096
	// DefaultBatchCommandsMax is the default Config.BatchCommandsMax.
	DefaultBatchCommandsMax = 128
	// DefaultSnapshotEntries is the default Config.SnapshotEntries.
	DefaultSnapshotEntries = 10000
	// DefaultSnapshotChunkBytes is the default Config.SnapshotChunkBytes.
	DefaultSnapshotChunkBytes = 256 << 10
	// DefaultBatchBytesMax is the default Config.BatchBytesMax: with the
	// largest request the server accepts by default (1.5 MiB, which would
	// travel alone), an instance's messages stay far below the transport's
	// 16 MiB.
	DefaultBatchBytesMax = 1 << 20
)

// bugKind selects a deliberately wrong variant of the protocol, for showing
// that checkers catch it. Production configurations never set it: the
// field is unexported, DefaultConfig leaves it zero, and only SetBug in
// export_test.go (compiled into this package's tests alone, its internal
// and external test packages) can change it.
type bugKind uint8

const (
	bugNone bugKind = iota
	// bugRecoveryReportsPromised: an acceptor answering Prepare (the
	// recoverer's own answer included) reports the ballot it had PROMISED
	// before that Prepare as the ballot its attributes were accepted
	// under, so recovery may adopt attributes accepted at a lower ballot
	// over ones chosen at a higher one (Sutra 2019).
	bugRecoveryReportsPromised
	// bugMajorityFastQuorum: the leader commits on the fast path once a
	// simple majority (itself included) holds its attributes unchanged,
	// while recovery still looks for FastQuorum-1 matching replies, so a
	// fast commit too few replicas witnessed can be recovered as other
	// attributes. Majority(N) equals FastQuorum(N) for N = 3 and 5, so
	// the variant differs from the protocol only for N >= 7.
	bugMajorityFastQuorum
	// bugPreAcceptIgnoresConflicts: a replica answering PreAccept does
	// not merge its own conflicts and returns the leader's attributes
	// unchanged, so concurrent conflicting commands commit on the fast
	// path with no edge between them and replicas execute them in
	// different orders.
	bugPreAcceptIgnoresConflicts
	// bugSCCUnordered: the executor runs a strongly connected component in
	// the order Tarjan's stack holds it, which depends on where the walk
	// started, instead of (seq, replica, instance).
	bugSCCUnordered
	// bugExecuteFullGraph: the executor follows every dependency, as
	// published EPaxos does, without pruning the edges to instances
	// ordered after the one being walked from; under a continuous stream
	// of conflicting commands a committed command can wait without bound
	// (a liveness flaw: what it executes is still ordered correctly).
	bugExecuteFullGraph

	bugLast = bugExecuteFullGraph
)

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
	// committed. While that many are, proposals wait in the pending batch
	// (see BatchCommandsMax); once it is full too, Propose returns
	// consensus.ErrProposalDropped.
	InflightMax int
	// BatchCommandsMax and BatchBytesMax bound one instance's batch: the
	// proposals made between two Readys, or while InflightMax instances are
	// in flight, are packed into one instance of at most BatchCommandsMax
	// commands whose sizes (consensus.Entry.Size) add up to at most
	// BatchBytesMax. A command larger than BatchBytesMax on its own gets
	// an instance to itself. Messages carry a whole instance, so
	// BatchBytesMax should leave room within the transport's message
	// bound for one command of the largest size the host accepts.
	BatchCommandsMax int
	BatchBytesMax    int
	// RecoveryTimeoutTicks is how long an instance this replica knows of
	// (or needs for execution) may stay uncommitted before the replica
	// suspects its leader and recovers it (explicit Prepare). Each wait is
	// drawn from [RecoveryTimeoutTicks, 2*RecoveryTimeoutTicks) with Rand,
	// so competing recoverers do not duel forever. It should be several
	// RetryTicks.
	RecoveryTimeoutTicks int
	// Snapshots is the host's snapshot store. Nil disables snapshots:
	// executed instances stay in memory and in the log for good,
	// Ready.SnapshotWanted is never set and Compact fails. With it, the
	// replica asks for a snapshot every SnapshotEntries executed
	// commands, compacts behind the snapshots the host saves, restarts
	// from the newest one, and installs a peer's snapshot when it needs
	// instances that every peer it asked compacted (see the package doc).
	Snapshots consensus.SnapshotStore
	// SnapshotEntries is the threshold for Ready.SnapshotWanted: it is set
	// once this many commands were executed since the last snapshot (and
	// again after as many more). Used only with Snapshots.
	SnapshotEntries int
	// SnapshotChunkBytes bounds the snapshot data in one MsgSnap; the
	// first chunk carries the snapshot's protocol state too (at most
	// SnapshotStateBytesMax).
	SnapshotChunkBytes int
	// Rand draws the recovery jitter; nil uses a fixed per-replica offset.
	Rand consensus.Rand
	// Logger receives log lines; nil discards them.
	Logger consensus.Logger

	// noRecovery switches failure suspicion, and so recovery, off (tests
	// only; the zero value has recovery on). A replica answers Prepare and
	// TryPreAccept whatever it says.
	noRecovery bool
	// bug is a known-wrong variant for checker tests; zero in production.
	bug bugKind
}

// DefaultConfig returns a Config with default timing and limits.
func DefaultConfig(id consensus.NodeID, peers []consensus.NodeID) Config {
	return Config{
		ID:               id,
		Peers:            slices.Clone(peers),
		RetryTicks:       4,
		ExecuteStepsMax:  DefaultExecuteStepsMax,
		InflightMax:      1024,
		BatchCommandsMax: DefaultBatchCommandsMax,
		BatchBytesMax:    DefaultBatchBytesMax,
		// Snapshots stay off until the host sets Snapshots.
		SnapshotEntries:    DefaultSnapshotEntries,
		SnapshotChunkBytes: DefaultSnapshotChunkBytes,
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
	if c.BatchCommandsMax < 1 || c.BatchCommandsMax > BatchCommandsMaxLimit {
		return fmt.Errorf("epaxos: BatchCommandsMax %d outside 1..%d", c.BatchCommandsMax, BatchCommandsMaxLimit)
	}
	if c.BatchBytesMax < 1 || c.BatchBytesMax > BatchBytesMaxLimit {
		return fmt.Errorf("epaxos: BatchBytesMax %d outside 1..%d", c.BatchBytesMax, BatchBytesMaxLimit)
	}
	if c.Snapshots != nil {
		if c.SnapshotEntries < 1 || c.SnapshotEntries > SnapshotEntriesMaxLimit {
			return fmt.Errorf("epaxos: SnapshotEntries %d outside 1..%d", c.SnapshotEntries, SnapshotEntriesMaxLimit)
		}
		if c.SnapshotChunkBytes < 1 || c.SnapshotChunkBytes > SnapshotChunkBytesMax {
			return fmt.Errorf("epaxos: SnapshotChunkBytes %d outside 1..%d", c.SnapshotChunkBytes, SnapshotChunkBytesMax)
		}
	}
	if c.bug > bugLast {
		return fmt.Errorf("epaxos: unknown protocol variant %d", c.bug)
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
// whose fast quorum is fastQuorum (FastQuorum(n) but in a known-wrong
// variant), given replies, the PreAcceptOK replies received from other
// replicas (the leader's own pre-accept is counted on top), changed,
// whether any of them differs from the leader's original attributes,
// initial, whether the round runs at the instance's initial ballot, and
// timedOut, whether the leader gave up waiting for a fast quorum.
//
// Fast: the leader and fastQuorum-1 others, all unchanged, at the initial
// ballot. Slow: a majority replied and the fast path is impossible (a
// reply changed, the ballot is not initial) or the wait timed out.
func preAcceptDecision(n, fastQuorum, replies int, changed, initial, timedOut bool) decision {
	have := replies + 1
	if initial && !changed && have >= fastQuorum {
		return decideFast
	}
	if have >= consensus.Majority(n) && (changed || !initial || timedOut || have >= n) {
		return decideSlow
	}
	return decideWait
}

package raft

import (
	"errors"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// Bounds checked by Config.Validate. Every queue, batch and window in the
// core has a named maximum.
const (
	// PeersMax bounds the number of voters.
	PeersMax = 64
	// ElectionTimeoutTicksMax bounds the base election timeout.
	ElectionTimeoutTicksMax = 1 << 20
	// InflightMsgsMaxLimit bounds Config.InflightMsgsMax.
	InflightMsgsMaxLimit = 1 << 16
	// EntriesPerMsgMaxLimit bounds Config.EntriesPerMsgMax.
	EntriesPerMsgMaxLimit = 1 << 20
	// MsgBytesMaxLimit bounds Config.MsgBytesMax and Config.EntryBytesMax.
	MsgBytesMaxLimit = 1 << 30
	// ProposalsPendingMaxLimit bounds Config.ProposalsPendingMax.
	ProposalsPendingMaxLimit = 1 << 24
	// ReadsPendingMax bounds the leader's queue of unconfirmed ReadIndex
	// requests; beyond it ReadIndex returns ErrReadDropped.
	ReadsPendingMax = 4096
	// SnapshotEntriesMaxLimit bounds Config.SnapshotEntries.
	SnapshotEntriesMaxLimit = 1 << 30
	// SnapshotBytesMaxLimit bounds Config.SnapshotBytes.
	SnapshotBytesMaxLimit = 1 << 30
	// CompactionRetainEntriesMax bounds Config.CompactionRetainEntries.
	CompactionRetainEntriesMax = 1 << 24
	// SnapshotChunkBytesMax bounds Config.SnapshotChunkBytes: a chunk must
	// fit the consensus-wide bound on an encoded byte string.
	SnapshotChunkBytesMax = consensus.EncodedBytesMax
	// SnapshotChunksInflightMax bounds the snapshot chunks in flight to one
	// follower.
	SnapshotChunksInflightMax = 2
	// SnapshotRetriesMax bounds how many times in a row the leader resends
	// the unacknowledged chunks of a snapshot transfer that makes no
	// progress; after that it starts the transfer over with the newest
	// snapshot.
	SnapshotRetriesMax = 8
)

// ErrEntryTooLarge is matched (errors.Is) by the error Propose returns for a
// command whose entry is larger than Config.EntryBytesMax. Retrying does not
// help; the command must be split or rejected.
var ErrEntryTooLarge = errors.New("raft: entry larger than EntryBytesMax")

// ErrReadDropped is returned by ReadIndex when ReadsPendingMax reads are
// already waiting for confirmation. It matches consensus.ErrProposalDropped:
// retrying later may succeed.
var ErrReadDropped = fmt.Errorf("raft: %d reads pending, read dropped: %w", ReadsPendingMax, consensus.ErrProposalDropped)

// bugKind selects a deliberately wrong variant of the protocol, for testing
// that checkers catch it. Production configs never set it; only tests can,
// through SetBug in export_test.go.
type bugKind uint8

const (
	bugNone bugKind = iota
	// bugCommitOldTerm: the leader commits any index a majority holds,
	// regardless of the entry's term (Raft paper, Figure 8).
	bugCommitOldTerm
	// bugVoteWithoutLogCheck: votes and pre-votes are granted on term alone.
	bugVoteWithoutLogCheck
	// bugReadWithoutQuorum: the leader answers ReadIndex at once with its
	// commit index, without confirming leadership.
	bugReadWithoutQuorum
)

// Config configures one Raft replica. Build one with DefaultConfig and
// adjust it; New validates it.
type Config struct {
	// ID is this replica's ID; it must appear in Peers.
	ID consensus.NodeID
	// Peers lists every voter, including ID: non-empty, no zero ID, no
	// duplicates. The order does not matter.
	Peers []consensus.NodeID

	// ElectionTimeoutTicks is the base election timeout E. Each timeout is
	// drawn uniformly from [E, 2E). With CheckQuorum, a leader checks every
	// E ticks that a majority answered since the previous check and steps
	// down if not (so at most 2E ticks after it last heard from a
	// majority), and a replica that leads or heard from a leader within E
	// ticks ignores (pre-)votes for later terms (leader stickiness).
	// Must be greater than HeartbeatTicks.
	ElectionTimeoutTicks int
	// HeartbeatTicks is the interval at which a leader sends heartbeats.
	HeartbeatTicks int

	// InflightMsgsMax bounds the append messages in flight to one follower
	// that is in replicate state.
	InflightMsgsMax int
	// EntriesPerMsgMax bounds the entries in one append message.
	EntriesPerMsgMax int
	// MsgBytesMax bounds the total entry bytes (consensus.Entry.Size) in one
	// append message. One entry always fits, whatever its size.
	MsgBytesMax int
	// EntryBytesMax bounds one entry's size; Propose rejects a larger one
	// with an error matching ErrEntryTooLarge.
	EntryBytesMax int
	// ProposalsPendingMax bounds the uncommitted entries a leader holds;
	// beyond it Propose returns consensus.ErrProposalDropped.
	ProposalsPendingMax int

	// PreVote runs a pre-election that does not change terms before each
	// election, so a node that cannot win does not disrupt the cluster.
	PreVote bool
	// CheckQuorum makes a leader step down when it has not heard from a
	// majority within an election timeout, and enables leader stickiness
	// (which is unsafe for liveness without it).
	CheckQuorum bool

	// Snapshots is the host's snapshot store. Nil disables snapshots: the
	// log is never compacted, Ready.SnapshotWanted is never set and Compact
	// fails. With a store, the host snapshots its state machine and calls
	// Compact, the leader streams snapshots to followers that are behind
	// the compacted log, and followers receive them through it.
	Snapshots consensus.SnapshotStore
	// SnapshotEntries and SnapshotBytes are the thresholds for
	// Ready.SnapshotWanted: it is set once the entries applied since the
	// last snapshot (or since it was last set) reach either many entries
	// or many bytes (consensus.Entry.Size). Zero disables a threshold.
	// Used only with Snapshots.
	SnapshotEntries int
	SnapshotBytes   int
	// CompactionRetainEntries is how many entries Compact keeps behind the
	// snapshot index, so that followers lagging by fewer entries still get
	// appends rather than a snapshot.
	CompactionRetainEntries int
	// SnapshotChunkBytes bounds the snapshot data in one MsgSnap.
	SnapshotChunkBytes int

	// Rand draws election jitter. Required.
	Rand consensus.Rand
	// Logger receives log lines; nil discards them.
	Logger consensus.Logger

	// bug is a known-wrong variant for checker tests; zero in production.
	bug bugKind
}

// DefaultConfig returns a valid configuration with sane defaults: election
// timeout 10 ticks, heartbeat 1 tick, pre-vote and check-quorum on;
// snapshot thresholds of 10000 entries or 64 MiB, 1000 entries retained
// behind a snapshot and 256 KiB snapshot chunks, but no snapshot store (so
// snapshots are off until the host sets Snapshots).
func DefaultConfig(id consensus.NodeID, peers []consensus.NodeID, rand consensus.Rand) Config {
	return Config{
		ID:                      id,
		Peers:                   peers,
		ElectionTimeoutTicks:    10,
		HeartbeatTicks:          1,
		InflightMsgsMax:         256,
		EntriesPerMsgMax:        1024,
		MsgBytesMax:             1 << 20,
		EntryBytesMax:           1 << 20,
		ProposalsPendingMax:     1 << 14,
		PreVote:                 true,
		CheckQuorum:             true,
		SnapshotEntries:         10000,
		SnapshotBytes:           64 << 20,
		CompactionRetainEntries: 1000,
		SnapshotChunkBytes:      256 << 10,
		Rand:                    rand,
	}
}

// Validate reports the first field that is out of range, naming the field
// and the allowed range.
func (c Config) Validate() error {
	if c.ID == consensus.None {
		return errors.New("raft: Config.ID must not be 0 (0 means no node)")
	}
	if len(c.Peers) == 0 || len(c.Peers) > PeersMax {
		return fmt.Errorf("raft: Config.Peers has %d voters; allowed 1..%d", len(c.Peers), PeersMax)
	}
	self := false
	for i, p := range c.Peers {
		if p == consensus.None {
			return fmt.Errorf("raft: Config.Peers[%d] is 0; node IDs must be non-zero", i)
		}
		for _, q := range c.Peers[:i] {
			if p == q {
				return fmt.Errorf("raft: Config.Peers lists node %d twice", p)
			}
		}
		if p == c.ID {
			self = true
		}
	}
	if !self {
		return fmt.Errorf("raft: Config.Peers %v does not include Config.ID %d", c.Peers, c.ID)
	}
	if err := checkRange("HeartbeatTicks", c.HeartbeatTicks, 1, ElectionTimeoutTicksMax-1); err != nil {
		return err
	}
	if err := checkRange("ElectionTimeoutTicks", c.ElectionTimeoutTicks, c.HeartbeatTicks+1, ElectionTimeoutTicksMax); err != nil {
		return fmt.Errorf("%w (it must exceed HeartbeatTicks=%d)", err, c.HeartbeatTicks)
	}
	if err := checkRange("InflightMsgsMax", c.InflightMsgsMax, 1, InflightMsgsMaxLimit); err != nil {
		return err
	}
	if err := checkRange("EntriesPerMsgMax", c.EntriesPerMsgMax, 1, EntriesPerMsgMaxLimit); err != nil {
		return err
	}
	if err := checkRange("MsgBytesMax", c.MsgBytesMax, 1, MsgBytesMaxLimit); err != nil {
		return err
	}
	if err := checkRange("EntryBytesMax", c.EntryBytesMax, 1, MsgBytesMaxLimit); err != nil {
		return err
	}
	if err := checkRange("ProposalsPendingMax", c.ProposalsPendingMax, 1, ProposalsPendingMaxLimit); err != nil {
		return err
	}
	if err := checkRange("SnapshotEntries", c.SnapshotEntries, 0, SnapshotEntriesMaxLimit); err != nil {
		return err
	}
	if err := checkRange("SnapshotBytes", c.SnapshotBytes, 0, SnapshotBytesMaxLimit); err != nil {
		return err
	}
	if err := checkRange("CompactionRetainEntries", c.CompactionRetainEntries, 0, CompactionRetainEntriesMax); err != nil {
		return err
	}
	if err := checkRange("SnapshotChunkBytes", c.SnapshotChunkBytes, 1, SnapshotChunkBytesMax); err != nil {
		return err
	}
	if c.Rand == nil {
		return errors.New("raft: Config.Rand is required (it draws election jitter)")
	}
	return nil
}

func checkRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("raft: Config.%s is %d; allowed %d..%d", field, v, lo, hi)
	}
	return nil
}

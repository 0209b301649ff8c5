package paxos

import (
	"errors"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// Bounds checked by Config.Validate.
const (
	// PeersMax bounds the number of voters (acknowledgements are kept as a
	// 64-bit set per slot).
	PeersMax = 64
	// ElectionTimeoutTicksMax bounds the base election timeout.
	ElectionTimeoutTicksMax = 1 << 20
	// InflightSlotsMaxLimit bounds Config.InflightSlotsMax.
	InflightSlotsMaxLimit = 1 << 20
	// EntriesPerMsgMaxLimit bounds Config.EntriesPerMsgMax.
	EntriesPerMsgMaxLimit = 1 << 20
	// MsgBytesMaxLimit bounds Config.MsgBytesMax and Config.EntryBytesMax.
	MsgBytesMaxLimit = 1 << 30
	// ReadsPendingMax bounds the leader's unconfirmed ReadIndex requests;
	// beyond it ReadIndex returns ErrReadDropped.
	ReadsPendingMax = 4096
	// PromiseEntriesMax bounds the accepted slots one promise reports, so
	// that a corrupt count never makes a decoder allocate without limit.
	PromiseEntriesMax = 1 << 24
	// SnapshotEntriesMaxLimit bounds Config.SnapshotEntries.
	SnapshotEntriesMaxLimit = 1 << 30
	// SnapshotBytesMaxLimit bounds Config.SnapshotBytes.
	SnapshotBytesMaxLimit = 1 << 30
	// CompactionRetainEntriesMax bounds Config.CompactionRetainEntries.
	CompactionRetainEntriesMax = 1 << 24
	// SnapshotChunkBytesMax bounds Config.SnapshotChunkBytes: a chunk must
	// fit in one encoded message.
	SnapshotChunkBytesMax = consensus.EncodedBytesMax
	// SnapshotChunksInflightMax bounds the unacknowledged snapshot chunks
	// in flight to one peer.
	SnapshotChunksInflightMax = 2
	// SnapshotRetriesMax bounds how many times in a row a sender resends
	// the unacknowledged chunks of a stalled transfer before it abandons
	// it (and starts over with the newest snapshot if the peer still needs
	// one).
	SnapshotRetriesMax = 8
)

// ErrEntryTooLarge is matched by the error Propose returns for a command
// whose entry is larger than Config.EntryBytesMax.
var ErrEntryTooLarge = errors.New("paxos: entry larger than EntryBytesMax")

// ErrReadDropped is returned by ReadIndex when ReadsPendingMax reads are
// already waiting. It matches consensus.ErrProposalDropped.
var ErrReadDropped = fmt.Errorf("paxos: %d reads pending, read dropped: %w", ReadsPendingMax, consensus.ErrProposalDropped)

// bugKind selects a deliberately wrong variant, for showing that checkers
// catch it. Only tests can set it (SetBug in export_test.go).
type bugKind uint8

const (
	bugNone bugKind = iota
	// bugPhase2AnyAccepted: a new leader re-proposes, per slot, an accepted
	// value of the lowest ballot among the promises (any accepted value
	// rather than the highest), and ignores what acceptors know is chosen.
	bugPhase2AnyAccepted
	// bugReadWithoutBarrier: the leader answers ReadIndex at once with its
	// commit index, without confirming it still holds its ballot.
	bugReadWithoutBarrier
)

// Config configures one Multi-Paxos replica. Build one with DefaultConfig
// and adjust it; New validates it.
type Config struct {
	// ID is this replica's ID; it must appear in Peers.
	ID consensus.NodeID
	// Peers lists every voter (acceptor), including ID.
	Peers []consensus.NodeID

	// ElectionTimeoutTicks is the base election timeout E: a replica that
	// has not heard from a leader for a timeout drawn uniformly from
	// [E, 2E) runs phase 1 with a fresh ballot; a candidate whose phase 1
	// is refused or does not finish backs off for a new random timeout. A
	// leader that has not heard from a majority within E ticks steps down
	// (check-quorum). Must exceed HeartbeatTicks.
	ElectionTimeoutTicks int
	// HeartbeatTicks is the interval of the leader's heartbeats (commit
	// notifications, read barriers, catch-up and retransmission).
	HeartbeatTicks int
	// AcceptRetryTicks is how long an unchosen slot waits before the
	// leader resends it to acceptors that have not accepted it.
	AcceptRetryTicks int

	// InflightSlotsMax bounds the slots a leader has proposed but not yet
	// seen chosen; beyond it Propose returns ErrProposalDropped.
	InflightSlotsMax int
	// EntriesPerMsgMax and MsgBytesMax bound one Accept or Learn message.
	// One entry always fits.
	EntriesPerMsgMax int
	MsgBytesMax      int
	// EntryBytesMax bounds one entry (consensus.Entry.Size).
	EntryBytesMax int

	// Snapshots is the host's snapshot store. Nil disables snapshots: the
	// log is never compacted, Ready.SnapshotWanted is never set, Compact
	// fails and incoming snapshot chunks are refused. With a store, the
	// host snapshots its state machine when asked and calls Compact, and
	// replicas stream snapshots to peers that need compacted slots (see
	// the package doc).
	Snapshots consensus.SnapshotStore
	// SnapshotEntries and SnapshotBytes are the thresholds for
	// Ready.SnapshotWanted: it is set once the entries applied since the
	// last snapshot (or since it was last set) reach either many entries
	// or many bytes (consensus.Entry.Size). Zero disables a threshold.
	// Used only with Snapshots.
	SnapshotEntries int
	SnapshotBytes   int
	// CompactionRetainEntries is how many chosen slots Compact keeps
	// behind the snapshot index, so that peers lagging by fewer slots are
	// still caught up with MsgLearn rather than a snapshot.
	CompactionRetainEntries int
	// SnapshotChunkBytes bounds the snapshot data in one MsgSnap.
	SnapshotChunkBytes int

	// Rand draws election jitter. Required.
	Rand consensus.Rand
	// Logger receives log lines; nil discards them.
	Logger consensus.Logger

	bug bugKind
}

// DefaultConfig returns a valid configuration: election timeout 10 ticks,
// heartbeat 1 tick, retries after 3 ticks, 4096 slots in flight.
func DefaultConfig(id consensus.NodeID, peers []consensus.NodeID, rand consensus.Rand) Config {
	return Config{
		ID:                   id,
		Peers:                peers,
		ElectionTimeoutTicks: 10,
		HeartbeatTicks:       1,
		AcceptRetryTicks:     3,
		InflightSlotsMax:     4096,
		EntriesPerMsgMax:     1024,
		MsgBytesMax:          1 << 20,
		EntryBytesMax:        1 << 20,
		// Snapshots are off until the host sets Snapshots.
		SnapshotEntries:         10000,
		SnapshotBytes:           64 << 20,
		CompactionRetainEntries: 1000,
		SnapshotChunkBytes:      256 << 10,
		Rand:                    rand,
	}
}

// Validate reports the first field out of range, naming the allowed range.
func (c Config) Validate() error {
	if c.ID == consensus.None {
		return errors.New("paxos: Config.ID must not be 0 (0 means no node)")
	}
	if len(c.Peers) == 0 || len(c.Peers) > PeersMax {
		return fmt.Errorf("paxos: Config.Peers has %d voters; allowed 1..%d", len(c.Peers), PeersMax)
	}
	self := false
	for i, p := range c.Peers {
		if p == consensus.None {
			return fmt.Errorf("paxos: Config.Peers[%d] is 0; node IDs must be non-zero", i)
		}
		for _, q := range c.Peers[:i] {
			if p == q {
				return fmt.Errorf("paxos: Config.Peers lists node %d twice", p)
			}
		}
		if p == c.ID {
			self = true
		}
	}
	if !self {
		return fmt.Errorf("paxos: Config.Peers %v does not include Config.ID %d", c.Peers, c.ID)
	}
	if err := checkRange("HeartbeatTicks", c.HeartbeatTicks, 1, ElectionTimeoutTicksMax-1); err != nil {
		return err
	}
	if err := checkRange("ElectionTimeoutTicks", c.ElectionTimeoutTicks, c.HeartbeatTicks+1, ElectionTimeoutTicksMax); err != nil {
		return fmt.Errorf("%w (it must exceed HeartbeatTicks=%d)", err, c.HeartbeatTicks)
	}
	if err := checkRange("AcceptRetryTicks", c.AcceptRetryTicks, 1, ElectionTimeoutTicksMax); err != nil {
		return err
	}
	if err := checkRange("InflightSlotsMax", c.InflightSlotsMax, 1, InflightSlotsMaxLimit); err != nil {
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
		return errors.New("paxos: Config.Rand is required (it draws election back-off)")
	}
	return nil
}

func checkRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("paxos: Config.%s is %d; allowed %d..%d", field, v, lo, hi)
	}
	return nil
}

package store

import (
	"errors"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// Bounds checked by Config.Validate, and by the codec on what a message or
// record may declare.
const (
	// KeyBytesMaxLimit bounds Config.KeyBytesMax and every encoded key.
	KeyBytesMaxLimit = 1 << 16
	// ValueBytesMaxLimit bounds Config.ValueBytesMax and every encoded
	// value.
	ValueBytesMaxLimit = 16 << 20
	// MessageBytesMaxLimit bounds Config.MessageBytesMax.
	MessageBytesMaxLimit = 64 << 20
	// TreeLevelsMax bounds Config.TreeLevels: 16^5 leaves (about a
	// million) take 8 MiB of hashes and 24 MiB of leaf lists.
	TreeLevelsMax = 5
	// DurationMsMax bounds every duration in Config (about 3 years).
	DurationMsMax = 1 << 40
	// GossipFanoutMax bounds Config.GossipFanout.
	GossipFanoutMax = 16
	// RetransmitMultMax bounds Config.RetransmitMult.
	RetransmitMultMax = 64
	// QueueMaxLimit bounds Config.QueueMax.
	QueueMaxLimit = 1 << 20
	// PeersMax bounds SetPeers.
	PeersMax = 1 << 16
	// TombstoneTTLMinIntervals is the least TombstoneTTLMs allowed, in
	// anti-entropy intervals: a tombstone must outlive the rounds that
	// carry it to every replica (see the package doc).
	TombstoneTTLMinIntervals = 32
	// MessageHeaderBytesMax is the most an encoded message takes besides
	// its node hashes and entries: a host that piggybacks
	// PickUpdates(budget) on another message needs budget plus this.
	MessageHeaderBytesMax = 40
	// nodeSizeMax is the largest encoded tree node.
	nodeSizeMax = 3 + 8
)

// fanout is the number of children of each interior node of the tree.
const fanout = 16

// Config configures one replica of the store. Build one with
// DefaultConfig and adjust it; New validates it.
//
// Physical time is in milliseconds: the host passes its clock reading to
// every method that needs time (nowMs), and every duration here is in
// milliseconds. The simulator passes virtual milliseconds.
type Config struct {
	// ID is this replica's node ID: the origin of its writes, and the
	// tie-break between writes with equal timestamps. Unique and non-zero;
	// normally the gossip member ID.
	ID consensus.NodeID

	// TreeLevels is the depth L of the Merkle tree: 16^L leaves. Every
	// replica of a group must use the same value (a replica refuses tree
	// messages of another shape). Aim for a few to a few dozen keys per
	// leaf: L = 3 (4,096 leaves) up to about 100,000 keys, 4 up to about
	// 1.5 million.
	TreeLevels int
	// TombstoneTTLMs is how long a delete is remembered, from its
	// timestamp, before it is purged. It must cover the time a tombstone
	// takes to reach every replica, and the longest partition or downtime
	// after which a replica may rejoin with its old state: a replica that
	// still holds a value the tombstone deleted, and meets no tombstone
	// because all were purged, brings the value back (see the package
	// doc). At least TombstoneTTLMinIntervals anti-entropy intervals.
	TombstoneTTLMs uint64
	// ClockDriftMaxMs is the most a write's timestamp may be ahead of this
	// node's physical clock: a write stamped further ahead is refused
	// until this clock catches up (Step reports ErrClockDrift), so that a
	// node whose clock runs fast cannot win every conflict. Set it above
	// the clock skew your clock synchronisation guarantees.
	ClockDriftMaxMs uint64
	// AntiEntropyIntervalMs is how often Tick starts a Merkle-tree
	// exchange with one random peer. Zero turns it off: the host calls
	// StartAntiEntropy itself.
	AntiEntropyIntervalMs uint64
	// GossipIntervalMs is how often Tick sends the writes waiting in the
	// dissemination queue to GossipFanout random peers. Zero turns it off:
	// the host piggybacks PickUpdates on its own messages (SWIM's).
	GossipIntervalMs uint64
	// GossipFanout is how many peers each gossip round sends to.
	GossipFanout int
	// RetransmitMult is λ: a write is sent at most λ·⌈log10(N+1)⌉ times,
	// N the number of replicas (peers and this one), as in SWIM.
	RetransmitMult int
	// QueueMax bounds the writes waiting for dissemination; beyond it the
	// most-sent one is dropped (anti-entropy still carries it).
	QueueMax int

	// KeyBytesMax and ValueBytesMax bound the writes this replica
	// accepts from clients and peers.
	KeyBytesMax   int
	ValueBytesMax int
	// MessageBytesMax bounds every message this replica sends: it must
	// hold a message header and one entry of the largest size.
	MessageBytesMax int

	// Rand picks gossip and anti-entropy peers. Required.
	Rand consensus.Rand
	// Logger receives log lines; nil discards them.
	Logger consensus.Logger
}

// DefaultConfig returns a valid configuration: 4,096 leaves, tombstones
// kept a day, 500 ms of allowed clock drift, anti-entropy every 10 s,
// gossip every 200 ms to 3 peers with λ = 4, keys up to 4 KiB, values up
// to 1 MiB, messages up to 2 MiB.
func DefaultConfig(id consensus.NodeID, rand consensus.Rand) Config {
	return Config{
		ID:                    id,
		TreeLevels:            3,
		TombstoneTTLMs:        24 * 3600 * 1000,
		ClockDriftMaxMs:       500,
		AntiEntropyIntervalMs: 10_000,
		GossipIntervalMs:      200,
		GossipFanout:          3,
		RetransmitMult:        4,
		QueueMax:              4096,
		KeyBytesMax:           4096,
		ValueBytesMax:         1 << 20,
		MessageBytesMax:       2 << 20,
		Rand:                  rand,
	}
}

// messageBytesMin is the smallest MessageBytesMax that holds a leaves
// message with one leaf and one entry of the largest size, and a tree
// message with the 16 children of one node.
func messageBytesMin(keyBytes, valueBytes int) int {
	return MessageHeaderBytesMax + max(nodeSizeMax+entrySizeMax(keyBytes, valueBytes), fanout*nodeSizeMax)
}

// Validate reports the first field out of range, naming the allowed range.
func (c Config) Validate() error {
	if c.ID == consensus.None {
		return errors.New("store: Config.ID must not be 0 (0 means no node)")
	}
	u := []struct {
		field     string
		v, lo, hi uint64
	}{
		{"TombstoneTTLMs", c.TombstoneTTLMs, 1, DurationMsMax},
		{"ClockDriftMaxMs", c.ClockDriftMaxMs, 0, DurationMsMax},
		{"AntiEntropyIntervalMs", c.AntiEntropyIntervalMs, 0, DurationMsMax},
		{"GossipIntervalMs", c.GossipIntervalMs, 0, DurationMsMax},
	}
	for _, k := range u {
		if k.v < k.lo || k.v > k.hi {
			return fmt.Errorf("store: Config.%s is %d; allowed %d..%d", k.field, k.v, k.lo, k.hi)
		}
	}
	i := []struct {
		field     string
		v, lo, hi int
	}{
		{"TreeLevels", c.TreeLevels, 1, TreeLevelsMax},
		{"GossipFanout", c.GossipFanout, 1, GossipFanoutMax},
		{"RetransmitMult", c.RetransmitMult, 1, RetransmitMultMax},
		{"QueueMax", c.QueueMax, 1, QueueMaxLimit},
		{"KeyBytesMax", c.KeyBytesMax, 1, KeyBytesMaxLimit},
		{"ValueBytesMax", c.ValueBytesMax, 0, ValueBytesMaxLimit},
		{"MessageBytesMax", c.MessageBytesMax, messageBytesMin(c.KeyBytesMax, c.ValueBytesMax), MessageBytesMaxLimit},
	}
	for _, k := range i {
		if k.v < k.lo || k.v > k.hi {
			return fmt.Errorf("store: Config.%s is %d; allowed %d..%d", k.field, k.v, k.lo, k.hi)
		}
	}
	if c.AntiEntropyIntervalMs > 0 && c.TombstoneTTLMs/TombstoneTTLMinIntervals < c.AntiEntropyIntervalMs {
		return fmt.Errorf("store: Config.TombstoneTTLMs is %d; it must be at least %d anti-entropy intervals (%d ms), "+
			"or deletes may be forgotten before every replica has heard of them",
			c.TombstoneTTLMs, TombstoneTTLMinIntervals, TombstoneTTLMinIntervals*c.AntiEntropyIntervalMs)
	}
	if c.TombstoneTTLMs <= 2*c.ClockDriftMaxMs {
		return fmt.Errorf("store: Config.TombstoneTTLMs is %d; it must exceed twice ClockDriftMaxMs (%d)", c.TombstoneTTLMs, c.ClockDriftMaxMs)
	}
	if c.Rand == nil {
		return errors.New("store: Config.Rand is required (it picks gossip and anti-entropy peers)")
	}
	return nil
}

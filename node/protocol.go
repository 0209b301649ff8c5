package node

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/paxos"
	"github.com/synod-io/synod/raft"
	"github.com/synod-io/synod/transport"
)

// The protocol table. This file is the only place in the node that names a
// protocol package: everything else drives a consensus.Replica through the
// contract, persists its records with its RecordCodec, and sends its
// messages with its MessageCodec. Adding a protocol is adding an entry.

// protocol is one replication protocol the node can run.
type protocol struct {
	// peersMax bounds the cluster's members.
	peersMax int
	// config turns the node's settings into the protocol's configuration
	// (validated by Config.Validate, built into a replica by Start).
	config func(s *replicaSettings) protocolConfig
	// records encodes the replica's durable records for the WAL; messages
	// its payloads for the transport.
	records  consensus.RecordCodec
	messages consensus.MessageCodec
	// heartbeat and heartbeatResp are the message types (Payload.
	// MessageType) of a leader's periodic heartbeat and a follower's
	// answer to it; their round trip estimates a peer's round-trip time
	// (Metrics.PeerRoundTrip). Empty if the protocol has no such pair: the
	// round trips are then not measured.
	heartbeat, heartbeatResp string
}

// protocolConfig is a protocol's configuration, built from the node's
// settings.
type protocolConfig interface {
	// Validate reports the first setting outside the protocol's limits.
	Validate() error
	// newReplica rebuilds the replica from the records replayed from the
	// write-ahead log (none on first start).
	newReplica(durable []consensus.Record) (consensus.Replica, error)
}

// protocols are the protocols the node runs, by the name Config.Protocol
// (and the data directory's identity file) uses.
var protocols = map[string]protocol{
	"raft": {
		peersMax: raft.PeersMax,
		config:   newRaftConfig,
		records:  raft.Codec, messages: raft.MessageCodec,
		heartbeat: "raft.Heartbeat", heartbeatResp: "raft.HeartbeatResp",
	},
	"multipaxos": {
		peersMax: paxos.PeersMax,
		config:   newPaxosConfig,
		records:  paxos.Codec, messages: paxos.MessageCodec,
		heartbeat: "paxos.Heartbeat", heartbeatResp: "paxos.HeartbeatResp",
	},
}

// Protocols lists the names of the protocols a node can run, sorted.
var Protocols = slices.Sorted(maps.Keys(protocols))

// lookupProtocol returns the named protocol, or an error listing the
// supported ones.
func lookupProtocol(name string) (protocol, error) {
	p, ok := protocols[name]
	if !ok {
		return protocol{}, fmt.Errorf("node: Config.Protocol %q is not supported; this build runs %s", name, strings.Join(Protocols, ", "))
	}
	return p, nil
}

// replicaSettings is what the node hands a protocol's constructor: the
// protocol-independent part of Config, resolved.
type replicaSettings struct {
	ID    consensus.NodeID
	Peers []consensus.NodeID // sorted; every member, this one included
	Rand  consensus.Rand
	// Logger is the replica's logger (an adapter over the node's slog).
	Logger consensus.Logger
	// ElectionTicks and HeartbeatTicks are Config's timeouts in ticks.
	ElectionTicks, HeartbeatTicks int
	// Snapshots is the node's snapshot store; the thresholds are Config's
	// SnapshotEntries, SnapshotRetainEntries and SnapshotChunkBytes. A
	// protocol that cannot compact its log ignores them.
	Snapshots                                                  consensus.SnapshotStore
	SnapshotEntries, SnapshotRetainEntries, SnapshotChunkBytes int
	// PayloadBytesMax bounds one encoded message payload: the transport's
	// MessageBytesMax less room for its envelope and framing. A protocol
	// must keep every message it sends within it.
	PayloadBytesMax int
}

// MessageBytesMax is the largest encoded message (with its envelope) the
// node's gRPC transport carries; the protocols' message limits are derived
// from it (see replicaSettings.PayloadBytesMax).
const MessageBytesMax = transport.MessageBytesMaxDefault

// messageSlackBytes is the room left in MessageBytesMax for the transport's
// envelope and frame and for the protocol's own per-message and per-entry
// encoding beyond the sizes it bounds.
const messageSlackBytes = 64 << 10

// payloadBytesMax is replicaSettings.PayloadBytesMax.
const payloadBytesMax = MessageBytesMax - messageSlackBytes

// messageLimits returns the bounds on the entries of one message and on one
// entry that keep a message within PayloadBytesMax: each at most half of it
// (a batch may end with one entry that overshoots its bound), and never
// above the protocol's own default.
func (s *replicaSettings) messageLimits(msgDefault, entryDefault int) (msgBytesMax, entryBytesMax int) {
	return min(msgDefault, s.PayloadBytesMax/2), min(entryDefault, s.PayloadBytesMax/2)
}

// raftConfig builds a Raft replica.
type raftConfig struct{ raft.Config }

func newRaftConfig(s *replicaSettings) protocolConfig {
	c := raft.DefaultConfig(s.ID, slices.Clone(s.Peers), s.Rand)
	c.ElectionTimeoutTicks = s.ElectionTicks
	c.HeartbeatTicks = s.HeartbeatTicks
	c.MsgBytesMax, c.EntryBytesMax = s.messageLimits(c.MsgBytesMax, c.EntryBytesMax)
	c.Snapshots = s.Snapshots
	c.SnapshotEntries = s.SnapshotEntries
	c.CompactionRetainEntries = s.SnapshotRetainEntries
	c.SnapshotChunkBytes = s.SnapshotChunkBytes
	c.Logger = s.Logger
	return raftConfig{c}
}

func (c raftConfig) newReplica(durable []consensus.Record) (consensus.Replica, error) {
	return raft.New(c.Config, durable)
}

// paxosConfig builds a Multi-Paxos replica.
type paxosConfig struct{ paxos.Config }

func newPaxosConfig(s *replicaSettings) protocolConfig {
	c := paxos.DefaultConfig(s.ID, slices.Clone(s.Peers), s.Rand)
	c.ElectionTimeoutTicks = s.ElectionTicks
	c.HeartbeatTicks = s.HeartbeatTicks
	c.MsgBytesMax, c.EntryBytesMax = s.messageLimits(c.MsgBytesMax, c.EntryBytesMax)
	c.Snapshots = s.Snapshots
	c.SnapshotEntries = s.SnapshotEntries
	c.CompactionRetainEntries = s.SnapshotRetainEntries
	c.SnapshotChunkBytes = s.SnapshotChunkBytes
	c.Logger = s.Logger
	return paxosConfig{c}
}

func (c paxosConfig) newReplica(durable []consensus.Record) (consensus.Replica, error) {
	return paxos.New(c.Config, durable)
}

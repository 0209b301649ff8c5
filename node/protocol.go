package node

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/epaxos"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/paxos"
	"github.com/synod-io/synod/raft"
	"github.com/synod-io/synod/transport"
)

// The protocol table. This file is the only place in the node that names a
// protocol package: everything else drives a consensus.Replica through the
// contract, persists its records with its RecordCodec, and sends its
// messages with its MessageCodec. Adding a protocol is adding an entry,
// with the flags that say how it differs from a leader-based protocol
// whose replica restarts from a snapshot (leaderless, readThroughLog,
// localOrder, kv).

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

	// leaderless: every replica orders commands itself (Status().Role is
	// consensus.RolePeer, there is never a Leader, and Propose returns no
	// NotLeaderError), so the node takes writes and linearizable reads on
	// every member and forwards nothing.
	leaderless bool
	// readThroughLog, if set, is the error (matched with errors.Is) that
	// the replica's ReadIndex returns because the protocol has no read
	// index. The node then proposes a linearizable read as a command,
	// with the read's conflict keys (kv.Request.Keys), and answers it
	// with the result of applying it: the read is ordered after every
	// write it conflicts with that was acknowledged before it started.
	readThroughLog error
	// localOrder: a replica rebuilt from its records (on every start)
	// hands the host the committed commands after its newest snapshot
	// again, possibly in another order than in its last run (commands
	// that do not conflict are ordered differently on different replicas,
	// and in different runs of one). So the node cannot keep the
	// key-value store's state and skip the entries at or below its
	// applied index, as it does for Raft: on start it puts the store
	// exactly at the snapshot the replica's log builds on (restoring it
	// from that snapshot unless it is there already) or, without one,
	// empties it, and applies everything re-emitted. Its replica's
	// Status().LastIndex (the last instance of its own space) is not an
	// index of applied entries and is not compared with the store.
	localOrder bool
	// kv are the state machine's options this protocol needs (see
	// kv.Options): EPaxos applies non-conflicting commands in different
	// orders on different replicas, so its revisions are local and the
	// store does not use sessions (the node still tags each proposal with
	// its session, to recognise the result, and never proposes one twice).
	kv kv.Options
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
	"epaxos": {
		peersMax: epaxos.PeersMax,
		config:   newEPaxosConfig,
		records:  epaxos.Codec, messages: epaxos.MessageCodec,
		// No heartbeat pair: round trips are not measured.
		leaderless:     true,
		readThroughLog: epaxos.ErrReadThroughLog,
		localOrder:     true,
		kv:             kv.Options{PerKeyOrder: true},
	},
}

// Gossip is the protocol name of eventually consistent mode: no
// consensus replica, a gossip-replicated store (package gossip/store)
// served by a GossipNode instead of a Node. See StartGossip.
const Gossip = "gossip"

// Protocols lists the consensus protocols a Node runs (Start), sorted.
var Protocols = slices.Sorted(maps.Keys(protocols))

// MemberProtocols lists every protocol a member can run, sorted: the
// consensus Protocols, and Gossip (StartGossip).
var MemberProtocols = slices.Sorted(slices.Values(append(slices.Clone(Protocols), Gossip)))

// lookupProtocol returns the named protocol, or an error listing the
// supported ones.
func lookupProtocol(name string) (protocol, error) {
	p, ok := protocols[name]
	if name == Gossip {
		return protocol{}, fmt.Errorf("node: Config.Protocol %q runs no consensus replica: start it with StartGossip, not Start", name)
	}
	if !ok {
		return protocol{}, fmt.Errorf("node: Config.Protocol %q is not supported; this build runs %s", name, strings.Join(Protocols, ", "))
	}
	return p, nil
}

// Leaderless reports whether the named protocol has no leader: every
// member orders writes and serves linearizable reads itself, a member's
// status names no leader and its role is "peer". It is false for a name
// that is not one of Protocols.
func Leaderless(name string) bool { return name == Gossip || protocols[name].leaderless }

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

// epaxosConfig builds an EPaxos replica.
type epaxosConfig struct{ epaxos.Config }

// newEPaxosConfig maps the node's timing onto EPaxos': the leader of an
// instance resends a phase's messages every two heartbeat periods, and a
// replica suspects the leader of an instance that stays uncommitted for an
// election timeout (each wait drawn between one and two of them with the
// node's randomness) and recovers it, as Raft and Multi-Paxos suspect a
// silent leader. An instance batches commands up to half a message
// payload, so that a batch and its attributes fit in one message.
// Snapshots use the node's SnapshotEntries and SnapshotChunkBytes (a chunk
// shrunk if need be so that the first one, which carries the snapshot's
// protocol state, fits a message); SnapshotRetainEntries does not apply
// (EPaxos keeps executed instances one snapshot longer instead).
func newEPaxosConfig(s *replicaSettings) protocolConfig {
	c := epaxos.DefaultConfig(s.ID, slices.Clone(s.Peers))
	c.BatchBytesMax = min(c.BatchBytesMax, s.PayloadBytesMax/2)
	c.RetryTicks = 2 * s.HeartbeatTicks
	c.RecoveryTimeoutTicks = s.ElectionTicks
	c.Rand = s.Rand
	c.Logger = s.Logger
	if s.Snapshots != nil {
		c.Snapshots = s.Snapshots
		c.SnapshotEntries = s.SnapshotEntries
		c.SnapshotChunkBytes = max(1, min(s.SnapshotChunkBytes, s.PayloadBytesMax-epaxos.SnapshotStateBytesMax-4096, epaxos.SnapshotChunkBytesMax))
	}
	return epaxosConfig{c}
}

func (c epaxosConfig) newReplica(durable []consensus.Record) (consensus.Replica, error) {
	return epaxos.New(c.Config, durable)
}

package store

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// MsgType says what a Message is.
type MsgType uint8

const (
	// MsgPush carries recent writes (Entries), gossiped or piggybacked.
	// The receiver merges them and passes on those that were news to it.
	MsgPush MsgType = iota + 1
	// MsgTree carries the sender's hashes of some tree nodes at Level.
	// The receiver compares them with its own: for the nodes that differ
	// it answers with its hashes of their children (MsgTree at Level+1),
	// or at the leaves with its entries of them (MsgLeaves). Equal hashes
	// end the exchange. Anti-entropy starts with the root (Level 0).
	MsgTree
	// MsgLeaves carries the sender's entries of the leaves in Nodes (with
	// the sender's leaf hashes). The receiver merges them; if Reply is
	// unset it answers, Reply set, with its entries of the same leaves
	// that the sender lacks or holds older versions of.
	MsgLeaves

	msgTypeLast = MsgLeaves
)

// String names the type.
func (t MsgType) String() string {
	switch t {
	case MsgPush:
		return "Push"
	case MsgTree:
		return "Tree"
	case MsgLeaves:
		return "Leaves"
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// NodeHash is one tree node's hash: Index is the node's position in its
// level, 0..16^Level-1, the children of node i being 16i..16i+15.
type NodeHash struct {
	Index uint32
	Hash  uint64
}

// Message is one store message between replicas. The store addresses
// peers by node ID; the host maps IDs to addresses (gossip membership).
type Message struct {
	Type     MsgType
	From, To consensus.NodeID
	// Reply marks the answer to a MsgLeaves.
	Reply bool
	// TreeLevels is the sender's tree depth (MsgTree and MsgLeaves): a
	// replica refuses tree messages of another shape.
	TreeLevels uint8
	// Level is the level of Nodes (MsgTree), 0 for the root; for
	// MsgLeaves it is TreeLevels.
	Level uint8
	// Nodes are tree nodes at Level with the sender's hashes, by
	// increasing Index (MsgTree, MsgLeaves).
	Nodes []NodeHash
	// Entries are writes (MsgPush, MsgLeaves).
	Entries []Entry
}

// MessageType implements consensus.Payload.
func (m *Message) MessageType() string { return "store." + m.Type.String() }

// String formats the message for traces.
func (m *Message) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %d->%d", m.Type, m.From, m.To)
	if m.Type != MsgPush {
		fmt.Fprintf(&b, " level=%d/%d nodes=%d", m.Level, m.TreeLevels, len(m.Nodes))
	}
	if m.Reply {
		b.WriteString(" reply")
	}
	if len(m.Entries) > 0 {
		fmt.Fprintf(&b, " entries=%d", len(m.Entries))
	}
	return b.String()
}

// EntryRecord is the durable record of one change to a replica's
// entries: a local write, or a merged write that won. It is also the
// change feed: the host reports these to watchers.
type EntryRecord struct {
	Entry Entry
}

// RecordType implements consensus.Record.
func (*EntryRecord) RecordType() string { return "store.Entry" }

// SnapshotRecord is a replica's whole durable state: its clock, its
// revision and every entry, tombstones included, by key. It supersedes
// every record before it (a consensus.Checkpoint without a state-machine
// snapshot).
type SnapshotRecord struct {
	Clock    Timestamp
	Revision uint64
	// Entries are sorted by Key, each key once.
	Entries []Entry
}

// RecordType implements consensus.Record.
func (*SnapshotRecord) RecordType() string { return "store.Snapshot" }

// SnapshotIndex implements consensus.Checkpoint: the record is the whole
// state, it builds on no snapshot.
func (*SnapshotRecord) SnapshotIndex() uint64 { return 0 }

// RestateRecord opens a restatement of a replica's whole state: the
// entry records written after it in the same checkpoint (Store.Restate)
// hold every entry the replica had, tombstones included. Unlike a
// SnapshotRecord it replaces nothing when replayed: it only raises the
// clock and the revision to at least what the replica had, and the entries
// after it merge like any others. So a restatement may span many log
// records and still be safe when a crash leaves only a prefix of it on
// disk: what precedes it in the log, merged with part of the restatement,
// is still a state the replica held or will converge from. It is a
// consensus.Checkpoint: once the whole restatement is durable, the host
// may drop the records before it.
type RestateRecord struct {
	Clock    Timestamp
	Revision uint64
}

// RecordType implements consensus.Record.
func (*RestateRecord) RecordType() string { return "store.Restate" }

// SnapshotIndex implements consensus.Checkpoint: the restatement builds
// on no snapshot.
func (*RestateRecord) SnapshotIndex() uint64 { return 0 }

// Ready is the work a Store hands to its host, in this order: make
// Persist durable, then send Messages (in any order; the network may
// lose, duplicate, delay and reorder them). Acknowledge a client's write
// once the record of it is durable. Messages and records share byte
// slices with the store: treat them as read-only.
type Ready struct {
	// Persist holds an EntryRecord for each change since the last Ready,
	// in the order they happened.
	Persist []consensus.Record
	// Messages are to be sent to Message.To.
	Messages []*Message
}

// Empty reports whether rd carries no work.
func (rd Ready) Empty() bool { return len(rd.Persist) == 0 && len(rd.Messages) == 0 }

// Status is a replica's view of its state.
type Status struct {
	ID consensus.NodeID
	// Keys counts live keys; Tombstones deletes not yet purged.
	Keys, Tombstones int
	// Revision is the local change counter (see Store.Revision).
	Revision uint64
	// Clock is the latest HLC timestamp issued or received.
	Clock Timestamp
	// Root is the Merkle root: equal roots mean equal entries (with
	// probability 1 - 2^-64).
	Root uint64
	// Queued counts writes waiting for dissemination; Peers the peers
	// known.
	Queued, Peers int
}

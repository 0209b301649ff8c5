package consensus

// SnapshotMeta describes a snapshot of the state machine: it holds the
// effect of every entry up to and including Index.
type SnapshotMeta struct {
	// Index is the last entry the snapshot includes; Term is that entry's
	// term (zero for protocols without terms).
	Index uint64
	Term  uint64
	// Voters is the membership as of Index.
	Voters []NodeID
	// Protocol is the protocol's own state as of Index, opaque to the
	// host: what a replica needs besides the state machine to go on from
	// the snapshot (EPaxos: which instances the snapshot holds, and its
	// conflict index). Protocols whose log position says it all (Raft,
	// Multi-Paxos) leave it empty. A replica that implements
	// SnapshotDescriber fills it in; the host saves it with the snapshot
	// and hands it back unchanged (SnapshotStore.Newest, ReadChunk's
	// snapshot on the receiving side, Ready.Restore).
	Protocol []byte
}

// A SnapshotDescriber is a Compactor whose snapshots carry state that only
// the replica can provide (SnapshotMeta.Term and Protocol). A host that
// snapshots such a replica calls DescribeSnapshot right after Advance,
// with the index it applied last, saves the state machine's snapshot with
// the returned metadata (its own Voters added), and passes that metadata
// to Compact. A host that does not know of this interface cannot compact
// such a replica: Compact refuses metadata without its Protocol.
type SnapshotDescriber interface {
	Compactor
	// DescribeSnapshot returns the metadata of a snapshot of the state
	// machine holding every entry up to index, which must be the index
	// of the last entry the replica handed out and the host applied. It
	// returns an error for any other index.
	DescribeSnapshot(index uint64) (SnapshotMeta, error)
}

// Compactor is implemented by replicas whose log can be compacted behind a
// snapshot. The host snapshots its state machine when Ready.SnapshotWanted
// asks (or whenever it likes), saves the snapshot durably, and then calls
// Compact with its metadata (from DescribeSnapshot, for a replica that is
// a SnapshotDescriber); the replica may then discard log entries up to
// meta.Index, and serves followers that are further behind from the
// snapshot (through the host's SnapshotStore).
type Compactor interface {
	Compact(meta SnapshotMeta) error
}

// SnapshotStore is the host's store of state-machine snapshots, as a
// replica that sends and receives snapshots in chunks sees it. The replica
// never holds a whole snapshot: it moves bounded chunks between the store
// and the network.
//
// Calls come from the replica's own goroutine, synchronously; in the
// simulator they touch only the node's simulated disk.
type SnapshotStore interface {
	// Newest returns the metadata of the newest snapshot saved locally
	// (Protocol included), and false if there is none. Snapshots sort by
	// index, then term.
	Newest() (SnapshotMeta, bool)
	// ReadChunk returns up to max bytes of the saved snapshot with the
	// given index (the newest one with that index), starting at offset,
	// and whether they end it. It returns an error if that snapshot is no
	// longer stored (a newer one replaced it); the replica then starts
	// over with the newest.
	ReadChunk(index uint64, offset int64, max int) (data []byte, last bool, err error)
	// ReceiveChunk stores a chunk of an incoming snapshot. Chunks of one
	// snapshot arrive in order from offset 0; a chunk at offset 0 starts a
	// new transfer, abandoning any unfinished one. The last chunk's meta
	// must name the snapshot's index and term, and its Protocol, if not
	// empty, must be the one the snapshot was saved with; the store checks
	// both. The snapshot is not installed until the replica's Ready
	// carries Restore for it.
	ReceiveChunk(meta SnapshotMeta, offset int64, data []byte, last bool) error
}

// A Checkpoint is a durable record that supersedes every record emitted
// before it: replaying from the newest durable checkpoint onwards (with the
// snapshot it names, if any) rebuilds the replica's durable state. Once a
// checkpoint is durable the host may discard every older record, which is
// how a write-ahead log is compacted.
type Checkpoint interface {
	Record
	// SnapshotIndex is the index of the snapshot the checkpoint builds on
	// (0: none). The host must keep that snapshot while the checkpoint is
	// the newest.
	SnapshotIndex() uint64
}

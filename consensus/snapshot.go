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
}

// Compactor is implemented by replicas whose log can be compacted behind a
// snapshot. The host snapshots its state machine when Ready.SnapshotWanted
// asks (or whenever it likes), saves the snapshot durably, and then calls
// Compact with its metadata; the replica may then discard log entries up to
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
	// Newest returns the metadata of the newest snapshot saved locally, and
	// false if there is none.
	Newest() (SnapshotMeta, bool)
	// ReadChunk returns up to max bytes of the saved snapshot with the
	// given index, starting at offset, and whether they end it. It returns
	// an error if that snapshot is no longer stored (a newer one replaced
	// it); the replica then starts over with the newest.
	ReadChunk(index uint64, offset int64, max int) (data []byte, last bool, err error)
	// ReceiveChunk stores a chunk of an incoming snapshot. Chunks of one
	// snapshot arrive in order from offset 0; a chunk at offset 0 starts a
	// new transfer, abandoning any unfinished one. The snapshot is not
	// installed until the replica's Ready carries Restore for it.
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

// Package consensus is the contract every synod replication protocol
// implements, and the small vocabulary they share: node IDs, messages,
// commands, entries, read states, status and quorum arithmetic.
//
// A protocol core is a pure, deterministic state machine. It owns no
// goroutines, reads no clock, draws no randomness of its own and performs no
// I/O. Time arrives as Tick, peer messages as Step, client commands as
// Propose, and everything the core wants done comes out of Ready. The host
// (the deterministic simulator in sim/, or the real node) handles one Ready
// at a time, in this order, and then calls Advance with it:
//
//  1. if Ready.Restore is set, install that received snapshot durably;
//  2. make every record in Ready.Persist durable (fsync);
//  3. send Ready.Messages;
//  4. if Ready.Restore is set, replace the state machine with the snapshot;
//     then apply Ready.Committed to the state machine, in order;
//  5. serve Ready.Reads once the applied index reaches each read's index.
//
// Because the same core runs in both hosts, a bug the simulator finds is a
// bug in production code, and its seed replays it.
package consensus

// A Replica is one member of a replicated state machine.
//
// Implementations are not safe for concurrent use: the host calls every
// method from one goroutine.
type Replica interface {
	// Tick advances the replica's logical clock by one unit. Timeouts
	// (elections, heartbeats, retries) are measured in ticks.
	Tick()

	// Step hands the replica a message from a peer. A message that is stale,
	// duplicated or reordered is ignored or answered as the protocol
	// requires; Step returns an error only for a message the replica cannot
	// interpret at all (for example one addressed to another node).
	Step(Message) error

	// Propose asks the replica to replicate cmd. A nil error means only that
	// the command was accepted for replication: it is applied when it
	// appears in Ready.Committed, and may never be if leadership changes.
	// A replica that cannot order commands itself returns a *NotLeaderError
	// (errors.Is(err, ErrNotLeader)) naming the leader it knows, if any.
	Propose(Command) error

	// ReadIndex asks for a linearizable read point. When the replica has
	// confirmed it may serve reads, a ReadState carrying ctx and an index
	// appears in Ready.Reads; a read issued after this call and served once
	// the applied index reaches that index is linearizable. ctx identifies
	// the request to the caller and is returned unchanged.
	ReadIndex(ctx []byte) error

	// Ready returns the work the host must do next. The returned Ready must
	// be handled (persist, send, apply, in that order) and then passed back
	// to Advance before Ready is called again. An empty Ready needs no
	// handling, but passing it to Advance is harmless.
	Ready() Ready

	// Advance tells the replica the host has finished handling rd: its
	// records are durable, its messages sent and its entries applied.
	Advance(rd Ready)

	// Status reports the replica's view of the cluster for monitoring and
	// checking. It does not change the replica's state.
	Status() Status
}

// Ready is the work a Replica hands to its host. Handle it in field order:
// Persist must be durable before any of Messages is sent (a message may
// acknowledge those records), and Committed is applied after both.
type Ready struct {
	// Persist holds protocol-defined records that must be durable before
	// Messages go out. Replaying every record ever persisted, in order,
	// rebuilds the replica's durable state.
	Persist []Record
	// SyncOptional says the records in Persist carry nothing that Messages
	// (now or later) acknowledge, such as only a new commit index: the host
	// may write them without waiting for an fsync before it sends. Losing
	// them in a crash is harmless. When false (the safe default) Persist
	// must be durable before Messages go out.
	SyncOptional bool
	// Messages are to be sent to peers, in any order; the network may lose,
	// duplicate or reorder them.
	Messages []Message
	// Committed entries, in apply order. EPaxos emits its execution order.
	Committed []Entry
	// Reads are confirmed read points (see Replica.ReadIndex).
	Reads []ReadState
	// Restore, when set, names a snapshot fully received from a peer (see
	// SnapshotStore): the host must install it durably before it persists
	// Persist (which records that the log now starts after it), and must
	// replace its state machine with it before applying Committed, whose
	// entries follow Restore.Index.
	Restore *SnapshotMeta
	// SnapshotWanted asks the host to snapshot its state machine, because
	// the log has grown past the replica's thresholds (see Compactor).
	SnapshotWanted bool
}

// Empty reports whether rd carries no work.
func (rd Ready) Empty() bool {
	return len(rd.Persist) == 0 && len(rd.Messages) == 0 &&
		len(rd.Committed) == 0 && len(rd.Reads) == 0 &&
		rd.Restore == nil && !rd.SnapshotWanted
}

// A Record is a unit of durable protocol state (Raft: term and vote, log
// entries; Paxos: promised and accepted ballots). Each protocol defines its
// own record types and rebuilds itself from the sequence of records it
// emitted.
type Record interface {
	// RecordType names the record kind, for traces and storage framing,
	// as "protocol.Kind" (for example "raft.HardState").
	RecordType() string
}

// ReadState is a confirmed linearizable read point: the host may serve the
// read identified by Context once its applied index is at least Index.
type ReadState struct {
	Index   uint64
	Context []byte
}

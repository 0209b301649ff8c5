// Package paxos is synod's Paxos: Basic Paxos (one decree) as separate
// proposer, acceptor and learner state machines (Proposer, Acceptor,
// Learner, SelectValue), and Multi-Paxos built from it (Replica), a pure,
// deterministic state machine implementing consensus.Replica.
//
// # Ballots
//
// A Ballot is (Round, Node), ordered by round then node. The rounds are
// partitioned among the voters — the voter at position p of the sorted
// peers owns the rounds p+1, p+1+n, p+1+2n, … (NextRound) — so two
// proposers never share a ballot, nor even a round, and the round alone
// can serve as the replica's term (Status.Term, RoleTerm, and Entry.Term of
// what it proposes). A proposer's next ballot is above every round it
// tried, promised or saw. The round it is about to use is recorded
// (HardState.Tried, together with its self-promise) in the same Ready as
// its prepares, so it is durable before any prepare leaves, and a restarted
// proposer never reuses it.
//
// # Acceptors and durability
//
// One promise covers every slot. An acceptor promises a ballot not below
// its promise, accepts at a ballot not below it (which raises the promise),
// and refuses anything lower, answering with its promise so the proposer
// can go higher. Every change to the promise, to an accepted value, or to
// the chosen prefix is a record (HardState, Accept, Learn) emitted in
// Ready.Persist of the same Ready as the reply that depends on it, and the
// host makes Persist durable before sending: a crash never loses a promise
// or an acceptance anyone was told of. New replays every record to rebuild
// the acceptor, the proposer's tried round and the chosen prefix.
//
// # Multi-Paxos
//
// A replica that hears from no leader for a randomized timeout in [E, 2E)
// (Config.Rand) runs phase 1 once, for every slot from its first unchosen
// one on (RoleCandidate). A candidate that is refused — an acceptor
// promised a higher ballot — or that does not gather a majority before its
// timeout backs off for a fresh random timeout, so duelling proposers
// separate. With a majority of promises it becomes the leader
// (RoleLeader): for every slot from its start to the highest any promise
// reported, it takes a value some acceptor knows is chosen, else the value
// accepted at the highest ballot among the promises (SelectValue's rule,
// per slot), else a no-op (consensus.EntryNoOp) to fill the gap, so that
// execution never stalls; it re-proposes each slot not known chosen at its
// own ballot. A value keeps the Entry it was first proposed as, Term
// included, so every replica applies identical entries.
//
// A stable leader then runs only phase 2: each command takes the next
// slot; proposals between two Readys share MsgAccept messages (batching,
// bounded by EntriesPerMsgMax and MsgBytesMax), and up to InflightSlotsMax
// unchosen slots are in flight at once (pipelining). A slot is chosen when
// a majority accepted it at the leader's ballot; the commit index is the
// end of the chosen prefix. Commit notifications ride on every MsgAccept
// and MsgHeartbeat: an acceptor that accepted a slot at the leader's ballot
// knows the value is the one chosen once the leader's commit index covers
// it. A leader resends unchosen slots after AcceptRetryTicks to acceptors
// that did not acknowledge them, and sends lagging learners the chosen
// values they lack from its log (MsgLearn, a batch at a time). Chosen
// values are facts: a replica learns them from any peer. A leader that does
// not hear from a majority within E ticks steps down (check-quorum); one
// that sees a higher ballot steps down at once.
//
// # Reads
//
// ReadIndex on the leader waits until the commit index covers every slot
// its phase 1 recovered, takes the commit index, then sends a heartbeat
// carrying a fresh read round at its ballot; an acceptor acknowledges only
// if it promised no higher ballot (raising its promise to the leader's).
// The read is served once a majority acknowledged that round.
//
// Why that is linearizable: let w be a write that completed before the
// read was requested, chosen in slot s at ballot c. If c is below the
// leader's ballot b, the majority that accepted w at c intersects the
// leader's phase-1 quorum in an acceptor that accepted before it promised
// b (after, it would have refused c), so phase 1 recovered w in slot s
// (or s was already in the leader's chosen prefix), and the read index,
// taken once the commit index covers every recovered slot, covers it. If c equals b, the leader itself chose it,
// and w completed only once applied, so commit covers s. If c is above b,
// the leader of c finished phase 1 before w was chosen, with a majority
// that intersects the majority that acknowledged the read round; the
// acceptor in both acknowledged b after the read was requested, at a time
// it had promised nothing above b, so it promised c later: w was chosen
// after the read was requested, and the two are concurrent. A partitioned
// old leader therefore never confirms a read: its majority has promised a
// higher ballot, or does not answer.
//
// # Snapshots and compaction
//
// Snapshots are on when Config.Snapshots (the host's consensus.SnapshotStore)
// is set. Once the slots applied since the last snapshot reach
// Config.SnapshotEntries or Config.SnapshotBytes, one Ready sets
// SnapshotWanted. The host saves a snapshot of its state machine at an
// applied slot and calls Compact (consensus.Compactor) with meta.Index, that
// slot, and meta.Term, the Term of the entry chosen there: the round of the
// ballot that first proposed the value (a value keeps its Entry when
// re-proposed, so the term is the same on every replica; it is not the
// ballot the slot was chosen at, which a learner may not know). Compact
// checks the term against the log (or, at the current snapshot's index,
// against the current snapshot). The replica keeps
// Config.CompactionRetainEntries chosen slots behind the snapshot, drops
// the rest, and its next Ready persists a Checkpoint alone: snapshot
// metadata, HardState (promise, tried round, commit) and every slot it
// still holds with the ballot it accepted it at (zero: learned as chosen),
// including accepted slots that are not chosen. It supersedes every older
// record; New replays from the newest Checkpoint, starts its applied index
// at the snapshot, re-emits the chosen slots after it, and fails if
// Config.Snapshots is nil or its newest snapshot is older than the one the
// checkpoint names.
//
// Only chosen slots are ever compacted (Compact requires an applied index),
// so everything dropped is a fact, not acceptor state: an acceptor's state
// for a chosen slot no longer matters to any proposer that knows the slot
// is chosen.
//
// # Catching up from a snapshot
//
// A peer that needs slots this replica compacted gets its newest snapshot,
// streamed through Snapshots.ReadChunk in MsgSnap chunks of at most
// Config.SnapshotChunkBytes, with at most SnapshotChunksInflightMax
// unacknowledged. Two cases start a transfer: a leader whose peer reports a
// commit index below the compacted prefix (instead of MsgLearn), and an
// acceptor that receives a prepare from a candidate whose phase 1 starts at
// or below its compacted prefix (see below). The receiver acknowledges
// each in-order chunk (MsgSnapResp, the offset it expects next) after
// passing it to Snapshots.ReceiveChunk; it rejects an out-of-order chunk
// with the offset it expects, re-acknowledges duplicates, and ignores a
// second sender while a transfer from another one made progress within an
// election timeout. A sender resends from the acknowledged offset after
// 2*HeartbeatTicks without progress, gives up after SnapshotRetriesMax
// resends or a ReadChunk error (the snapshot was replaced), and starts over
// with the newest snapshot when the peer is next found to need one. A
// snapshot holds only chosen slots, so it is taken from any peer whatever
// its ballot. When the last chunk is stored, the receiver makes the
// snapshot the base of its log: it drops the slots up to it, keeps its
// acceptor state for the slots after it (accepted values and ballots are
// what it promised proposers, unlike a Raft log suffix), sets its commit
// index to the snapshot's, and its next Ready carries Restore and a
// Checkpoint; it then learns the rest from the log as usual.
//
// # Phase 1 over compacted acceptors
//
// A candidate prepares every slot from its first unchosen one, start. An
// acceptor that has compacted slots at or above start cannot report them:
// it still promises, but its MsgPromise reports from its first held slot
// (Index > start), and it begins sending the candidate its snapshot. The
// candidate does not count such a promise; it keeps resending the prepare
// (with start moved past the snapshot once it has installed it, which makes
// those slots chosen and known to it), and the acceptor's later promise,
// which then reports every slot from start, counts. A new leader also
// starts recovery after its commit index, which may have grown during
// phase 1. Safety: the leader recovers exactly the slots from start on, and
// every promise it counts reports the acceptor's complete state (accepted
// value and ballot, or chosen value) for every one of those slots, so the
// per-slot Paxos argument (SelectValue's rule over a majority of promises)
// holds unchanged; slots below start are chosen and known to the leader,
// and it never proposes in them. An acceptor's compaction point is below
// its own commit index, so the live replica with the highest commit index
// is never behind any live acceptor's compaction point: not counting
// lagging promises never blocks every candidate.
//
// # Durability shortcut
//
// A Ready whose only record is a HardState that changes just the commit
// index is SyncOptional: nothing acknowledges a commit index (peers learn
// chosen slots as facts, and a leader takes each peer's commit index as
// last reported rather than the highest ever, so a restarted peer that lost
// it is caught up again), and the values of the slots it covers are already
// durable in Accept or Learn records; a replica that loses it learns the
// slots again. Checkpoints are never SyncOptional.
//
// # Not done
//
// A promise reports every value the acceptor holds from the candidate's
// first unchosen slot (after compaction, at most the retained and
// unchosen slots, but still unbounded in principle, e.g. for a leader far
// ahead of a candidate that has not compacted); chunking recovery over
// several messages is left to do. Membership is fixed (the snapshot's
// Voters are carried but not acted on).
//
// The package imports no clock, randomness, I/O or goroutines: time
// arrives as Tick, jitter comes from Config.Rand, logging goes to
// Config.Logger.
package paxos

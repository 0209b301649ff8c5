// Package raft is synod's Raft core: a pure, deterministic state machine
// (Raft paper; Ongaro's dissertation) implementing consensus.Replica.
//
// It elects leaders with randomized timeouts, optionally preceded by a
// pre-vote (§9.6), and optionally check-quorum (a leader that has not heard
// from a majority within an election timeout steps down) with leader
// stickiness (a replica that heard from a live leader within the election
// timeout ignores (pre-)vote requests; only with check-quorum, which is what
// bounds a dead leader's lease). Votes go only to candidates whose log is at
// least as up to date (§5.4.1). A new leader appends a no-op entry and
// commits by counting replicas only entries of its own term (Figure 8).
//
// Replication keeps, per follower, a probe or replicate state: probing sends
// one append at a time and backs off quickly using the conflict index and
// term the follower returns; replicating streams up to InflightMsgsMax
// batched appends (EntriesPerMsgMax, MsgBytesMax). Appends are built in
// Ready, so everything proposed between two Readys shares messages.
//
// ReadIndex confirms leadership with a heartbeat round sent after the
// request; reads issued before the next Ready share a round.
//
// Durable state is three record types: HardState (term, vote, commit),
// Append (entries from an index, replacing any suffix from that index) and
// Checkpoint (see below). New rebuilds a replica from every record it
// emitted since its newest Checkpoint. Messages carry a *Msg.
//
// # Snapshots and compaction
//
// Snapshots are on when Config.Snapshots (the host's consensus.SnapshotStore)
// is set; with it nil the replica behaves as if they did not exist. Once the
// entries applied since the last snapshot reach Config.SnapshotEntries or
// Config.SnapshotBytes, one Ready sets SnapshotWanted (again only after as
// many more, or after Compact). The host then, after Advance, saves a
// snapshot of its state machine at an applied index and calls Compact (the
// consensus.Compactor interface). The replica keeps Config.CompactionRetainEntries
// entries behind the snapshot and drops the rest, and its next Ready persists
// a Checkpoint: snapshot metadata, HardState and the whole remaining log.
// Once it is durable, every older record may be discarded; the host must
// keep the snapshot it names while it is the newest checkpoint.
//
// On restart, New replays from the newest Checkpoint. The host restores its
// state machine from the snapshot the checkpoint names (SnapshotIndex)
// before applying anything; the replica's applied index starts there and it
// re-emits the committed entries after it. New fails if Snapshots.Newest is
// older than that snapshot.
//
// A leader whose follower needs an entry at or below the compacted prefix
// (its next index is at most the log's first index minus one) moves that
// follower's progress from probe or replicate to snapshot state:
//
//	probe/replicate --next <= compacted--> snapshot (newest snapshot, offset 0)
//	snapshot --MsgSnapResp ack--> snapshot (window moves)
//	snapshot --MsgSnapResp reject(offset)--> snapshot (resend from offset)
//	snapshot --2*HeartbeatTicks without progress--> snapshot (resend from acked)
//	snapshot --SnapshotRetriesMax resends, or ReadChunk error--> start over
//	                                   with the newest snapshot from offset 0
//	snapshot --MsgAppResp at index >= first index - 1--> replicate
//	any --leader change--> progress reset
//
// It reads chunks of at most Config.SnapshotChunkBytes through
// Snapshots.ReadChunk and sends them as MsgSnap, at most
// SnapshotChunksInflightMax unacknowledged; a snapshot never travels whole.
// A follower of the sender's term whose commit index is below the snapshot
// passes each in-order chunk to Snapshots.ReceiveChunk and acknowledges it
// with MsgSnapResp (the offset it expects next); an out-of-order chunk, or
// one the store refuses, is rejected with the offset it expects (0 after an
// error, or for a transfer from another leader or term). Duplicates are
// re-acknowledged. When the last chunk is stored, the follower makes the
// snapshot the base of its log (keeping the entries after it if its log
// holds the snapshot's last entry with the same term, Raft §7), sets commit
// and applied to its index, and its next Ready carries Restore (the host
// installs the snapshot durably first, and replaces its state machine
// before applying Committed) and a Checkpoint; it answers with a MsgAppResp
// at the snapshot's index, and the leader replicates from there. A chunk of a
// snapshot the follower already has committed is answered with a MsgAppResp
// at its commit index.
//
// Nothing handed to the host (records, messages, entries, snapshot chunks,
// read contexts) is modified afterwards: the log never overwrites a position it has handed
// out, and every slice handed out has its capacity clipped.
//
// The package imports no clock, randomness, I/O or goroutines: time arrives
// as Tick, jitter comes from Config.Rand, logging goes to Config.Logger.
package raft

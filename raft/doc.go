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
// Durable state is two record types: HardState (term, vote, commit) and
// Append (entries from an index, replacing any suffix from that index). New
// rebuilds a replica from every record it emitted. Messages carry a *Msg.
//
// Nothing handed to the host (records, messages, entries, read contexts) is
// modified afterwards: the log never overwrites a position it has handed
// out, and every slice handed out has its capacity clipped.
//
// The package imports no clock, randomness, I/O or goroutines: time arrives
// as Tick, jitter comes from Config.Rand, logging goes to Config.Logger.
package raft

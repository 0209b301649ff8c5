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
// # Not done
//
// Snapshots and log compaction are not implemented: Replica does not
// implement consensus.Compactor, never sets Ready.SnapshotWanted, and
// ignores Config.Snapshots, so its log and its records grow without bound
// and a lagging replica is always caught up from the log. A promise reports
// every value the acceptor holds from the candidate's first unchosen slot,
// which is unbounded for a candidate far behind. Membership is fixed.
//
// The package imports no clock, randomness, I/O or goroutines: time
// arrives as Tick, jitter comes from Config.Rand, logging goes to
// Config.Logger.
package paxos

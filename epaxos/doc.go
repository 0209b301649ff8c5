// Package epaxos is the core of Egalitarian Paxos (Moraru, Andersen,
// Kaminsky, "There Is More Consensus in Egalitarian Parliaments", SOSP
// 2013, and the technical report CMU-PDL-13-111): a leaderless replication
// protocol in which every replica leads the commands proposed to it, and
// commands order only against commands they conflict with. It is a pure,
// deterministic state machine on the consensus contract, like the other
// cores. This slice: the commit protocol, the executor, and recovery.
//
// # Instances and conflicts
//
// Each replica R owns an instance space; its k-th proposal is instance
// R.k (InstanceID). Two commands conflict when their Command.Keys share a
// key, or when both have keys and either has consensus.ConflictAll (the
// empty key) among them; a command with no keys conflicts with nothing,
// not even with a ConflictAll command. Each instance carries attributes:
// seq (a sequence number) and deps (the set of instances it depends on).
// A replica keeps a per-key conflict index: for each key, the highest
// instance of each replica's space that touches it, and the highest seq
// among those instances; ConflictAll is indexed as a key of its own, and
// one more index covers every instance with any key. A command's
// attributes are computed from the index alone, never by scanning all
// instances:
//
//   - a command with keys depends on the latest instance of each replica
//     on each of its keys and on the latest ConflictAll instance of each
//     replica, and its seq is one above the highest seq among them;
//   - a ConflictAll command depends on the latest instance of each
//     replica on any key (ConflictAll ones included), and its seq is one
//     above the highest seq of any instance with keys.
//
// Earlier instances of a space are reached transitively, through the
// executor's same-space chain (see Recovery): a dependency on R.j orders
// the command after every R.i <= j. So two conflicting instances that a
// replica indexed one after the other get an edge, whichever of them is
// the ConflictAll one, and the usual quorum-intersection argument holds.
// Deps are explicit instance IDs (not the paper's vector of one instance
// number per replica), so nothing is sized by N.
//
// # Commit protocol
//
// Propose works on every replica (Status().Role is RolePeer; there is no
// NotLeaderError). The leader L computes attributes, persists the instance
// as pre-accepted, and sends PreAccept to every other replica. A replica
// merges its own conflicts (seq = max, deps = union), persists, and answers
// PreAcceptOK with its attributes and whether they changed.
//
//   - Fast path: with N = 2F+1, once L holds PreAcceptOK from
//     FastQuorum(N)-1 other replicas (a fast quorum of F + ⌊(F+1)/2⌋
//     replicas, L included: 2, 3, 5, 6 for N = 3, 5, 7, 9), all unchanged
//     from L's ORIGINAL attributes, at the instance's initial ballot, L
//     commits those attributes. Agreement among the replies alone is not
//     enough: they must equal what L sent.
//   - Slow path: once a majority (L included) answered and the fast path is
//     impossible (a reply changed), or L waited Config.RetryTicks for a
//     fast quorum, L takes the union of the deps and the highest seq, and
//     runs Accept (Paxos phase 2) with them; AcceptOK from a majority (L
//     included) commits.
//   - Commit is sent to everyone and acknowledged (CommitOK); L resends
//     PreAccept, Accept or Commit every RetryTicks to the replicas that
//     have not answered, so a lossy network delays but does not stop it.
//
// preAcceptDecision is the decision as a pure function.
//
// # Ballots
//
// Each instance has ballots (Round, Node); the initial ballot of R.k is
// {0, R}. Every replica keeps, per instance, the ballot it PROMISED (the
// highest it has seen; it ignores PreAccept and Accept below it) apart
// from the ballot under which it last ACCEPTED the attributes it holds.
// Recovery must report the accepted ballot, never the promised one (the
// flaw Sutra found, "On the correctness of Egalitarian Paxos", 2019); the
// state and the durable record carry both already.
//
// # Execution
//
// The executor walks the graph of committed instances and their deps
// with Tarjan's algorithm, executes strongly connected components in
// dependency order (a component runs only when everything it depends on
// outside itself has run), and orders the instances inside a component by
// (seq, replica ID, instance number). Every replica therefore executes
// conflicting commands in the same order. A walk that reaches an instance
// not committed here stops (components already completed stay executed)
// and its root waits until that instance commits. Besides its deps, every
// instance R.i with i > 1 has an implicit edge to R.(i-1) (see Recovery).
//
// The executor runs in Ready and takes at most Config.ExecuteStepsMax
// steps per Ready (DefaultExecuteStepsMax), so a Ready always returns. A
// walk that runs out of steps is suspended and resumed at the next Ready,
// never restarted: committed instances' deps never change, so its state
// stays valid and a component larger than the budget still completes. A
// host that gets an empty Ready while a walk is suspended calls Ready
// again after its next Tick or Step, as hosts do.
//
// Executed commands appear in Ready.Committed in execution order. Their
// Entry.Index is this replica's local execution counter (1, 2, 3, …,
// counting only commands, not no-ops); it is NOT the same across replicas,
// which execute non-conflicting commands in different orders. Entry.Term
// is 0. Status().Applied is the counter, Status().Commit the number of
// instances known committed here. A replica rebuilt by New executes every
// committed instance again from counter 1: the host rebuilds its state
// machine from scratch (there are no snapshots yet).
//
// # Reads
//
// ReadIndex returns ErrReadThroughLog. No replica can confirm alone that
// its state is current, so a linearizable read goes through the log: the
// client proposes the read as a command whose Keys are the keys it reads;
// it conflicts with every write of those keys and is executed in order
// with them, and the state machine answers it when it executes.
//
// # Durability
//
// The only record is Instance: the whole state of one instance (status,
// promised and accepted ballots, command, seq, deps), emitted whenever it
// changes and durable before any message that reveals it (Ready.Persist).
// New replays records (the last per instance wins) and rebuilds the
// conflict index, the instance counter and the executor's input. Codec
// and MessageCodec encode records and messages.
//
// # Recovery
//
// recovery.go holds explicit prepare (on unless the unexported Config
// field noRecovery is set, which only tests do).
//
// Suspicion: every instance known here and not committed, and every
// instance the executor waits for (even one never heard of), has a timer
// of RecoveryTimeoutTicks plus jitter drawn from Config.Rand (so racing
// recoverers do not duel forever); instances this replica leads and still
// drives are exempt. On expiry the replica promises {round+1, self}
// (round above every promise and refusal seen) durably and sends Prepare.
// An acceptor below the ballot promises it (a bare StatusNone record if
// it never saw the instance; the promise is durable before the reply) and
// answers PrepareOK with its status, attributes and the ballot they were
// ACCEPTED under; above it, it answers Nack with its promise, and a
// leader or recoverer holding a lower ballot drops the instance. A
// replica that promises a higher ballot drops its own leader state for
// the instance too. With a majority of replies, in this order:
//
//	| replies                                       | action                                   |
//	|-----------------------------------------------|------------------------------------------|
//	| any committed                                 | commit those attributes                  |
//	| any accepted                                  | Accept the highest ACCEPTED ballot's     |
//	| initial-ballot pre-accepts from non-leaders   | TryPreAccept A (below)                   |
//	|   that did not change the leader's attributes |                                          |
//	|   A (Instance.Changed unset); count + silent  |                                          |
//	|   ones                                        |                                          |
//	|   >= FastQuorum-1 (A may be fast-committed)   |                                          |
//	| two such candidates                           | wait (next attempt)                      |
//	| some pre-accepted, no candidate               | PreAccept (phase 1) at the new ballot    |
//	|                                               | with their union, then Accept            |
//	| nobody knows the command                      | Accept, then commit, a no-op             |
//
// TryPreAccept: holders are the repliers holding A at the initial ballot
// (the leader included); the others, the recoverer first, pre-accept A at
// the recovery ballot unless they hold a conflicting instance (sharing a
// key, or either side ConflictAll) with no edge to or from A (an instance
// of the same space, or a dep on a later instance of that space, counts
// as an edge). A majority
// of holders → Accept A. A refusal citing a COMMITTED conflict proves A
// was never committed (two committed conflicting instances always have
// an edge) → phase 1. Any other refusal leaves the attempt waiting and
// makes the conflicting instance suspected at once; the next attempt
// retries. The report's deferral bookkeeping (breaking cycles of
// instances waiting on each other) and its extra fast-path condition are
// NOT implemented, so two mutually conflicting uncommitted instances can
// keep each other from being recovered (liveness only).
//
// Commits are acknowledged at the ballot they were sent with, so a late
// Prepare does not leave a leader resending a Commit forever. A replica
// rebuilt by New with instances in flight gets them committed by
// recovery (its own or a peer's), and a replica that missed a Commit
// learns it when a Prepare finds it committed elsewhere.
//
// No-ops and the same-space chain: deps name only the latest instance of
// each space on a key, earlier ones being reached through that space. An
// instance recovered as a no-op has no deps, which would cut a chain that
// ran through it (a random crash test found two conflicting commands left
// unordered that way). So the executor gives every instance R.i > R.1 an
// implicit edge to R.(i-1): each space is a chain at execution, whatever
// its instances' keys. This orders more than needed (a command waits for
// every earlier instance of its space to commit, and recovery makes sure
// they do), but it is deterministic, so replicas still agree, and a dep on
// R.j reaches every R.i <= j.

// # Not yet implemented (next slices)
//
//   - The report's TryPreAccept deferral (cycle breaking) and its extra
//     fast-path condition; see Recovery for what is done instead.
//   - Prepare is not resent: a lost Prepare or reply costs one recovery
//     timeout, after which the attempt restarts at a higher ballot.
//   - Compaction of executed instances (snapshots), batching of commands
//     in one instance, and the sim/ registration.
//   - The livelock of "EPaxos Revisited" (NSDI 2021) is only partly
//     addressed: the bounded, resumable walk keeps every Ready bounded and
//     lets any finite, fully committed component execute, but a walk that
//     reaches an instance not yet committed is dropped and retried when
//     that instance commits; under a continuous stream of conflicting
//     commands a root can keep meeting newer uncommitted instances, and
//     each retry walks its component again. The fix (bounding what a root
//     waits for by seq, as that paper proposes) is for the next slice.
package epaxos

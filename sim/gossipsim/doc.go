// Package gossipsim is the deterministic simulator for synod's gossip
// mode: SWIM membership with Lifeguard (package gossip) and the
// eventually consistent store (package gossip/store), composed on every
// node as a real host would compose them, the store's peers following
// the live members. It runs up to NodesMax nodes on one goroutine, in
// virtual time, over a simulated network that delays, loses, duplicates
// and reorders messages and can be partitioned, with nodes that crash
// (restarting from the store's durable records, or never), pause, or
// stay slow but alive. Clients read and write keys at random nodes while
// the faults last. Every random choice comes from Config.Seed, so a run
// is reproducible: the same Config gives the same trace, and
// Result.TraceHash tells.
//
// It is a package of its own beside sim, whose world is built around
// consensus replicas and a linearizable key-value state machine; the
// two share only conventions (units of virtual time, the fault phase
// followed by a quiet phase, seeds and swarms, check.Violation).
//
// # Checkers
//
// The checkers live in package sim/check and know nothing of this
// package: check.Membership and check.Eventual.
//
//   - Membership accuracy: after the faults stop, within
//     MembershipBoundTicks, every running node sees every other running
//     node alive and every node crashed for good dead (or not at all), and
//     it stays so. Every death a member declares is classified: true (a
//     crash), after a partition between the two (expected), or a false
//     positive: a live, connected node declared dead, by a plain miss of
//     the detector, or involving a paused or slow node. False positives
//     are counted and reported, not violations: SWIM is a probabilistic
//     detector.
//   - Convergence: after the faults stop, within StoreBoundTicks, every
//     running replica holds the same entries (the same Merkle root, or
//     the same entries apart from tombstones within a few hundred
//     milliseconds of expiring), and it stays so.
//   - Store safety: a replica holds and returns only versions somebody
//     wrote; its version of a key never goes back, in particular an older
//     value never replaces a delete within the tombstone TTL (after the
//     TTL it is the store's documented resurrection caveat, counted in
//     Result.Resurrections); a read returns what the replica's change
//     feed says it holds, and at least the reading client's own last
//     write there (read-your-writes); and once converged every replica
//     holds the last write by (HLC timestamp, origin) over every write
//     that survived (held at some time by a replica that still runs with
//     its data).
//
// # Host behaviour simulated
//
// The store's records are durable as soon as a Ready is handled (there
// are no disk faults in this simulator), and the host persists the
// member's incarnation, restarting one above it. A node down longer than
// half the tombstone TTL restarts with its store wiped, as the store's
// documentation asks. A restarted node joins through Config.Seeds nodes
// that are running at the time (as a discovery service would name
// them).
//
// # Experiments
//
// Detection, FalsePositives, PartitionHeal and RunCAP are scripted runs
// behind synod sim gossip-bench and synod sim cap. Measured with 1%
// message loss and the cores' default configurations (gossip-bench,
// seed 1; periods of 1 s):
//
//	                                      N=10    N=100   N=1000
//	first ping of a crashed member (periods)  1.5     0.9     0.7
//	first suspicion (periods)                 2.5     1.9     1.7
//	first declared dead (periods)             7.6    11.9    16.6
//	dead for every member (periods)           8.6    14.6    20.7
//	membership messages per member per period 2.30    2.28    2.23
//	false positives per hour, one slow member:
//	  α = 5, Lifeguard on / off               0 / 0   0 / 0   0 / 0
//	  α = 2, Lifeguard on / off               0 / 118 0 / 208 0 / 200
//	after 60 s apart in halves, healed:
//	  membership whole again (s)              5.8    37.8    97.2
//	  store replicas converged (s)           13.5    40.7    36.7
//
// The first suspicion comes a period after the first ping (a probe fails
// at the end of its period); SWIM's analysis, counting whole periods to
// the end of the detecting one, expects e/(e-1) ≈ 1.58. A replica
// exchanges only with the members its node holds alive or suspect, so
// after a partition long enough for deaths the store waits for the first
// members to merge again. A death in a merged view starts a suspicion
// rather than a death (see gossip), so the first exchange across the
// healed cut does not leave its two ends believing their own sides dead;
// that took the heal at N = 100 from 42–128 s to 37–38 s over seeds 1–4
// (N = 10: 5–31 s to 6–28 s). The membership takes longer at 1,000
// members: nearly every member has to refute its death, and the
// refutations of 500 members cross the cut in push-pulls and then share
// the piggyback budget.
package gossipsim

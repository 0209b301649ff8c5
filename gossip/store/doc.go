// Package store is synod's eventually consistent key-value store: the AP
// side of CAP, replicated by gossip among the members of a SWIM group
// (package gossip) instead of by consensus. Every replica accepts reads
// and writes on its own, whatever the network does; replicas exchange
// what they hold and converge once they can talk.
//
// It is its own package beside the membership core rather than part of
// it: the store needs nothing of SWIM but the list of live peers (the
// host passes it to SetPeers from gossip's Status or events), the
// membership needs nothing of the store, and each is tested alone. The
// host composes them.
//
// # Contract
//
// A Store is a pure, deterministic state machine like the other cores: no
// goroutines, no clock, no randomness but Config.Rand, no I/O. Physical
// time comes in as an argument: every method that stamps or ages data
// takes nowMs, the host's clock reading in milliseconds (virtual
// milliseconds in the simulator), which may stand still or step back.
// The host calls Tick(nowMs) regularly (every few hundred milliseconds),
// hands every received message to Step, serves client writes with Put,
// Delete and DeleteRange and reads with Get, Range and Ascend, and then
// takes Ready: it makes Ready.Persist durable, sends Ready.Messages to
// each Message.To, and passes the Ready back to Advance. The network may
// lose, delay, duplicate and reorder messages. A Store is not safe for
// concurrent use.
//
// # Data model and conflict resolution
//
// A replica holds, per key, one Entry: the value, the write's hybrid
// logical clock timestamp, its origin node and a tombstone flag for a
// delete. Two versions of a key are ordered last writer wins: by
// timestamp, then by origin node ID (Entry.Compare). A node never stamps
// two writes alike, so that decides between any two writes; should a node
// lose its state and reuse a timestamp, a tombstone beats a value and
// then the bytewise greater value wins, so the order is total. Merging
// keeps the greater version of each key, which makes merge deterministic,
// commutative, associative and idempotent: replicas that have seen the
// same writes hold the same state, whatever the order, grouping and
// repetition in which the writes arrived (TestMergeProperties checks
// this against a naive model).
//
// Timestamps come from a hybrid logical clock (Kulkarni et al., "Logical
// Physical Clocks", 2014; Clock): (l, c) where l follows the largest
// physical time heard of and c counts events within one l. A local write
// is stamped above everything the replica has issued or merged, so it
// wins over every version this replica has seen. Merged timestamps are
// checked against the local physical clock: one more than
// ClockDriftMaxMs ahead is refused (ErrClockDrift, a *DriftError naming
// both readings and the bound) and taken only once this clock has caught
// up, so that a node whose clock runs fast cannot win every conflict for
// as long as its clock is wrong: a timestamp is taken only when it is at
// most the bound ahead of the taker's physical clock.
//
// # Guarantees
//
// Exactly these hold:
//
//   - Eventual convergence. Once writes stop and the network heals (the
//     live replicas can exchange messages, directly or through others),
//     every replica reaches the same entries, namely the latest version
//     of each key over all writes that any of them accepted, within a
//     number of anti-entropy rounds that grows with log N (measured
//     below).
//   - Read your writes, on one replica. A write is visible to reads on
//     the replica that accepted it as soon as Put or Delete returns, and
//     stays visible until a newer write to the key wins.
//   - Monotonic reads, on one replica. The version of a key a replica
//     holds only grows, so successive reads there never go back in time
//     (except after the tombstone caveat below).
//
// And these do not:
//
//   - No linearizability: a read anywhere may miss writes acknowledged
//     elsewhere, for as long as dissemination takes or a partition lasts.
//     A client that moves to another replica may read older values than
//     it read or wrote before (no read-your-writes or monotonic reads
//     across replicas).
//   - Concurrent writes to one key do not merge: one wins and the others
//     are silently lost, also a read-modify-write cycle of two clients.
//     "Later" means a later timestamp, so a write can lose to one made
//     earlier in real time on a node whose clock is ahead (by at most
//     ClockDriftMaxMs).
//   - No transactions and no multi-key atomicity: writes to different
//     keys travel separately and may be seen in any order, partly, by
//     another replica; there is no causal order across keys.
//   - Durability is per replica: a write lives only on the replica that
//     accepted it until gossip or anti-entropy has copied it; losing that
//     replica's disk first loses the write.
//   - DeleteRange deletes only the keys the replica knows of; there are
//     no range tombstones.
//
// # Deletes and the tombstone TTL
//
// A delete is a tombstone: an entry with no value that wins over older
// versions like any write. Tombstones are kept TombstoneTTLMs after their
// timestamp (not after their arrival, so every replica purges a
// tombstone at about the same time), then purged by Tick. A tombstone
// that arrives already expired still deletes the older value it
// overrides, and is not kept.
//
// Known caveat: once a tombstone is purged, nothing remembers the delete.
// A replica that still holds an older version of the key, because it was
// partitioned or down for longer than the TTL, and rejoins, spreads that
// version again: the deleted key comes back (resurrection), and replicas
// that read it go back in time. TestTombstoneTTLCaveat shows it;
// TestTombstoneNoResurrectionWithinTTL shows a rejoin within the TTL
// taking the delete. So the TTL must exceed the sum of: the time a
// tombstone takes to reach every replica (a few anti-entropy rounds,
// about log2 N + ln N intervals of AntiEntropyIntervalMs at worst in the
// measurements below, plus gossip), the longest partition or downtime
// after which a replica may rejoin with its old state, and the clock
// drift bound. Config.Validate enforces a floor of
// TombstoneTTLMinIntervals (32) anti-entropy intervals; the default is a
// day against a 10 s interval. A replica away for longer than the TTL
// must not rejoin with its old state: the host should wipe it and let
// anti-entropy refill it (a replica cannot tell by itself how long it was
// cut off, and wiping every replica after a group-wide outage would lose
// data, so this is an operator's decision).
//
// # Dissemination
//
// Recent writes spread by gossip (rumour mongering): every local write,
// and every write that Step(MsgPush) finds new, enters a queue, one
// write per key (a newer write replaces an older one and restarts its
// count). The host can piggyback them on messages it sends anyway, such
// as SWIM probes: PickUpdates(budget) returns those that fit in budget
// bytes, fewest-sent first, and counts a transmission for each; the
// receiver wraps them in a MsgPush to Step. And every GossipIntervalMs,
// Tick sends MsgPush to GossipFanout random peers. A write is sent at most
// RetransmitMult·⌈log10(N+1)⌉ times, the rule of gossip's membership
// updates; the queue holds at most QueueMax writes (beyond, the most-sent
// go). Gossip is fast but lossy; anti-entropy catches whatever it misses.
// Writes learned by anti-entropy are not gossiped again, so a healing
// partition does not start a storm.
//
// # Anti-entropy: Merkle trees
//
// Each replica keeps a Merkle tree of fixed shape over the key space:
// 16^L leaves (L = Config.TreeLevels, the same on every replica), a key
// going to the leaf named by the top 4·L bits of its hash; a leaf's hash
// is the sum of its entries' digests (key, value, timestamp, origin,
// tombstone), an interior node's the hash of its 16 children. Every
// write, merge and purge updates one leaf and the L nodes above it. The
// hash is built from the two CRC-32 polynomials of hash/crc32 (the only
// hash the pure packages may use) passed through a nonlinear finalizer,
// so that differences do not cancel as they would with a bare CRC (see
// hash.go); equal roots mean equal entries with probability 1 − 2^-64.
//
// Every AntiEntropyIntervalMs, Tick starts an exchange with a random peer
// (StartAntiEntropy does it on demand): it sends its root (MsgTree at
// level 0). A receiver compares the hashes it gets with its own and
// answers, for the nodes that differ, with its hashes of their children,
// one level down; the two descend in turn, and at the leaves the side
// that finds a difference sends its entries of the differing leaves
// (MsgLeaves), the other merges them and answers with its entries of
// the same leaves that the first lacks or holds older. Both sides merge.
// An exchange is thus at most L+3 messages; it keeps no state between
// them, so lost messages, concurrent writes and concurrent exchanges
// only cost a round. Every message is bounded by MessageBytesMax: when
// the differences do not fit, a message carries as many as fit, starting
// at a random one, and the next rounds carry the rest.
//
// # Durable state
//
// Ready.Persist holds an EntryRecord for every change (a local write, or
// a merged write that won), in order; it doubles as the change feed for
// watchers. Snapshot returns the whole state as a SnapshotRecord (a
// consensus.Checkpoint: the host may drop the records before it); Restate
// returns it as a RestateRecord and entry records in chunks of bounded
// size, for a state too large for one log record (the node's WAL uses
// it: a restatement merges instead of replacing, so a crash that keeps
// only part of it loses nothing); and
// Recover replays records into a new Store; the clock resumes above
// every recovered timestamp, so a restarted node never reuses one.
// RecordCodec encodes both, MessageCodec the messages, each in a
// versioned binary format with every count and length bounded; decoding
// checks what Step and Recover would, and FuzzDecodeMessage and
// FuzzDecodeRecord check that decoding never panics and round-trips.
// Purges are not recorded (Tick purges again after a replay); neither are
// the dissemination queue and the peers.
//
// # Serving the etcd API in this mode
//
// The server must refuse what this store cannot honour, rather than
// answer with numbers that look like etcd's and mean something else.
// Recommended, as codes.InvalidArgument like the server's other refusals:
//
//   - a Txn with any compare:
//     "etcdserver: transactions with compares are not supported in
//     eventually consistent mode (gossip): a compare would be checked
//     against one replica only and could not guard the write; use a
//     consensus protocol (raft, multipaxos, epaxos) for compare-and-swap".
//     A Txn without compares may be served as its operations applied one
//     by one on the local replica (each its own write, visible to other
//     replicas separately), or refused with "etcdserver: transactions are
//     not atomic in eventually consistent mode (gossip)";
//   - a Range with a revision (a read at a past revision):
//     "etcdserver: reads at a revision are not supported in eventually
//     consistent mode (gossip): revisions are local to each replica and
//     there is no history; read without a revision";
//   - a Watch with a start revision:
//     "etcdserver: watch from a revision is not supported in eventually
//     consistent mode (gossip): there is no history to replay; watch from
//     now (start_revision 0)";
//   - Compact: "etcdserver: compaction is not supported in eventually
//     consistent mode (gossip): there is no revision history".
//
// Revisions beyond a local counter do not exist: the response header's
// revision is Store.Revision, and a key's ModRevision its
// KeyValue.Revision, both counting this replica's changes only
// (CreateRevision may repeat ModRevision and Version be 1: neither is
// tracked). Every read is local, that is serializable: etcd's
// linearizable Range (its default) cannot be given; the server serves it
// locally and says so in its documentation, or refuses it under a strict
// setting. Watches from now are fed by Ready.Persist. Leases stay
// refused as in every mode.
//
// # Measured
//
// With the in-test network (TestConvergenceAfterPartition: a partition
// in halves, puts and deletes on both sides over 60 keys with 20% loss
// and ±200 ms of clock skew, then healing), the replicas reach the
// model's state in 1.7 anti-entropy rounds on average at N = 3 (2 at
// worst), 3.5 (4) at N = 8, 3.6 (5) at N = 16 and 4.4 (6) at N = 32, a
// round being one exchange started by every replica with a random peer.
// Two replicas of a 10,000-key store (4,096 leaves) that differ in 10
// keys converge in one exchange of 6 messages and about 5 KB (3 KB of
// them tree hashes, and about 45 entries: those of the 10 differing
// leaves), against 510 KB for the full state: 1% of it
// (TestMerkleExchangeTransfersOnlyDifferingLeaves).
//
// # Not yet implemented
//
//   - Carrying MsgPush on SWIM messages: gossip's Message has no field
//     for it yet, so Tick's own gossip rounds carry writes. (The node
//     serves the store as --protocol gossip: node/gossipnode.go, with the
//     refusals above in server/eventual.go.)
//   - The tree's depth is fixed per group: resizing needs every replica
//     to agree on a new depth.
//   - No read repair and no hinted handoff; no per-key version vectors
//     (concurrent writes are resolved, never kept as siblings).
package store

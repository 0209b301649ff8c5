// Package kv is synod's replicated key-value state machine, with etcd's
// revision semantics.
//
// A Store is a pure, deterministic function of the committed entries applied
// to it: replicas that apply the same entries in the same order hold the same
// state, byte for byte (compare them with Store.Hash or Store.Snapshot). The
// package owns no goroutines, reads no clock and draws no randomness, and a
// Store is not safe for concurrent use: the host calls it from one goroutine.
//
// # Revisions
//
// The store has a global revision that starts at 1 when the store is empty
// and grows by exactly one for each applied request that changes data. Every
// write of a request shares the new revision: a Txn that puts three keys
// bumps the revision once, and all three keys get that ModRevision. A request
// that changes nothing (a Range, a DeleteRange that matches no key, a Txn
// whose branch only reads or deletes missing keys) leaves the revision alone.
// A Put always changes data, even when the value is the same.
//
// Each live key carries etcd's metadata: CreateRevision (the revision that
// created it), ModRevision (the revision of its last put) and Version (1 on
// creation, +1 per put). Deleting a key removes it; putting it again starts
// a new life at Version 1 with a new CreateRevision.
//
// # Per-key order (EPaxos)
//
// A store made with Options.PerKeyOrder serves a protocol whose replicas
// apply commands that share no conflict key (Request.Keys) in different
// orders. The revision is then this replica's count of applied writes: it
// orders each key's history, and a replica's own history, but the same
// write has different revisions on different replicas. Values, versions
// and which keys exist agree everywhere; anything whose outcome would
// depend on the local numbers and that changes state (a Txn compare on a
// create or mod revision) is refused with ErrRevisionCompare on every
// replica alike, and sessions, which assume a client's commands apply in
// order, are not used. See Options.
//
// # Backends
//
// The semantics reach the state only through the small Backend interface
// (ordered get, put, delete and ascend over live keys; the metadata; the
// session table). Store is the in-memory backend; storage/kvstore keeps
// the state on disk. The package-level Apply, Read, Hash, WriteSnapshot
// and ReadSnapshot run over any backend with exactly Store's results, so
// every backend yields the same Hash and the same snapshot bytes for the
// same entries, and a snapshot written by one restores into another.
// WriteSnapshot and ReadSnapshot stream, so a snapshot never has to fit in
// memory.
//
// # What is not here (yet)
//
// The store keeps only the latest value of each key: there is no MVCC
// history, so no reads at an old revision and no compaction. Watching is
// left to the host: Apply reports each request's changes as
// Result.Events, and the host keeps what history of them it wants. There
// are no leases. Ranges return keys in ascending byte order only. A Txn has
// exactly one Compare.
//
// # Commands
//
// Requests travel in consensus.Command.Data in the binary encoding that
// Request.Encode writes and DecodeRequest reads (see codec.go for the
// format). Committed entries go to Store.Apply in index order; read-only
// requests can be served locally with Store.Read once the host has
// established a linearizable read point (consensus.Replica.ReadIndex).
//
// Results share byte slices with the store and with cached session results:
// callers must treat every []byte in a Result as read-only.
package kv

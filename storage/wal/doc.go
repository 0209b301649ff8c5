// Package wal is synod's segmented write-ahead log: an ordered sequence of
// opaque records (a type and a payload), numbered by consecutive indexes
// from 1, stored in preallocated segment files, each record framed with
// its length, index, type and a CRC-32C. The protocols encode their own
// records (consensus.Ready.Persist) and rebuild themselves by replaying
// them.
//
// Two ways to drive it:
//
//   - Log, synchronous and deterministic: Append writes, Sync fsyncs,
//     AppendSync does both. No goroutines, no clock; the simulator runs it
//     on a vfs.MemFS.
//   - Committer, for the real host: concurrent Append calls are batched by
//     one writer goroutine into one write and one fsync (group commit),
//     with a bounded queue that blocks appenders when full.
//
// # Durability contract
//
// A record is durable once Sync (or AppendSync, or a Committer's Append)
// has returned nil after it was appended; DurableIndex reports the point.
// A durable record survives any crash, and after a crash the log holds a
// prefix of the records appended: every durable record, possibly some
// later ones, each intact, and never a damaged one. TruncateSuffix and
// ReleasePrefix are durable when they return.
//
// # Crash consistency
//
// The argument rests on three rules, each tested by crashing after every
// file system operation of a workload (crash_test.go):
//
//  1. Bytes after the end of the log read as zero. Segments are
//     preallocated with zeros; Open re-zeroes a torn tail and
//     TruncateSuffix re-zeroes what it cuts, each synced before anything
//     new is written there. So after a crash, the bytes after the last
//     synced record are a prefix of what was written since (frames of the
//     records being appended, the last one possibly cut) followed by
//     zeros, and nothing older can be mistaken for a record. Each frame
//     also carries its index, so a stale frame could not pass anyway.
//  2. Only the last segment can have a torn tail. Roll-over fsyncs the
//     old segment before creating the next, and the next is preallocated,
//     given its header, fsynced and its directory fsynced before any
//     record goes into it. A last segment without a valid header and with
//     only zeros after it is a roll-over the crash interrupted; Open
//     recreates it.
//  3. Segments stay contiguous. TruncateSuffix removes segments newest
//     first and ReleasePrefix oldest first, fsyncing the directory after
//     each removal, so a crash part-way leaves a contiguous run of
//     segments; a gap found by Open is corruption.
//
// Open therefore treats as a torn tail exactly what rule 1 allows at the
// end of the last segment: one invalid frame, with only zeros after the
// extent its header claims and no valid later frame inside that extent.
// Anything else that fails validation — in an earlier segment, a bad
// frame followed by data, a damaged header, a missing segment — is
// corruption: Open returns a *CorruptionError naming the file and offset
// and reads nothing past it. One ambiguity is inherent: damage to the very
// last record, with zeros after it, is indistinguishable from a torn
// write, and the record is cut. Reads that fail validation are repeated
// once, and Open refuses to act on a segment whose two reads differ.
//
// # Failures
//
// A failed write or fsync fails the Log for good (ErrFailed); see
// Log.Sync for why an fsync is never retried. A full disk met while
// creating a new segment, before any record of the Append was written,
// is returned without failing the log.
//
// The on-disk format is described in format.go.
package wal

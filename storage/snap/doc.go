// Package snap stores snapshot files: a protocol's metadata (last included
// index and term, the voters, an opaque protocol blob) followed by the state
// machine's data as a stream, protected by CRC-32C checksums, written
// atomically and loaded with verification.
//
// # Directory
//
// A Store owns one directory. Complete snapshots are named
//
//	<index>-<term>.snap
//
// with index and term as 16 lower-case hexadecimal digits each, so that
// sorting names sorts snapshots by index (then term). Files in progress are
// named "*.tmp"; no complete snapshot ever has that suffix, and Open removes
// every "*.tmp" it finds (leftovers of a crash). Other files are left alone.
//
// # File format (version 1)
//
// All integers are little-endian.
//
//	offset       size      field
//	0            8         magic "SYNODSNP"
//	8            4         format version (1)
//	12           4         metaLen: length of the metadata section, ≤ MetadataBytesMax
//	16           metaLen   metadata:
//	                         index    u64
//	                         term     u64
//	                         nVoters  u32 (≤ VotersMax), then nVoters × u64 NodeID
//	                         protoLen u32, then protoLen bytes (protocol blob)
//	16+metaLen   4         metaCRC: CRC-32C of bytes [0, 16+metaLen)
//	20+metaLen   dataLen   state-machine data
//	end-16       8         dataLen u64
//	end-8        4         fileCRC: CRC-32C of bytes [0, end-8)
//	end-4        4         end magic "SNPE"
//
// The header and metadata carry their own checksum so that a damaged file
// is rejected before any data is read; the trailer's length and end magic
// make a truncated file (or one with trailing garbage) fail when it is
// opened; the data is checked by fileCRC, which covers the whole file
// except the trailer's last eight bytes, as it is read.
//
// # Crash safety
//
// A snapshot is written to a "*.tmp" file, synced, closed, renamed to its
// final name, and the directory is synced. Until the rename the final name
// does not exist; the rename atomically makes a fully synced file visible;
// the directory sync makes the name durable. A crash at any point therefore
// leaves the older snapshots untouched and either no new file, a stale
// "*.tmp" (removed by the next Open), or the complete new snapshot. Reading
// verifies every byte, so even a file damaged later (bit rot, a torn write
// the disk lied about) is detected rather than trusted.
//
// A Store is safe for concurrent use, but a directory must be used by one
// Store at a time.
package snap

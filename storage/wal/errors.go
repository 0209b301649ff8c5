package wal

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt matches every *CorruptionError.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrClosed is returned by operations on a closed Log or Committer.
	ErrClosed = errors.New("wal: closed")
	// ErrFailed is wrapped by every error a Log returns after a write or
	// fsync failed; see Log.Sync. Only reopening the log clears it.
	ErrFailed = errors.New("wal: log failed; reopen it to recover from what is durable")
	// ErrRecordTooLarge is returned for a record over Options.RecordBytesMax.
	ErrRecordTooLarge = errors.New("wal: record too large")
	// ErrCompacted is returned for an index below the log's first index.
	ErrCompacted = errors.New("wal: index released")
	// ErrOutOfRange is returned for an index beyond the log's last index + 1.
	ErrOutOfRange = errors.New("wal: index out of range")
)

// CorruptionError reports data that fails validation somewhere a crash
// cannot explain: a bad checksum or framing anywhere but a torn tail at
// the very end of the log, a damaged segment header, or a missing segment.
// The log returns no data past it. errors.Is(err, ErrCorrupt) holds.
type CorruptionError struct {
	File   string // path of the segment file
	Offset int64  // byte offset of the damage in File
	Reason string // what failed to validate
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corruption in %s at offset %d: %s. "+
		"Records from this point on cannot be trusted, and records before it may have been acknowledged "+
		"to peers, so do not delete or repair the file by hand: restore this node from a peer "+
		"(remove its data directory and rejoin the cluster, or restore a snapshot and catch up)",
		e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

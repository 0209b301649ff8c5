package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"

	"github.com/synod-io/synod/storage/vfs"
)

// Limits. Options are checked against them when a Log is opened.
const (
	// SegmentBytesDefault is the preallocated size of a segment file.
	SegmentBytesDefault int64 = 64 << 20
	// SegmentBytesMin and SegmentBytesMax bound Options.SegmentBytes.
	// Open reads a whole segment into memory, hence the maximum.
	SegmentBytesMin int64 = 4 << 10
	SegmentBytesMax int64 = 1 << 30
	// RecordBytesMaxDefault is the default payload limit of one record,
	// lowered to what fits in one segment when segments are small.
	RecordBytesMaxDefault = 4 << 20
	// writeBufKeepBytesMax is the largest write buffer kept between
	// appends; a larger one (a huge batch) is dropped after use.
	writeBufKeepBytesMax = 4 << 20
)

// Options configure a Log. The zero value is usable.
type Options struct {
	// SegmentBytes is the size each segment file is preallocated to, a
	// multiple of 8 in [SegmentBytesMin, SegmentBytesMax]. Zero means
	// SegmentBytesDefault.
	SegmentBytes int64
	// RecordBytesMax bounds a record's payload. It must leave room for one
	// framed record in a segment. Zero means RecordBytesMaxDefault, or the
	// largest payload that fits in a segment if that is smaller.
	RecordBytesMax int
}

func (o Options) normalize() (Options, error) {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = SegmentBytesDefault
	}
	if o.SegmentBytes < SegmentBytesMin || o.SegmentBytes > SegmentBytesMax || o.SegmentBytes%frameAlign != 0 {
		return o, fmt.Errorf("wal: Options.SegmentBytes %d must be a multiple of %d in [%d, %d]",
			o.SegmentBytes, frameAlign, SegmentBytesMin, SegmentBytesMax)
	}
	fit := int(o.SegmentBytes) - segmentHeaderSize - frameHeaderSize
	fit -= fit % frameAlign
	if o.RecordBytesMax == 0 {
		o.RecordBytesMax = min(RecordBytesMaxDefault, fit)
	}
	if o.RecordBytesMax < 0 || o.RecordBytesMax > fit {
		return o, fmt.Errorf("wal: Options.RecordBytesMax %d must be in [0, %d] for %d-byte segments",
			o.RecordBytesMax, fit, o.SegmentBytes)
	}
	return o, nil
}

// A Record is one opaque entry of the log. The protocols define their own
// types and encodings; the log frames, checksums and orders them.
type Record struct {
	Type uint16
	Data []byte
}

// Stats counts a Log's work since it was opened.
type Stats struct {
	Records  int64 // records appended
	Bytes    int64 // framed bytes written by Append
	Syncs    int64 // fsyncs of segment files (Sync, roll-over, truncation, Open)
	Segments int   // segment files the log holds now
}

// Log is a segmented write-ahead log of records numbered by consecutive
// indexes. Append assigns each record the index after the last one; Sync
// makes everything appended durable. Nothing else runs in the background:
// a Log owns no goroutines and never reads the clock, so the simulator
// drives it deterministically on a vfs.MemFS. For group commit by many
// goroutines, wrap it in a Committer.
//
// A Log is safe for concurrent use, but a Replay callback must not call
// back into the Log.
//
// Once a write or an fsync fails the Log refuses all further work (every
// method returns an error wrapping ErrFailed); reopen it to recover from
// what is durable. See Sync.
type Log struct {
	mu   sync.Mutex
	fs   vfs.FS
	dir  string
	opts Options

	// segs holds the first index of each segment file, ascending.
	// Invariant: len(segs) >= 1 while open, and segment k holds exactly
	// the records [segs[k], segs[k+1]); the last segment is active.
	segs []uint64
	// active is the last segment, open read-write.
	active vfs.File
	// activeOff is where the next frame goes in the active segment.
	// Invariant: segmentHeaderSize <= activeOff <= activeSize, and every
	// byte of the active segment from activeOff on reads as zero.
	activeOff  int64
	activeSize int64
	// last is the index of the last record appended.
	// Invariant: segs[0]-1 <= last.
	last uint64
	// durable is the index up to which records are known durable.
	// Invariant: durable <= last.
	durable uint64
	// err, once set, fails every later operation (wraps ErrFailed).
	err    error
	closed bool

	buf   []byte // frames being written, reused
	rbuf  []byte // segment images being read, reused
	stats Stats
}

// Open opens the log in dir, creating the directory and an empty log if
// needed, and recovers it:
//
//   - A torn or incomplete frame at the very end of the last segment (a
//     crash cut the write short, so it was never acknowledged) is cut
//     off and zeroed; the log continues from the last good record.
//   - A last segment whose header never made it to disk (a crash during
//     roll-over) is recreated empty.
//   - Any other damage — a bad checksum or framing in an earlier segment,
//     a bad frame followed by data, a missing segment — is corruption:
//     Open returns a *CorruptionError naming the file and offset.
//
// Before returning, Open fsyncs the last segment and the directory, so
// every record it reports (LastIndex) is durable even if it was only in
// the operating system's cache when the previous process died.
func Open(fsys vfs.FS, dir string, opts Options) (*Log, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	l := &Log{fs: fsys, dir: dir, opts: opts}
	if err := ensureDir(fsys, dir); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	for _, n := range names {
		if first, ok := parseSegmentName(n); ok {
			l.segs = append(l.segs, first) // names sort as indexes
		}
	}
	defer func() { l.rbuf = nil }() // segment images can be large; keep none
	if len(l.segs) == 0 {
		if err := l.startSegment(1); err != nil {
			return nil, err
		}
		return l, nil
	}
	if err := l.recover(); err != nil {
		if l.active != nil {
			l.active.Close()
		}
		return nil, err
	}
	return l, nil
}

// ensureDir creates dir if missing and syncs each new directory's parent,
// so that the directory itself survives a crash.
func ensureDir(fsys vfs.FS, dir string) error {
	var missing []string
	for d := dir; ; d = path.Dir(d) {
		if _, err := fsys.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if path.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := fsys.SyncDir(path.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) path(first uint64) string { return path.Join(l.dir, segmentName(first)) }

// readSegment reads a whole segment file (at most limit bytes if limit >
// 0) into l.rbuf.
func (l *Log) readSegment(first uint64, limit int64) ([]byte, error) {
	p := l.path(first)
	f, err := l.fs.Open(p)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	size := fi.Size()
	if limit > 0 {
		size = min(size, limit)
	}
	if size > SegmentBytesMax {
		return nil, &CorruptionError{File: p, Offset: SegmentBytesMax, Reason: fmt.Sprintf("segment file of %d bytes exceeds the %d-byte limit", size, SegmentBytesMax)}
	}
	if int64(cap(l.rbuf)) < size {
		l.rbuf = make([]byte, size)
	}
	buf := l.rbuf[:size]
	n, err := f.ReadAt(buf, 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return nil, fmt.Errorf("wal: read %s: %w", p, err)
	}
	return buf, nil
}

// scanFile reads and scans one segment. A damaged result is re-read once,
// so that a transient read error is neither reported as corruption nor
// mistaken for a torn tail (whose repair would destroy good data); if the
// two reads disagree the disk is returning unstable data and scanFile
// fails rather than act on either. fn sees the records of the first read
// and, after a re-read, those of the second again.
func (l *Log) scanFile(first uint64, limit int64, fn func(off int, index uint64, typ uint16, data []byte) error) (scanResult, []byte, error) {
	buf, err := l.readSegment(first, limit)
	if err != nil {
		return scanResult{}, nil, err
	}
	res, err := scanSegment(buf, l.opts.RecordBytesMax, fn)
	if err != nil || res.tail == tailClean {
		return res, buf, err
	}
	prev := append([]byte(nil), buf...)
	buf, err = l.readSegment(first, limit)
	if err != nil {
		return scanResult{}, nil, err
	}
	if !bytes.Equal(prev, buf) {
		return scanResult{}, nil, &CorruptionError{File: l.path(first), Offset: int64(firstDiff(prev, buf)),
			Reason: "two reads of the segment returned different data: the disk is failing"}
	}
	res, err = scanSegment(buf, l.opts.RecordBytesMax, fn)
	return res, buf, err
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// recover validates every segment and repairs the end of the last one.
func (l *Log) recover() error {
	var prevLast uint64
	for i, first := range l.segs {
		isLast := i == len(l.segs)-1
		p := l.path(first)
		res, buf, err := l.scanFile(first, 0, nil)
		if err != nil {
			return err
		}
		if i > 0 && first != prevLast+1 {
			return &CorruptionError{File: p, Reason: fmt.Sprintf(
				"segment starts at index %d but the previous one ends at %d: a segment file is missing or damaged",
				first, prevLast)}
		}
		if res.first == 0 { // the header is invalid
			if isLast && allZero(buf[min(len(buf), segmentHeaderSize):]) {
				// A crash during roll-over or creation: the file was
				// created but its header never became durable.
				return l.startSegment(first)
			}
			return &CorruptionError{File: p, Reason: res.reason}
		}
		if res.first != first {
			return &CorruptionError{File: p, Offset: 16, Reason: fmt.Sprintf(
				"segment header says first index %d but the file name says %d", res.first, first)}
		}
		if res.tail == tailCorrupt || (res.tail == tailTorn && !isLast) {
			return &CorruptionError{File: p, Offset: int64(res.end), Reason: fmt.Sprintf(
				"%s after record %d", res.reason, res.last)}
		}
		prevLast = res.last
		if !isLast {
			continue
		}
		f, err := l.fs.OpenReadWrite(p)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		l.active = f
		l.activeOff = int64(res.end)
		l.activeSize = max(int64(len(buf)), l.opts.SegmentBytes)
		l.last, l.durable = res.last, res.last
		if res.tail == tailTorn || int64(len(buf)) < l.activeSize {
			// Cut the torn frame and restore the zeros (and the
			// preallocation, if a crash interrupted it).
			if err := f.Truncate(l.activeOff); err != nil {
				return fmt.Errorf("wal: repair %s: %w", p, err)
			}
			if err := f.Truncate(l.activeSize); err != nil {
				return fmt.Errorf("wal: repair %s: %w", p, err)
			}
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", p, err)
		}
		l.stats.Syncs++
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", l.dir, err)
		}
	}
	l.stats.Segments = len(l.segs)
	return nil
}

// createSegment creates, preallocates and syncs a segment starting at
// first, and syncs the directory: once it returns, the empty segment is
// durable. On error it tries to remove the file.
func (l *Log) createSegment(first uint64) (vfs.File, error) {
	p := l.path(first)
	f, err := l.fs.Create(p)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment: %w", err)
	}
	err = f.Truncate(l.opts.SegmentBytes)
	if err == nil {
		_, err = f.WriteAt(appendSegmentHeader(nil, first), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		l.stats.Syncs++
		err = l.fs.SyncDir(l.dir)
	}
	if err != nil {
		f.Close()
		l.fs.Remove(p) // best effort; Open recreates a headerless last segment
		return nil, fmt.Errorf("wal: create segment %s: %w", p, err)
	}
	return f, nil
}

// startSegment makes a new empty segment starting at first the only
// active one, replacing any file of that name. Used by Open.
func (l *Log) startSegment(first uint64) error {
	f, err := l.createSegment(first)
	if err != nil {
		return err
	}
	if n := len(l.segs); n == 0 || l.segs[n-1] != first {
		l.segs = append(l.segs, first)
	}
	l.active, l.activeOff, l.activeSize = f, segmentHeaderSize, l.opts.SegmentBytes
	l.last, l.durable = first-1, first-1
	l.stats.Segments = len(l.segs)
	return nil
}

// usable reports why the log cannot be used, if it cannot.
func (l *Log) usable() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	return nil
}

// fail makes err sticky: every later operation returns it.
func (l *Log) fail(err error) error {
	if l.err == nil {
		l.err = fmt.Errorf("%w: %w", ErrFailed, err)
	}
	return l.err
}

// validate checks a record before it is framed.
func (l *Log) validate(r Record) error {
	if len(r.Data) > l.opts.RecordBytesMax {
		return fmt.Errorf("%w: %d bytes, limit %d (Options.RecordBytesMax)", ErrRecordTooLarge, len(r.Data), l.opts.RecordBytesMax)
	}
	return nil
}

// FirstIndex is the index of the first record the log holds (records
// released by ReleasePrefix may still be held), or LastIndex()+1 if it
// holds none.
func (l *Log) FirstIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0]
}

// LastIndex is the index of the last record appended, or FirstIndex()-1.
func (l *Log) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// DurableIndex is the index up to which every record is durable.
func (l *Log) DurableIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Append writes recs after the last record, numbering them from
// LastIndex()+1, and returns the index of the last one. The records are
// not durable until Sync returns (a roll-over to a new segment syncs the
// ones before it). Appending no records is a no-op.
//
// Every record is validated first; if one is invalid nothing is written.
// If a new segment cannot be created (a full disk) before any record of
// the call is written, Append returns the error and the log stays usable;
// a failure after the first write fails the log (ErrFailed).
func (l *Log) Append(recs ...Record) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(recs)
}

func (l *Log) appendLocked(recs []Record) (uint64, error) {
	if err := l.usable(); err != nil {
		return 0, err
	}
	total := int64(0)
	for _, r := range recs {
		if err := l.validate(r); err != nil {
			return 0, err
		}
		total += int64(frameSize(len(r.Data)))
	}
	fresh := l.opts.SegmentBytes - segmentHeaderSize
	wrote := false
	for len(recs) > 0 {
		room := l.activeSize - l.activeOff
		n, nbytes := 0, int64(0)
		for n < len(recs) && nbytes+int64(frameSize(len(recs[n].Data))) <= room {
			nbytes += int64(frameSize(len(recs[n].Data)))
			n++
		}
		// Keep a batch in one segment when it fits in a fresh one;
		// split only batches larger than a segment.
		if n < len(recs) && (n == 0 || total <= fresh) {
			if err := l.roll(wrote); err != nil {
				return 0, err
			}
			continue
		}
		l.buf = l.buf[:0]
		for i, r := range recs[:n] {
			l.buf = appendFrame(l.buf, l.last+1+uint64(i), r.Type, r.Data)
		}
		if _, err := l.active.WriteAt(l.buf, l.activeOff); err != nil {
			return 0, l.fail(fmt.Errorf("wal: write %s: %w", l.path(l.segs[len(l.segs)-1]), err))
		}
		if cap(l.buf) > writeBufKeepBytesMax {
			l.buf = nil
		}
		wrote = true
		l.activeOff += nbytes
		l.last += uint64(n)
		l.stats.Records += int64(n)
		l.stats.Bytes += nbytes
		total -= nbytes
		recs = recs[n:]
	}
	return l.last, nil
}

// roll closes the active segment and starts the next one. The order makes
// it crash-safe: the old segment is synced first, so that a durable new
// segment is never preceded by a torn one; the new one is preallocated,
// given its header and synced, then the directory is synced, and only then
// does it become active. A crash at any step leaves either the old segment
// last, or a new last segment that Open recognises as empty (or, headerless,
// recreates).
func (l *Log) roll(wrote bool) error {
	if err := l.syncLocked(); err != nil {
		return err
	}
	first := l.last + 1
	if first == l.segs[len(l.segs)-1] {
		panic("wal: roll-over from an empty segment; a record larger than a segment passed validation")
	}
	f, err := l.createSegment(first)
	if err != nil {
		if wrote {
			return l.fail(err)
		}
		return err
	}
	old := l.active
	l.active, l.activeOff, l.activeSize = f, segmentHeaderSize, l.opts.SegmentBytes
	l.segs = append(l.segs, first)
	l.stats.Segments = len(l.segs)
	if err := old.Close(); err != nil {
		return l.fail(fmt.Errorf("wal: close segment: %w", err))
	}
	return nil
}

// Sync makes every appended record durable, with at most one fsync.
//
// If the fsync fails the log fails for good: this and every later call
// return an error wrapping ErrFailed (and the cause, e.g. vfs.ErrInjected
// or the OS error), and the records appended since the last successful
// Sync must be treated as lost. Retrying is unsafe: on Linux a failed
// fsync marks the dirty pages clean (or drops them), so a second fsync can
// succeed without the data ever reaching the disk, while reads still show
// it from the page cache. The only safe recovery is to reopen the log —
// preferably in a fresh process — and trust only what Open finds.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	return l.syncLocked()
}

func (l *Log) syncLocked() error {
	if l.durable == l.last {
		return nil
	}
	if err := l.active.Sync(); err != nil {
		return l.fail(fmt.Errorf("wal: fsync %s: %w", l.path(l.segs[len(l.segs)-1]), err))
	}
	l.stats.Syncs++
	l.durable = l.last
	return nil
}

// AppendSync appends recs and syncs them: when it returns nil, they are
// durable. It returns the index of the last record.
func (l *Log) AppendSync(recs ...Record) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, err := l.appendLocked(recs)
	if err != nil {
		return 0, err
	}
	if err := l.syncLocked(); err != nil {
		return 0, err
	}
	return last, nil
}

// TruncateSuffix removes every record with index >= i (a Raft log
// conflict), durably: when it returns nil, a crash cannot bring them back,
// and the next record appended gets index i. FirstIndex() <= i <=
// LastIndex()+1 must hold; i == LastIndex()+1 is a no-op.
//
// Later segments are removed newest first, each removal made durable
// before the next, so a crash leaves the segments contiguous; then the
// segment holding i is cut at record i, re-zeroed and synced. A crash
// part-way leaves a prefix of the old log that includes every record
// below i.
func (l *Log) TruncateSuffix(i uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	switch {
	case i == l.last+1:
		return nil
	case i > l.last+1:
		return fmt.Errorf("%w: truncate at %d, last index %d", ErrOutOfRange, i, l.last)
	case i < l.segs[0]:
		return fmt.Errorf("%w: truncate at %d, first index %d", ErrCompacted, i, l.segs[0])
	}
	k := len(l.segs) - 1
	for l.segs[k] > i {
		k--
	}
	wasActive := k == len(l.segs)-1
	if !wasActive {
		err := l.active.Close()
		l.active = nil
		if err != nil {
			return l.fail(fmt.Errorf("wal: close segment: %w", err))
		}
	}
	for j := len(l.segs) - 1; j > k; j-- {
		if err := l.fs.Remove(l.path(l.segs[j])); err != nil {
			return l.fail(fmt.Errorf("wal: truncate: %w", err))
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return l.fail(fmt.Errorf("wal: truncate: fsync %s: %w", l.dir, err))
		}
		l.segs = l.segs[:j]
		l.stats.Segments = len(l.segs)
	}
	p := l.path(l.segs[k])
	if !wasActive {
		f, err := l.fs.OpenReadWrite(p)
		if err != nil {
			return l.fail(fmt.Errorf("wal: truncate: %w", err))
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return l.fail(fmt.Errorf("wal: truncate: %w", err))
		}
		l.active, l.activeSize = f, max(fi.Size(), l.opts.SegmentBytes)
	}
	off := int64(segmentHeaderSize)
	defer func() { l.rbuf = nil }()
	if i > l.segs[k] {
		found := false
		res, _, err := l.scanFile(l.segs[k], 0, func(o int, index uint64, _ uint16, _ []byte) error {
			if index == i {
				off, found = int64(o), true
				return errStopScan
			}
			return nil
		})
		if err != nil && err != errStopScan {
			return l.fail(err)
		}
		if !found {
			return l.fail(&CorruptionError{File: p, Offset: int64(res.end), Reason: fmt.Sprintf(
				"record %d not found while truncating (%s)", i, res.reason)})
		}
	}
	if err := l.active.Truncate(off); err != nil {
		return l.fail(fmt.Errorf("wal: truncate %s: %w", p, err))
	}
	if err := l.active.Truncate(l.activeSize); err != nil {
		return l.fail(fmt.Errorf("wal: truncate %s: %w", p, err))
	}
	if err := l.active.Sync(); err != nil {
		return l.fail(fmt.Errorf("wal: fsync %s: %w", p, err))
	}
	l.stats.Syncs++
	l.activeOff = off
	l.last, l.durable = i-1, i-1
	return nil
}

var errStopScan = errors.New("stop scan")

// ReleasePrefix declares the records below i no longer needed (they are
// in a snapshot). Every segment holding only such records is deleted,
// oldest first, each deletion made durable before the next so that a
// crash leaves the segments contiguous. Records below i that share a
// segment with record i are kept, so FirstIndex may stay below i. The last
// segment is never deleted. i <= LastIndex()+1 must hold.
func (l *Log) ReleasePrefix(i uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if i > l.last+1 {
		return fmt.Errorf("%w: release below %d, last index %d", ErrOutOfRange, i, l.last)
	}
	for len(l.segs) > 1 && l.segs[1] <= i {
		if err := l.fs.Remove(l.path(l.segs[0])); err != nil {
			return fmt.Errorf("wal: release: %w", err)
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return l.fail(fmt.Errorf("wal: release: fsync %s: %w", l.dir, err))
		}
		l.segs = l.segs[1:]
		l.stats.Segments = len(l.segs)
	}
	return nil
}

// Replay calls fn for every record from index from through LastIndex(),
// in order, reading them from the segment files and validating each
// again. FirstIndex() <= from <= LastIndex()+1 must hold. rec.Data is
// fn's to keep. An error from fn stops the replay and is returned. fn
// must not call the Log's methods. Data that fails validation returns a
// *CorruptionError (after one re-read, in case the error was transient).
func (l *Log) Replay(from uint64, fn func(index uint64, rec Record) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if from < l.segs[0] {
		return fmt.Errorf("%w: replay from %d, first index %d", ErrCompacted, from, l.segs[0])
	}
	if from > l.last+1 {
		return fmt.Errorf("%w: replay from %d, last index %d", ErrOutOfRange, from, l.last)
	}
	defer func() { l.rbuf = nil }()
	next := from
	for k, first := range l.segs {
		segLast := l.last
		limit := int64(0)
		if k+1 < len(l.segs) {
			segLast = l.segs[k+1] - 1
		} else {
			limit = l.activeOff
		}
		if segLast < next {
			continue
		}
		var cbErr error
		res, _, err := l.scanFile(first, limit, func(_ int, index uint64, typ uint16, data []byte) error {
			if index < next || index > segLast {
				return nil
			}
			if err := fn(index, Record{Type: typ, Data: append([]byte(nil), data...)}); err != nil {
				cbErr = err
				return err
			}
			next = index + 1
			return nil
		})
		if cbErr != nil {
			return cbErr
		}
		if err != nil {
			return err
		}
		p := l.path(first)
		switch {
		case res.first == 0:
			return &CorruptionError{File: p, Reason: res.reason}
		case res.tail != tailClean || res.last < segLast:
			reason := res.reason
			if reason == "" {
				reason = fmt.Sprintf("segment ends at record %d, want %d", res.last, segLast)
			}
			return &CorruptionError{File: p, Offset: int64(res.end), Reason: reason}
		}
	}
	return nil
}

// Close syncs the log and closes its files. It returns ErrClosed if the
// log is already closed, and the sticky error if the log failed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.closed = true
	err := l.err
	if err == nil {
		err = l.syncLocked()
	}
	if l.active != nil {
		if cerr := l.active.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("wal: close: %w", cerr)
		}
		l.active = nil
	}
	return err
}

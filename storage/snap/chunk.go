package snap

import (
	"fmt"

	"github.com/synod-io/synod/storage/vfs"
)

// A Chunk is a piece of a snapshot file's raw bytes, for sending a snapshot
// to a peer in bounded messages (Raft's InstallSnapshot). Chunks of one
// file are sent in order: each starts where the previous one ended, the
// first at offset 0, and the last has Done set.
type Chunk struct {
	// Offset is the position of Data within the file.
	Offset int64
	// Data holds at most ChunkBytesMax bytes.
	Data []byte
	// Done marks the file's last chunk.
	Done bool
}

// A Source reads a snapshot file's raw bytes in chunks. Opening it checks
// the header, metadata and trailer, so a sender does not send a file that
// is visibly damaged; the data checksum is checked by the receiver. A
// Source is not safe for concurrent use.
type Source struct {
	r *Reader // its file, metadata and size; its data stream is unused
	// fileBytes is the size of the file. Invariant: fileBytes ≥ minFileBytes.
	fileBytes int64
	closed    bool
}

// OpenSource opens the named snapshot for chunked reading. The caller must
// Close it.
func (s *Store) OpenSource(name string) (*Source, error) {
	r, err := s.Open(name)
	if err != nil {
		return nil, err
	}
	return &Source{r: r, fileBytes: r.dataOff + r.dataBytes + trailerBytes}, nil
}

// Meta returns the snapshot's metadata. The caller must not modify it.
func (src *Source) Meta() Meta { return src.r.meta }

// FileBytes returns the size of the file: the sum of its chunks' lengths.
func (src *Source) FileBytes() int64 { return src.fileBytes }

// ReadChunk reads the chunk at offset into buf, which bounds its length:
// 1 ≤ len(buf) ≤ ChunkBytesMax. The returned chunk's Data aliases buf. An
// offset must lie in [0, FileBytes()).
func (src *Source) ReadChunk(offset int64, buf []byte) (Chunk, error) {
	if src.closed {
		return Chunk{}, ErrClosed
	}
	if len(buf) == 0 || len(buf) > ChunkBytesMax {
		return Chunk{}, fmt.Errorf("%w: chunk buffer is %d bytes; use 1 to ChunkBytesMax (%d)", ErrChunkTooLarge, len(buf), ChunkBytesMax)
	}
	if offset < 0 || offset >= src.fileBytes {
		return Chunk{}, fmt.Errorf("snap: chunk offset %d outside the %d-byte snapshot file %s", offset, src.fileBytes, src.r.name)
	}
	if rest := src.fileBytes - offset; int64(len(buf)) > rest {
		buf = buf[:rest]
	}
	if err := readFullAt(src.r.f, buf, offset); err != nil {
		return Chunk{}, &FileError{Name: src.r.name, Err: err}
	}
	return Chunk{Offset: offset, Data: buf, Done: offset+int64(len(buf)) == src.fileBytes}, nil
}

// Close closes the file.
func (src *Source) Close() error {
	if src.closed {
		return ErrClosed
	}
	src.closed = true
	return src.r.Close()
}

// A Receiver writes a snapshot arriving in chunks to a temporary file and,
// on the last chunk, verifies it and installs it atomically, as Store.Save
// does. Until then no snapshot is visible; a crash leaves at most a
// temporary file, which the next Open removes. A Receiver is not safe for
// concurrent use.
type Receiver struct {
	s   *Store
	tmp string // active in s while the Receiver is open
	f   vfs.File
	// next is the offset the next chunk must start at: the number of
	// bytes written so far.
	next int64
	// headerChecked is set once the file's fixed header has arrived and
	// passed prefixLen.
	headerChecked bool
	done          bool // installed, failed or aborted
}

// NewReceiver starts receiving a snapshot. The caller feeds it chunks with
// Accept until the last one, or calls Abort.
func (s *Store) NewReceiver() (*Receiver, error) {
	tmp := s.newTemp("receive")
	f, err := s.fs.Create(s.path(tmp))
	if err != nil {
		s.releaseTemp(tmp)
		return nil, fmt.Errorf("snap: create %s: %w", tmp, err)
	}
	return &Receiver{s: s, tmp: tmp, f: f}, nil
}

// Offset returns the offset the next chunk must start at. A sender told of
// an ErrChunkOutOfOrder error resumes from here.
func (r *Receiver) Offset() int64 { return r.next }

// Accept writes chunk c. A chunk that does not start at Offset()
// (ErrChunkOutOfOrder: a duplicate or a gap) or is longer than
// ChunkBytesMax (ErrChunkTooLarge) is rejected, and the Receiver stays
// usable. Any other failure aborts the Receiver: an I/O error, a snapshot
// growing past Options.SizeBytesMax, a header that is not a snapshot's.
//
// When c.Done, Accept syncs the file, verifies it in full, renames it to
// its final name and syncs the directory, and returns the installed
// snapshot's Info; the Receiver is then finished. If verification fails
// the error wraps ErrCorrupt, the temporary file is removed, and the
// transfer must start again with a new Receiver.
func (r *Receiver) Accept(c Chunk) (Info, error) {
	if r.done {
		return Info{}, ErrClosed
	}
	if len(c.Data) > ChunkBytesMax {
		return Info{}, fmt.Errorf("%w: chunk at offset %d is %d bytes, at most ChunkBytesMax (%d) are accepted; send smaller chunks", ErrChunkTooLarge, c.Offset, len(c.Data), ChunkBytesMax)
	}
	if c.Offset < r.next {
		return Info{}, fmt.Errorf("%w: duplicate chunk at offset %d: bytes up to %d were already received; send offset %d next", ErrChunkOutOfOrder, c.Offset, r.next, r.next)
	}
	if c.Offset > r.next {
		return Info{}, fmt.Errorf("%w: chunk at offset %d leaves a gap: bytes up to %d were received; send offset %d next", ErrChunkOutOfOrder, c.Offset, r.next, r.next)
	}
	if r.next+int64(len(c.Data)) > r.s.opts.SizeBytesMax {
		return Info{}, r.fail(fmt.Errorf("%w: received snapshot exceeds Options.SizeBytesMax (%d bytes); raise the limit or shrink the state", ErrTooLarge, r.s.opts.SizeBytesMax))
	}
	if _, err := r.f.WriteAt(c.Data, r.next); err != nil {
		return Info{}, r.fail(fmt.Errorf("snap: write %s: %w", r.tmp, err))
	}
	r.next += int64(len(c.Data))
	if !r.headerChecked && r.next >= headerBytes {
		var h [headerBytes]byte
		if err := readFullAt(r.f, h[:], 0); err != nil {
			return Info{}, r.fail(fmt.Errorf("snap: read back %s: %w", r.tmp, err))
		}
		if _, err := prefixLen(h[:]); err != nil {
			return Info{}, r.fail(fmt.Errorf("snap: received snapshot rejected: %w", err))
		}
		r.headerChecked = true
	}
	if !c.Done {
		return Info{}, nil
	}
	return r.install()
}

// install finishes the transfer: sync, close, verify, rename, sync dir.
func (r *Receiver) install() (Info, error) {
	if err := r.f.Sync(); err != nil {
		return Info{}, r.fail(fmt.Errorf("snap: sync %s: %w", r.tmp, err))
	}
	r.done = true
	defer r.s.releaseTemp(r.tmp)
	p := r.s.path(r.tmp)
	if err := r.f.Close(); err != nil {
		r.s.fs.Remove(p)
		return Info{}, fmt.Errorf("snap: close %s: %w", r.tmp, err)
	}
	m, err := verifyFile(r.s.fs, p)
	if err != nil {
		r.s.fs.Remove(p)
		return Info{}, fmt.Errorf("snap: received snapshot (%d bytes) failed verification, request it again: %w", r.next, err)
	}
	info, err := r.s.install(r.tmp, &m)
	if err != nil {
		r.s.fs.Remove(p) // fails harmlessly if the rename happened
	}
	return info, err
}

// fail aborts the Receiver and returns err.
func (r *Receiver) fail(err error) error {
	r.Abort()
	return err
}

// Abort drops the transfer: it closes and removes the temporary file. It
// does nothing once the Receiver is finished.
func (r *Receiver) Abort() error {
	if r.done {
		return nil
	}
	r.done = true
	defer r.s.releaseTemp(r.tmp)
	cerr := r.f.Close()
	if err := r.s.fs.Remove(r.s.path(r.tmp)); err != nil {
		return fmt.Errorf("snap: remove %s (the next Open removes it): %w", r.tmp, err)
	}
	if cerr != nil {
		return fmt.Errorf("snap: close %s: %w", r.tmp, cerr)
	}
	return nil
}

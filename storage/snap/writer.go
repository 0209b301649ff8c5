package snap

import (
	"bufio"
	"fmt"
	"hash/crc32"

	"github.com/synod-io/synod/storage/vfs"
)

// writeBufferBytes is the Writer's buffer between callers and the file.
const writeBufferBytes = 64 << 10

// A Writer streams the data of a new snapshot into a temporary file.
// Write the data, then Commit to install the snapshot, or Abort to drop it.
// Calling Abort after Commit does nothing, so
//
//	w, err := store.Create(m)
//	...
//	defer w.Abort()
//
// is the intended pattern. A Writer is not safe for concurrent use.
type Writer struct {
	s    *Store
	meta Meta
	tmp  string // temporary file name, active in s while the Writer is open
	f    vfs.File
	bw   *bufio.Writer
	// crc is the CRC-32C of every byte handed to bw so far.
	crc uint32
	// fileBytes counts every byte handed to bw so far.
	fileBytes int64
	dataBytes int64
	// err is sticky: after a failed write the Writer only reports it.
	err  error
	done bool // committed or aborted
}

// Create starts a snapshot with metadata m. The caller writes the data to
// the returned Writer and then calls Commit or Abort.
func (s *Store) Create(m Meta) (*Writer, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	tmp := s.newTemp(fileName(m.Index, m.Term))
	f, err := s.fs.Create(s.path(tmp))
	if err != nil {
		s.releaseTemp(tmp)
		return nil, fmt.Errorf("snap: create %s: %w", tmp, err)
	}
	w := &Writer{s: s, meta: m, tmp: tmp, f: f, bw: bufio.NewWriterSize(f, writeBufferBytes)}
	w.write(encodeHeader(&m))
	if w.err != nil {
		err := w.err
		w.Abort()
		return nil, err
	}
	return w, nil
}

// write appends b to the file and the running checksum.
func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	if w.fileBytes+int64(len(b)) > w.s.opts.SizeBytesMax-trailerBytes {
		w.err = fmt.Errorf("%w: the snapshot exceeds Options.SizeBytesMax (%d bytes); raise the limit or shrink the state", ErrTooLarge, w.s.opts.SizeBytesMax)
		return
	}
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("snap: write %s: %w", w.tmp, err)
		return
	}
	w.crc = crc32.Update(w.crc, castagnoli, b)
	w.fileBytes += int64(len(b))
}

// Write appends p to the snapshot's data.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, ErrClosed
	}
	w.write(p)
	if w.err != nil {
		return 0, w.err
	}
	w.dataBytes += int64(len(p))
	return len(p), nil
}

// Commit finishes the file and installs it atomically: trailer, flush,
// fsync, close, rename to the final name, directory sync. On error the
// temporary file is removed and no snapshot is installed, except when only
// the final directory sync fails (see Store.Save).
func (w *Writer) Commit() (Info, error) {
	if w.done {
		return Info{}, ErrClosed
	}
	w.write(encodeTrailer(w.crc, w.dataBytes))
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("snap: write %s: %w", w.tmp, err)
		}
	}
	if w.err == nil {
		// After a failed fsync the file's contents are unknown (the
		// kernel may have dropped the dirty pages), so it is not retried:
		// the temporary file is removed and the save fails.
		if err := w.f.Sync(); err != nil {
			w.err = fmt.Errorf("snap: sync %s: %w", w.tmp, err)
		}
	}
	if w.err != nil {
		err := w.err
		w.Abort()
		return Info{}, err
	}
	w.done = true
	defer w.s.releaseTemp(w.tmp)
	if err := w.f.Close(); err != nil {
		w.s.fs.Remove(w.s.path(w.tmp))
		return Info{}, fmt.Errorf("snap: close %s: %w", w.tmp, err)
	}
	info, err := w.s.install(w.tmp, &w.meta)
	if err != nil {
		w.s.fs.Remove(w.s.path(w.tmp)) // fails harmlessly if the rename happened
	}
	return info, err
}

// Abort drops the snapshot: it closes and removes the temporary file. It
// does nothing after Commit or a previous Abort.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	defer w.s.releaseTemp(w.tmp)
	cerr := w.f.Close()
	if err := w.s.fs.Remove(w.s.path(w.tmp)); err != nil {
		return fmt.Errorf("snap: remove %s (the next Open removes it): %w", w.tmp, err)
	}
	if cerr != nil {
		return fmt.Errorf("snap: close %s: %w", w.tmp, cerr)
	}
	return nil
}

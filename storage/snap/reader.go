package snap

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/synod-io/synod/storage/vfs"
)

// A Reader reads one snapshot: its metadata, checked when it was opened,
// and its data as a stream, checked as it is read. Read returns io.EOF
// only after the whole file's checksum matched; if it does not, Read
// returns an error wrapping ErrCorrupt instead, and the caller must discard
// whatever it built from the data. A Reader is not safe for concurrent use.
type Reader struct {
	f    vfs.File
	name string
	path string // for errors
	meta Meta
	// dataOff is where the data begins; dataBytes its length.
	dataOff   int64
	dataBytes int64
	// pos counts data bytes read so far. Invariant: 0 ≤ pos ≤ dataBytes.
	pos int64
	// crc is the CRC-32C of the file's bytes [0, dataOff+pos).
	crc     uint32
	wantCRC uint32
	// err is sticky: io.EOF after a successful check, or the failure.
	err    error
	closed bool
}

// openReader opens the snapshot file at p and checks its header, metadata
// and trailer.
func openReader(fs vfs.FS, p string) (*Reader, error) {
	f, err := fs.Open(p)
	if err != nil {
		return nil, fmt.Errorf("snap: open %s: %w", p, err)
	}
	r, err := newReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.path = p
	return r, nil
}

func newReader(f vfs.File) (*Reader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("snap: stat: %w", err)
	}
	size := fi.Size()
	if size < minFileBytes {
		return nil, fmt.Errorf("%w: file is %d bytes, shorter than the smallest snapshot (%d bytes): truncated", ErrCorrupt, size, minFileBytes)
	}
	var h [headerBytes]byte
	if err := readFullAt(f, h[:], 0); err != nil {
		return nil, err
	}
	n, err := prefixLen(h[:])
	if err != nil {
		return nil, err
	}
	if int64(n)+trailerBytes > size {
		return nil, fmt.Errorf("%w: file is %d bytes, too short for its %d-byte metadata: truncated", ErrCorrupt, size, n-headerBytes-crcBytes)
	}
	prefix := make([]byte, n)
	if err := readFullAt(f, prefix, 0); err != nil {
		return nil, err
	}
	m, _, err := decodeHeader(prefix)
	if err != nil {
		return nil, err
	}
	var t [trailerBytes]byte
	if err := readFullAt(f, t[:], size-trailerBytes); err != nil {
		return nil, err
	}
	dataBytes, wantCRC, err := decodeTrailer(t[:], size, n)
	if err != nil {
		return nil, err
	}
	return &Reader{
		f:         f,
		meta:      m,
		dataOff:   int64(n),
		dataBytes: dataBytes,
		crc:       crc32.Checksum(prefix, castagnoli),
		wantCRC:   wantCRC,
	}, nil
}

// readFullAt fills b from f at off; a short file is reported as corrupt.
func readFullAt(f vfs.File, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("%w: file ended at %d bytes while reading %d bytes at offset %d: truncated", ErrCorrupt, off+int64(n), len(b), off)
	}
	return fmt.Errorf("snap: read: %w", err)
}

// Name returns the snapshot's file name ("" for a file opened by path).
func (r *Reader) Name() string { return r.name }

// Meta returns the snapshot's metadata. The caller must not modify it.
func (r *Reader) Meta() Meta { return r.meta }

// DataBytes returns the length of the snapshot's data.
func (r *Reader) DataBytes() int64 { return r.dataBytes }

// Read reads the snapshot's data. See Reader for how it reports the
// checksum.
func (r *Reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.pos == r.dataBytes {
		r.err = r.finish()
		return 0, r.err
	}
	if rest := r.dataBytes - r.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := r.f.ReadAt(p, r.dataOff+r.pos)
	r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	r.pos += int64(n)
	if n < len(p) {
		if err == nil || err == io.EOF {
			r.err = fmt.Errorf("%w: %s: file ended at %d bytes, before its %d data bytes: truncated while reading", ErrCorrupt, r.path, r.dataOff+r.pos, r.dataBytes)
		} else {
			r.err = fmt.Errorf("snap: read: %w", err)
		}
		return n, r.err
	}
	return n, nil
}

// finish checks the file checksum once all the data has been read.
func (r *Reader) finish() error {
	crc := crc32.Update(r.crc, castagnoli, binary.LittleEndian.AppendUint64(nil, uint64(r.dataBytes)))
	if crc != r.wantCRC {
		return fmt.Errorf("%w: %s: data checksum mismatch (stored %08x, computed %08x); discard the state read from it", ErrCorrupt, r.path, r.wantCRC, crc)
	}
	return io.EOF
}

// Close closes the file. It does not check the checksum: read to io.EOF
// for that.
func (r *Reader) Close() error {
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	return r.f.Close()
}

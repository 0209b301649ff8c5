package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// On-disk format, version 1. All integers are little-endian.
//
// A segment file is named by the index of its first record, as 16
// lower-case hex digits and ".wal" (0000000000000001.wal), so that sorting
// names sorts segments. It is preallocated with zeros and starts with a
// 32-byte header:
//
//	[0:8)   magic "synodWAL"
//	[8:12)  format version (1)
//	[12:16) zero
//	[16:24) index of the segment's first record (equals the name)
//	[24:28) CRC-32C (Castagnoli) of bytes [0:24)
//	[28:32) zero
//
// Frames follow back to back from offset 32, each 8-byte aligned:
//
//	[0:4)   CRC-32C of bytes [4:24+length) (header fields and payload)
//	[4:8)   payload length
//	[8:16)  record index; the first frame carries the segment's first
//	        index and each later one the previous index plus one
//	[16:18) record type
//	[18:24) zero
//	[24:24+length)  payload
//	then zero padding to the next multiple of 8
//
// The log ends at the first frame position that does not hold a valid
// frame; every byte from there to the end of the file is zero, except in
// the last segment after a crash (a torn write), which Open repairs. A
// record index is never zero, so no valid frame is all zeros.
const (
	segmentHeaderSize = 32
	frameHeaderSize   = 24
	frameAlign        = 8
	formatVersion     = 1
	segmentExt        = ".wal"
)

var (
	segmentMagic = [8]byte{'s', 'y', 'n', 'o', 'd', 'W', 'A', 'L'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// segmentName is the file name of the segment whose first record is first.
func segmentName(first uint64) string { return fmt.Sprintf("%016x%s", first, segmentExt) }

// parseSegmentName returns the first index a segment file name encodes.
func parseSegmentName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(hex) != 16 || strings.ToLower(hex) != hex {
		return 0, false
	}
	first, err := strconv.ParseUint(hex, 16, 64)
	if err != nil || first == 0 {
		return 0, false
	}
	return first, true
}

// frameSize is the size on disk of a frame carrying n payload bytes.
func frameSize(n int) int {
	return frameHeaderSize + (n+frameAlign-1)/frameAlign*frameAlign
}

// appendSegmentHeader appends the header of a segment starting at first.
func appendSegmentHeader(dst []byte, first uint64) []byte {
	var h [segmentHeaderSize]byte
	copy(h[0:8], segmentMagic[:])
	binary.LittleEndian.PutUint32(h[8:12], formatVersion)
	binary.LittleEndian.PutUint64(h[16:24], first)
	binary.LittleEndian.PutUint32(h[24:28], crc32.Checksum(h[0:24], castagnoli))
	return append(dst, h[:]...)
}

// decodeSegmentHeader returns the first index a segment header records, or
// a reason it is invalid.
func decodeSegmentHeader(buf []byte) (first uint64, reason string) {
	if len(buf) < segmentHeaderSize {
		return 0, "segment header truncated"
	}
	h := buf[:segmentHeaderSize]
	switch {
	case !bytes.Equal(h[0:8], segmentMagic[:]):
		return 0, "bad segment magic"
	case binary.LittleEndian.Uint32(h[24:28]) != crc32.Checksum(h[0:24], castagnoli):
		return 0, "segment header checksum mismatch"
	case binary.LittleEndian.Uint32(h[8:12]) != formatVersion:
		return 0, fmt.Sprintf("unknown segment format version %d (this build reads version %d)",
			binary.LittleEndian.Uint32(h[8:12]), formatVersion)
	case !allZero(h[12:16]) || !allZero(h[28:32]):
		return 0, "segment header reserved bytes not zero"
	}
	first = binary.LittleEndian.Uint64(h[16:24])
	if first == 0 {
		return 0, "segment header first index is zero"
	}
	return first, ""
}

// appendFrame appends the frame of one record. The caller has validated
// the record (see Log.validate).
func appendFrame(dst []byte, index uint64, typ uint16, data []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameSize(len(data)))...)
	f := dst[start:]
	binary.LittleEndian.PutUint32(f[4:8], uint32(len(data)))
	binary.LittleEndian.PutUint64(f[8:16], index)
	binary.LittleEndian.PutUint16(f[16:18], typ)
	copy(f[frameHeaderSize:], data)
	binary.LittleEndian.PutUint32(f[0:4], crc32.Checksum(f[4:frameHeaderSize+len(data)], castagnoli))
	return dst
}

// decodeFrame decodes the frame at buf[off:], which must carry index want
// and at most dataMax payload bytes. It returns the record and the frame's
// size, or a reason the bytes there are not a valid frame. data aliases buf.
func decodeFrame(buf []byte, off int, want uint64, dataMax int) (typ uint16, data []byte, size int, reason string) {
	if len(buf)-off < frameHeaderSize {
		return 0, nil, 0, "frame header truncated"
	}
	h := buf[off : off+frameHeaderSize]
	n := binary.LittleEndian.Uint32(h[4:8])
	if uint64(n) > uint64(dataMax) {
		return 0, nil, 0, fmt.Sprintf("frame length %d exceeds the record limit %d", n, dataMax)
	}
	size = frameSize(int(n))
	if size > len(buf)-off {
		return 0, nil, 0, fmt.Sprintf("frame of %d bytes extends past the end of the segment", size)
	}
	f := buf[off : off+size]
	if binary.LittleEndian.Uint32(f[0:4]) != crc32.Checksum(f[4:frameHeaderSize+int(n)], castagnoli) {
		return 0, nil, 0, "frame checksum mismatch"
	}
	if got := binary.LittleEndian.Uint64(f[8:16]); got != want {
		return 0, nil, 0, fmt.Sprintf("frame has index %d, want %d", got, want)
	}
	if !allZero(f[18:24]) || !allZero(f[frameHeaderSize+int(n):]) {
		return 0, nil, 0, "frame reserved or padding bytes not zero"
	}
	return binary.LittleEndian.Uint16(f[16:18]), f[frameHeaderSize : frameHeaderSize+int(n)], size, ""
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// tailKind says how a segment's records end.
type tailKind uint8

const (
	// tailClean: every byte after the last record is zero.
	tailClean tailKind = iota
	// tailTorn: the bytes after the last record are what a write cut
	// short by a crash leaves (one partial frame, then zeros). Legal only
	// at the end of the last segment, where Open cuts them off.
	tailTorn
	// tailCorrupt: anything else.
	tailCorrupt
)

// scanResult describes a decoded segment image.
type scanResult struct {
	first  uint64 // index of the segment's first record (from its header)
	last   uint64 // index of its last valid record; first-1 if none
	end    int    // offset just past the last valid record
	tail   tailKind
	reason string // why the bytes at end are not a frame, unless tail is clean
}

// scanSegment decodes a whole segment image (a short image reads as if
// padded with zeros), calling fn for each valid record in order. It
// validates every frame it reports and never reports a frame past an
// invalid one. A non-empty reason with a zero result means the header
// itself is invalid. fn's data aliases buf. An error from fn stops the
// scan and is returned.
func scanSegment(buf []byte, dataMax int, fn func(off int, index uint64, typ uint16, data []byte) error) (scanResult, error) {
	first, reason := decodeSegmentHeader(buf)
	if reason != "" {
		return scanResult{reason: reason, tail: tailCorrupt}, nil
	}
	r := scanResult{first: first, last: first - 1, end: segmentHeaderSize}
	for {
		if r.end == len(buf) {
			return r, nil
		}
		typ, data, size, why := decodeFrame(buf, r.end, r.last+1, dataMax)
		if why != "" {
			r.tail, r.reason = classifyTail(buf, r.end, r.last+1, dataMax), why
			if r.tail == tailClean {
				r.reason = ""
			}
			return r, nil
		}
		if fn != nil {
			if err := fn(r.end, r.last+1, typ, data); err != nil {
				return r, err
			}
		}
		r.end += size
		r.last++
	}
}

// classifyTail decides what the bytes from off on are, given that they do
// not start with a valid frame carrying index want.
//
// A crash mid-write leaves a prefix of the bytes written since the last
// fsync followed by the zeros of preallocated (or re-zeroed) space. So a
// torn tail is: a partial frame at off, and zeros after the extent its
// header claims (or after its header, if the claimed length is
// impossible), with no valid later frame anywhere in that extent. Any
// nonzero byte beyond, or a valid frame of a later index inside it (whose
// predecessor must then have been complete), means data that was written
// after a damaged frame: corruption, not a torn write.
func classifyTail(buf []byte, off int, want uint64, dataMax int) tailKind {
	rest := buf[off:]
	if allZero(rest) {
		return tailClean
	}
	extent := min(frameHeaderSize, len(rest))
	if len(rest) >= 8 {
		n := binary.LittleEndian.Uint32(rest[4:8])
		if uint64(n) <= uint64(dataMax) && frameSize(int(n)) <= len(rest) {
			extent = frameSize(int(n))
		}
	}
	if !allZero(rest[extent:]) {
		return tailCorrupt
	}
	// Look for a complete later frame inside the claimed extent: a damaged
	// length may have swallowed good records. Frames are aligned, and a
	// frame at offset p inside the extent carries an index of at most
	// want + p/frameHeaderSize.
	for p := frameAlign; p+frameHeaderSize <= extent; p += frameAlign {
		idx := binary.LittleEndian.Uint64(rest[p+8 : p+16])
		if idx <= want || idx > want+uint64(p/frameHeaderSize) {
			continue
		}
		if _, _, _, why := decodeFrame(rest[:extent], p, idx, dataMax); why == "" {
			return tailCorrupt
		}
	}
	return tailTorn
}

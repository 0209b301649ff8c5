package wal

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// FuzzDecodeSegment feeds arbitrary segment images to the decoder used by
// Open and Replay. It must never panic, and every record it reports must
// be a frame whose checksum verifies, at increasing offsets and indexes
// inside the image. The seed corpus is in testdata/fuzz/FuzzDecodeSegment.
func FuzzDecodeSegment(f *testing.F) {
	f.Add(appendSegmentHeader(nil, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		const dataMax = 1024
		prevEnd, n := segmentHeaderSize, 0
		var first uint64
		res, err := scanSegment(data, dataMax, func(off int, index uint64, typ uint16, d []byte) error {
			if n == 0 {
				first = index
			}
			if off < prevEnd || index != first+uint64(n) {
				t.Fatalf("record %d at offset %d out of order (previous end %d)", index, off, prevEnd)
			}
			size := frameSize(len(d))
			if len(d) > dataMax || off+size > len(data) {
				t.Fatalf("record of %d bytes at %d exceeds bounds", len(d), off)
			}
			frame := data[off : off+size]
			if got, want := binary.LittleEndian.Uint32(frame), crc32.Checksum(frame[4:frameHeaderSize+len(d)], castagnoli); got != want {
				t.Fatalf("record %d reported with a bad checksum", index)
			}
			if !bytes.Equal(frame, appendFrame(nil, index, typ, d)) {
				t.Fatalf("record %d does not re-encode to its frame", index)
			}
			prevEnd, n = off+size, n+1
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.first == 0 {
			if n > 0 || res.tail != tailCorrupt {
				t.Fatalf("invalid header but %d records, tail %d", n, res.tail)
			}
			return
		}
		if n > 0 && first != res.first {
			t.Fatalf("first record %d, header says %d", first, res.first)
		}
		if res.last != res.first-1+uint64(n) || (n > 0 && res.end != prevEnd) || res.end > len(data) {
			t.Fatalf("result %+v inconsistent with %d records ending at %d", res, n, prevEnd)
		}
		if res.tail == tailClean && !allZero(data[res.end:]) {
			t.Fatalf("clean tail with nonzero bytes after %d", res.end)
		}
	})
}

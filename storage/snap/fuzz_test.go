package snap

import (
	"bytes"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// fuzzSeeds are valid prefixes (header, metadata, metaCRC) and near misses.
func fuzzSeeds() [][]byte {
	valid := []Meta{
		{},
		{Index: 1, Term: 1, Voters: []consensus.NodeID{1}},
		{Index: 1 << 40, Term: 7, Voters: []consensus.NodeID{3, 1, 2}, Protocol: []byte("raft:conf")},
		{Index: ^uint64(0), Term: ^uint64(0), Voters: []consensus.NodeID{^consensus.NodeID(0)}, Protocol: make([]byte, 300)},
	}
	var seeds [][]byte
	for i := range valid {
		b := encodeHeader(&valid[i])
		seeds = append(seeds, b, b[:len(b)-1], b[:headerBytes], append(bytes.Clone(b), "trailing data"...))
		seeds = append(seeds, b[headerBytes:len(b)-crcBytes]) // a bare metadata section, for decodeMeta
	}
	return append(seeds, nil, []byte(magic), []byte("SYNODSNP\x02\x00\x00\x00\x18\x00\x00\x00"))
}

// FuzzDecodeHeader checks that decoding arbitrary bytes as a snapshot
// prefix, or as a bare metadata section, never panics, and that whatever
// decodes re-encodes to exactly the bytes it came from.
func FuzzDecodeHeader(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, n, err := decodeHeader(b); err == nil {
			if n > len(b) {
				t.Fatalf("prefix length %d beyond %d bytes", n, len(b))
			}
			if enc := encodeHeader(&m); !bytes.Equal(enc, b[:n]) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", enc, b[:n])
			}
		}
		// The metadata parser behind the checksum, which random bytes
		// rarely reach through decodeHeader.
		if m, err := decodeMeta(b); err == nil {
			enc := encodeHeader(&m)
			if meta := enc[headerBytes : len(enc)-crcBytes]; !bytes.Equal(meta, b) {
				t.Fatalf("metadata re-encoding differs:\n got %x\nwant %x", meta, b)
			}
		}
	})
}

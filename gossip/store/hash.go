package store

import (
	"encoding/binary"
	"hash/crc32"
)

// The Merkle tree needs a 64-bit hash that is not linear: its leaves add up
// entry digests, and its interior nodes hash their children, so a hash whose
// differences cancel in structured ways (a bare CRC: crc(a)⊕crc(b) depends
// only on a⊕b for inputs of one length) would let two different leaves look
// equal whenever their entries differ by the same bit pattern. The pure
// packages may use only hash/crc32 from the standard library, so hash64
// computes two CRCs with different polynomials (Castagnoli and IEEE), which
// together tell apart any two inputs of one length that differ within a
// window of fewer than 64 bits and collide with probability about 2^-64
// otherwise, and passes the pair through a bijective xorshift-multiply
// finalizer (the multipliers of MurmurHash3's 64-bit finalizer), so that
// the outputs add and combine like random values.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// hasher accumulates the two CRCs of a byte stream.
type hasher struct{ c, i uint32 }

func (h *hasher) write(p []byte) {
	h.c = crc32.Update(h.c, castagnoli, p)
	h.i = crc32.Update(h.i, crc32.IEEETable, p)
}

func (h *hasher) writeString(s string) {
	// crc32.Update takes a []byte; a key is at most KeyBytesMaxLimit long,
	// so hash it through a stack buffer in chunks rather than allocate.
	var buf [256]byte
	for len(s) > 0 {
		n := copy(buf[:], s)
		h.write(buf[:n])
		s = s[n:]
	}
}

func (h *hasher) sum() uint64 { return mix64(uint64(h.c)<<32 | uint64(h.i)) }

// mix64 is a bijection on 64-bit values in which every input bit affects
// every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// keyHash places a key in the tree: its top bits name the leaf.
func keyHash(key string) uint64 {
	var h hasher
	h.writeString(key)
	return h.sum()
}

// digest is an entry's contribution to its leaf's hash. It covers
// everything that distinguishes two versions of a key, the value
// included, so that two replicas that somehow hold different values under
// one version (a node that lost its state and reused a timestamp) still
// see a difference and converge by the full order (see Entry.Compare).
func digest(e *Entry) uint64 {
	var hdr [2*binary.MaxVarintLen64 + 2*binary.MaxVarintLen64 + 8]byte
	b := binary.AppendUvarint(hdr[:0], uint64(len(e.Key)))
	b = binary.AppendUvarint(b, uint64(len(e.Value)))
	b = binary.AppendUvarint(b, e.TS.WallMs)
	b = binary.AppendUvarint(b, uint64(e.TS.Logical))
	b = binary.AppendUvarint(b, uint64(e.Origin))
	if e.Tombstone {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	var h hasher
	h.write(b)
	h.writeString(e.Key)
	h.write(e.Value)
	return h.sum()
}

// nodeHash is an interior node's hash: the hash of its children's hashes,
// in order.
func nodeHash(children []uint64) uint64 {
	var buf [fanout * 8]byte
	for i, c := range children {
		binary.LittleEndian.PutUint64(buf[8*i:], c)
	}
	var h hasher
	h.write(buf[:8*len(children)])
	return h.sum()
}

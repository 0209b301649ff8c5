package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The snapshot encoding, version 1, with the primitives of the request
// encoding (codec.go):
//
//	snapshot = magic:"SNKV" version:u8(=1) payload crc:u32le   CRC-32C of all bytes before it
//	payload  = applied:uvarint revision:varint sessionsMax:uvarint
//	           n:uvarint kv×n              live keys, strictly ascending
//	           m:uvarint session×m         least to most recently used
//	kv       = key:bytes value:bytes createRevision:varint modRevision:varint version:varint
//	session  = clientID:uvarint seq:uvarint index:uvarint result
//	result   = revision:varint flags:u8 count:varint deleted:varint
//	           n:uvarint kv×n  n:uvarint prevKV×n  n:uvarint result×n
//	           flags: bit 0 succeeded, bit 1 more; nested results have no results
//
// The encoding is canonical: equal states give equal bytes.
const (
	snapshotMagic   = "SNKV"
	snapshotVersion = 1
)

const (
	resultSucceeded = 1 << 0
	resultMore      = 1 << 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptSnapshot is matched (with errors.Is) by every error Restore
// returns for data that is not an intact snapshot.
var ErrCorruptSnapshot = errors.New("kv: corrupt snapshot")

// Snapshot returns the store's whole state (data, revision, applied index
// and session table) in a versioned encoding protected by a CRC-32C
// checksum. Stores with equal state return equal bytes.
func (s *Store) Snapshot() []byte {
	e := encoder{buf: make([]byte, 0, 64+s.approxBytes())}
	e.rawBytes([]byte(snapshotMagic))
	e.u8(snapshotVersion)
	s.encodePayload(&e)
	e.u32(crc32.Checksum(e.buf, castagnoli))
	return e.finish()
}

// Hash returns a digest of the store's whole state: the same state that
// Snapshot encodes (data, revision, applied index, sessions). Replicas that
// have applied the same entries have equal hashes; compare replicas at the
// same applied index. It computes without materializing the snapshot.
func (s *Store) Hash() uint64 {
	// Two CRCs with different polynomials over the snapshot payload: fast
	// (hardware CRC-32C) and 64 bits wide, which is plenty to tell diverged
	// replicas apart (it is not meant to resist an adversary).
	var c, ieee uint32
	e := encoder{buf: make([]byte, 0, flushBytes+1024)}
	e.flush = func(b []byte) {
		c = crc32.Update(c, castagnoli, b)
		ieee = crc32.Update(ieee, crc32.IEEETable, b)
	}
	s.encodePayload(&e)
	e.flush(e.buf)
	return uint64(c)<<32 | uint64(ieee)
}

func (s *Store) approxBytes() int {
	n := 0
	s.idx.all(func(e *entry) { n += len(e.kv.Key) + len(e.kv.Value) + 16 })
	return n + 64*s.sessions.len()
}

func (s *Store) encodePayload(e *encoder) {
	e.uvarint(s.applied)
	e.varint(s.rev)
	e.uvarint(uint64(s.sessions.max))
	e.uvarint(uint64(s.idx.len()))
	s.idx.all(func(en *entry) { encodeKV(e, &en.kv) })
	e.uvarint(uint64(s.sessions.len()))
	s.sessions.all(func(ss *session) {
		e.uvarint(ss.clientID)
		e.uvarint(ss.seq)
		e.uvarint(ss.index)
		encodeResult(e, &ss.result)
	})
}

func encodeKV(e *encoder, kv *KeyValue) {
	e.bytes(kv.Key)
	e.bytes(kv.Value)
	e.varint(kv.CreateRevision)
	e.varint(kv.ModRevision)
	e.varint(kv.Version)
}

func encodeResult(e *encoder, r *Result) {
	e.varint(r.Revision)
	var f byte
	if r.Succeeded {
		f |= resultSucceeded
	}
	if r.More {
		f |= resultMore
	}
	e.u8(f)
	e.varint(r.Count)
	e.varint(r.Deleted)
	e.uvarint(uint64(len(r.KVs)))
	for i := range r.KVs {
		encodeKV(e, &r.KVs[i])
	}
	e.uvarint(uint64(len(r.PrevKVs)))
	for i := range r.PrevKVs {
		encodeKV(e, &r.PrevKVs[i])
	}
	e.uvarint(uint64(len(r.Responses)))
	for i := range r.Responses {
		encodeResult(e, &r.Responses[i])
	}
}

// Restore rebuilds a store from a Snapshot. It verifies the checksum first
// and then every invariant of the state (key order, revision metadata,
// session table), and returns an error matching ErrCorruptSnapshot if
// anything is wrong; it never panics on bad input.
func Restore(data []byte) (*Store, error) {
	const minLen = len(snapshotMagic) + 1 + 4
	if len(data) < minLen {
		return nil, fmt.Errorf("%w: %d bytes is too short to be a snapshot", ErrCorruptSnapshot, len(data))
	}
	body, sum := data[:len(data)-4], data[len(data)-4:]
	want := binary.LittleEndian.Uint32(sum)
	if got := crc32.Checksum(body, castagnoli); got != want {
		return nil, fmt.Errorf("%w: checksum mismatch (stored %#08x, computed %#08x)", ErrCorruptSnapshot, want, got)
	}
	if !bytes.HasPrefix(body, []byte(snapshotMagic)) {
		return nil, fmt.Errorf("%w: bad magic %q", ErrCorruptSnapshot, body[:len(snapshotMagic)])
	}
	if v := body[len(snapshotMagic)]; v != snapshotVersion {
		return nil, fmt.Errorf("%w: unknown snapshot version %d (this build knows %d)", ErrCorruptSnapshot, v, snapshotVersion)
	}
	d := decoder{buf: body, off: len(snapshotMagic) + 1}
	s, err := decodePayload(&d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	return s, nil
}

// kvMinBytes is the smallest encoding of a kv: two empty byte strings and
// three one-byte varints.
const kvMinBytes = 5

func decodePayload(d *decoder) (*Store, error) {
	s := New()
	s.applied = d.uvarint()
	s.rev = d.varint()
	sessionsMax := d.uvarint()
	if d.err == nil && s.rev < 1 {
		d.fail("revision %d < 1", s.rev)
	}
	if d.err == nil && (sessionsMax < 1 || sessionsMax > 1<<30) {
		d.fail("session table bound %d out of range", sessionsMax)
	}
	s.sessions.max = int(sessionsMax)

	n := d.count(kvMinBytes)
	var prev []byte
	for i := range n {
		off := d.off
		var kv KeyValue
		decodeKV(d, &kv)
		if d.err != nil {
			break
		}
		switch {
		case len(kv.Key) == 0:
			d.failAt(off, "key %d is empty", i)
		case i > 0 && bytes.Compare(prev, kv.Key) >= 0:
			d.failAt(off, "key %q not above the previous key %q", kv.Key, prev)
		case kv.CreateRevision < 2 || kv.CreateRevision > kv.ModRevision || kv.ModRevision > s.rev:
			d.failAt(off, "key %q: revisions create %d, mod %d do not fit store revision %d",
				kv.Key, kv.CreateRevision, kv.ModRevision, s.rev)
		case kv.Version < 1 || kv.Version > kv.ModRevision-kv.CreateRevision+1:
			d.failAt(off, "key %q: version %d impossible between revisions %d and %d",
				kv.Key, kv.Version, kv.CreateRevision, kv.ModRevision)
		}
		if d.err != nil {
			break
		}
		prev = kv.Key
		e := &entry{kv: kv}
		s.kvs[string(kv.Key)] = e
		s.idx.appendSorted(e)
	}

	m := d.count(3 + 5) // three uvarints and an empty result
	if d.err == nil && m > s.sessions.max {
		d.fail("%d sessions exceed the bound %d", m, s.sessions.max)
	}
	var lastIndex uint64
	for i := 0; i < m && d.err == nil; i++ {
		off := d.off
		id, seq, index := d.uvarint(), d.uvarint(), d.uvarint()
		var res Result
		decodeResult(d, &res, 0)
		if d.err != nil {
			break
		}
		switch {
		case id == 0:
			d.failAt(off, "session with client ID 0")
		case s.sessions.get(id) != nil:
			d.failAt(off, "duplicate session for client %d", id)
		case seq == 0:
			d.failAt(off, "client %d: sequence number 0", id)
		case index > s.applied || index == 0 || (i > 0 && index <= lastIndex):
			d.failAt(off, "client %d: index %d out of order (previous %d, applied %d)", id, index, lastIndex, s.applied)
		}
		if d.err != nil {
			break
		}
		lastIndex = index
		s.sessions.record(id, seq, index, res)
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

func decodeKV(d *decoder, kv *KeyValue) {
	kv.Key = d.bytes()
	kv.Value = d.bytes()
	kv.CreateRevision = d.varint()
	kv.ModRevision = d.varint()
	kv.Version = d.varint()
}

func decodeResult(d *decoder, r *Result, depth int) {
	r.Revision = d.varint()
	f := d.flags(resultSucceeded | resultMore)
	r.Succeeded, r.More = f&resultSucceeded != 0, f&resultMore != 0
	r.Count = d.varint()
	r.Deleted = d.varint()
	r.KVs = decodeKVs(d)
	r.PrevKVs = decodeKVs(d)
	off := d.off
	n := d.count(5)
	if n > 0 && depth > 0 {
		d.failAt(off, "nested result has %d results", n)
		return
	}
	if n > 0 && d.err == nil {
		r.Responses = make([]Result, n)
		for i := range r.Responses {
			decodeResult(d, &r.Responses[i], depth+1)
		}
	}
}

func decodeKVs(d *decoder) []KeyValue {
	n := d.count(kvMinBytes)
	if n == 0 || d.err != nil {
		return nil
	}
	kvs := make([]KeyValue, n)
	for i := range kvs {
		decodeKV(d, &kvs[i])
	}
	return kvs
}

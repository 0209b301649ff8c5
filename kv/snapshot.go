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
	if err := encodePayload(&e, s.backend(), nil); err != nil {
		panic(err) // the in-memory store's count is its map's length
	}
	e.u32(crc32.Checksum(e.buf, castagnoli))
	return e.finish()
}

// WriteSnapshot writes the state in v as a snapshot, the same bytes that
// Store.Snapshot returns for an equal state, calling write with successive
// pieces of at most about 32 KiB (write must not retain them). It holds no
// more than one piece in memory, so v may be far larger than memory: a
// durable store passes a consistent point-in-time view. It returns write's
// first error, or an error if v's Len disagrees with the keys it ascends.
func WriteSnapshot(v View, write func([]byte) error) error {
	var sum uint32
	var werr error
	e := encoder{buf: make([]byte, 0, flushBytes+1024)}
	e.flush = func(b []byte) {
		sum = crc32.Update(sum, castagnoli, b)
		if werr == nil {
			werr = write(b)
		}
	}
	e.rawBytes([]byte(snapshotMagic))
	e.u8(snapshotVersion)
	if err := encodePayload(&e, v, func() bool { return werr == nil }); err != nil {
		return err
	}
	e.flush(e.buf)
	if werr != nil {
		return werr
	}
	return write(binary.LittleEndian.AppendUint32(nil, sum))
}

// Hash returns a digest of the store's whole state: the same state that
// Snapshot encodes (data, revision, applied index, sessions). Replicas that
// have applied the same entries have equal hashes; compare replicas at the
// same applied index. It computes without materializing the snapshot.
func (s *Store) Hash() uint64 {
	h, err := Hash(s.backend())
	if err != nil {
		panic(err) // the in-memory store's count is its map's length
	}
	return h
}

// Hash returns the digest of the state in v that Store.Hash returns for an
// equal in-memory state, or an error if v's Len or Sessions disagrees with
// what it ascends.
func Hash(v View) (uint64, error) {
	// Two CRCs with different polynomials over the snapshot payload: fast
	// (hardware CRC-32C) and 64 bits wide, which is plenty to tell diverged
	// replicas apart (it is not meant to resist an adversary).
	var c, ieee uint32
	e := encoder{buf: make([]byte, 0, flushBytes+1024)}
	e.flush = func(b []byte) {
		c = crc32.Update(c, castagnoli, b)
		ieee = crc32.Update(ieee, crc32.IEEETable, b)
	}
	if err := encodePayload(&e, v, nil); err != nil {
		return 0, err
	}
	e.flush(e.buf)
	return uint64(c)<<32 | uint64(ieee), nil
}

func (s *Store) approxBytes() int {
	n := 0
	s.idx.all(func(e *entry) { n += len(e.kv.Key) + len(e.kv.Value) + 16 })
	return n + 64*s.sessions.len()
}

// encodePayload encodes the state in v. If ok is not nil, it stops early
// (with a truncated encoding and no error) once ok returns false. It
// fails if v's counts disagree with what it ascends.
func encodePayload(e *encoder, v View, ok func() bool) error {
	goOn := func() bool { return ok == nil || ok() }
	m := v.Meta()
	e.uvarint(m.Applied)
	e.varint(m.Revision)
	e.uvarint(uint64(m.SessionsMax))
	n := v.Len()
	e.uvarint(uint64(n))
	seen := 0
	v.Ascend(nil, nil, func(kv KeyValue) bool {
		seen++
		if seen > n {
			return false
		}
		encodeKV(e, &kv)
		return goOn()
	})
	if !goOn() {
		return nil
	}
	if seen != n {
		return fmt.Errorf("kv: state counts %d keys but holds %s%d", n, moreThan(seen > n), min(seen, n))
	}
	n = v.Sessions()
	e.uvarint(uint64(n))
	seen = 0
	v.AscendSessions(func(ss SessionRecord) bool {
		seen++
		if seen > n {
			return false
		}
		encodeSession(e, &ss)
		return goOn()
	})
	if goOn() && seen != n {
		return fmt.Errorf("kv: state counts %d sessions but holds %s%d", n, moreThan(seen > n), min(seen, n))
	}
	return nil
}

func moreThan(b bool) string {
	if b {
		return "more than "
	}
	return ""
}

func encodeSession(e *encoder, ss *SessionRecord) {
	e.uvarint(ss.ClientID)
	e.uvarint(ss.Seq)
	e.uvarint(ss.Index)
	encodeResult(e, &ss.Result)
}

// AppendSession appends s's encoding (the snapshot's, see snapshot.go) to
// buf, for a durable store to keep its session table in.
func AppendSession(buf []byte, s *SessionRecord) []byte {
	e := encoder{buf: buf}
	encodeSession(&e, s)
	return e.buf
}

// DecodeSession decodes an AppendSession encoding and checks the record's
// invariants; its error matches ErrCorruptSnapshot. The record shares no
// memory with data.
func DecodeSession(data []byte) (SessionRecord, error) {
	d := decoder{buf: data}
	var s SessionRecord
	s.ClientID, s.Seq, s.Index = d.uvarint(), d.uvarint(), d.uvarint()
	decodeResult(&d, &s.Result, 0)
	d.end()
	if d.err == nil && (s.ClientID == 0 || s.Seq == 0 || s.Index == 0) {
		d.fail("session (client %d, seq %d, index %d) has a zero field", s.ClientID, s.Seq, s.Index)
	}
	if d.err != nil {
		return SessionRecord{}, fmt.Errorf("%w: session record: %w", ErrCorruptSnapshot, d.err)
	}
	return s, nil
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
// anything is wrong; it never panics on bad input. The store has the
// default Options: a snapshot holds state, not settings.
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
	d := decoder{buf: body}
	s := New()
	if err := decodeSnapshot(&d, s.backend()); err != nil {
		return nil, err
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptSnapshot, d.err)
	}
	return s, nil
}

// ReadSnapshot decodes a snapshot (from WriteSnapshot or Store.Snapshot)
// into b, which must hold an empty state, checking every invariant that
// Restore checks. next returns successive pieces of the snapshot and an
// empty piece at the end; the decoder copies what it keeps, and holds only
// a piece and one record in memory.
//
// The checksum covers the whole snapshot and is checked last, so b fills
// while the snapshot is read: if ReadSnapshot returns an error, b holds
// garbage and must be discarded. Errors from next are returned wrapped;
// every other error matches ErrCorruptSnapshot.
func ReadSnapshot(next func() ([]byte, error), b Backend) error {
	d := decoder{more: next}
	if err := decodeSnapshot(&d, b); err != nil {
		return err
	}
	computed := d.checksum()
	stored := d.u32()
	if d.err == nil && stored != computed {
		d.fail("checksum mismatch (stored %#08x, computed %#08x)", stored, computed)
	}
	d.end()
	return d.wrapErr()
}

// wrapErr returns d's error wrapped in ErrCorruptSnapshot unless it came
// from reading.
func (d *decoder) wrapErr() error {
	if d.err == nil || d.readErr {
		return d.err
	}
	return fmt.Errorf("%w: %w", ErrCorruptSnapshot, d.err)
}

// decodeSnapshot decodes the magic, version and payload into b.
func decodeSnapshot(d *decoder, b Backend) error {
	d.fill(len(snapshotMagic) + 1)
	if d.remaining() < len(snapshotMagic)+1 {
		if d.err == nil {
			d.fail("%d bytes is too short to be a snapshot", d.remaining())
		}
		return d.wrapErr()
	}
	if got := d.buf[d.off : d.off+len(snapshotMagic)]; !bytes.Equal(got, []byte(snapshotMagic)) {
		d.fail("bad magic %q", got)
		return d.wrapErr()
	}
	d.off += len(snapshotMagic)
	if v := d.u8(); v != snapshotVersion {
		d.fail("unknown snapshot version %d (this build knows %d)", v, snapshotVersion)
		return d.wrapErr()
	}
	decodePayload(d, b)
	return d.wrapErr()
}

// kvMinBytes is the smallest encoding of a kv: two empty byte strings and
// three one-byte varints.
const kvMinBytes = 5

// decodePayload decodes a snapshot payload into b, which holds an empty
// state, checking the state's invariants; errors are left in d.err.
func decodePayload(d *decoder, b Backend) {
	var m Meta
	m.Applied = d.uvarint()
	m.Revision = d.varint()
	sessionsMax := d.uvarint()
	if d.err == nil && m.Revision < 1 {
		d.fail("revision %d < 1", m.Revision)
	}
	if d.err == nil && (sessionsMax < 1 || sessionsMax > 1<<30) {
		d.fail("session table bound %d out of range", sessionsMax)
	}
	if d.err != nil {
		return
	}
	m.SessionsMax = int(sessionsMax)
	b.SetMeta(m)

	n := d.count(kvMinBytes)
	var prev []byte
	for i := range n {
		off := d.pos()
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
		case kv.CreateRevision < 2 || kv.CreateRevision > kv.ModRevision || kv.ModRevision > m.Revision:
			d.failAt(off, "key %q: revisions create %d, mod %d do not fit store revision %d",
				kv.Key, kv.CreateRevision, kv.ModRevision, m.Revision)
		case kv.Version < 1 || kv.Version > kv.ModRevision-kv.CreateRevision+1:
			d.failAt(off, "key %q: version %d impossible between revisions %d and %d",
				kv.Key, kv.Version, kv.CreateRevision, kv.ModRevision)
		}
		if d.err != nil {
			break
		}
		prev = kv.Key
		b.Put(kv)
	}

	off := d.pos()
	cnt := d.count(3 + 5) // three uvarints and an empty result
	if d.err == nil && cnt > m.SessionsMax {
		d.failAt(off, "%d sessions exceed the bound %d", cnt, m.SessionsMax)
	}
	var lastIndex uint64
	for i := 0; i < cnt && d.err == nil; i++ {
		off := d.pos()
		var ss SessionRecord
		ss.ClientID, ss.Seq, ss.Index = d.uvarint(), d.uvarint(), d.uvarint()
		decodeResult(d, &ss.Result, 0)
		if d.err != nil {
			break
		}
		_, dup := b.Session(ss.ClientID)
		switch {
		case ss.ClientID == 0:
			d.failAt(off, "session with client ID 0")
		case dup:
			d.failAt(off, "duplicate session for client %d", ss.ClientID)
		case ss.Seq == 0:
			d.failAt(off, "client %d: sequence number 0", ss.ClientID)
		case ss.Index > m.Applied || ss.Index == 0 || (i > 0 && ss.Index <= lastIndex):
			d.failAt(off, "client %d: index %d out of order (previous %d, applied %d)", ss.ClientID, ss.Index, lastIndex, m.Applied)
		}
		if d.err != nil {
			break
		}
		lastIndex = ss.Index
		b.PutSession(ss)
	}
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
	off := d.pos()
	n := d.count(5)
	if n > 0 && depth > 0 {
		d.failAt(off, "nested result has %d results", n)
		return
	}
	for i := 0; i < n && d.err == nil; i++ {
		var sub Result
		decodeResult(d, &sub, depth+1)
		r.Responses = append(r.Responses, sub)
	}
}

func decodeKVs(d *decoder) []KeyValue {
	n := d.count(kvMinBytes)
	if n == 0 || d.err != nil {
		return nil
	}
	// Grow as records arrive: a streamed count is not checked against the
	// input's length.
	kvs := make([]KeyValue, 0, min(n, 64))
	for range n {
		var kv KeyValue
		decodeKV(d, &kv)
		if d.err != nil {
			return nil
		}
		kvs = append(kvs, kv)
	}
	return kvs
}

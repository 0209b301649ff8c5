package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
)

// The request encoding, version 1. Integers are varints (encoding/binary:
// uvarint for counts and lengths, zig-zag varint for int64s) and must be
// minimal; byte strings are a uvarint length and the bytes.
//
//	request  = version:u8(=1) op
//	op       = tag:u8 body        1 range, 2 put, 3 delete range, 4 txn
//	range    = key:bytes end:bytes limit:varint flags:u8   bit 0 countOnly, bit 1 keysOnly
//	put      = key:bytes value:bytes flags:u8              bit 0 prevKV
//	delete   = key:bytes end:bytes flags:u8                bit 0 prevKV
//	txn      = compare n:uvarint op×n m:uvarint op×m       success, then failure; no txn ops
//	compare  = key:bytes target:u8 result:u8 operand       target, result as in etcd
//	operand  = value:bytes if target is value, else varint (version, create or mod revision)
//
// The decoder is strict, so that decoding and re-encoding give back the same
// bytes: unknown versions, tags and flag bits, non-minimal varints, lengths
// past the end and trailing bytes are all errors. A new format gets a new
// version byte; decoders keep accepting the old ones.
const requestVersion = 1

const (
	tagRange  = 1
	tagPut    = 2
	tagDelete = 3
	tagTxn    = 4
)

const (
	flagCountOnly = 1 << 0
	flagKeysOnly  = 1 << 1
	flagPrevKV    = 1 << 0
)

// ErrMalformedRequest is matched (with errors.Is) by the errors
// DecodeRequest returns for bytes that are not a request encoding.
var ErrMalformedRequest = errors.New("kv: malformed request encoding")

// Encode returns r in the binary request encoding. It never fails: an
// invalid request (see Validate) encodes to bytes that DecodeRequest
// rejects. Operand fields of Compare that don't match its Target are not
// encoded.
func (r *Request) Encode() []byte {
	e := encoder{buf: make([]byte, 0, 16+r.sizeHint())}
	e.u8(requestVersion)
	r.encode(&e, 0)
	return e.buf
}

func (r *Request) sizeHint() int {
	switch {
	case r.Put != nil:
		return len(r.Put.Key) + len(r.Put.Value)
	case r.Range != nil:
		return len(r.Range.Key) + len(r.Range.RangeEnd)
	case r.DeleteRange != nil:
		return len(r.DeleteRange.Key) + len(r.DeleteRange.RangeEnd)
	}
	return 64
}

func (r *Request) encode(e *encoder, depth int) {
	if r.ops() != 1 {
		e.u8(0) // no such tag: DecodeRequest rejects it
		return
	}
	switch {
	case r.Range != nil:
		q := r.Range
		e.u8(tagRange)
		e.bytes(q.Key)
		e.bytes(q.RangeEnd)
		e.varint(q.Limit)
		var f byte
		if q.CountOnly {
			f |= flagCountOnly
		}
		if q.KeysOnly {
			f |= flagKeysOnly
		}
		e.u8(f)
	case r.Put != nil:
		q := r.Put
		e.u8(tagPut)
		e.bytes(q.Key)
		e.bytes(q.Value)
		e.u8(boolFlag(q.PrevKV))
	case r.DeleteRange != nil:
		q := r.DeleteRange
		e.u8(tagDelete)
		e.bytes(q.Key)
		e.bytes(q.RangeEnd)
		e.u8(boolFlag(q.PrevKV))
	case r.Txn != nil:
		e.u8(tagTxn)
		if depth > 0 {
			return // nested: DecodeRequest rejects it; don't follow (may be cyclic)
		}
		q := r.Txn
		c := &q.Compare
		e.bytes(c.Key)
		e.u8(byte(c.Target))
		e.u8(byte(c.Result))
		switch c.Target {
		case CompareValue:
			e.bytes(c.Value)
		case CompareVersion:
			e.varint(c.Version)
		case CompareCreate:
			e.varint(c.CreateRevision)
		case CompareMod:
			e.varint(c.ModRevision)
		}
		for _, branch := range [2][]Request{q.Success, q.Failure} {
			e.uvarint(uint64(len(branch)))
			for i := range branch {
				branch[i].encode(e, depth+1)
			}
		}
	}
}

func boolFlag(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// DecodeRequest decodes a request written by Request.Encode and validates
// it. Its error matches ErrMalformedRequest if data is not a request
// encoding, or ErrInvalidRequest if it encodes an invalid request. It never
// panics, and the returned request shares no memory with data.
func DecodeRequest(data []byte) (Request, error) {
	d := decoder{buf: data}
	var r Request
	if v := d.u8(); d.err == nil && v != requestVersion {
		d.fail("unknown request encoding version %d (this build knows %d)", v, requestVersion)
	}
	if d.err == nil {
		r = d.op(0)
	}
	d.end()
	if d.err != nil {
		return Request{}, fmt.Errorf("%w: %w", ErrMalformedRequest, d.err)
	}
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

func (d *decoder) op(depth int) Request {
	tagOff := d.pos()
	switch tag := d.u8(); tag {
	case tagRange:
		q := &RangeRequest{Key: d.bytes(), RangeEnd: d.bytes(), Limit: d.varint()}
		f := d.flags(flagCountOnly | flagKeysOnly)
		q.CountOnly, q.KeysOnly = f&flagCountOnly != 0, f&flagKeysOnly != 0
		return Request{Range: q}
	case tagPut:
		q := &PutRequest{Key: d.bytes(), Value: d.bytes()}
		q.PrevKV = d.flags(flagPrevKV) != 0
		return Request{Put: q}
	case tagDelete:
		q := &DeleteRangeRequest{Key: d.bytes(), RangeEnd: d.bytes()}
		q.PrevKV = d.flags(flagPrevKV) != 0
		return Request{DeleteRange: q}
	case tagTxn:
		if depth > 0 {
			d.failAt(tagOff, "txn nested in a txn")
			return Request{}
		}
		q := &TxnRequest{}
		c := &q.Compare
		c.Key = d.bytes()
		c.Target = CompareTarget(d.u8())
		c.Result = CompareResult(d.u8())
		switch c.Target {
		case CompareValue:
			c.Value = d.bytes()
		case CompareVersion:
			c.Version = d.varint()
		case CompareCreate:
			c.CreateRevision = d.varint()
		case CompareMod:
			c.ModRevision = d.varint()
		default:
			d.fail("unknown compare target %d", c.Target)
		}
		q.Success = d.ops(depth)
		q.Failure = d.ops(depth)
		return Request{Txn: q}
	default:
		if d.err == nil {
			d.failAt(tagOff, "unknown operation tag %d", tag)
		}
		return Request{}
	}
}

func (d *decoder) ops(depth int) []Request {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	if n > TxnOpsMax {
		d.fail("%d txn operations > %d", n, TxnOpsMax)
		return nil
	}
	ops := make([]Request, 0, n)
	for range n {
		op := d.op(depth + 1)
		if d.err != nil {
			return nil
		}
		ops = append(ops, op)
	}
	return ops
}

// flags reads a flags byte and rejects bits outside known.
func (d *decoder) flags(known byte) byte {
	off := d.pos()
	f := d.u8()
	if f&^known != 0 {
		d.failAt(off, "unknown flag bits %#x", f&^known)
		return 0
	}
	return f
}

// encoder appends the primitive encodings to buf. If flush is set, it is
// called with the buffered bytes whenever they exceed flushBytes, and the
// buffer is reused (used to hash the state without materializing it).
type encoder struct {
	buf   []byte
	flush func([]byte)
}

const flushBytes = 32 << 10

func (e *encoder) maybeFlush() {
	if e.flush != nil && len(e.buf) >= flushBytes {
		e.flush(e.buf)
		e.buf = e.buf[:0]
	}
}

func (e *encoder) u8(v byte)         { e.buf = append(e.buf, v) }
func (e *encoder) uvarint(v uint64)  { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) varint(v int64)    { e.buf = binary.AppendVarint(e.buf, v) }
func (e *encoder) u32(v uint32)      { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }
func (e *encoder) rawBytes(b []byte) { e.buf = append(e.buf, b...) }
func (e *encoder) bytes(b []byte) {
	e.uvarint(uint64(len(b)))
	e.buf = append(e.buf, b...)
	e.maybeFlush()
}
func (e *encoder) finish() (b []byte) { b, e.buf = e.buf, nil; return b }

// decoder reads the primitive encodings from buf. The first error sticks:
// later reads return zero values, so callers check d.err once at the end.
//
// If more is set the decoder streams: when buf runs short it drops the
// bytes already read (adding them to sum, a running CRC-32C) and appends
// the next chunk from more, which returns an empty chunk at the end.
type decoder struct {
	buf []byte
	off int
	err error

	more    func() ([]byte, error)
	eof     bool   // more has reported the end
	readErr bool   // err came from more
	base    int    // stream offset of buf[0]
	sum     uint32 // CRC-32C of the bytes dropped from buf
}

func (d *decoder) fail(format string, args ...any) { d.failAt(d.pos(), format, args...) }

// failAt records an error at stream offset pos.
func (d *decoder) failAt(pos int, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("at byte %d: %s", pos, fmt.Sprintf(format, args...))
	}
}

// pos is the stream offset of the next byte to read.
func (d *decoder) pos() int { return d.base + d.off }

func (d *decoder) remaining() int { return len(d.buf) - d.off }

// fill tries to make n bytes available, pulling chunks from more; fewer
// remain only at the end of the input (or after an error).
func (d *decoder) fill(n int) {
	for d.remaining() < n && d.more != nil && !d.eof && d.err == nil {
		if d.off > 0 {
			d.sum = crc32.Update(d.sum, castagnoli, d.buf[:d.off])
			d.base += d.off
			d.buf = append(d.buf[:0], d.buf[d.off:]...)
			d.off = 0
		}
		chunk, err := d.more()
		switch {
		case err != nil:
			d.err = fmt.Errorf("at byte %d: reading: %w", d.pos()+d.remaining(), err)
			d.readErr = true
		case len(chunk) == 0:
			d.eof = true
		default:
			d.buf = append(d.buf, chunk...)
		}
	}
}

// checksum returns the CRC-32C of every byte read so far.
func (d *decoder) checksum() uint32 { return crc32.Update(d.sum, castagnoli, d.buf[:d.off]) }

// end fails if bytes are left over.
func (d *decoder) end() {
	d.fill(1)
	if d.err == nil && d.remaining() > 0 {
		if d.more != nil {
			d.fail("trailing bytes")
		} else {
			d.fail("%d trailing bytes", d.remaining())
		}
	}
}

func (d *decoder) u8() byte {
	d.fill(1)
	if d.err != nil {
		return 0
	}
	if d.remaining() < 1 {
		d.fail("unexpected end of data")
		return 0
	}
	v := d.buf[d.off]
	d.off++
	return v
}

func (d *decoder) u32() uint32 {
	d.fill(4)
	if d.err != nil {
		return 0
	}
	if d.remaining() < 4 {
		d.fail("unexpected end of data")
		return 0
	}
	v := binary.LittleEndian.Uint32(d.buf[d.off:])
	d.off += 4
	return v
}

// uvarintLen is the length of v's minimal uvarint encoding.
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func (d *decoder) uvarint() uint64 {
	d.fill(binary.MaxVarintLen64)
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	switch {
	case n == 0:
		d.fail("unexpected end of data")
		return 0
	case n < 0:
		d.fail("varint overflows 64 bits")
		return 0
	case n != uvarintLen(v):
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	// Zig-zag, as binary.Varint: minimality of u implies minimality here.
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// streamStringMax bounds a byte string in a streamed input, where the
// decoder cannot compare a length with the bytes that remain: a corrupt
// length must not make it buffer the whole stream.
const streamStringMax = 1 << 30

// bytes reads a length-prefixed byte string into a fresh slice (nil when
// empty), so decoded values never alias the input.
func (d *decoder) bytes() []byte {
	off := d.pos()
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if d.more != nil && n > streamStringMax {
		d.failAt(off, "byte string of %d bytes is longer than %d", n, streamStringMax)
		return nil
	}
	if n > 0 {
		d.fill(int(n))
	}
	if n > uint64(d.remaining()) {
		d.failAt(off, "byte string of %d bytes runs past the end (%d left)", n, d.remaining())
		return nil
	}
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	copy(b, d.buf[d.off:])
	d.off += int(n)
	return b
}

// streamListMax bounds a list length in a streamed input.
const streamListMax = 1 << 40

// count reads a list length and checks that at least minBytes per element
// remain (in a streamed input, that it is at most streamListMax), so
// garbage cannot make the decoder allocate more than the input justifies.
// Callers must not preallocate more than the remaining input can hold.
func (d *decoder) count(minBytes int) int {
	off := d.pos()
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if d.more != nil {
		if n > streamListMax {
			d.failAt(off, "list of %d elements is longer than %d", n, uint64(streamListMax))
			return 0
		}
		return int(n)
	}
	if n > uint64(d.remaining()/minBytes) {
		d.failAt(off, "list of %d elements cannot fit in %d bytes", n, d.remaining())
		return 0
	}
	return int(n)
}

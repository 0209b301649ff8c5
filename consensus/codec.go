package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RecordCodec turns a protocol's durable records into bytes and back, so
// that the storage layer (which stores opaque bytes) can keep them. Decoding
// what was encoded gives an equal record.
type RecordCodec interface {
	// AppendRecord appends the encoding of r to buf.
	AppendRecord(buf []byte, r Record) ([]byte, error)
	// DecodeRecord decodes one record. It never panics on bad input, and
	// the record it returns does not share memory with data.
	DecodeRecord(data []byte) (Record, error)
}

// ErrMalformed is matched by errors that report bytes which do not decode.
var ErrMalformed = errors.New("consensus: malformed encoding")

// Bounds on what an encoded entry may declare, so that a corrupt length can
// never make a decoder allocate without limit.
const (
	// EncodedKeysMax is the most conflict keys an encoded entry may carry.
	EncodedKeysMax = 1 << 16
	// EncodedBytesMax is the longest byte string an encoded entry may carry.
	EncodedBytesMax = 64 << 20
)

// AppendEntry appends the encoding of e to buf: index, term, type, session,
// keys and data, as unsigned varints and length-prefixed byte strings.
func AppendEntry(buf []byte, e *Entry) []byte {
	buf = binary.AppendUvarint(buf, e.Index)
	buf = binary.AppendUvarint(buf, e.Term)
	buf = append(buf, byte(e.Type))
	buf = binary.AppendUvarint(buf, e.Command.Session.ClientID)
	buf = binary.AppendUvarint(buf, e.Command.Session.Seq)
	buf = binary.AppendUvarint(buf, uint64(len(e.Command.Keys)))
	for _, k := range e.Command.Keys {
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(e.Command.Data)))
	return append(buf, e.Command.Data...)
}

// Decoder reads values encoded with the encoding/binary varint helpers and
// length-prefixed byte strings. The first error sticks: later reads return
// zero values, and Err reports it.
type Decoder struct {
	buf []byte
	off int
	err error
}

// NewDecoder decodes data.
func NewDecoder(data []byte) *Decoder { return &Decoder{buf: data} }

// Err returns the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Remaining is the number of bytes not yet read.
func (d *Decoder) Remaining() int { return len(d.buf) - d.off }

func (d *Decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d of %d", ErrMalformed, what, d.off, len(d.buf))
	}
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.fail("unexpected end")
		return 0
	}
	b := d.buf[d.off]
	d.off++
	return b
}

// Bytes reads a length-prefixed byte string into a fresh slice.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.err != nil {
		return nil
	}
	if n > EncodedBytesMax || n > uint64(len(d.buf)-d.off) {
		d.fail(fmt.Sprintf("byte string of %d bytes runs past the end", n))
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]byte, n)
	copy(out, d.buf[d.off:])
	d.off += int(n)
	return out
}

// Count reads a count of items each at least minBytes long, and checks it
// fits in what remains and under limit.
func (d *Decoder) Count(minBytes int, limit uint64) int {
	n := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if n > limit || n*uint64(max(minBytes, 1)) > uint64(len(d.buf)-d.off) {
		d.fail(fmt.Sprintf("count %d too large", n))
		return 0
	}
	return int(n)
}

// Entry reads an entry encoded by AppendEntry.
func (d *Decoder) Entry() Entry {
	var e Entry
	e.Index = d.Uvarint()
	e.Term = d.Uvarint()
	t := d.Byte()
	if t > byte(EntryNoOp) {
		d.fail(fmt.Sprintf("unknown entry type %d", t))
	}
	e.Type = EntryType(t)
	e.Command.Session.ClientID = d.Uvarint()
	e.Command.Session.Seq = d.Uvarint()
	if nk := d.Count(1, EncodedKeysMax); nk > 0 {
		e.Command.Keys = make([]string, nk)
		for i := range e.Command.Keys {
			e.Command.Keys[i] = string(d.Bytes())
		}
	}
	e.Command.Data = d.Bytes()
	return e
}

// End fails the decoder if bytes remain.
func (d *Decoder) End() {
	if d.err == nil && d.off != len(d.buf) {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.buf)-d.off))
	}
}

// MessageCodec turns a protocol's message payloads into bytes and back, for
// a transport. Decoding what was encoded gives an equal payload.
type MessageCodec interface {
	// AppendMessage appends the encoding of p to buf.
	AppendMessage(buf []byte, p Payload) ([]byte, error)
	// DecodeMessage decodes one payload. It never panics on bad input, and
	// the payload it returns does not share memory with data.
	DecodeMessage(data []byte) (Payload, error)
}

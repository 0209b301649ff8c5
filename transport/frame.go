package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/synod-io/synod/consensus"
	"google.golang.org/grpc/mem"
)

// A frame is the unit a stream carries: one gRPC message holding one frame.
//
//	offset  size  field
//	0       1     version (frameVersion)
//	1       1     kind (frameKindHello or frameKindBatch)
//	2       4     body length n, little-endian
//	6       n     body
//	6+n     4     CRC-32C (Castagnoli) of bytes [0, 6+n), little-endian
//
// A hello body is three unsigned varints: cluster ID, sender node ID,
// receiver node ID. A batch body is an unsigned varint count (at least one,
// at most frameMessagesMax) followed by that many messages, each an
// unsigned varint From, an unsigned varint To and the payload (encoded by
// the transport's consensus.MessageCodec) as a varint length and bytes.
// Decoding is strict: a wrong version, kind, length or checksum, or a body
// that does not parse exactly, is an error, and never a panic.
//
// The version covers the layout above and everything the frames carry,
// the payload encoding (the node's consensus.MessageCodec) included: two
// members of different versions would misdecode each other, so each
// refuses a hello of another version (versionError) and the stream never
// opens. Bump frameVersion on any incompatible change to either.
const (
	// frameVersion is this build's version. History:
	//   1  the first
	//   2  the node's peer codec prefixes each message with a tag byte
	frameVersion byte = 2
	// frameVersionTrailerKey is the gRPC trailer in which an acceptor
	// refusing a hello of another version names its own, so that the
	// dialer can say which versions disagree. A version 1 acceptor sends
	// none (see versionRefusal).
	frameVersionTrailerKey = "synod-transport-version"

	frameKindHello byte = 1
	frameKindBatch byte = 2

	frameHeaderBytes  = 6
	frameTrailerBytes = 4
	// frameOverheadBytes is what a frame adds to its body.
	frameOverheadBytes = frameHeaderBytes + frameTrailerBytes
	// frameBytesMin is the smallest frame: an empty body.
	frameBytesMin = frameOverheadBytes
	// frameMessagesMax bounds the messages in one batch frame.
	frameMessagesMax = 1 << 16
	// batchMessageOverheadMax is the most a message adds to its payload in
	// a batch body: From, To and the payload length, as varints.
	batchMessageOverheadMax = 3 * binary.MaxVarintLen64
	// batchOverheadMax is the most a batch frame adds to its messages.
	batchOverheadMax = frameOverheadBytes + binary.MaxVarintLen64
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errFrame is matched by every error decodeFrame and its helpers return.
var errFrame = errors.New("transport: malformed frame")

func frameErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errFrame, fmt.Sprintf(format, args...))
}

// versionError is a frame, or a refusal, from a peer of another version:
// the two members run different synod versions and cannot talk. It
// matches errFrame. Invariant: Local != Peer.
type versionError struct {
	Local byte // this node's version (frameVersion)
	Peer  byte // the peer's
}

func (e *versionError) Error() string { return "transport: " + e.text() }

func (e *versionError) Unwrap() error { return errFrame }

// text is the error without its prefix.
func (e *versionError) text() string {
	return fmt.Sprintf("the peer runs transport version %d, this node version %d: every member must run the same synod version",
		e.Peer, e.Local)
}

// beginFrame appends a frame header for a body yet to be appended, and
// returns the extended buffer and the frame's start.
func beginFrame(buf []byte, kind byte) ([]byte, int) {
	start := len(buf)
	return append(buf, frameVersion, kind, 0, 0, 0, 0), start
}

// finishFrame fills in the length of the frame begun at start and appends
// its checksum.
func finishFrame(buf []byte, start int) []byte {
	n := len(buf) - start - frameHeaderBytes
	binary.LittleEndian.PutUint32(buf[start+2:], uint32(n))
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[start:], crcTable))
}

// frame is a decoded frame. Body aliases the decoded bytes.
type frame struct {
	Kind byte
	Body []byte
}

// decodeFrame checks data is exactly one frame no longer than maxBytes.
func decodeFrame(data []byte, maxBytes int) (frame, error) {
	switch {
	case len(data) < frameBytesMin:
		return frame{}, frameErrorf("%d bytes, shorter than a frame header", len(data))
	case len(data) > maxBytes:
		return frame{}, frameErrorf("%d bytes, longer than the limit of %d", len(data), maxBytes)
	case data[0] != frameVersion:
		return frame{}, &versionError{Local: frameVersion, Peer: data[0]}
	case data[1] != frameKindHello && data[1] != frameKindBatch:
		return frame{}, frameErrorf("unknown kind %d", data[1])
	}
	n := binary.LittleEndian.Uint32(data[2:])
	if uint64(n) != uint64(len(data)-frameOverheadBytes) {
		return frame{}, frameErrorf("declares a %d-byte body in %d bytes", n, len(data))
	}
	end := len(data) - frameTrailerBytes
	if got, want := crc32.Checksum(data[:end], crcTable), binary.LittleEndian.Uint32(data[end:]); got != want {
		return frame{}, frameErrorf("checksum %#08x, want %#08x", got, want)
	}
	return frame{Kind: data[1], Body: data[frameHeaderBytes:end]}, nil
}

// hello opens every stream, in both directions: the dialer says who it is
// and whom it wants; the acceptor answers with the same fields swapped.
type hello struct {
	ClusterID uint64
	From      consensus.NodeID
	To        consensus.NodeID
}

func appendHelloFrame(buf []byte, h hello) []byte {
	buf, start := beginFrame(buf, frameKindHello)
	buf = binary.AppendUvarint(buf, h.ClusterID)
	buf = binary.AppendUvarint(buf, uint64(h.From))
	buf = binary.AppendUvarint(buf, uint64(h.To))
	return finishFrame(buf, start)
}

// decodeHello decodes a hello frame's body.
func decodeHello(body []byte) (hello, error) {
	r := reader{buf: body}
	h := hello{ClusterID: r.uvarint(), From: consensus.NodeID(r.uvarint()), To: consensus.NodeID(r.uvarint())}
	if err := r.end(); err != nil {
		return hello{}, fmt.Errorf("hello: %w", err)
	}
	return h, nil
}

// wireMsg is one message of a batch: its envelope and encoded payload.
type wireMsg struct {
	From    consensus.NodeID
	To      consensus.NodeID
	Payload []byte
}

// batchBytes is the encoded size of m in a batch body.
func (m *wireMsg) batchBytes() int {
	return uvarintLen(uint64(m.From)) + uvarintLen(uint64(m.To)) + uvarintLen(uint64(len(m.Payload))) + len(m.Payload)
}

// appendBatchFrame appends a batch frame of msgs (1 to frameMessagesMax).
func appendBatchFrame(buf []byte, msgs []wireMsg) []byte {
	buf, start := beginFrame(buf, frameKindBatch)
	buf = binary.AppendUvarint(buf, uint64(len(msgs)))
	for i := range msgs {
		m := &msgs[i]
		buf = binary.AppendUvarint(buf, uint64(m.From))
		buf = binary.AppendUvarint(buf, uint64(m.To))
		buf = binary.AppendUvarint(buf, uint64(len(m.Payload)))
		buf = append(buf, m.Payload...)
	}
	return finishFrame(buf, start)
}

// decodeBatch decodes a batch frame's body. The payloads alias body.
func decodeBatch(body []byte) ([]wireMsg, error) {
	r := reader{buf: body}
	n := r.uvarint()
	// Each message takes at least three bytes.
	if r.err == nil && (n == 0 || n > frameMessagesMax || n > uint64(r.remaining()/3)) {
		return nil, frameErrorf("batch: count %d with %d bytes left", n, r.remaining())
	}
	msgs := make([]wireMsg, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		m := wireMsg{From: consensus.NodeID(r.uvarint()), To: consensus.NodeID(r.uvarint())}
		m.Payload = r.bytes()
		msgs = append(msgs, m)
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	return msgs, nil
}

// reader reads varints and length-prefixed byte strings without copying.
// The first error sticks.
type reader struct {
	buf []byte
	off int
	err error
}

func (r *reader) remaining() int { return len(r.buf) - r.off }

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = frameErrorf("%s at byte %d of %d", what, r.off, len(r.buf))
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(r.remaining()) {
		r.fail(fmt.Sprintf("byte string of %d bytes runs past the end", n))
		return nil
	}
	b := r.buf[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b
}

func (r *reader) end() error {
	if r.err == nil && r.off != len(r.buf) {
		r.fail(fmt.Sprintf("%d trailing bytes", len(r.buf)-r.off))
	}
	return r.err
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// rawCodec is the gRPC codec of the peer service: a message is a frame,
// carried as plain bytes (*[]byte or []byte when sending, *[]byte when
// receiving), with no protobuf in between.
type rawCodec struct{}

// rawCodecName is sent as the gRPC content-subtype.
const rawCodecName = "synod-frame"

func (rawCodec) Name() string { return rawCodecName }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch b := v.(type) {
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("transport: raw codec cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("transport: raw codec cannot unmarshal into %T", v)
	}
	// Materialize copies: gRPC frees data when this returns.
	*p = data.Materialize()
	return nil
}

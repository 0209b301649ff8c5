package store

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/synod-io/synod/consensus"
)

// formatVersion is written before every message and record.
const formatVersion byte = 1

// Flags.
const (
	flagReply     byte = 1 // message
	flagTombstone byte = 1 // entry
)

// Record kinds.
const (
	recordEntry    byte = 1
	recordSnapshot byte = 2
	recordRestate  byte = 3
)

// Smallest encodings, for bounding decoded counts by the bytes left.
const (
	// entrySizeMin: a one-byte key, an empty value, four one-byte
	// numbers and the flags.
	entrySizeMin = 2 + 1 + 3 + 1
	nodeSizeMin  = 1 + 8
)

// nodesMax bounds the nodes one message may carry: every node of the
// widest level.
const nodesMax = 1 << (4 * TreeLevelsMax)

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// entrySize is the exact encoded size of e.
func entrySize(e *Entry) int {
	return uvarintLen(uint64(len(e.Key))) + len(e.Key) + uvarintLen(uint64(len(e.Value))) + len(e.Value) +
		uvarintLen(e.TS.WallMs) + uvarintLen(uint64(e.TS.Logical)) + uvarintLen(uint64(e.Origin)) + 1
}

// entrySizeMax is the largest encoded entry with the given key and value
// bounds.
func entrySizeMax(keyBytes, valueBytes int) int {
	return uvarintLen(uint64(keyBytes)) + keyBytes + uvarintLen(uint64(valueBytes)) + valueBytes +
		binary.MaxVarintLen64 + binary.MaxVarintLen32 + binary.MaxVarintLen64 + 1
}

// nodeSize is the exact encoded size of n.
func nodeSize(n NodeHash) int { return uvarintLen(uint64(n.Index)) + 8 }

// MessageCodec encodes store messages (*Message) for a transport and
// decodes them into *Message. It implements consensus.MessageCodec.
//
// Encoding: version, type, from, to, flags (bit 0: reply), tree levels,
// level, the number of nodes and each node (index, then its hash as 8
// bytes little-endian), the number of entries and each entry (key, value,
// wall, logical, origin, flags with bit 0: tombstone). Numbers are
// unsigned varints; keys and values are length-prefixed byte strings.
// A message must be valid (see Store.Step) to encode, and decoding checks
// the same rules, so decoding what was encoded gives an equal message
// (with empty values as nil).
var MessageCodec consensus.MessageCodec = msgCodec{}

type msgCodec struct{}

func (msgCodec) AppendMessage(buf []byte, p consensus.Payload) ([]byte, error) {
	m, ok := p.(*Message)
	if !ok || m == nil {
		return buf, fmt.Errorf("store: cannot encode message payload %T", p)
	}
	if err := m.validate(); err != nil {
		return buf, fmt.Errorf("store: cannot encode: %w", err)
	}
	buf = append(buf, formatVersion, byte(m.Type))
	buf = binary.AppendUvarint(buf, uint64(m.From))
	buf = binary.AppendUvarint(buf, uint64(m.To))
	var flags byte
	if m.Reply {
		flags |= flagReply
	}
	buf = append(buf, flags, m.TreeLevels, m.Level)
	buf = binary.AppendUvarint(buf, uint64(len(m.Nodes)))
	for _, n := range m.Nodes {
		buf = binary.AppendUvarint(buf, uint64(n.Index))
		buf = binary.LittleEndian.AppendUint64(buf, n.Hash)
	}
	return appendEntries(buf, m.Entries), nil
}

func appendEntries(buf []byte, es []Entry) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(es)))
	for i := range es {
		buf = appendEntry(buf, &es[i])
	}
	return buf
}

func appendEntry(buf []byte, e *Entry) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(e.Key)))
	buf = append(buf, e.Key...)
	buf = binary.AppendUvarint(buf, uint64(len(e.Value)))
	buf = append(buf, e.Value...)
	buf = binary.AppendUvarint(buf, e.TS.WallMs)
	buf = binary.AppendUvarint(buf, uint64(e.TS.Logical))
	buf = binary.AppendUvarint(buf, uint64(e.Origin))
	var flags byte
	if e.Tombstone {
		flags |= flagTombstone
	}
	return append(buf, flags)
}

func (msgCodec) DecodeMessage(data []byte) (consensus.Payload, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != formatVersion {
		return nil, fmt.Errorf("%w: store message format version %d, want %d", consensus.ErrMalformed, v, formatVersion)
	}
	m := &Message{Type: MsgType(d.Byte())}
	m.From = consensus.NodeID(d.Uvarint())
	m.To = consensus.NodeID(d.Uvarint())
	flags := d.Byte()
	if d.Err() == nil && flags&^flagReply != 0 {
		return nil, fmt.Errorf("%w: store message flags %#x", consensus.ErrMalformed, flags)
	}
	m.Reply = flags&flagReply != 0
	m.TreeLevels = d.Byte()
	m.Level = d.Byte()
	if n := d.Count(nodeSizeMin, nodesMax); n > 0 {
		m.Nodes = make([]NodeHash, n)
		for i := range m.Nodes {
			idx := d.Uvarint()
			if idx >= nodesMax && d.Err() == nil {
				return nil, fmt.Errorf("%w: store tree node index %d", consensus.ErrMalformed, idx)
			}
			m.Nodes[i].Index = uint32(idx)
			m.Nodes[i].Hash = fixed64(d)
		}
	}
	var err error
	m.Entries, err = decodeEntries(d)
	if err != nil {
		return nil, err
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// fixed64 reads 8 bytes little-endian.
func fixed64(d *consensus.Decoder) uint64 {
	var v uint64
	for i := range 8 {
		v |= uint64(d.Byte()) << (8 * i)
	}
	return v
}

// decodeEntries reads a count and that many entries. Its error reports
// a field out of range; the decoder's own errors stay in the decoder.
func decodeEntries(d *consensus.Decoder) ([]Entry, error) {
	n := d.Count(entrySizeMin, 1<<40)
	if n == 0 {
		return nil, nil
	}
	es := make([]Entry, n)
	for i := range es {
		var err error
		if es[i], err = decodeEntry(d); err != nil {
			return nil, err
		}
	}
	return es, nil
}

func decodeEntry(d *consensus.Decoder) (Entry, error) {
	var e Entry
	e.Key = string(d.Bytes())
	e.Value = d.Bytes()
	e.TS.WallMs = d.Uvarint()
	logical := d.Uvarint()
	e.Origin = consensus.NodeID(d.Uvarint())
	flags := d.Byte()
	if d.Err() != nil {
		return e, nil
	}
	if logical > 1<<32-1 {
		return e, fmt.Errorf("%w: store entry %q with clock counter %d", consensus.ErrMalformed, e.Key, logical)
	}
	if flags&^flagTombstone != 0 {
		return e, fmt.Errorf("%w: store entry %q with flags %#x", consensus.ErrMalformed, e.Key, flags)
	}
	e.TS.Logical = uint32(logical)
	e.Tombstone = flags&flagTombstone != 0
	return e, nil
}

// validate checks the rules every message obeys; its errors match
// consensus.ErrMalformed.
func (m *Message) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: store: "+format, append([]any{consensus.ErrMalformed}, args...)...)
	}
	switch {
	case m.Type == 0 || m.Type > msgTypeLast:
		return bad("unknown message type %d", m.Type)
	case m.From == consensus.None || m.To == consensus.None:
		return bad("%v from node %d to node %d", m.Type, m.From, m.To)
	case m.From == m.To:
		return bad("%v from node %d to itself", m.Type, m.From)
	case m.Reply && m.Type != MsgLeaves:
		return bad("%v marked as a reply", m.Type)
	}
	switch m.Type {
	case MsgPush:
		if m.TreeLevels != 0 || m.Level != 0 || len(m.Nodes) > 0 {
			return bad("push with tree nodes")
		}
		if len(m.Entries) == 0 {
			return bad("push without entries")
		}
	case MsgTree, MsgLeaves:
		switch {
		case m.TreeLevels < 1 || m.TreeLevels > TreeLevelsMax:
			return bad("%v for a tree of %d levels (allowed 1..%d)", m.Type, m.TreeLevels, TreeLevelsMax)
		case m.Level > m.TreeLevels:
			return bad("%v at level %d of %d", m.Type, m.Level, m.TreeLevels)
		case m.Type == MsgLeaves && m.Level != m.TreeLevels:
			return bad("leaves at level %d of %d", m.Level, m.TreeLevels)
		case m.Type == MsgTree && len(m.Entries) > 0:
			return bad("tree message with entries")
		case len(m.Nodes) == 0:
			return bad("%v without nodes", m.Type)
		}
		w := width(int(m.Level))
		for i, n := range m.Nodes {
			if n.Index >= w {
				return bad("node %d at level %d (width %d)", n.Index, m.Level, w)
			}
			if i > 0 && n.Index <= m.Nodes[i-1].Index {
				return bad("nodes not in increasing order at %d", n.Index)
			}
		}
	}
	for i := range m.Entries {
		if err := validEntry(&m.Entries[i]); err != nil {
			return err
		}
	}
	return nil
}

// RecordCodec encodes the store's durable records (*EntryRecord,
// *SnapshotRecord) and decodes them. It implements consensus.RecordCodec.
//
// Encoding: version, kind (1: entry, 2: snapshot, 3: restate), then an
// entry as in a message; or the clock (wall, logical), the revision, and
// for a snapshot the number of entries and each entry. Decoding checks every entry and that a
// snapshot's keys strictly increase.
var RecordCodec consensus.RecordCodec = recCodec{}

type recCodec struct{}

func (recCodec) AppendRecord(buf []byte, r consensus.Record) ([]byte, error) {
	switch r := r.(type) {
	case *EntryRecord:
		if r == nil {
			break
		}
		if err := validEntry(&r.Entry); err != nil {
			return buf, fmt.Errorf("store: cannot encode: %w", err)
		}
		buf = append(buf, formatVersion, recordEntry)
		return appendEntry(buf, &r.Entry), nil
	case *RestateRecord:
		if r == nil {
			break
		}
		buf = append(buf, formatVersion, recordRestate)
		buf = binary.AppendUvarint(buf, r.Clock.WallMs)
		buf = binary.AppendUvarint(buf, uint64(r.Clock.Logical))
		return binary.AppendUvarint(buf, r.Revision), nil
	case *SnapshotRecord:
		if r == nil {
			break
		}
		if err := r.validate(); err != nil {
			return buf, fmt.Errorf("store: cannot encode: %w", err)
		}
		buf = append(buf, formatVersion, recordSnapshot)
		buf = binary.AppendUvarint(buf, r.Clock.WallMs)
		buf = binary.AppendUvarint(buf, uint64(r.Clock.Logical))
		buf = binary.AppendUvarint(buf, r.Revision)
		return appendEntries(buf, r.Entries), nil
	}
	return buf, fmt.Errorf("store: cannot encode record %T", r)
}

func (recCodec) DecodeRecord(data []byte) (consensus.Record, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != formatVersion {
		return nil, fmt.Errorf("%w: store record format version %d, want %d", consensus.ErrMalformed, v, formatVersion)
	}
	var r consensus.Record
	var err error
	switch kind := d.Byte(); {
	case d.Err() != nil:
	case kind == recordEntry:
		er := &EntryRecord{}
		er.Entry, err = decodeEntry(d)
		r = er
	case kind == recordRestate:
		rr := &RestateRecord{}
		rr.Clock, err = decodeClock(d)
		rr.Revision = d.Uvarint()
		r = rr
	case kind == recordSnapshot:
		s := &SnapshotRecord{}
		if s.Clock, err = decodeClock(d); err != nil {
			return nil, err
		}
		s.Revision = d.Uvarint()
		s.Entries, err = decodeEntries(d)
		r = s
	default:
		return nil, fmt.Errorf("%w: store record kind %d", consensus.ErrMalformed, kind)
	}
	if err != nil {
		return nil, err
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	switch r := r.(type) {
	case *EntryRecord:
		if err := validEntry(&r.Entry); err != nil {
			return nil, err
		}
	case *SnapshotRecord:
		if err := r.validate(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// decodeClock decodes a timestamp as records store it (wall, logical).
func decodeClock(d *consensus.Decoder) (Timestamp, error) {
	wall := d.Uvarint()
	logical := d.Uvarint()
	if logical > 1<<32-1 && d.Err() == nil {
		return Timestamp{}, fmt.Errorf("%w: store record clock counter %d", consensus.ErrMalformed, logical)
	}
	return Timestamp{WallMs: wall, Logical: uint32(logical)}, nil
}

// validate checks a snapshot's entries; its errors match
// consensus.ErrMalformed.
func (s *SnapshotRecord) validate() error {
	for i := range s.Entries {
		e := &s.Entries[i]
		if err := validEntry(e); err != nil {
			return err
		}
		if i > 0 && e.Key <= s.Entries[i-1].Key {
			return fmt.Errorf("%w: store: snapshot keys not in increasing order at %q", consensus.ErrMalformed, e.Key)
		}
		if s.Clock.Less(e.TS) {
			return fmt.Errorf("%w: store: snapshot entry %q at %v, after the clock %v", consensus.ErrMalformed, e.Key, e.TS, s.Clock)
		}
	}
	return nil
}

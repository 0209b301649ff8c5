package raft

import (
	"fmt"
	"math"

	"github.com/synod-io/synod/consensus"
)

// msgFormatVersion is written before every encoded message, so the wire
// encoding can change later without ambiguity. A decoder refuses versions
// it does not know.
const msgFormatVersion byte = 1

// Flag bits of an encoded message. Unknown bits are refused on decoding.
const (
	msgFlagReject byte = 1 << 0
	msgFlagLast   byte = 1 << 1
	msgFlagsKnown      = msgFlagReject | msgFlagLast
)

// msgEntryBytesMin is the fewest bytes an encoded entry occupies (index,
// term, type, client, seq, key count, data length: one byte each), so a
// corrupt entry count is refused before anything is allocated.
const msgEntryBytesMin = 7

// MessageCodec encodes Raft message payloads (*Msg) for a
// transport, and decodes them into *Msg. It implements
// consensus.MessageCodec.
//
// The encoding is: format version, type, Term, Index, LogTerm, Commit,
// entry count and entries (consensus.AppendEntry), flags (Reject, Last),
// HintIndex, HintTerm, ReadSeq, snapshot meta (index, term, voter count and
// voters), Offset, and Data as a length-prefixed byte string. Every field is
// written whatever the type, so decoding what was encoded gives an equal
// message.
var MessageCodec consensus.MessageCodec = msgCodec{}

type msgCodec struct{}

func (msgCodec) AppendMessage(buf []byte, p consensus.Payload) ([]byte, error) {
	m, ok := p.(*Msg)
	if !ok || m == nil {
		return buf, fmt.Errorf("raft: cannot encode message payload %T(%v)", p, p)
	}
	return appendMsg(buf, m)
}

func appendMsg(buf []byte, m *Msg) ([]byte, error) {
	switch {
	case m.Type == 0 || m.Type > msgTypeLast:
		return buf, fmt.Errorf("raft: cannot encode message of unknown type %d", m.Type)
	case m.Offset < 0:
		return buf, fmt.Errorf("raft: cannot encode %v: negative offset %d", m.Type, m.Offset)
	case len(m.Snapshot.Voters) > PeersMax:
		return buf, fmt.Errorf("raft: cannot encode %v: %d voters, at most %d", m.Type, len(m.Snapshot.Voters), PeersMax)
	case len(m.Data) > consensus.EncodedBytesMax:
		return buf, fmt.Errorf("raft: cannot encode %v: %d data bytes, at most %d", m.Type, len(m.Data), consensus.EncodedBytesMax)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if len(e.Command.Data) > consensus.EncodedBytesMax || len(e.Command.Keys) > consensus.EncodedKeysMax || e.Type > consensus.EntryNoOp {
			return buf, fmt.Errorf("raft: cannot encode %v: entry %d is out of bounds", m.Type, e.Index)
		}
	}
	buf = append(buf, msgFormatVersion, byte(m.Type))
	buf = appendUvarint(buf, m.Term)
	buf = appendUvarint(buf, m.Index)
	buf = appendUvarint(buf, m.LogTerm)
	buf = appendUvarint(buf, m.Commit)
	buf = appendUvarint(buf, uint64(len(m.Entries)))
	for i := range m.Entries {
		buf = consensus.AppendEntry(buf, &m.Entries[i])
	}
	var flags byte
	if m.Reject {
		flags |= msgFlagReject
	}
	if m.Last {
		flags |= msgFlagLast
	}
	buf = append(buf, flags)
	buf = appendUvarint(buf, m.HintIndex)
	buf = appendUvarint(buf, m.HintTerm)
	buf = appendUvarint(buf, m.ReadSeq)
	buf = appendUvarint(buf, m.Snapshot.Index)
	buf = appendUvarint(buf, m.Snapshot.Term)
	buf = appendUvarint(buf, uint64(len(m.Snapshot.Voters)))
	for _, v := range m.Snapshot.Voters {
		buf = appendUvarint(buf, uint64(v))
	}
	buf = appendUvarint(buf, uint64(m.Offset))
	buf = appendUvarint(buf, uint64(len(m.Data)))
	return append(buf, m.Data...), nil
}

func (msgCodec) DecodeMessage(data []byte) (consensus.Payload, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != msgFormatVersion {
		return nil, fmt.Errorf("raft: decoding message: %w: format version %d, want %d", consensus.ErrMalformed, v, msgFormatVersion)
	}
	t := MsgType(d.Byte())
	if d.Err() == nil && (t == 0 || t > msgTypeLast) {
		return nil, fmt.Errorf("raft: decoding message: %w: unknown message type %d", consensus.ErrMalformed, t)
	}
	m := &Msg{Type: t}
	m.Term = d.Uvarint()
	m.Index = d.Uvarint()
	m.LogTerm = d.Uvarint()
	m.Commit = d.Uvarint()
	if n := d.Count(msgEntryBytesMin, EntriesPerMsgMaxLimit); n > 0 {
		m.Entries = make([]consensus.Entry, 0, n)
		for i := 0; i < n && d.Err() == nil; i++ {
			m.Entries = append(m.Entries, d.Entry())
		}
	}
	flags := d.Byte()
	if d.Err() == nil && flags&^msgFlagsKnown != 0 {
		return nil, fmt.Errorf("raft: decoding message: %w: unknown flags %#x", consensus.ErrMalformed, flags)
	}
	m.Reject = flags&msgFlagReject != 0
	m.Last = flags&msgFlagLast != 0
	m.HintIndex = d.Uvarint()
	m.HintTerm = d.Uvarint()
	m.ReadSeq = d.Uvarint()
	m.Snapshot.Index = d.Uvarint()
	m.Snapshot.Term = d.Uvarint()
	if n := d.Count(1, PeersMax); n > 0 {
		m.Snapshot.Voters = make([]consensus.NodeID, n)
		for i := range m.Snapshot.Voters {
			m.Snapshot.Voters[i] = consensus.NodeID(d.Uvarint())
		}
	}
	off := d.Uvarint()
	if d.Err() == nil && off > math.MaxInt64 {
		return nil, fmt.Errorf("raft: decoding message: %w: offset %d out of range", consensus.ErrMalformed, off)
	}
	m.Offset = int64(off)
	m.Data = d.Bytes()
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("raft: decoding message: %w", err)
	}
	return m, nil
}

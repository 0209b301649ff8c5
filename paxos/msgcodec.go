package paxos

import (
	"encoding/binary"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// msgFormatVersion is written before every encoded message.
const msgFormatVersion byte = 1

// Flag bits of an encoded message; unknown bits are refused.
const (
	msgFlagReject byte = 1 << 0
	msgFlagLast   byte = 1 << 1
	msgFlagsKnown      = msgFlagReject | msgFlagLast
)

// MessageCodec encodes Paxos message payloads (*Msg) for a transport and
// decodes them into *Msg. It implements consensus.MessageCodec.
//
// The encoding is: format version, type, Ballot (round, node), Index,
// Commit, ReadSeq, flags (Reject), entry count and entries
// (consensus.AppendEntry), ballot count and ballots, slot count and slots.
// MsgSnap and MsgSnapResp then carry the snapshot metadata (index, term,
// voters), Offset and Data (length-prefixed); other types must leave those
// fields zero (and Last unset). Every other field is written whatever the
// type, so decoding what was encoded gives an equal message.
var MessageCodec consensus.MessageCodec = msgCodec{}

type msgCodec struct{}

func (msgCodec) AppendMessage(buf []byte, p consensus.Payload) ([]byte, error) {
	m, ok := p.(*Msg)
	if !ok || m == nil {
		return buf, fmt.Errorf("paxos: cannot encode message payload %T(%v)", p, p)
	}
	if m.Type == 0 || m.Type > msgTypeLast {
		return buf, fmt.Errorf("paxos: cannot encode message of unknown type %d", m.Type)
	}
	if len(m.Entries) > PromiseEntriesMax || len(m.Ballots) > PromiseEntriesMax || len(m.Slots) > PromiseEntriesMax {
		return buf, fmt.Errorf("paxos: cannot encode %v: more than %d entries, ballots or slots", m.Type, PromiseEntriesMax)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if len(e.Command.Data) > consensus.EncodedBytesMax || len(e.Command.Keys) > consensus.EncodedKeysMax || e.Type > consensus.EntryNoOp {
			return buf, fmt.Errorf("paxos: cannot encode %v: entry %d is out of bounds", m.Type, e.Index)
		}
	}
	snapType := m.Type == MsgSnap || m.Type == MsgSnapResp
	switch {
	case !snapType && (m.Last || m.Offset != 0 || m.Data != nil || m.Snapshot.Index != 0 || m.Snapshot.Term != 0 || m.Snapshot.Voters != nil):
		return buf, fmt.Errorf("paxos: cannot encode %v with snapshot fields set", m.Type)
	case m.Offset < 0 || len(m.Data) > SnapshotChunkBytesMax || len(m.Snapshot.Voters) > PeersMax:
		return buf, fmt.Errorf("paxos: cannot encode %v: offset %d, %d bytes, %d voters out of bounds", m.Type, m.Offset, len(m.Data), len(m.Snapshot.Voters))
	}
	buf = append(buf, msgFormatVersion, byte(m.Type))
	buf = appendBallot(buf, m.Ballot)
	buf = binary.AppendUvarint(buf, m.Index)
	buf = binary.AppendUvarint(buf, m.Commit)
	buf = binary.AppendUvarint(buf, m.ReadSeq)
	var flags byte
	if m.Reject {
		flags |= msgFlagReject
	}
	if m.Last {
		flags |= msgFlagLast
	}
	buf = append(buf, flags)
	buf = appendEntryList(buf, m.Entries)
	buf = binary.AppendUvarint(buf, uint64(len(m.Ballots)))
	for _, b := range m.Ballots {
		buf = appendBallot(buf, b)
	}
	buf = binary.AppendUvarint(buf, uint64(len(m.Slots)))
	for _, s := range m.Slots {
		buf = binary.AppendUvarint(buf, s)
	}
	if snapType {
		buf = appendSnapshotMeta(buf, &m.Snapshot)
		buf = binary.AppendUvarint(buf, uint64(m.Offset))
		buf = binary.AppendUvarint(buf, uint64(len(m.Data)))
		buf = append(buf, m.Data...)
	}
	return buf, nil
}

func (msgCodec) DecodeMessage(data []byte) (consensus.Payload, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != msgFormatVersion {
		return nil, fmt.Errorf("paxos: decoding message: %w: format version %d, want %d", consensus.ErrMalformed, v, msgFormatVersion)
	}
	t := MsgType(d.Byte())
	if d.Err() == nil && (t == 0 || t > msgTypeLast) {
		return nil, fmt.Errorf("paxos: decoding message: %w: unknown message type %d", consensus.ErrMalformed, t)
	}
	m := &Msg{Type: t}
	m.Ballot = readBallot(d)
	m.Index = d.Uvarint()
	m.Commit = d.Uvarint()
	m.ReadSeq = d.Uvarint()
	flags := d.Byte()
	if d.Err() == nil && flags&^msgFlagsKnown != 0 {
		return nil, fmt.Errorf("paxos: decoding message: %w: unknown flags %#x", consensus.ErrMalformed, flags)
	}
	m.Reject = flags&msgFlagReject != 0
	m.Last = flags&msgFlagLast != 0
	if d.Err() == nil && m.Last && t != MsgSnap && t != MsgSnapResp {
		return nil, fmt.Errorf("paxos: decoding message: %w: flag Last on %v", consensus.ErrMalformed, t)
	}
	m.Entries = readEntryList(d, PromiseEntriesMax)
	if n := d.Count(2, PromiseEntriesMax); n > 0 {
		m.Ballots = make([]Ballot, n)
		for i := range m.Ballots {
			m.Ballots[i] = readBallot(d)
		}
	}
	if n := d.Count(1, PromiseEntriesMax); n > 0 {
		m.Slots = make([]uint64, n)
		for i := range m.Slots {
			m.Slots[i] = d.Uvarint()
		}
	}
	if t == MsgSnap || t == MsgSnapResp {
		m.Snapshot = readSnapshotMeta(d)
		off := d.Uvarint()
		if d.Err() == nil && off > 1<<62 {
			return nil, fmt.Errorf("paxos: decoding message: %w: snapshot offset %d", consensus.ErrMalformed, off)
		}
		m.Offset = int64(off)
		m.Data = d.Bytes()
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("paxos: decoding message: %w", err)
	}
	return m, nil
}

package gossip

import (
	"encoding/binary"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// formatVersion is written before every message.
const formatVersion byte = 1

// Message flags.
const flagReply byte = 1

// MessageCodec encodes gossip messages (*Message) for a transport and
// decodes them into *Message. It implements consensus.MessageCodec.
//
// Encoding: version, type, from, from address, to, seq, target, target
// address, flags (bit 0: reply), the number of updates, then each update:
// ID, incarnation, state (one byte), accuser, address, metadata. Numbers
// are unsigned varints; addresses and metadata are length-prefixed byte
// strings. A message must be valid (see Step) to encode, and decoding
// checks the same rules, so decoding what was encoded gives an equal
// message (with empty metadata as nil).
var MessageCodec consensus.MessageCodec = msgCodec{}

type msgCodec struct{}

func (msgCodec) AppendMessage(buf []byte, p consensus.Payload) ([]byte, error) {
	m, ok := p.(*Message)
	if !ok || m == nil {
		return buf, fmt.Errorf("gossip: cannot encode message payload %T", p)
	}
	if err := m.validate(); err != nil {
		return buf, fmt.Errorf("gossip: cannot encode: %w", err)
	}
	buf = append(buf, formatVersion, byte(m.Type))
	buf = binary.AppendUvarint(buf, uint64(m.From))
	buf = appendString(buf, m.FromAddr)
	buf = binary.AppendUvarint(buf, uint64(m.To))
	buf = binary.AppendUvarint(buf, m.Seq)
	buf = binary.AppendUvarint(buf, uint64(m.Target))
	buf = appendString(buf, m.TargetAddr)
	var flags byte
	if m.Reply {
		flags |= flagReply
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, uint64(len(m.Updates)))
	for i := range m.Updates {
		buf = appendUpdate(buf, &m.Updates[i])
	}
	return buf, nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendUpdate(buf []byte, u *Update) []byte {
	buf = binary.AppendUvarint(buf, uint64(u.ID))
	buf = binary.AppendUvarint(buf, u.Incarnation)
	buf = append(buf, byte(u.State))
	buf = binary.AppendUvarint(buf, uint64(u.From))
	buf = appendString(buf, u.Addr)
	buf = binary.AppendUvarint(buf, uint64(len(u.Meta)))
	return append(buf, u.Meta...)
}

func (msgCodec) DecodeMessage(data []byte) (consensus.Payload, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != formatVersion {
		return nil, fmt.Errorf("%w: gossip message format version %d, want %d", consensus.ErrMalformed, v, formatVersion)
	}
	m := &Message{Type: MsgType(d.Byte())}
	m.From = consensus.NodeID(d.Uvarint())
	m.FromAddr = string(d.Bytes())
	m.To = consensus.NodeID(d.Uvarint())
	m.Seq = d.Uvarint()
	m.Target = consensus.NodeID(d.Uvarint())
	m.TargetAddr = string(d.Bytes())
	flags := d.Byte()
	if d.Err() == nil && flags&^flagReply != 0 {
		return nil, fmt.Errorf("%w: gossip message flags %#x", consensus.ErrMalformed, flags)
	}
	m.Reply = flags&flagReply != 0
	if n := d.Count(updateSizeMin, MembersMaxLimit); n > 0 {
		m.Updates = make([]Update, n)
		for i := range m.Updates {
			u := &m.Updates[i]
			u.ID = consensus.NodeID(d.Uvarint())
			u.Incarnation = d.Uvarint()
			u.State = State(d.Byte())
			u.From = consensus.NodeID(d.Uvarint())
			u.Addr = string(d.Bytes())
			u.Meta = d.Bytes()
		}
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// validate checks the rules every message obeys; its errors match
// consensus.ErrMalformed.
func (m *Message) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: gossip: "+format, append([]any{consensus.ErrMalformed}, args...)...)
	}
	switch {
	case m.Type == 0 || m.Type > msgTypeLast:
		return bad("unknown message type %d", m.Type)
	case m.From == consensus.None:
		return bad("%v from node 0", m.Type)
	case m.FromAddr == "" || len(m.FromAddr) > AddrBytesMax:
		return bad("%v sender address of %d bytes (allowed 1..%d)", m.Type, len(m.FromAddr), AddrBytesMax)
	case m.Type == MsgPingReq && (m.Target == consensus.None || m.TargetAddr == "" || len(m.TargetAddr) > AddrBytesMax):
		return bad("ping-req without a valid target (node %d, address of %d bytes)", m.Target, len(m.TargetAddr))
	case m.Type != MsgPingReq && (m.Target != consensus.None || m.TargetAddr != ""):
		return bad("%v with a target", m.Type)
	case m.Reply && m.Type != MsgPushPull:
		return bad("%v marked as a reply", m.Type)
	case len(m.Updates) > MembersMaxLimit:
		return bad("%d updates (allowed %d)", len(m.Updates), MembersMaxLimit)
	}
	for i := range m.Updates {
		u := &m.Updates[i]
		switch {
		case u.ID == consensus.None:
			return bad("update about node 0")
		case u.State == 0 || u.State > stateLast:
			return bad("update about %d with unknown state %d", u.ID, u.State)
		case len(u.Addr) > AddrBytesMax:
			return bad("update about %d with an address of %d bytes (allowed %d)", u.ID, len(u.Addr), AddrBytesMax)
		case len(u.Meta) > MetaBytesMaxLimit:
			return bad("update about %d with %d bytes of metadata (allowed %d)", u.ID, len(u.Meta), MetaBytesMaxLimit)
		}
	}
	return nil
}

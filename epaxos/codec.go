package epaxos

import (
	"encoding/binary"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// Record tags of the durable encoding. A tag is never reused.
const (
	recordTagInstance   byte = 1
	recordTagCheckpoint byte = 2
)

// formatVersion is written before every record and message. Version 2
// added the batched commands (and the record's changed byte); version 1
// was never released, and is refused.
const formatVersion byte = 2

// Codec encodes EPaxos' durable records (Instance and Checkpoint, by
// value or pointer) and decodes them (as values). It implements
// consensus.RecordCodec.
//
// Instance encoding: version, tag, replica, instance, status, promised
// (round, node), accepted (round, node), changed (one byte), flags (bit 0:
// no-op), seq, deps (count, then replica and instance each), the command
// as consensus.AppendEntry encodes an entry with zero index, term and
// type, and the batched commands (count, then each the same way).
//
// Checkpoint encoding: version, tag, the snapshot's index and term, its
// protocol state (length-prefixed), next, then the instances (count, then
// each as an Instance record after its version and tag).
var Codec consensus.RecordCodec = codec{}

type codec struct{}

func (codec) AppendRecord(buf []byte, r consensus.Record) ([]byte, error) {
	var in *Instance
	switch v := r.(type) {
	case Instance:
		in = &v
	case *Instance:
		in = v
	case Checkpoint:
		return appendCheckpoint(buf, &v)
	case *Checkpoint:
		return appendCheckpoint(buf, v)
	default:
		return buf, fmt.Errorf("epaxos: cannot encode record of type %T", r)
	}
	if err := in.validate(); err != nil {
		return buf, fmt.Errorf("epaxos: cannot encode: %w", err)
	}
	if err := checkBounds(&in.Command, in.Batched, len(in.Deps)); err != nil {
		return buf, err
	}
	buf = append(buf, formatVersion, recordTagInstance)
	return appendInstance(buf, in), nil
}

func appendInstance(buf []byte, in *Instance) []byte {
	buf = appendID(buf, in.ID)
	buf = append(buf, byte(in.Status))
	buf = appendBallot(buf, in.Promised)
	buf = appendBallot(buf, in.Accepted)
	buf = append(buf, boolByte(in.Changed))
	return appendBody(buf, in.NoOp, &in.Command, in.Batched, in.Seq, in.Deps)
}

func appendCheckpoint(buf []byte, cp *Checkpoint) ([]byte, error) {
	if _, err := cp.validate(); err != nil {
		return buf, fmt.Errorf("epaxos: cannot encode: %w", err)
	}
	for i := range cp.Instances {
		in := &cp.Instances[i]
		if err := checkBounds(&in.Command, in.Batched, len(in.Deps)); err != nil {
			return buf, err
		}
	}
	buf = append(buf, formatVersion, recordTagCheckpoint)
	buf = binary.AppendUvarint(buf, cp.Snapshot.Index)
	buf = binary.AppendUvarint(buf, cp.Snapshot.Term)
	buf = binary.AppendUvarint(buf, uint64(len(cp.Snapshot.Protocol)))
	buf = append(buf, cp.Snapshot.Protocol...)
	buf = binary.AppendUvarint(buf, cp.Next)
	buf = binary.AppendUvarint(buf, uint64(len(cp.Instances)))
	for i := range cp.Instances {
		buf = appendInstance(buf, &cp.Instances[i])
	}
	return buf, nil
}

// instanceBytesMin is the shortest encoded instance after its version and
// tag: two IDs' worth of one-byte fields, status, two ballots, changed,
// flags, seq, deps count, a command and the batch count.
const instanceBytesMin = 2 + 1 + 4 + 1 + 1 + 1 + 1 + entryBytesMin + 1

func readInstance(d *consensus.Decoder) (Instance, error) {
	var in Instance
	in.ID = readID(d)
	in.Status = Status(d.Byte())
	in.Promised = readBallot(d)
	in.Accepted = readBallot(d)
	changed := d.Byte()
	if d.Err() == nil && changed > 1 {
		return in, fmt.Errorf("%w: epaxos record changed byte %d", consensus.ErrMalformed, changed)
	}
	in.Changed = changed == 1
	var bad error
	in.NoOp, in.Command, in.Batched, in.Seq, in.Deps, bad = readBody(d)
	return in, bad
}

func (codec) DecodeRecord(data []byte) (consensus.Record, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != formatVersion {
		return nil, fmt.Errorf("%w: epaxos record format version %d; this build reads version %d", consensus.ErrMalformed, v, formatVersion)
	}
	t := d.Byte()
	if d.Err() == nil && t != recordTagInstance && t != recordTagCheckpoint {
		return nil, fmt.Errorf("%w: epaxos record tag %d", consensus.ErrMalformed, t)
	}
	if t == recordTagCheckpoint {
		return decodeCheckpoint(d)
	}
	in, bad := readInstance(d)
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("epaxos: %w", err)
	}
	if bad != nil {
		return nil, bad
	}
	if err := in.validate(); err != nil {
		return nil, fmt.Errorf("%w: epaxos: %v", consensus.ErrMalformed, err)
	}
	return in, nil
}

func decodeCheckpoint(d *consensus.Decoder) (consensus.Record, error) {
	var cp Checkpoint
	cp.Snapshot.Index = d.Uvarint()
	cp.Snapshot.Term = d.Uvarint()
	cp.Snapshot.Protocol = d.Bytes()
	cp.Next = d.Uvarint()
	var bad error
	if n := d.Count(instanceBytesMin, CheckpointInstancesMax); n > 0 {
		cp.Instances = make([]Instance, n)
		for i := range cp.Instances {
			var err error
			cp.Instances[i], err = readInstance(d)
			if bad == nil {
				bad = err
			}
			if d.Err() != nil {
				break
			}
		}
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("epaxos: %w", err)
	}
	if bad != nil {
		return nil, bad
	}
	if _, err := cp.validate(); err != nil {
		return nil, fmt.Errorf("%w: epaxos: %v", consensus.ErrMalformed, err)
	}
	return cp, nil
}

// checkBounds reports a command, batch or dependency list larger than a
// decoder accepts.
func checkBounds(first *consensus.Command, batched []consensus.Command, deps int) error {
	if deps > DepsMax {
		return fmt.Errorf("epaxos: cannot encode: %d dependencies; at most %d", deps, DepsMax)
	}
	if len(batched) >= BatchCommandsMaxLimit {
		return fmt.Errorf("epaxos: cannot encode: %d commands in one instance; at most %d", 1+len(batched), BatchCommandsMaxLimit)
	}
	check := func(cmd *consensus.Command) error {
		if len(cmd.Data) > consensus.EncodedBytesMax || len(cmd.Keys) > consensus.EncodedKeysMax {
			return fmt.Errorf("epaxos: cannot encode: command out of bounds")
		}
		for _, k := range cmd.Keys {
			if len(k) > consensus.EncodedBytesMax {
				return fmt.Errorf("epaxos: cannot encode: key out of bounds")
			}
		}
		return nil
	}
	if err := check(first); err != nil {
		return err
	}
	for i := range batched {
		if err := check(&batched[i]); err != nil {
			return err
		}
	}
	return nil
}

func appendID(buf []byte, id InstanceID) []byte {
	buf = binary.AppendUvarint(buf, uint64(id.Replica))
	return binary.AppendUvarint(buf, id.Instance)
}

func readID(d *consensus.Decoder) InstanceID {
	return InstanceID{Replica: consensus.NodeID(d.Uvarint()), Instance: d.Uvarint()}
}

func appendBallot(buf []byte, b Ballot) []byte {
	buf = binary.AppendUvarint(buf, b.Round)
	return binary.AppendUvarint(buf, uint64(b.Node))
}

func readBallot(d *consensus.Decoder) Ballot {
	return Ballot{Round: d.Uvarint(), Node: consensus.NodeID(d.Uvarint())}
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

const flagNoOp byte = 1

func appendBody(buf []byte, noop bool, first *consensus.Command, batched []consensus.Command, seq uint64, deps []InstanceID) []byte {
	var flags byte
	if noop {
		flags |= flagNoOp
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, seq)
	buf = binary.AppendUvarint(buf, uint64(len(deps)))
	for _, id := range deps {
		buf = appendID(buf, id)
	}
	buf = consensus.AppendEntry(buf, &consensus.Entry{Command: *first})
	buf = binary.AppendUvarint(buf, uint64(len(batched)))
	for i := range batched {
		buf = consensus.AppendEntry(buf, &consensus.Entry{Command: batched[i]})
	}
	return buf
}

// entryBytesMin is the shortest encoding of a command by
// consensus.AppendEntry: seven one-byte fields (index, term, type, client,
// sequence, key count, data length).
const entryBytesMin = 7

// readBody reads what appendBody wrote. bad reports a well-formed
// encoding of values appendBody never writes (unknown flags, an entry
// header that is not zero).
func readBody(d *consensus.Decoder) (noop bool, first consensus.Command, batched []consensus.Command, seq uint64, deps []InstanceID, bad error) {
	flags := d.Byte()
	if d.Err() == nil && flags&^flagNoOp != 0 {
		bad = fmt.Errorf("%w: epaxos: unknown flags %#x", consensus.ErrMalformed, flags)
	}
	noop = flags&flagNoOp != 0
	seq = d.Uvarint()
	if n := d.Count(2, DepsMax); n > 0 {
		deps = make([]InstanceID, n)
		for i := range deps {
			deps[i] = readID(d)
		}
	}
	command := func() consensus.Command {
		e := d.Entry()
		if d.Err() == nil && bad == nil && (e.Index != 0 || e.Term != 0 || e.Type != consensus.EntryNormal) {
			bad = fmt.Errorf("%w: epaxos: command header not zero", consensus.ErrMalformed)
		}
		return e.Command
	}
	first = command()
	if n := d.Count(entryBytesMin, BatchCommandsMaxLimit-1); n > 0 {
		batched = make([]consensus.Command, n)
		for i := range batched {
			batched[i] = command()
		}
	}
	return noop, first, batched, seq, deps, bad
}

// MessageCodec encodes EPaxos message payloads (*Msg) for a transport and
// decodes them into *Msg. It implements consensus.MessageCodec.
//
// Encoding: version, type, ballot (round, node), instance (replica,
// number), changed (one byte), status (one byte), accepted ballot (round,
// node), then flags, seq, deps, command and batched commands as in an
// Instance record. Every field is written whatever the type, so decoding
// what was encoded gives an equal message. The snapshot-transfer types
// (MsgSnapRequest, MsgSnap) add the snapshot's index and term, its
// protocol state (length-prefixed), offset, data (length-prefixed) and
// last (one byte); other types must leave those fields zero.
var MessageCodec consensus.MessageCodec = msgCodec{}

type msgCodec struct{}

func (msgCodec) AppendMessage(buf []byte, p consensus.Payload) ([]byte, error) {
	m, ok := p.(*Msg)
	if !ok || m == nil {
		return buf, fmt.Errorf("epaxos: cannot encode message payload %T", p)
	}
	if m.Type == 0 || m.Type > msgTypeLast {
		return buf, fmt.Errorf("epaxos: cannot encode message of unknown type %d", m.Type)
	}
	if m.Status > statusLast {
		return buf, fmt.Errorf("epaxos: cannot encode message with status %d", m.Status)
	}
	if err := checkBounds(&m.Command, m.Batched, len(m.Deps)); err != nil {
		return buf, err
	}
	buf = append(buf, formatVersion, byte(m.Type))
	buf = appendBallot(buf, m.Ballot)
	buf = appendID(buf, m.ID)
	snap := isSnapshotMsg(m.Type)
	switch {
	case !snap && (m.Snapshot.Index != 0 || m.Snapshot.Term != 0 || m.Snapshot.Protocol != nil || m.Snapshot.Voters != nil || m.Offset != 0 || m.Data != nil || m.Last):
		return buf, fmt.Errorf("epaxos: cannot encode %v with snapshot fields", m.Type)
	case snap && (m.Offset < 0 || len(m.Snapshot.Protocol) > SnapshotStateBytesMax || len(m.Data) > SnapshotChunkBytesMax || m.Snapshot.Voters != nil):
		return buf, fmt.Errorf("epaxos: cannot encode %v: offset %d, %d bytes of state, %d bytes of data, %d voters", m.Type, m.Offset, len(m.Snapshot.Protocol), len(m.Data), len(m.Snapshot.Voters))
	}
	buf = append(buf, boolByte(m.Changed), byte(m.Status))
	buf = appendBallot(buf, m.Accepted)
	buf = appendBody(buf, m.NoOp, &m.Command, m.Batched, m.Seq, m.Deps)
	if snap {
		buf = binary.AppendUvarint(buf, m.Snapshot.Index)
		buf = binary.AppendUvarint(buf, m.Snapshot.Term)
		buf = binary.AppendUvarint(buf, uint64(len(m.Snapshot.Protocol)))
		buf = append(buf, m.Snapshot.Protocol...)
		buf = binary.AppendUvarint(buf, uint64(m.Offset))
		buf = binary.AppendUvarint(buf, uint64(len(m.Data)))
		buf = append(buf, m.Data...)
		buf = append(buf, boolByte(m.Last))
	}
	return buf, nil
}

func (msgCodec) DecodeMessage(data []byte) (consensus.Payload, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != formatVersion {
		return nil, fmt.Errorf("%w: epaxos message format version %d; this build reads version %d", consensus.ErrMalformed, v, formatVersion)
	}
	m := &Msg{Type: MsgType(d.Byte())}
	if d.Err() == nil && (m.Type == 0 || m.Type > msgTypeLast) {
		return nil, fmt.Errorf("%w: epaxos message type %d", consensus.ErrMalformed, m.Type)
	}
	m.Ballot = readBallot(d)
	m.ID = readID(d)
	changed := d.Byte()
	if d.Err() == nil && changed > 1 {
		return nil, fmt.Errorf("%w: epaxos message changed byte %d", consensus.ErrMalformed, changed)
	}
	m.Changed = changed == 1
	m.Status = Status(d.Byte())
	if d.Err() == nil && m.Status > statusLast {
		return nil, fmt.Errorf("%w: epaxos message status %d", consensus.ErrMalformed, m.Status)
	}
	m.Accepted = readBallot(d)
	var bad error
	m.NoOp, m.Command, m.Batched, m.Seq, m.Deps, bad = readBody(d)
	if isSnapshotMsg(m.Type) {
		m.Snapshot.Index = d.Uvarint()
		m.Snapshot.Term = d.Uvarint()
		m.Snapshot.Protocol = d.Bytes()
		off := d.Uvarint()
		m.Data = d.Bytes()
		last := d.Byte()
		if d.Err() == nil && bad == nil {
			switch {
			case off > 1<<62:
				bad = fmt.Errorf("%w: epaxos snapshot offset %d", consensus.ErrMalformed, off)
			case last > 1:
				bad = fmt.Errorf("%w: epaxos message last byte %d", consensus.ErrMalformed, last)
			case len(m.Snapshot.Protocol) > SnapshotStateBytesMax || len(m.Data) > SnapshotChunkBytesMax:
				bad = fmt.Errorf("%w: epaxos snapshot chunk of %d bytes of state and %d of data", consensus.ErrMalformed, len(m.Snapshot.Protocol), len(m.Data))
			}
		}
		m.Offset, m.Last = int64(off), last == 1
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("epaxos: %w", err)
	}
	if bad != nil {
		return nil, bad
	}
	return m, nil
}

package paxos

import (
	"encoding/binary"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// Record tags of the durable encoding. A tag is never reused.
const (
	recordTagHardState byte = 1
	recordTagAccept    byte = 2
	recordTagLearn     byte = 3
	// recordTagCheckpoint: snapshot meta (index, term, voters), HardState
	// (promised, tried, commit), log index, entries, ballots.
	recordTagCheckpoint byte = 4
)

// recordFormatVersion is written before every record.
const recordFormatVersion byte = 1

// entryBytesMin is the fewest bytes an encoded entry occupies (index, term,
// type, client, seq, key count, data length: one byte each).
const entryBytesMin = 7

// Codec encodes Paxos' durable records (HardState, Accept, Learn and
// Checkpoint, by
// value or pointer) and decodes them (as values). It implements
// consensus.RecordCodec.
var Codec consensus.RecordCodec = codec{}

type codec struct{}

func (codec) AppendRecord(buf []byte, r consensus.Record) ([]byte, error) {
	switch rec := r.(type) {
	case HardState:
		return appendHardState(buf, &rec), nil
	case *HardState:
		return appendHardState(buf, rec), nil
	case Accept:
		return appendAccept(buf, &rec)
	case *Accept:
		return appendAccept(buf, rec)
	case Learn:
		return appendLearn(buf, &rec)
	case *Learn:
		return appendLearn(buf, rec)
	case Checkpoint:
		return appendCheckpoint(buf, &rec)
	case *Checkpoint:
		return appendCheckpoint(buf, rec)
	}
	return buf, fmt.Errorf("paxos: cannot encode record of type %T", r)
}

func appendBallot(buf []byte, b Ballot) []byte {
	buf = binary.AppendUvarint(buf, b.Round)
	return binary.AppendUvarint(buf, uint64(b.Node))
}

func readBallot(d *consensus.Decoder) Ballot {
	return Ballot{Round: d.Uvarint(), Node: consensus.NodeID(d.Uvarint())}
}

func appendHardState(buf []byte, hs *HardState) []byte {
	buf = append(buf, recordFormatVersion, recordTagHardState)
	buf = appendBallot(buf, hs.Promised)
	buf = binary.AppendUvarint(buf, hs.Tried)
	return binary.AppendUvarint(buf, hs.Commit)
}

func appendAccept(buf []byte, a *Accept) ([]byte, error) {
	if err := validateEntries("Accept", a.Entries); err != nil {
		return buf, fmt.Errorf("paxos: malformed %w", err)
	}
	if a.Ballot.IsZero() {
		return buf, fmt.Errorf("paxos: malformed Accept record at the zero ballot")
	}
	buf = append(buf, recordFormatVersion, recordTagAccept)
	buf = appendBallot(buf, a.Ballot)
	return appendEntryList(buf, a.Entries), nil
}

func appendLearn(buf []byte, l *Learn) ([]byte, error) {
	if err := validateEntries("Learn", l.Entries); err != nil {
		return buf, fmt.Errorf("paxos: malformed %w", err)
	}
	buf = append(buf, recordFormatVersion, recordTagLearn)
	return appendEntryList(buf, l.Entries), nil
}

func appendCheckpoint(buf []byte, cp *Checkpoint) ([]byte, error) {
	if err := cp.validate(); err != nil {
		return buf, fmt.Errorf("paxos: malformed Checkpoint record: %w", err)
	}
	buf = append(buf, recordFormatVersion, recordTagCheckpoint)
	buf = appendSnapshotMeta(buf, &cp.Snapshot)
	buf = appendBallot(buf, cp.HardState.Promised)
	buf = binary.AppendUvarint(buf, cp.HardState.Tried)
	buf = binary.AppendUvarint(buf, cp.HardState.Commit)
	buf = binary.AppendUvarint(buf, cp.LogIndex)
	buf = appendEntryList(buf, cp.Entries)
	return appendBallotList(buf, cp.Ballots), nil
}

func appendSnapshotMeta(buf []byte, m *consensus.SnapshotMeta) []byte {
	buf = binary.AppendUvarint(buf, m.Index)
	buf = binary.AppendUvarint(buf, m.Term)
	buf = binary.AppendUvarint(buf, uint64(len(m.Voters)))
	for _, v := range m.Voters {
		buf = binary.AppendUvarint(buf, uint64(v))
	}
	return buf
}

func readSnapshotMeta(d *consensus.Decoder) consensus.SnapshotMeta {
	m := consensus.SnapshotMeta{Index: d.Uvarint(), Term: d.Uvarint()}
	if n := d.Count(1, PeersMax); n > 0 {
		m.Voters = make([]consensus.NodeID, n)
		for i := range m.Voters {
			m.Voters[i] = consensus.NodeID(d.Uvarint())
		}
	}
	return m
}

func appendBallotList(buf []byte, bs []Ballot) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(bs)))
	for _, b := range bs {
		buf = appendBallot(buf, b)
	}
	return buf
}

func readBallotList(d *consensus.Decoder, limit uint64) []Ballot {
	n := d.Count(2, limit)
	if n == 0 {
		return nil
	}
	bs := make([]Ballot, n)
	for i := range bs {
		bs[i] = readBallot(d)
	}
	return bs
}

func appendEntryList(buf []byte, ents []consensus.Entry) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(ents)))
	for i := range ents {
		buf = consensus.AppendEntry(buf, &ents[i])
	}
	return buf
}

func readEntryList(d *consensus.Decoder, limit uint64) []consensus.Entry {
	n := d.Count(entryBytesMin, limit)
	if n == 0 {
		return nil
	}
	ents := make([]consensus.Entry, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		ents = append(ents, d.Entry())
	}
	return ents
}

func (codec) DecodeRecord(data []byte) (consensus.Record, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != recordFormatVersion {
		return nil, fmt.Errorf("%w: paxos record format version %d, want %d", consensus.ErrMalformed, v, recordFormatVersion)
	}
	tag := d.Byte()
	var rec consensus.Record
	var check error
	switch {
	case d.Err() != nil:
	case tag == recordTagHardState:
		hs := HardState{Promised: readBallot(d), Tried: d.Uvarint(), Commit: d.Uvarint()}
		rec = hs
	case tag == recordTagAccept:
		a := Accept{Ballot: readBallot(d)}
		a.Entries = readEntryList(d, consensus.EncodedBytesMax)
		if d.Err() == nil {
			check = validateEntries("Accept", a.Entries)
			if check == nil && a.Ballot.IsZero() {
				check = fmt.Errorf("Accept record at the zero ballot")
			}
		}
		rec = a
	case tag == recordTagLearn:
		l := Learn{Entries: readEntryList(d, consensus.EncodedBytesMax)}
		if d.Err() == nil {
			check = validateEntries("Learn", l.Entries)
		}
		rec = l
	case tag == recordTagCheckpoint:
		cp := Checkpoint{Snapshot: readSnapshotMeta(d)}
		cp.HardState = HardState{Promised: readBallot(d), Tried: d.Uvarint(), Commit: d.Uvarint()}
		cp.LogIndex = d.Uvarint()
		cp.Entries = readEntryList(d, consensus.EncodedBytesMax)
		cp.Ballots = readBallotList(d, consensus.EncodedBytesMax)
		if d.Err() == nil {
			check = cp.validate()
		}
		rec = cp
	default:
		return nil, fmt.Errorf("%w: unknown paxos record tag %d", consensus.ErrMalformed, tag)
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("paxos: decoding record: %w", err)
	}
	if check != nil {
		return nil, fmt.Errorf("paxos: decoding record: %w: %v", consensus.ErrMalformed, check)
	}
	return rec, nil
}

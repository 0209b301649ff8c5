package raft

import (
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// Record tags of the durable encoding. A tag is never reused for another
// meaning.
const (
	recordTagHardState byte = 1
	recordTagAppend    byte = 2
	// recordTagCheckpoint: snapshot meta (index, term, voters), HardState,
	// log index and term, then the entries.
	recordTagCheckpoint byte = 3
)

// recordFormatVersion is written before every record, so the encoding can
// change later without ambiguity.
const recordFormatVersion byte = 1

// Codec encodes Raft's durable records (HardState, Append and Checkpoint,
// by value or pointer) for storage, and decodes them. It implements
// consensus.RecordCodec.
var Codec consensus.RecordCodec = codec{}

type codec struct{}

func (codec) AppendRecord(buf []byte, r consensus.Record) ([]byte, error) {
	switch rec := r.(type) {
	case HardState:
		return appendHardState(buf, &rec), nil
	case *HardState:
		return appendHardState(buf, rec), nil
	case Append:
		return appendAppend(buf, &rec)
	case *Append:
		return appendAppend(buf, rec)
	case Checkpoint:
		return appendCheckpoint(buf, &rec)
	case *Checkpoint:
		return appendCheckpoint(buf, rec)
	}
	return buf, fmt.Errorf("raft: cannot encode record of type %T", r)
}

func appendHardState(buf []byte, hs *HardState) []byte {
	buf = append(buf, recordFormatVersion, recordTagHardState)
	buf = appendUvarint(buf, hs.Term)
	buf = appendUvarint(buf, uint64(hs.Vote))
	return appendUvarint(buf, hs.Commit)
}

func appendAppend(buf []byte, a *Append) ([]byte, error) {
	if len(a.Entries) == 0 || a.Entries[0].Index != a.Index {
		return buf, fmt.Errorf("raft: malformed Append record: index %d, %d entries", a.Index, len(a.Entries))
	}
	buf = append(buf, recordFormatVersion, recordTagAppend)
	buf = appendUvarint(buf, a.Index)
	buf = appendUvarint(buf, uint64(len(a.Entries)))
	for i := range a.Entries {
		buf = consensus.AppendEntry(buf, &a.Entries[i])
	}
	return buf, nil
}

func appendCheckpoint(buf []byte, cp *Checkpoint) ([]byte, error) {
	if err := cp.validate(); err != nil {
		return buf, fmt.Errorf("raft: malformed Checkpoint record: %w", err)
	}
	buf = append(buf, recordFormatVersion, recordTagCheckpoint)
	buf = appendUvarint(buf, cp.Snapshot.Index)
	buf = appendUvarint(buf, cp.Snapshot.Term)
	buf = appendUvarint(buf, uint64(len(cp.Snapshot.Voters)))
	for _, v := range cp.Snapshot.Voters {
		buf = appendUvarint(buf, uint64(v))
	}
	buf = appendUvarint(buf, cp.HardState.Term)
	buf = appendUvarint(buf, uint64(cp.HardState.Vote))
	buf = appendUvarint(buf, cp.HardState.Commit)
	buf = appendUvarint(buf, cp.LogIndex)
	buf = appendUvarint(buf, cp.LogTerm)
	buf = appendUvarint(buf, uint64(len(cp.Entries)))
	for i := range cp.Entries {
		buf = consensus.AppendEntry(buf, &cp.Entries[i])
	}
	return buf, nil
}

func appendUvarint(buf []byte, v uint64) []byte {
	for v >= 0x80 {
		buf = append(buf, byte(v)|0x80)
		v >>= 7
	}
	return append(buf, byte(v))
}

func (codec) DecodeRecord(data []byte) (consensus.Record, error) {
	d := consensus.NewDecoder(data)
	if v := d.Byte(); d.Err() == nil && v != recordFormatVersion {
		return nil, fmt.Errorf("%w: raft record format version %d, want %d", consensus.ErrMalformed, v, recordFormatVersion)
	}
	tag := d.Byte()
	var rec consensus.Record
	switch {
	case d.Err() != nil:
	case tag == recordTagHardState:
		hs := HardState{Term: d.Uvarint(), Vote: consensus.NodeID(d.Uvarint()), Commit: d.Uvarint()}
		rec = hs
	case tag == recordTagAppend:
		a := Append{Index: d.Uvarint()}
		n := d.Count(7, consensus.EncodedBytesMax)
		if d.Err() == nil && n == 0 {
			return nil, fmt.Errorf("%w: raft Append record with no entries", consensus.ErrMalformed)
		}
		a.Entries = make([]consensus.Entry, 0, n)
		for i := 0; i < n && d.Err() == nil; i++ {
			e := d.Entry()
			if d.Err() == nil && e.Index != a.Index+uint64(i) {
				return nil, fmt.Errorf("%w: raft Append record at %d holds entry %d at position %d", consensus.ErrMalformed, a.Index, e.Index, i)
			}
			a.Entries = append(a.Entries, e)
		}
		rec = a
	case tag == recordTagCheckpoint:
		var cp Checkpoint
		cp.Snapshot.Index = d.Uvarint()
		cp.Snapshot.Term = d.Uvarint()
		if n := d.Count(1, PeersMax); n > 0 {
			cp.Snapshot.Voters = make([]consensus.NodeID, n)
			for i := range cp.Snapshot.Voters {
				cp.Snapshot.Voters[i] = consensus.NodeID(d.Uvarint())
			}
		}
		cp.HardState = HardState{Term: d.Uvarint(), Vote: consensus.NodeID(d.Uvarint()), Commit: d.Uvarint()}
		cp.LogIndex = d.Uvarint()
		cp.LogTerm = d.Uvarint()
		if n := d.Count(7, consensus.EncodedBytesMax); n > 0 {
			cp.Entries = make([]consensus.Entry, 0, n)
			for i := 0; i < n && d.Err() == nil; i++ {
				cp.Entries = append(cp.Entries, d.Entry())
			}
		}
		if d.Err() == nil {
			if err := cp.validate(); err != nil {
				return nil, fmt.Errorf("%w: raft %v", consensus.ErrMalformed, err)
			}
		}
		rec = cp
	default:
		return nil, fmt.Errorf("%w: unknown raft record tag %d", consensus.ErrMalformed, tag)
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("raft: decoding record: %w", err)
	}
	return rec, nil
}

package raft

import (
	"errors"
	"reflect"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func TestRecordCodecRoundTrip(t *testing.T) {
	recs := []consensus.Record{
		HardState{Term: 3, Vote: 2, Commit: 17},
		HardState{},
		Append{Index: 5, Entries: []consensus.Entry{
			{Index: 5, Term: 2, Type: consensus.EntryNoOp},
			{Index: 6, Term: 2, Command: consensus.Command{Session: consensus.Session{ClientID: 1, Seq: 4}, Keys: []string{"k"}, Data: []byte("v")}},
		}},
		Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 7, Term: 2, Voters: []consensus.NodeID{1, 2, 3}}, HardState: HardState{Term: 3, Vote: 1, Commit: 8},
			LogIndex: 6, LogTerm: 2, Entries: []consensus.Entry{{Index: 7, Term: 2}, {Index: 8, Term: 3, Command: consensus.Command{Data: []byte("x")}}}},
		Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 4, Term: 1}, HardState: HardState{Term: 1, Commit: 4}, LogIndex: 4, LogTerm: 1},
		Checkpoint{},
	}
	for _, r := range recs {
		buf, err := Codec.AppendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Codec.DecodeRecord(buf)
		if err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip: got %#v, want %#v", got, r)
		}
		// Pointers encode the same way.
		var pbuf []byte
		switch rec := r.(type) {
		case HardState:
			pbuf, _ = Codec.AppendRecord(nil, &rec)
		case Append:
			pbuf, _ = Codec.AppendRecord(nil, &rec)
		case Checkpoint:
			pbuf, _ = Codec.AppendRecord(nil, &rec)
		}
		if string(pbuf) != string(buf) {
			t.Fatalf("pointer and value encodings differ for %v", r)
		}
	}
}

func TestRecordCodecRejects(t *testing.T) {
	if _, err := Codec.AppendRecord(nil, Append{Index: 3}); err == nil {
		t.Fatal("empty Append encoded")
	}
	good, _ := Codec.AppendRecord(nil, Append{Index: 1, Entries: []consensus.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}}})
	for cut := 0; cut < len(good); cut++ {
		if _, err := Codec.DecodeRecord(good[:cut]); !errors.Is(err, consensus.ErrMalformed) {
			t.Fatalf("truncated at %d: want ErrMalformed, got %v", cut, err)
		}
	}
	cp, _ := Codec.AppendRecord(nil, Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 2, Term: 1, Voters: []consensus.NodeID{1}}, HardState: HardState{Term: 1, Commit: 2},
		LogIndex: 1, LogTerm: 1, Entries: []consensus.Entry{{Index: 2, Term: 1}}})
	for cut := 0; cut < len(cp); cut++ {
		if _, err := Codec.DecodeRecord(cp[:cut]); !errors.Is(err, consensus.ErrMalformed) {
			t.Fatalf("checkpoint truncated at %d: want ErrMalformed, got %v", cut, err)
		}
	}
	// A checkpoint that breaks its invariants neither encodes nor decodes.
	badCP := Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 3, Term: 1}, HardState: HardState{Term: 1, Commit: 3}, LogIndex: 1, LogTerm: 1,
		Entries: []consensus.Entry{{Index: 2, Term: 1}}}
	if _, err := Codec.AppendRecord(nil, badCP); err == nil {
		t.Fatal("checkpoint with its snapshot past its log encoded")
	}
	forged := append([]byte(nil), cp...)
	forged[2] = 3 // snapshot index 3, past the log
	if _, err := Codec.DecodeRecord(forged); !errors.Is(err, consensus.ErrMalformed) {
		t.Fatalf("forged checkpoint: want ErrMalformed, got %v", err)
	}
	bad := append([]byte(nil), good...)
	bad[0] = 9
	if _, err := Codec.DecodeRecord(bad); !errors.Is(err, consensus.ErrMalformed) {
		t.Fatalf("unknown version: want ErrMalformed, got %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	hs, _ := Codec.AppendRecord(nil, HardState{Term: 1, Vote: 1, Commit: 1})
	ap, _ := Codec.AppendRecord(nil, Append{Index: 1, Entries: []consensus.Entry{{Index: 1, Term: 1, Command: consensus.Command{Data: []byte("x")}}}})
	cp, _ := Codec.AppendRecord(nil, Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 2, Term: 1, Voters: []consensus.NodeID{1, 2}}, HardState: HardState{Term: 2, Vote: 1, Commit: 2},
		LogIndex: 1, LogTerm: 1, Entries: []consensus.Entry{{Index: 2, Term: 1}, {Index: 3, Term: 2, Command: consensus.Command{Data: []byte("y")}}}})
	f.Add(hs)
	f.Add(ap)
	f.Add(cp)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Codec.DecodeRecord(data)
		if err != nil {
			return
		}
		buf, err := Codec.AppendRecord(nil, r)
		if err != nil {
			t.Fatalf("decoded record %v does not encode: %v", r, err)
		}
		r2, err := Codec.DecodeRecord(buf)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoding changed the record: %v vs %v (%v)", r, r2, err)
		}
	})
}

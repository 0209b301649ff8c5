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
	bad := append([]byte(nil), good...)
	bad[0] = 9
	if _, err := Codec.DecodeRecord(bad); !errors.Is(err, consensus.ErrMalformed) {
		t.Fatalf("unknown version: want ErrMalformed, got %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	hs, _ := Codec.AppendRecord(nil, HardState{Term: 1, Vote: 1, Commit: 1})
	ap, _ := Codec.AppendRecord(nil, Append{Index: 1, Entries: []consensus.Entry{{Index: 1, Term: 1, Command: consensus.Command{Data: []byte("x")}}}})
	f.Add(hs)
	f.Add(ap)
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

package paxos

import (
	"errors"
	"reflect"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func recordSamples() []consensus.Record {
	return []consensus.Record{
		HardState{Promised: Ballot{Round: 7, Node: 2}, Tried: 4, Commit: 19},
		HardState{},
		Accept{Ballot: Ballot{Round: 3, Node: 1}, Entries: []consensus.Entry{
			{Index: 5, Term: 2, Type: consensus.EntryNoOp},
			{Index: 9, Term: 3, Command: consensus.Command{Session: consensus.Session{ClientID: 1, Seq: 4}, Keys: []string{"k"}, Data: []byte("v")}},
		}},
		Learn{Entries: []consensus.Entry{{Index: 1, Term: 1, Command: consensus.Command{Data: []byte("x")}}}},
		Checkpoint{
			Snapshot:  consensus.SnapshotMeta{Index: 5, Term: 2, Voters: []consensus.NodeID{1, 2, 3}},
			HardState: HardState{Promised: Ballot{Round: 7, Node: 2}, Tried: 4, Commit: 6},
			LogIndex:  4,
			Entries: []consensus.Entry{
				{Index: 5, Term: 2, Command: consensus.Command{Data: []byte("a")}},
				{Index: 6, Term: 3, Type: consensus.EntryNoOp},
				{Index: 9, Term: 7, Command: consensus.Command{Session: consensus.Session{ClientID: 3, Seq: 1}, Data: []byte("b")}},
			},
			Ballots: []Ballot{{}, {Round: 3, Node: 3}, {Round: 7, Node: 2}},
		},
		Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 3, Term: 1}, HardState: HardState{Commit: 3}, LogIndex: 3},
	}
}

func TestRecordCodecRoundTrip(t *testing.T) {
	for _, r := range recordSamples() {
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
		for i := range buf {
			if _, err := Codec.DecodeRecord(buf[:i]); err == nil || !errors.Is(err, consensus.ErrMalformed) {
				t.Fatalf("%v truncated to %d bytes: %v", r, i, err)
			}
		}
	}
	// Pointers encode like values.
	hs := HardState{Commit: 3}
	a, _ := Codec.AppendRecord(nil, hs)
	b, _ := Codec.AppendRecord(nil, &hs)
	if string(a) != string(b) {
		t.Fatal("pointer and value encode differently")
	}
	for _, bad := range []consensus.Record{Accept{Ballot: Ballot{1, 1}}, Accept{Entries: []consensus.Entry{{Index: 1}}}, Learn{Entries: []consensus.Entry{{Index: 0}}},
		Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 2}, LogIndex: 3, HardState: HardState{Commit: 3}}, // snapshot below the log
		Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 3}, LogIndex: 3, HardState: HardState{Commit: 4}}, // commit without its slot
		Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 4, Term: 2}, LogIndex: 3, HardState: HardState{Commit: 4}, // wrong snapshot term
			Entries: []consensus.Entry{{Index: 4, Term: 1}}, Ballots: []Ballot{{}}},
		Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 3}, LogIndex: 3, HardState: HardState{Commit: 3}, // ballot above the promise
			Entries: []consensus.Entry{{Index: 5, Term: 1}}, Ballots: []Ballot{{Round: 1, Node: 1}}},
	} {
		if _, err := Codec.AppendRecord(nil, bad); err == nil {
			t.Errorf("malformed %v encoded", bad)
		}
	}
}

// Rebuilding from records gives back the promise, the tried round, the
// accepted values with their ballots, and the chosen prefix.
func TestNewRebuildsFromRecords(t *testing.T) {
	cfg := DefaultConfig(2, ids(3), zeroRand{})
	recs := []consensus.Record{
		Accept{Ballot: Ballot{1, 1}, Entries: []consensus.Entry{{Index: 1, Term: 1, Command: cmd("a")}, {Index: 2, Term: 1, Command: cmd("b")}}},
		HardState{Promised: Ballot{1, 1}, Commit: 1},
		Learn{Entries: []consensus.Entry{{Index: 2, Term: 1, Command: cmd("B")}}},
		Accept{Ballot: Ballot{4, 1}, Entries: []consensus.Entry{{Index: 2, Term: 4, Command: cmd("ignored: chosen")}, {Index: 3, Term: 4, Command: cmd("c")}}},
		HardState{Promised: Ballot{5, 3}, Tried: 2, Commit: 2},
	}
	r, err := New(cfg, recs)
	if err != nil {
		t.Fatal(err)
	}
	if r.promised != (Ballot{5, 3}) || r.tried != 2 || r.commit != 2 {
		t.Fatalf("promised %v tried %d commit %d", r.promised, r.tried, r.commit)
	}
	if e, _ := r.Entry(2); string(e.Command.Data) != "B" {
		t.Fatalf("slot 2 = %s", FormatEntry(e))
	}
	if s := r.log[2]; s.accepted != (Ballot{4, 1}) || s.chosen {
		t.Fatalf("slot 3 accepted %v chosen %v", s.accepted, s.chosen)
	}
	rd := r.Ready()
	if len(rd.Committed) != 2 || len(rd.Persist) != 0 {
		t.Fatalf("restart Ready: %d committed, persist %v", len(rd.Committed), rd.Persist)
	}
	// Inconsistent records are refused.
	for _, bad := range [][]consensus.Record{
		{HardState{Commit: 1}},
		{HardState{Promised: Ballot{3, 1}}, HardState{Promised: Ballot{2, 1}}},
		{Accept{Ballot: Ballot{9, 1}, Entries: []consensus.Entry{{Index: 1}}}, HardState{Promised: Ballot{2, 1}}},
	} {
		if _, err := New(cfg, bad); err == nil {
			t.Errorf("New accepted %v", bad)
		}
	}
}

func messageSamples() []*Msg {
	ents := []consensus.Entry{{Index: 3, Term: 2, Command: consensus.Command{Session: consensus.Session{ClientID: 9, Seq: 1}, Keys: []string{"a", "b"}, Data: []byte("payload")}}, {Index: 4, Term: 2, Type: consensus.EntryNoOp}}
	return []*Msg{
		{Type: MsgPrepare, Ballot: Ballot{4, 1}, Index: 3},
		{Type: MsgPromise, Ballot: Ballot{4, 1}, Index: 3, Commit: 3, Entries: ents, Ballots: []Ballot{{2, 2}, {3, 3}}},
		{Type: MsgPromise, Ballot: Ballot{9, 2}, Reject: true},
		{Type: MsgAccept, Ballot: Ballot{4, 1}, Commit: 2, Entries: ents},
		{Type: MsgAccepted, Ballot: Ballot{4, 1}, Commit: 2, Slots: []uint64{3, 4, 1 << 40}},
		{Type: MsgHeartbeat, Ballot: Ballot{4, 1}, Commit: 9, ReadSeq: 77},
		{Type: MsgHeartbeatResp, Ballot: Ballot{4, 1}, Commit: 9, ReadSeq: 77},
		{Type: MsgLearn, Ballot: Ballot{4, 1}, Entries: ents},
		{Type: MsgLearnResp, Ballot: Ballot{4, 1}, Commit: 4},
		{Type: MsgSnap, Ballot: Ballot{4, 1}, Snapshot: consensus.SnapshotMeta{Index: 40, Term: 3, Voters: []consensus.NodeID{1, 2, 3}}, Offset: 4096, Data: []byte("chunk"), Last: true},
		{Type: MsgSnap, Ballot: Ballot{4, 1}, Snapshot: consensus.SnapshotMeta{Index: 40, Term: 3}, Data: []byte("c")},
		{Type: MsgSnapResp, Ballot: Ballot{4, 1}, Index: 40, Offset: 4101, Commit: 12},
		{Type: MsgSnapResp, Ballot: Ballot{4, 1}, Index: 40, Reject: true, Commit: 12},
	}
}

func TestMessageCodecRoundTrip(t *testing.T) {
	for _, m := range messageSamples() {
		buf, err := MessageCodec.AppendMessage(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MessageCodec.DecodeMessage(buf)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
		}
		if m.String() == "" || m.MessageType() == "" {
			t.Fatal("empty formatting")
		}
	}
	if _, err := MessageCodec.AppendMessage(nil, &Msg{}); err == nil {
		t.Fatal("a message of type 0 encoded")
	}
	for _, bad := range []*Msg{
		{Type: MsgAccept, Data: []byte("x")},
		{Type: MsgHeartbeat, Last: true},
		{Type: MsgSnap, Offset: -1},
	} {
		if _, err := MessageCodec.AppendMessage(nil, bad); err == nil {
			t.Errorf("malformed %v encoded", bad)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range recordSamples() {
		buf, err := Codec.AppendRecord(nil, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Codec.DecodeRecord(data)
		if err != nil {
			if !errors.Is(err, consensus.ErrMalformed) {
				t.Fatalf("decode error does not match ErrMalformed: %v", err)
			}
			return
		}
		buf, err := Codec.AppendRecord(nil, r)
		if err != nil {
			t.Fatalf("decoded record %v does not encode: %v", r, err)
		}
		r2, err := Codec.DecodeRecord(buf)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-decoding %v: %v, %v", r, r2, err)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range messageSamples() {
		buf, err := MessageCodec.AppendMessage(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	f.Add([]byte{})
	f.Add([]byte{msgFormatVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := MessageCodec.DecodeMessage(data)
		if err != nil {
			if !errors.Is(err, consensus.ErrMalformed) {
				t.Fatalf("decode error does not match ErrMalformed: %v", err)
			}
			return
		}
		buf, err := MessageCodec.AppendMessage(nil, p)
		if err != nil {
			t.Fatalf("decoded message %v does not encode: %v", p, err)
		}
		p2, err := MessageCodec.DecodeMessage(buf)
		if err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("re-decoding %v: %v, %v", p, p2, err)
		}
	})
}

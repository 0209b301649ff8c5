package epaxos

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func recordSamples() []consensus.Record {
	return []consensus.Record{
		Instance{ID: InstanceID{1, 1}, Status: StatusPreAccepted, Promised: Ballot{0, 1}, Accepted: Ballot{0, 1}, Command: put("k", "v"), Seq: 1},
		Instance{ID: InstanceID{3, 9}, Status: StatusCommitted, Promised: Ballot{4, 2}, Accepted: Ballot{3, 1},
			Command: consensus.Command{Session: consensus.Session{ClientID: 7, Seq: 2}, Keys: []string{"a", "b"}, Data: []byte("x")},
			Seq:     12, Deps: []InstanceID{{1, 4}, {2, 8}, {3, 8}}},
		Instance{ID: InstanceID{2, 5}, Status: StatusAccepted, Promised: Ballot{2, 3}, Accepted: Ballot{2, 3}, NoOp: true, Seq: 3, Deps: []InstanceID{{1, 1}}},
		Instance{ID: InstanceID{1, 7}, Status: StatusPreAccepted, Promised: Ballot{0, 1}, Accepted: Ballot{0, 1}, Changed: true,
			Command: consensus.Command{Session: consensus.Session{ClientID: 4, Seq: 9}, Keys: []string{"a"}, Data: []byte("first")},
			Batched: []consensus.Command{
				{Session: consensus.Session{ClientID: 5, Seq: 1}, Keys: []string{consensus.ConflictAll}, Data: []byte("second")},
				{Data: []byte("keyless")},
				{Session: consensus.Session{ClientID: 4, Seq: 10}, Keys: []string{"a", "b"}},
			},
			Seq: 2, Deps: []InstanceID{{2, 5}}},
		Instance{ID: InstanceID{4, 2}, Status: StatusNone, Promised: Ballot{3, 4}},
		checkpointSample(),
	}
}

// checkpointSample is a Checkpoint over a snapshot of 9 commands in 11
// instances, holding two instances above it.
func checkpointSample() Checkpoint {
	st := &snapState{index: 9, executed: frontier{1: 4, 2: 7}, anyKey: newKeyIndex(false), floor: newKeyIndex(false),
		keys: map[string]*keyIndex{"k": {last: []repLast{{1, 4}, {2, 6}}, maxSeq: 8}}}
	st.anyKey.merge(st.keys["k"])
	return Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 9, Term: 11, Protocol: st.encode()}, Next: 6,
		Instances: []Instance{
			{ID: InstanceID{1, 5}, Status: StatusCommitted, Promised: Ballot{0, 1}, Accepted: Ballot{0, 1}, Command: put("k", "v"), Seq: 9, Deps: []InstanceID{{1, 4}, {2, 6}}},
			{ID: InstanceID{3, 1}, Status: StatusNone, Promised: Ballot{2, 2}},
		}}
}

func messageSamples() []consensus.Payload {
	return []consensus.Payload{
		&Msg{Type: MsgPreAccept, Ballot: Ballot{0, 1}, ID: InstanceID{1, 3}, Command: put("k", "v"), Seq: 4, Deps: []InstanceID{{2, 2}}},
		&Msg{Type: MsgPreAcceptOK, Ballot: Ballot{0, 1}, ID: InstanceID{1, 3}, Seq: 5, Deps: []InstanceID{{2, 2}, {3, 1}}, Changed: true},
		&Msg{Type: MsgAccept, Ballot: Ballot{1, 2}, ID: InstanceID{1, 3}, NoOp: true, Seq: 5},
		&Msg{Type: MsgAcceptOK, Ballot: Ballot{1, 2}, ID: InstanceID{1, 3}},
		&Msg{Type: MsgCommit, Ballot: Ballot{0, 1}, ID: InstanceID{1, 3}, Command: consensus.Command{Session: consensus.Session{ClientID: 1, Seq: 1}, Keys: []string{"x"}}, Seq: 5},
		&Msg{Type: MsgCommitOK, Ballot: Ballot{0, 1}, ID: InstanceID{1, 3}},
		&Msg{Type: MsgPreAccept, Ballot: Ballot{0, 2}, ID: InstanceID{2, 4}, Command: put("k", "one"),
			Batched: []consensus.Command{{Session: consensus.Session{ClientID: 3, Seq: 8}, Keys: []string{"j"}, Data: []byte("two")}, put("k", "three")},
			Seq:     6, Deps: []InstanceID{{1, 3}}},
		&Msg{Type: MsgPrepareOK, Ballot: Ballot{5, 3}, ID: InstanceID{2, 4}, Status: StatusAccepted, Accepted: Ballot{4, 1},
			Command: put("k", "one"), Batched: []consensus.Command{put("j", "two")}, Seq: 7, Changed: true},
		&Msg{Type: MsgCompacted, ID: InstanceID{2, 4}},
		&Msg{Type: MsgSnapRequest, ID: InstanceID{2, 4}, Deps: []InstanceID{{1, 3}, {2, 1}}},
		&Msg{Type: MsgSnapRequest, Snapshot: consensus.SnapshotMeta{Index: 9, Term: 11}, Offset: 4096},
		&Msg{Type: MsgSnap, Snapshot: consensus.SnapshotMeta{Index: 9, Term: 11, Protocol: checkpointSample().Snapshot.Protocol}, Data: []byte("chunk"), Last: false},
		&Msg{Type: MsgSnap, Snapshot: consensus.SnapshotMeta{Index: 9, Term: 11}, Offset: 5, Data: []byte("end"), Last: true},
		&Msg{Type: MsgSnap},
	}
}

func TestRecordCodecRoundTrip(t *testing.T) {
	for _, r := range recordSamples() {
		buf, err := Codec.AppendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Codec.DecodeRecord(buf)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip of %v: %v, %v", r, got, err)
		}
		var ptr consensus.Record
		switch v := r.(type) {
		case Instance:
			ptr = &v
		case Checkpoint:
			ptr = &v
		}
		if buf2, err := Codec.AppendRecord(nil, ptr); err != nil || string(buf2) != string(buf) {
			t.Fatalf("pointer encoding differs: %v", err)
		}
		for i := range buf {
			if _, err := Codec.DecodeRecord(buf[:i]); !errors.Is(err, consensus.ErrMalformed) {
				t.Fatalf("truncated at %d: %v", i, err)
			}
		}
	}
	bad := []consensus.Record{
		Instance{ID: InstanceID{0, 1}, Status: StatusCommitted},
		Instance{ID: InstanceID{1, 1}},
		Instance{ID: InstanceID{1, 1}, Status: StatusAccepted, Promised: Ballot{1, 1}, Accepted: Ballot{2, 1}},
		Instance{ID: InstanceID{1, 1}, Status: StatusAccepted, Deps: []InstanceID{{2, 1}, {1, 2}}},
		Instance{ID: InstanceID{1, 1}, Status: StatusAccepted, NoOp: true, Command: put("k", "v")},
		Instance{ID: InstanceID{1, 1}, Status: StatusAccepted, NoOp: true, Batched: []consensus.Command{put("k", "v")}},
		Instance{ID: InstanceID{1, 1}, Promised: Ballot{1, 2}, Batched: []consensus.Command{{}}},
		Instance{ID: InstanceID{1, 1}, Status: StatusAccepted, Batched: make([]consensus.Command, BatchCommandsMaxLimit)},
	}
	cp := checkpointSample()
	covered := cp
	covered.Instances = []Instance{{ID: InstanceID{2, 7}, Status: StatusNone, Promised: Ballot{1, 1}}}
	unsorted := cp
	unsorted.Instances = []Instance{cp.Instances[1], cp.Instances[0]}
	mismatched := cp
	mismatched.Snapshot.Term = 10
	noState := cp
	noState.Snapshot.Protocol = nil
	bad = append(bad, covered, unsorted, mismatched, noState)
	for _, r := range bad {
		if _, err := Codec.AppendRecord(nil, r); err == nil {
			t.Errorf("encoded invalid record %v", r)
		}
	}
	// A record of format version 1 (before batching) is refused.
	buf, err := Codec.AppendRecord(nil, recordSamples()[0])
	if err != nil {
		t.Fatal(err)
	}
	buf[0] = 1
	if _, err := Codec.DecodeRecord(buf); !errors.Is(err, consensus.ErrMalformed) || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("decoding a version-1 record: %v", err)
	}
}

func TestMessageCodecRoundTrip(t *testing.T) {
	for _, m := range messageSamples() {
		buf, err := MessageCodec.AppendMessage(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MessageCodec.DecodeMessage(buf)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %v: %v, %v", m, got, err)
		}
		for i := range buf {
			if _, err := MessageCodec.DecodeMessage(buf[:i]); !errors.Is(err, consensus.ErrMalformed) {
				t.Fatalf("truncated at %d: %v", i, err)
			}
		}
	}
	if _, err := MessageCodec.AppendMessage(nil, &Msg{}); err == nil {
		t.Fatal("encoded a message of type 0")
	}
	if _, err := MessageCodec.AppendMessage(nil, &Msg{Type: MsgCommit, ID: InstanceID{1, 1}, Offset: 3}); err == nil {
		t.Fatal("encoded snapshot fields in a Commit")
	}
	if _, err := MessageCodec.AppendMessage(nil, &Msg{Type: MsgSnap, Offset: -1}); err == nil {
		t.Fatal("encoded a negative snapshot offset")
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
	f.Add([]byte{formatVersion})
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

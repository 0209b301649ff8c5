package raft

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// messageCodecSamples returns at least one message of every type, with every
// field the type uses set, plus edge cases (zero values, large numbers).
func messageCodecSamples() []*Msg {
	big := uint64(1)<<63 + 12345
	ents := []consensus.Entry{
		{Index: 8, Term: 3, Type: consensus.EntryNoOp},
		{Index: 9, Term: 3, Command: consensus.Command{Session: consensus.Session{ClientID: 7, Seq: 42}, Keys: []string{"a", "bb", ""}, Data: []byte("put a=1")}},
		{Index: 10, Term: 3, Command: consensus.Command{Data: bytes.Repeat([]byte{0xff}, 300)}},
	}
	return []*Msg{
		{Type: MsgPreVote, Term: 5, Index: 10, LogTerm: 3},
		{Type: MsgPreVoteResp, Term: 5},
		{Type: MsgPreVoteResp, Term: 6, Reject: true},
		{Type: MsgVote, Term: 5, Index: 10, LogTerm: 3},
		{Type: MsgVoteResp, Term: 5, Reject: true},
		{Type: MsgApp, Term: 3, Index: 7, LogTerm: 2, Commit: 7, Entries: ents},
		{Type: MsgApp, Term: 3, Index: 10, LogTerm: 3, Commit: 10},
		{Type: MsgAppResp, Term: 3, Index: 10},
		{Type: MsgAppResp, Term: 3, Index: 10, Reject: true, HintIndex: 6, HintTerm: 2},
		{Type: MsgHeartbeat, Term: 3, Commit: 10, ReadSeq: 99},
		{Type: MsgHeartbeatResp, Term: 3, ReadSeq: 99},
		{Type: MsgSnap, Term: 4, Snapshot: consensus.SnapshotMeta{Index: 100, Term: 3, Voters: []consensus.NodeID{1, 2, 3}}, Offset: 0, Data: []byte("chunk-0")},
		{Type: MsgSnap, Term: 4, Snapshot: consensus.SnapshotMeta{Index: 100, Term: 3, Voters: []consensus.NodeID{1, 2, 3}}, Offset: 1 << 40, Data: bytes.Repeat([]byte("z"), 70000), Last: true},
		{Type: MsgSnapResp, Term: 4, Index: 100, Offset: 7},
		{Type: MsgSnapResp, Term: 9, Reject: true},
		// Every field set at once, with values near the top of their range.
		{Type: MsgSnapResp, Term: big, Index: big, LogTerm: big, Commit: big, Entries: ents[:1], Reject: true, HintIndex: big, HintTerm: big,
			ReadSeq: big, Snapshot: consensus.SnapshotMeta{Index: big, Term: big, Voters: []consensus.NodeID{consensus.NodeID(big)}},
			Offset: 1<<63 - 1, Data: []byte{0}, Last: true},
	}
}

func TestMessageCodecRoundTrip(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, m := range messageCodecSamples() {
		seen[m.Type] = true
		buf, err := MessageCodec.AppendMessage([]byte("prefix"), m)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if !bytes.HasPrefix(buf, []byte("prefix")) {
			t.Fatalf("%v: AppendMessage did not append", m)
		}
		buf = buf[len("prefix"):]
		got, err := MessageCodec.DecodeMessage(buf)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
		}
		// The decoded message shares no memory with the input.
		for i := range buf {
			buf[i] = 0xAA
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%v: decoded message aliases its input", m)
		}
	}
	for typ := MsgType(1); typ <= msgTypeLast; typ++ {
		if !seen[typ] {
			t.Errorf("no round-trip sample of %v", typ)
		}
	}
}

func TestMessageCodecBigBatch(t *testing.T) {
	m := &Msg{Type: MsgApp, Term: 2, Index: 1000, LogTerm: 2, Commit: 1000}
	for i := range 5000 {
		e := consensus.Entry{Index: uint64(1001 + i), Term: 2, Command: consensus.Command{Session: consensus.Session{ClientID: 1, Seq: uint64(i + 1)}}}
		if n := i % 200; n > 0 { // the decoder gives nil, not empty, data
			e.Command.Data = bytes.Repeat([]byte{byte(i)}, n)
		}
		m.Entries = append(m.Entries, e)
	}
	buf, err := MessageCodec.AppendMessage(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := MessageCodec.DecodeMessage(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatal("big MsgApp batch did not round-trip")
	}
}

func TestMessageCodecRejectsBadPayloads(t *testing.T) {
	bad := []consensus.Payload{
		nil,
		(*Msg)(nil),
		&Msg{},
		&Msg{Type: msgTypeLast + 1},
		&Msg{Type: MsgSnap, Offset: -1},
		&Msg{Type: MsgSnap, Snapshot: consensus.SnapshotMeta{Voters: make([]consensus.NodeID, PeersMax+1)}},
		&Msg{Type: MsgApp, Entries: []consensus.Entry{{Index: 1, Type: consensus.EntryNoOp + 1}}},
		otherPayload{},
	}
	for _, p := range bad {
		buf, err := MessageCodec.AppendMessage([]byte("keep"), p)
		if err == nil {
			t.Errorf("%#v encoded", p)
		}
		if string(buf) != "keep" {
			t.Errorf("%#v: failed encoding changed the buffer to %q", p, buf)
		}
	}
}

func TestMessageCodecRejectsMalformed(t *testing.T) {
	for _, m := range messageCodecSamples() {
		good, err := MessageCodec.AppendMessage(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		for cut := 0; cut < len(good); cut++ {
			if _, err := MessageCodec.DecodeMessage(good[:cut]); !errors.Is(err, consensus.ErrMalformed) {
				t.Fatalf("%v truncated at %d: want ErrMalformed, got %v", m, cut, err)
			}
		}
		if _, err := MessageCodec.DecodeMessage(append(good, 0)); !errors.Is(err, consensus.ErrMalformed) {
			t.Fatalf("%v with a trailing byte: want ErrMalformed, got %v", m, err)
		}
	}
	good, _ := MessageCodec.AppendMessage(nil, &Msg{Type: MsgHeartbeat, Term: 1, Commit: 1})
	mutate := func(i int, b byte) []byte {
		out := bytes.Clone(good)
		out[i] = b
		return out
	}
	cases := map[string][]byte{
		"version":      mutate(0, msgFormatVersion+1),
		"type zero":    mutate(1, 0),
		"type unknown": mutate(1, byte(msgTypeLast)+1),
		// Bytes: version, type, term, index, logterm, commit, entry count, flags.
		"flags":       mutate(7, 0x80),
		"entry count": mutate(6, 0x7f),
	}
	for name, data := range cases {
		if _, err := MessageCodec.DecodeMessage(data); !errors.Is(err, consensus.ErrMalformed) {
			t.Errorf("%s: want ErrMalformed, got %v", name, err)
		}
	}
	// Voter counts beyond PeersMax and huge data lengths are refused
	// before anything is allocated.
	hdr := []byte{msgFormatVersion, byte(MsgSnap), 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	voters := append(bytes.Clone(hdr), 0x80, 0x01) // 128 voters
	voters = append(voters, bytes.Repeat([]byte{1}, 200)...)
	if _, err := MessageCodec.DecodeMessage(voters); !errors.Is(err, consensus.ErrMalformed) {
		t.Errorf("too many voters: want ErrMalformed, got %v", err)
	}
	huge := append(bytes.Clone(hdr), 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f)
	if _, err := MessageCodec.DecodeMessage(huge); !errors.Is(err, consensus.ErrMalformed) {
		t.Errorf("huge data length: want ErrMalformed, got %v", err)
	}
	offset := append(bytes.Clone(hdr), 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0)
	if _, err := MessageCodec.DecodeMessage(offset); !errors.Is(err, consensus.ErrMalformed) {
		t.Errorf("offset past MaxInt64: want ErrMalformed, got %v", err)
	}
	if _, err := MessageCodec.DecodeMessage(append(bytes.Clone(hdr), 0, 0, 0)); err != nil {
		t.Errorf("the well-formed base of these cases does not decode: %v", err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range messageCodecSamples() {
		buf, err := MessageCodec.AppendMessage(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		if len(buf) < 4096 {
			f.Add(buf)
		}
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
			t.Fatalf("re-encoding changed the message: %#v vs %#v (%v)", p, p2, err)
		}
	})
}

type otherPayload struct{}

func (otherPayload) MessageType() string { return "other.Kind" }

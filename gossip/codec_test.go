package gossip

import (
	"errors"
	"reflect"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func messageSamples() []*Message {
	return []*Message{
		{Type: MsgPing, From: 1, FromAddr: "10.0.0.1:7946", To: 2, Seq: 7,
			Updates: []Update{{ID: 2, Incarnation: 3, State: StateSuspect, From: 1}}},
		{Type: MsgAck, From: 2, FromAddr: "10.0.0.2:7946", To: 1, Seq: 7,
			Updates: []Update{{ID: 2, Incarnation: 4, State: StateAlive, Addr: "10.0.0.2:7946", Meta: []byte("zone=a")}}},
		{Type: MsgPingReq, From: 1, FromAddr: "a", To: 3, Seq: 1 << 40, Target: 2, TargetAddr: "b"},
		{Type: MsgNack, From: 3, FromAddr: "c", To: 1, Seq: 9},
		{Type: MsgPushPull, From: 4, FromAddr: "d", Updates: []Update{
			{ID: 4, State: StateAlive, Addr: "d"},
			{ID: 5, Incarnation: 2, State: StateDead, From: 6, Addr: "e"},
			{ID: 6, Incarnation: 1, State: StateLeft, Addr: "f", Meta: []byte{0, 1, 2}},
		}},
		{Type: MsgPushPull, From: 5, FromAddr: "e", To: 4, Reply: true, Updates: []Update{{ID: 5, State: StateAlive, Addr: "e"}}},
		{Type: MsgGossip, From: 6, FromAddr: "f", To: 1, Updates: []Update{{ID: 6, Incarnation: 1, State: StateLeft}}},
	}
}

func TestMessageCodecRoundTrip(t *testing.T) {
	for _, m := range messageSamples() {
		buf, err := MessageCodec.AppendMessage(nil, m)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		got, err := MessageCodec.DecodeMessage(buf)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %v: %v, %v", m, got, err)
		}
		for i := range buf {
			if _, err := MessageCodec.DecodeMessage(buf[:i]); !errors.Is(err, consensus.ErrMalformed) {
				t.Fatalf("%v truncated at %d: %v", m, i, err)
			}
		}
		if _, err := MessageCodec.DecodeMessage(append(buf, 0)); !errors.Is(err, consensus.ErrMalformed) {
			t.Fatalf("%v with a trailing byte: %v", m, err)
		}
		bad := append([]byte{}, buf...)
		bad[0] = formatVersion + 1
		if _, err := MessageCodec.DecodeMessage(bad); !errors.Is(err, consensus.ErrMalformed) {
			t.Fatalf("%v with version %d: %v", m, bad[0], err)
		}
	}
}

func TestMessageValidation(t *testing.T) {
	ok := func() *Message { return &Message{Type: MsgPing, From: 1, FromAddr: "a", To: 2} }
	bad := map[string]func(m *Message){
		"type 0":               func(m *Message) { m.Type = 0 },
		"unknown type":         func(m *Message) { m.Type = msgTypeLast + 1 },
		"from node 0":          func(m *Message) { m.From = 0 },
		"no sender address":    func(m *Message) { m.FromAddr = "" },
		"long sender address":  func(m *Message) { m.FromAddr = string(make([]byte, AddrBytesMax+1)) },
		"ping with target":     func(m *Message) { m.Target = 3 },
		"ping marked reply":    func(m *Message) { m.Reply = true },
		"ping-req no target":   func(m *Message) { m.Type = MsgPingReq; m.TargetAddr = "t" },
		"ping-req no address":  func(m *Message) { m.Type = MsgPingReq; m.Target = 3 },
		"update about node 0":  func(m *Message) { m.Updates = []Update{{State: StateAlive}} },
		"update state 0":       func(m *Message) { m.Updates = []Update{{ID: 3}} },
		"update unknown state": func(m *Message) { m.Updates = []Update{{ID: 3, State: stateLast + 1}} },
		"update long meta": func(m *Message) {
			m.Updates = []Update{{ID: 3, State: StateAlive, Meta: make([]byte, MetaBytesMaxLimit+1)}}
		},
	}
	if err := ok().validate(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range bad {
		m := ok()
		edit(m)
		if _, err := MessageCodec.AppendMessage(nil, m); err == nil {
			t.Errorf("%s: encoded", name)
		}
		if err := m.validate(); !errors.Is(err, consensus.ErrMalformed) {
			t.Errorf("%s: validate says %v", name, err)
		}
	}
	if _, err := MessageCodec.AppendMessage(nil, otherPayload{}); err == nil {
		t.Error("encoded a payload of the wrong type")
	}
	if _, err := MessageCodec.AppendMessage(nil, (*Message)(nil)); err == nil {
		t.Error("encoded a nil message")
	}
}

type otherPayload struct{}

func (otherPayload) MessageType() string { return "other.Payload" }

// FuzzDecodeMessage: decoding never panics, fails only with ErrMalformed,
// and what decodes re-encodes to a message that decodes equal. The seed
// corpus is the samples above plus testdata/fuzz/FuzzDecodeMessage.
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

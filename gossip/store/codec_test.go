package store

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func messageSamples() []*Message {
	e1 := Entry{Key: "user/1", Value: []byte("alice"), TS: Timestamp{WallMs: 1_700_000_000_000, Logical: 3}, Origin: 2}
	e2 := Entry{Key: "user/2", TS: Timestamp{WallMs: 1_700_000_000_001}, Origin: 1 << 40, Tombstone: true}
	return []*Message{
		{Type: MsgPush, From: 1, To: 2, Entries: []Entry{e1, e2}},
		{Type: MsgTree, From: 1, To: 2, TreeLevels: 3, Nodes: []NodeHash{{Hash: 0xdeadbeefcafef00d}}},
		{Type: MsgTree, From: 2, To: 1, TreeLevels: 3, Level: 2, Nodes: []NodeHash{{Index: 16, Hash: 1}, {Index: 255, Hash: math.MaxUint64}}},
		{Type: MsgLeaves, From: 1, To: 2, TreeLevels: 3, Level: 3, Nodes: []NodeHash{{Index: 4095, Hash: 7}}, Entries: []Entry{e1}},
		{Type: MsgLeaves, From: 2, To: 1, Reply: true, TreeLevels: 5, Level: 5, Nodes: []NodeHash{{Index: 1<<20 - 1}}},
	}
}

func recordSamples() []consensus.Record {
	e := Entry{Key: "k", Value: []byte("v"), TS: Timestamp{WallMs: 5, Logical: 1}, Origin: 3}
	return []consensus.Record{
		&EntryRecord{Entry: e},
		&EntryRecord{Entry: Entry{Key: "gone", TS: Timestamp{WallMs: 9}, Origin: 1, Tombstone: true}},
		&SnapshotRecord{},
		&RestateRecord{},
		&RestateRecord{Clock: Timestamp{WallMs: 1 << 40, Logical: 7}, Revision: 1 << 33},
		&SnapshotRecord{Clock: Timestamp{WallMs: 9, Logical: 2}, Revision: 42, Entries: []Entry{
			{Key: "a", TS: Timestamp{WallMs: 9}, Origin: 1, Tombstone: true}, e,
		}},
	}
}

// roundTrip checks that v encodes, decodes equal, and that every
// truncation, a trailing byte and another version fail with ErrMalformed.
func roundTrip[T any](t *testing.T, v T, enc func([]byte, T) ([]byte, error), dec func([]byte) (T, error)) {
	t.Helper()
	buf, err := enc(nil, v)
	if err != nil {
		t.Fatalf("%v: %v", v, err)
	}
	got, err := dec(buf)
	if err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("round trip of %v: %v, %v", v, got, err)
	}
	for i := range buf {
		if _, err := dec(buf[:i]); !errors.Is(err, consensus.ErrMalformed) {
			t.Fatalf("%v truncated at %d: %v", v, i, err)
		}
	}
	if _, err := dec(append(buf, 0)); !errors.Is(err, consensus.ErrMalformed) {
		t.Fatalf("%v with a trailing byte: %v", v, err)
	}
	bad := append([]byte{}, buf...)
	bad[0] = formatVersion + 1
	if _, err := dec(bad); !errors.Is(err, consensus.ErrMalformed) {
		t.Fatalf("%v with version %d: %v", v, bad[0], err)
	}
}

func TestMessageCodecRoundTrip(t *testing.T) {
	for _, m := range messageSamples() {
		roundTrip(t, consensus.Payload(m), MessageCodec.AppendMessage, MessageCodec.DecodeMessage)
	}
}

func TestRecordCodecRoundTrip(t *testing.T) {
	for _, r := range recordSamples() {
		roundTrip(t, r, RecordCodec.AppendRecord, RecordCodec.DecodeRecord)
	}
}

// TestSizes: entrySize is the exact encoded size; entrySizeMax and
// MessageHeaderBytesMax are upper bounds.
func TestSizes(t *testing.T) {
	big := Entry{Key: strings.Repeat("k", 300), Value: make([]byte, 1000), TS: Timestamp{WallMs: math.MaxUint64, Logical: math.MaxUint32},
		Origin: math.MaxUint64, Tombstone: false}
	for _, e := range []Entry{messageSamples()[0].Entries[0], messageSamples()[0].Entries[1], big} {
		if got := len(appendEntry(nil, &e)); got != entrySize(&e) {
			t.Errorf("entrySize(%v) = %d, encoding has %d bytes", e, entrySize(&e), got)
		}
	}
	if entrySize(&big) > entrySizeMax(300, 1000) {
		t.Errorf("largest entry has %d bytes, entrySizeMax says %d", entrySize(&big), entrySizeMax(300, 1000))
	}
	// The header: version, type, flags, levels and level (5 bytes), from
	// and to (10 each at most), the node count (3: at most nodesMax) and
	// the entry count (10): 38. Check it with the largest IDs and node
	// count.
	m := &Message{Type: MsgLeaves, From: math.MaxUint64, To: math.MaxUint64 - 1, Reply: true, TreeLevels: TreeLevelsMax, Level: TreeLevelsMax,
		Nodes: make([]NodeHash, nodesMax), Entries: make([]Entry, 1<<14)}
	for i := range m.Nodes {
		m.Nodes[i] = NodeHash{Index: uint32(i), Hash: math.MaxUint64}
	}
	for i := range m.Entries {
		m.Entries[i] = Entry{Key: "k", Origin: 1}
	}
	buf, err := MessageCodec.AppendMessage(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	body := 0
	for _, n := range m.Nodes {
		body += nodeSize(n)
		if nodeSize(n) > nodeSizeMax {
			t.Fatalf("node %d takes %d bytes, over nodeSizeMax", n.Index, nodeSize(n))
		}
	}
	for i := range m.Entries {
		body += entrySize(&m.Entries[i])
	}
	if hdr := len(buf) - body; hdr > MessageHeaderBytesMax {
		t.Fatalf("header of %d bytes, over MessageHeaderBytesMax %d", hdr, MessageHeaderBytesMax)
	}
}

func TestMessageValidation(t *testing.T) {
	ok := func() *Message {
		return &Message{Type: MsgTree, From: 1, To: 2, TreeLevels: 2, Level: 1, Nodes: []NodeHash{{Index: 3}, {Index: 9}}}
	}
	e := Entry{Key: "k", Origin: 1}
	bad := map[string]func(m *Message){
		"type 0":                func(m *Message) { m.Type = 0 },
		"unknown type":          func(m *Message) { m.Type = msgTypeLast + 1 },
		"from 0":                func(m *Message) { m.From = 0 },
		"to 0":                  func(m *Message) { m.To = 0 },
		"to itself":             func(m *Message) { m.To = m.From },
		"tree reply":            func(m *Message) { m.Reply = true },
		"levels 0":              func(m *Message) { m.TreeLevels = 0 },
		"levels too many":       func(m *Message) { m.TreeLevels = TreeLevelsMax + 1 },
		"level past the leaves": func(m *Message) { m.Level = 3 },
		"no nodes":              func(m *Message) { m.Nodes = nil },
		"node beyond level":     func(m *Message) { m.Nodes[1].Index = 16 },
		"nodes out of order":    func(m *Message) { m.Nodes[0].Index = 9 },
		"tree with entries":     func(m *Message) { m.Entries = []Entry{e} },
		"leaves off the leaf":   func(m *Message) { m.Type = MsgLeaves },
		"push with nodes":       func(m *Message) { m.Type, m.Entries = MsgPush, []Entry{e} },
		"empty push":            func(m *Message) { *m = Message{Type: MsgPush, From: 1, To: 2} },
		"entry with empty key":  func(m *Message) { *m = Message{Type: MsgPush, From: 1, To: 2, Entries: []Entry{{Origin: 1}}} },
		"entry from node 0":     func(m *Message) { *m = Message{Type: MsgPush, From: 1, To: 2, Entries: []Entry{{Key: "k"}}} },
		"tombstone with value": func(m *Message) {
			*m = Message{Type: MsgPush, From: 1, To: 2, Entries: []Entry{{Key: "k", Origin: 1, Tombstone: true, Value: []byte("v")}}}
		},
		"long key": func(m *Message) {
			*m = Message{Type: MsgPush, From: 1, To: 2, Entries: []Entry{{Key: strings.Repeat("k", KeyBytesMaxLimit+1), Origin: 1}}}
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
	if _, err := RecordCodec.AppendRecord(nil, &SnapshotRecord{Entries: []Entry{{Key: "b", Origin: 1}, {Key: "a", Origin: 1}}}); err == nil {
		t.Error("encoded a snapshot with keys out of order")
	}
	if _, err := RecordCodec.AppendRecord(nil, &SnapshotRecord{Entries: []Entry{{Key: "a", Origin: 1, TS: Timestamp{WallMs: 2}}}}); err == nil {
		t.Error("encoded a snapshot with an entry after its clock")
	}
}

// FuzzDecodeMessage: decoding never panics, fails only with ErrMalformed,
// and what decodes re-encodes to bytes that decode equal. The seed corpus
// is the samples above plus testdata/fuzz/FuzzDecodeMessage.
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

// FuzzDecodeRecord: the same for durable records, and a decoded record
// recovers into a store without error.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range recordSamples() {
		buf, err := RecordCodec.AppendRecord(nil, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	f.Add([]byte{})
	f.Add([]byte{formatVersion, recordSnapshot})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := RecordCodec.DecodeRecord(data)
		if err != nil {
			if !errors.Is(err, consensus.ErrMalformed) {
				t.Fatalf("decode error does not match ErrMalformed: %v", err)
			}
			return
		}
		buf, err := RecordCodec.AppendRecord(nil, r)
		if err != nil {
			t.Fatalf("decoded record %v does not encode: %v", r, err)
		}
		r2, err := RecordCodec.DecodeRecord(buf)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-decoding %v: %v, %v", r, r2, err)
		}
		cfg := testConfig(1, nil)
		cfg.Rand = fixedRand{}
		cfg.KeyBytesMax, cfg.ValueBytesMax, cfg.MessageBytesMax = KeyBytesMaxLimit, ValueBytesMaxLimit, MessageBytesMaxLimit
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Recover(r); err != nil {
			t.Fatalf("recovering %v: %v", r, err)
		}
	})
}

type fixedRand struct{}

func (fixedRand) IntN(int) int { return 0 }

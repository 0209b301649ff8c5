package kv

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func sampleRequests() []Request {
	return []Request{
		Put("k", "v"),
		Put("key", ""),
		{Put: &PutRequest{Key: []byte("\x00\xff"), Value: bytes.Repeat([]byte{0xab}, 300), PrevKV: true}},
		Get("k"),
		RangePrefix("a/"),
		RangePrefix(""),
		{Range: &RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: math.MaxInt64, CountOnly: true, KeysOnly: true}},
		{Range: &RangeRequest{Key: []byte("a"), Limit: 5, KeysOnly: true}},
		Delete("k"),
		{DeleteRange: &DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKV: true}},
		CompareAndSwap("k", "old", "new"),
		{Txn: &TxnRequest{Compare: Compare{Key: []byte("k"), Target: CompareVersion, Result: CompareGreater, Version: -3}}},
		{Txn: &TxnRequest{Compare: Compare{Key: []byte("k"), Target: CompareCreate, Result: CompareLess, CreateRevision: math.MinInt64},
			Success: []Request{Delete("a"), Put("b", "c"), RangePrefix("b")}}},
		{Txn: &TxnRequest{Compare: Compare{Key: []byte("k"), Target: CompareMod, Result: CompareNotEqual, ModRevision: math.MaxInt64},
			Failure: []Request{Get("x")}}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, r := range sampleRequests() {
		b := r.Encode()
		got, err := DecodeRequest(b)
		if err != nil {
			t.Fatalf("%s: %v", describe(r), err)
		}
		if !reflect.DeepEqual(normReq(got), normReq(r)) {
			t.Errorf("round trip of %s gave %s", describe(r), describe(got))
		}
		if again := got.Encode(); !bytes.Equal(again, b) {
			t.Errorf("%s: re-encoding differs: %x vs %x", describe(r), again, b)
		}
		// The decoded request does not alias its input.
		for i := range b {
			b[i] ^= 0xff
		}
		if !reflect.DeepEqual(normReq(got), normReq(r)) {
			t.Errorf("%s: decoded request aliases the encoding", describe(r))
		}
	}
}

// normReq maps empty byte slices to nil, which the encoding does not tell
// apart.
func normReq(r Request) Request {
	nb := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	ops := func(rs []Request) []Request {
		if len(rs) == 0 {
			return nil
		}
		out := make([]Request, len(rs))
		for i := range rs {
			out[i] = normReq(rs[i])
		}
		return out
	}
	switch {
	case r.Range != nil:
		q := *r.Range
		q.Key, q.RangeEnd = nb(q.Key), nb(q.RangeEnd)
		r.Range = &q
	case r.Put != nil:
		q := *r.Put
		q.Key, q.Value = nb(q.Key), nb(q.Value)
		r.Put = &q
	case r.DeleteRange != nil:
		q := *r.DeleteRange
		q.Key, q.RangeEnd = nb(q.Key), nb(q.RangeEnd)
		r.DeleteRange = &q
	case r.Txn != nil:
		q := *r.Txn
		q.Compare.Key, q.Compare.Value = nb(q.Compare.Key), nb(q.Compare.Value)
		q.Success, q.Failure = ops(q.Success), ops(q.Failure)
		r.Txn = &q
	}
	return r
}

// TestEncodingGolden pins the wire format: changing it needs a new version.
func TestEncodingGolden(t *testing.T) {
	tests := []struct {
		req  Request
		want []byte
	}{
		{Put("a", "b"), []byte{1, tagPut, 1, 'a', 1, 'b', 0}},
		{Get("a"), []byte{1, tagRange, 1, 'a', 0, 0, 0}},
		{RangePrefix("a"), []byte{1, tagRange, 1, 'a', 1, 'b', 0, 0}},
		{Request{Range: &RangeRequest{Key: []byte("a"), Limit: -1 + 2, CountOnly: true, KeysOnly: true}},
			[]byte{1, tagRange, 1, 'a', 0, 2, 3}},
		{Request{DeleteRange: &DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKV: true}},
			[]byte{1, tagDelete, 1, 'a', 1, 0, 1}},
		{CompareAndSwap("k", "x", "y"), []byte{1, tagTxn, 1, 'k', byte(CompareValue), byte(CompareEqual), 1, 'x',
			1, tagPut, 1, 'k', 1, 'y', 0,
			1, tagRange, 1, 'k', 0, 0, 0}},
		{Request{Txn: &TxnRequest{Compare: Compare{Key: []byte("k"), Target: CompareMod, Result: CompareLess, ModRevision: -2, Version: 99}}},
			[]byte{1, tagTxn, 1, 'k', byte(CompareMod), byte(CompareLess), 3, 0, 0}},
	}
	for _, tt := range tests {
		if got := tt.req.Encode(); !bytes.Equal(got, tt.want) {
			t.Errorf("%s encodes to %v, want %v", describe(tt.req), got, tt.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	put := enc(Put("a", "b"))
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformedRequest},
		{"version only", []byte{1}, ErrMalformedRequest},
		{"unknown version", []byte{2, tagPut, 1, 'a', 0, 0}, ErrMalformedRequest},
		{"unknown tag", []byte{1, 9}, ErrMalformedRequest},
		{"tag zero", []byte{1, 0}, ErrMalformedRequest},
		{"truncated", put[:len(put)-1], ErrMalformedRequest},
		{"trailing byte", append(slices.Clone(put), 0), ErrMalformedRequest},
		{"length past end", []byte{1, tagPut, 5, 'a'}, ErrMalformedRequest},
		{"huge length", []byte{1, tagPut, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, ErrMalformedRequest},
		{"varint overflow", []byte{1, tagPut, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrMalformedRequest},
		{"non-minimal varint", []byte{1, tagPut, 0x81, 0x00, 'a', 0, 0}, ErrMalformedRequest},
		{"unknown put flag", []byte{1, tagPut, 1, 'a', 0, 2}, ErrMalformedRequest},
		{"unknown range flag", []byte{1, tagRange, 1, 'a', 0, 0, 4}, ErrMalformedRequest},
		{"unknown compare target", []byte{1, tagTxn, 1, 'k', 7, 0, 0, 0}, ErrMalformedRequest},
		{"nested txn", []byte{1, tagTxn, 1, 'k', byte(CompareVersion), 0, 0, 1, tagTxn, 1, 'k', 0, 0, 0, 0, 0, 0}, ErrMalformedRequest},
		{"too many ops", []byte{1, tagTxn, 1, 'k', byte(CompareVersion), 0, 0, 0x81, 0x01}, ErrMalformedRequest},
		{"op count past end", []byte{1, tagTxn, 1, 'k', byte(CompareVersion), 0, 0, 5, 1, tagRange}, ErrMalformedRequest},
		{"empty key", []byte{1, tagPut, 0, 1, 'b', 0}, ErrEmptyKey},
		{"negative limit", []byte{1, tagRange, 1, 'a', 0, 1, 0}, ErrInvalidRequest},
		{"unknown compare result", []byte{1, tagTxn, 1, 'k', byte(CompareVersion), 9, 0, 0, 0}, ErrInvalidRequest},
		{"duplicate key", []byte{1, tagTxn, 1, 'k', byte(CompareVersion), 0, 0, 2,
			tagPut, 1, 'a', 0, 0, tagPut, 1, 'a', 0, 0, 0}, ErrDuplicateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRequest(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeRequest(%v) = %s, %v; want %v", tt.data, describe(r), err, tt.want)
			}
			if !reflect.DeepEqual(r, Request{}) {
				t.Fatalf("a failed decode returned %s", describe(r))
			}
		})
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		req  Request
		want []string
	}{
		{Put("b", "x"), []string{"b"}},
		{Get("a"), []string{"a"}},
		{Delete("d"), []string{"d"}},
		{CompareAndSwap("k", "1", "2"), []string{"k"}},
		{Request{Txn: &TxnRequest{Compare: Compare{Key: []byte("z")}, Success: []Request{Put("b", ""), Delete("a")},
			Failure: []Request{Get("b"), Put("c", "")}}}, []string{"a", "b", "c", "z"}},
		// Anything over a range of keys conflicts with everything.
		{RangePrefix("p/"), []string{consensus.ConflictAll}},
		{RangePrefix(""), []string{consensus.ConflictAll}},
		{Request{Range: &RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), CountOnly: true}}, []string{consensus.ConflictAll}},
		{Request{Range: &RangeRequest{Key: []byte("b"), RangeEnd: []byte("a")}}, []string{consensus.ConflictAll}}, // empty, still a range
		{Request{DeleteRange: &DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}}, []string{consensus.ConflictAll}},
		{Request{Txn: &TxnRequest{Compare: Compare{Key: []byte("z")}, Success: []Request{Put("b", "")},
			Failure: []Request{RangePrefix("q")}}}, []string{consensus.ConflictAll}}, // in the branch not taken too
		{Request{Txn: &TxnRequest{Compare: Compare{Key: []byte("z")},
			Success: []Request{{DeleteRange: &DeleteRangeRequest{Key: []byte("x"), RangeEnd: PrefixEnd([]byte("x"))}}}}}, []string{consensus.ConflictAll}},
	}
	for _, tt := range tests {
		if got := tt.req.Keys(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: keys %q, want %q", describe(tt.req), got, tt.want)
		}
		cmd := tt.req.Command(consensus.Session{ClientID: 3, Seq: 4})
		if !slices.Equal(cmd.Keys, tt.want) || cmd.Session.Seq != 4 || !bytes.Equal(cmd.Data, tt.req.Encode()) {
			t.Errorf("%s: Command = %+v", describe(tt.req), cmd)
		}
	}
	// A self-referencing (invalid) txn must not send Keys, Encode or
	// Validate into a loop.
	loop := &TxnRequest{Compare: Compare{Key: []byte("k")}}
	loop.Success = []Request{{Txn: loop}}
	r := Request{Txn: loop}
	if !slices.Equal(r.Keys(), []string{"k"}) {
		t.Errorf("looping txn keys %q", r.Keys())
	}
	if _, err := DecodeRequest(r.Encode()); err == nil {
		t.Error("looping txn decoded")
	}
	if !errors.Is(r.Validate(), ErrNestedTxn) {
		t.Error("looping txn validated")
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a", "b"}, {"abc", "abd"}, {"a\xff", "b"}, {"a\xff\xff", "b"}, {"\xff", "\x00"}, {"\xff\xff", "\x00"}, {"", "\x00"}, {"\x00", "\x01"},
	}
	for _, tt := range tests {
		in := []byte(tt.in)
		if got := PrefixEnd(in); string(got) != tt.want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if string(in) != tt.in {
			t.Errorf("PrefixEnd modified its argument")
		}
	}
}

// FuzzDecodeRequest checks that DecodeRequest never panics, that whatever it
// accepts is valid and re-encodes to the same bytes (the encoding is
// canonical), and that applying it never panics.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		f.Add(r.Encode())
	}
	g := gen{rand.New(rand.NewPCG(3, 4))}
	for range 20 {
		r := g.request()
		f.Add(r.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, tagTxn, 1, 'k', 0, 0, 0, 0x81, 0x01})
	f.Add([]byte{1, tagPut, 0x81, 0x00, 'a', 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedRequest) && !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error of unknown kind: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded an invalid request: %v", err)
		}
		if got := r.Encode(); !bytes.Equal(got, data) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", data, got)
		}
		_ = r.Keys()
		s := New()
		s.Apply(consensus.Entry{Index: 1, Command: consensus.Command{Data: enc(Put("k", "v"))}})
		res := s.Apply(consensus.Entry{Index: 2, Command: consensus.Command{Data: data}})
		if res.Err != nil {
			t.Fatalf("valid request failed: %v", res.Err)
		}
		checkStore(t, s)
	})
}

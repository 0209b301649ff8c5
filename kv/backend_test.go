package kv

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// sliceBackend is a naive Backend: sorted slices and linear scans. It
// checks the Backend contract as it goes.
type sliceBackend struct {
	t        testing.TB
	meta     Meta
	kvs      []KeyValue
	sessions []SessionRecord // ascending Index
}

func newSliceBackend(t testing.TB) *sliceBackend {
	return &sliceBackend{t: t, meta: Meta{Revision: 1, SessionsMax: SessionsMax}}
}

func (b *sliceBackend) find(key []byte) (int, bool) {
	return slices.BinarySearchFunc(b.kvs, key, func(kv KeyValue, k []byte) int { return bytes.Compare(kv.Key, k) })
}

func (b *sliceBackend) Get(key []byte) (KeyValue, bool) {
	if i, ok := b.find(key); ok {
		return b.kvs[i], true
	}
	return KeyValue{}, false
}

func (b *sliceBackend) Ascend(from, to []byte, fn func(KeyValue) bool) {
	i, _ := b.find(from)
	for ; i < len(b.kvs); i++ {
		if to != nil && bytes.Compare(b.kvs[i].Key, to) >= 0 || !fn(b.kvs[i]) {
			return
		}
	}
}

func (b *sliceBackend) Len() int      { return len(b.kvs) }
func (b *sliceBackend) Meta() Meta    { return b.meta }
func (b *sliceBackend) Sessions() int { return len(b.sessions) }

func (b *sliceBackend) Session(id uint64) (SessionRecord, bool) {
	for _, s := range b.sessions {
		if s.ClientID == id {
			return s, true
		}
	}
	return SessionRecord{}, false
}

func (b *sliceBackend) AscendSessions(fn func(SessionRecord) bool) {
	for _, s := range b.sessions {
		if !fn(s) {
			return
		}
	}
}

func (b *sliceBackend) Put(kv KeyValue) {
	i, ok := b.find(kv.Key)
	if ok != (kv.Version > 1) {
		b.t.Fatalf("put of %q version %d, but live = %v", kv.Key, kv.Version, ok)
	}
	if ok {
		b.kvs[i] = kv
	} else {
		b.kvs = slices.Insert(b.kvs, i, kv)
	}
}

func (b *sliceBackend) Delete(key []byte) {
	i, ok := b.find(key)
	if !ok {
		b.t.Fatalf("delete of %q, which is not live", key)
	}
	b.kvs = slices.Delete(b.kvs, i, i+1)
}

func (b *sliceBackend) SetMeta(m Meta) { b.meta = m }

func (b *sliceBackend) PutSession(s SessionRecord) {
	if n := len(b.sessions); n > 0 && b.sessions[n-1].Index >= s.Index && b.sessions[n-1].ClientID != s.ClientID {
		b.t.Fatalf("session index %d not above %d", s.Index, b.sessions[n-1].Index)
	}
	b.sessions = slices.DeleteFunc(b.sessions, func(x SessionRecord) bool { return x.ClientID == s.ClientID })
	b.sessions = append(b.sessions, s)
	if len(b.sessions) > b.meta.SessionsMax {
		b.t.Fatalf("%d sessions > bound %d", len(b.sessions), b.meta.SessionsMax)
	}
}

func (b *sliceBackend) DeleteSession(id uint64) {
	n := len(b.sessions)
	b.sessions = slices.DeleteFunc(b.sessions, func(x SessionRecord) bool { return x.ClientID == id })
	if len(b.sessions) != n-1 {
		b.t.Fatalf("delete of client %d, which has no session", id)
	}
}

// TestApplyOverBackend applies random entries through the package-level
// Apply and Read to a naive Backend and to a Store: results, hashes and
// snapshot bytes agree, so the semantics depend on nothing but the
// Backend contract. The session bound is small so that eviction happens.
func TestApplyOverBackend(t *testing.T) {
	s := New()
	s.sessions.max = 3
	b := newSliceBackend(t)
	b.meta.SessionsMax = 3
	for i, e := range randomEntries(3, 3000) {
		got, want := Apply(b, e), s.Apply(e)
		if !sameResult(got, want) {
			t.Fatalf("entry %d: %s\nbackend %+v\nstore   %+v", i+1, describeEntry(e), got, want)
		}
		if i%100 == 0 {
			q := RangePrefix("a")
			if got, want := Read(b, q), s.Read(q); !sameResult(got, want) {
				t.Fatalf("entry %d: read differs", i+1)
			}
			if h, err := Hash(b); err != nil || h != s.Hash() {
				t.Fatalf("entry %d: hashes differ", i+1)
			}
		}
	}
	var buf []byte
	if err := WriteSnapshot(b, func(p []byte) error { buf = append(buf, p...); return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, s.Snapshot()) {
		t.Fatal("snapshots differ")
	}
	if b.Sessions() != 3 {
		t.Fatalf("%d sessions; the workload should fill the table", b.Sessions())
	}
}

// pieces returns a ReadSnapshot source that yields data n bytes at a time.
func pieces(data []byte, n int) func() ([]byte, error) {
	return func() ([]byte, error) {
		k := min(n, len(data))
		p := data[:k]
		data = data[k:]
		return p, nil
	}
}

// TestStreamedSnapshot checks that WriteSnapshot writes exactly Snapshot's
// bytes, in bounded pieces, and that ReadSnapshot, fed in pieces of any
// size, rebuilds the same state.
func TestStreamedSnapshot(t *testing.T) {
	s := New()
	for _, e := range randomEntries(13, 5000) {
		s.Apply(e)
	}
	want := s.Snapshot()
	var got []byte
	maxPiece := 0
	if err := WriteSnapshot(s.backend(), func(p []byte) error {
		maxPiece = max(maxPiece, len(p))
		got = append(got, p...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("WriteSnapshot differs from Snapshot")
	}
	if maxPiece > 2*flushBytes {
		t.Fatalf("a piece of %d bytes: WriteSnapshot buffers too much", maxPiece)
	}
	for _, n := range []int{1, 3, 4096, len(want)} {
		r := New()
		if err := ReadSnapshot(pieces(want, n), r.backend()); err != nil {
			t.Fatalf("pieces of %d: %v", n, err)
		}
		checkStore(t, r)
		if !bytes.Equal(r.Snapshot(), want) {
			t.Fatalf("pieces of %d: restored state differs", n)
		}
	}
	// A write error stops the stream and comes back.
	boom := errors.New("boom")
	calls := 0
	err := WriteSnapshot(s.backend(), func([]byte) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("write error: %v after %d calls", err, calls)
	}
}

// TestStreamedSnapshotCorruption: every truncation and (a sample of) bit
// flips are rejected by the streaming decoder too, with ErrCorruptSnapshot;
// a read error is returned as itself.
func TestStreamedSnapshotCorruption(t *testing.T) {
	h := newHarness(t)
	h.do(Put("a", "1"))
	h.session(Request{Put: &PutRequest{Key: []byte("b"), Value: []byte("2"), PrevKV: true}}, 5, 1)
	h.do(CompareAndSwap("a", "1", "3"))
	snap := h.s.Snapshot()
	for n := range len(snap) {
		if err := ReadSnapshot(pieces(snap[:n], 5), New().backend()); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("truncation to %d bytes: err %v", n, err)
		}
	}
	if err := ReadSnapshot(pieces(append(bytes.Clone(snap), 0), 5), New().backend()); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("appended byte: %v", err)
	}
	for i := range snap {
		for bit := range 8 {
			bad := bytes.Clone(snap)
			bad[i] ^= 1 << bit
			if err := ReadSnapshot(pieces(bad, 3), New().backend()); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("flip of byte %d bit %d: err %v", i, bit, err)
			}
		}
	}
	boom := errors.New("disk on fire")
	calls := 0
	err := ReadSnapshot(func() ([]byte, error) {
		calls++
		if calls > 2 {
			return nil, boom
		}
		return snap[:5], nil
	}, New().backend())
	if !errors.Is(err, boom) || errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("read error: %v", err)
	}
}

func TestSessionEncoding(t *testing.T) {
	s := SessionRecord{ClientID: 7, Seq: 3, Index: 9, Result: Result{Revision: 4, Succeeded: true,
		Responses: []Result{{KVs: []KeyValue{{Key: []byte("k"), Value: []byte("v"), CreateRevision: 2, ModRevision: 3, Version: 2}}}}}}
	b := AppendSession([]byte("x"), &s)
	got, err := DecodeSession(b[1:])
	if err != nil || !sameResult(got.Result, s.Result) || got.ClientID != 7 || got.Seq != 3 || got.Index != 9 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for n := range len(b) - 1 {
		if _, err := DecodeSession(b[1 : 1+n]); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("truncation to %d: %v", n, err)
		}
	}
}

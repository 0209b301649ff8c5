package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// workload makes random entries over a small key space, so that
// overwrites, range deletes, txns, session retries, evictions, no-ops and
// garbage are all common.
type workload struct {
	r    *rand.Rand
	seqs map[uint64]uint64
	next uint64
}

func newWorkload(seed uint64) *workload {
	return &workload{r: rand.New(rand.NewPCG(seed, seed^0x5eed)), seqs: map[uint64]uint64{}, next: 1}
}

func (w *workload) key() []byte {
	return []byte(fmt.Sprintf("%c%d", 'a'+w.r.IntN(6), w.r.IntN(60)))
}

func (w *workload) end(k []byte) []byte {
	switch w.r.IntN(5) {
	case 0:
		return []byte{0}
	case 1:
		return kv.PrefixEnd(k[:1])
	case 2:
		return w.key()
	}
	return nil
}

func (w *workload) op() kv.Request {
	switch n := w.r.IntN(10); {
	case n < 5:
		v := bytes.Repeat([]byte{byte('a' + w.r.IntN(26))}, w.r.IntN(40))
		return kv.Request{Put: &kv.PutRequest{Key: w.key(), Value: v, PrevKV: w.r.IntN(2) == 0}}
	case n < 8:
		k := w.key()
		return kv.Request{Range: &kv.RangeRequest{Key: k, RangeEnd: w.end(k), Limit: int64(w.r.IntN(3) * w.r.IntN(4)),
			CountOnly: w.r.IntN(8) == 0, KeysOnly: w.r.IntN(4) == 0}}
	default:
		k := w.key()
		var end []byte
		if w.r.IntN(10) == 0 {
			end = w.end(k)
		}
		return kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: k, RangeEnd: end, PrevKV: w.r.IntN(2) == 0}}
	}
}

func (w *workload) request() kv.Request {
	if w.r.IntN(5) != 0 {
		return w.op()
	}
	c := kv.Compare{Key: w.key(), Target: kv.CompareTarget(w.r.IntN(4)), Result: kv.CompareResult(w.r.IntN(4)),
		Version: int64(w.r.IntN(3)), CreateRevision: int64(w.r.IntN(300)), ModRevision: int64(w.r.IntN(300))}
	branch := func() []kv.Request {
		var ops []kv.Request
		seen := map[string]bool{}
		for range w.r.IntN(4) {
			op := w.op()
			if op.Put != nil && seen[string(op.Put.Key)] || op.DeleteRange != nil {
				continue // keep the txn valid (no duplicate writes)
			}
			if op.Put != nil {
				seen[string(op.Put.Key)] = true
			}
			ops = append(ops, op)
		}
		return ops
	}
	return kv.Request{Txn: &kv.TxnRequest{Compare: c, Success: branch(), Failure: branch()}}
}

// entries returns the next n entries.
func (w *workload) entries(n int) []consensus.Entry {
	out := make([]consensus.Entry, n)
	for i := range out {
		e := consensus.Entry{Index: w.next, Term: 1}
		w.next++
		switch x := w.r.IntN(50); {
		case x == 0:
			e.Type = consensus.EntryNoOp
		case x == 1:
			e.Command.Data = []byte{1, 9, 9}
		default:
			var s consensus.Session
			if x < 20 {
				// Many clients, so that a small session bound evicts.
				s.ClientID = 1 + uint64(w.r.IntN(12))
				if w.r.IntN(4) == 0 && w.seqs[s.ClientID] > 0 {
					s.Seq = w.seqs[s.ClientID] - uint64(w.r.IntN(2))
				} else {
					w.seqs[s.ClientID]++
					s.Seq = w.seqs[s.ClientID]
				}
			}
			r := w.request()
			e.Command = r.Command(s)
		}
		out[i] = e
	}
	return out
}

func sameResult(a, b kv.Result) bool {
	if fmt.Sprint(a.Err) != fmt.Sprint(b.Err) {
		return false
	}
	a.Err, b.Err = nil, nil
	return reflect.DeepEqual(a, b)
}

func mustOpen(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustHash(t testing.TB, s *Store) uint64 {
	t.Helper()
	h, err := s.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func snapshotOf(t testing.TB, s *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAgainstMemory applies a long random workload, in batches of random
// size, to a Store and to the in-memory kv.Store: every result, every
// read, the hash and the snapshot bytes must be identical. The session
// table is shrunk (through a snapshot) so that evictions happen.
func TestAgainstMemory(t *testing.T) {
	const seed = 1
	n := 6000
	if testing.Short() {
		n = 3000
	}
	mem := kv.New()
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	w := newWorkload(seed)
	shrunk := false
	for applied := 0; applied < n; {
		es := w.entries(1 + w.r.IntN(40))
		got, err := s.ApplyBatch(es)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range es {
			want := mem.Apply(e)
			if !sameResult(got[i], want) {
				t.Fatalf("seed %d entry %d:\ngot  %+v\nwant %+v", seed, e.Index, got[i], want)
			}
		}
		applied += len(es)
		for range 3 {
			k := w.key()
			r := kv.Request{Range: &kv.RangeRequest{Key: k, RangeEnd: w.end(k)}}
			if got, want := s.Read(r), mem.Read(r); !sameResult(got, want) {
				t.Fatalf("seed %d after %d: read\ngot  %+v\nwant %+v", seed, applied, got, want)
			}
		}
		if !shrunk && applied > n/4 {
			// Shrink the session bound to 5 on both sides, through a
			// snapshot: later commands evict.
			shrunk = true
			snap := withSessionsMax(t, mem.Snapshot(), 5)
			var err error
			if mem, err = kv.Restore(snap); err != nil {
				t.Fatal(err)
			}
			if err := s.RestoreSnapshot(bytes.NewReader(snap)); err != nil {
				t.Fatal(err)
			}
		}
		if w.r.IntN(20) == 0 {
			if h := mustHash(t, s); h != mem.Hash() {
				t.Fatalf("seed %d after %d: hash %x, memory %x", seed, applied, h, mem.Hash())
			}
		}
	}
	if got, want := snapshotOf(t, s), mem.Snapshot(); !bytes.Equal(got, want) {
		t.Fatalf("snapshots differ: %d vs %d bytes", len(got), len(want))
	}
	if s.AppliedIndex() != mem.AppliedIndex() || mem.Len() < 100 {
		t.Fatalf("applied %d vs %d; %d keys", s.AppliedIndex(), mem.AppliedIndex(), mem.Len())
	}
}

// withSessionsMax rewrites a snapshot's session bound to max, keeping the
// most recently used sessions.
func withSessionsMax(t testing.TB, snap []byte, max int) []byte {
	t.Helper()
	v := &memView{}
	if err := kv.ReadSnapshot(pieces(snap), v); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := kv.WriteSnapshot(boundView{View: v, max: max}, func(p []byte) error { buf.Write(p); return nil }); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// boundView is a View with another session bound, showing only the most
// recent max sessions.
type boundView struct {
	kv.View
	max int
}

func (b boundView) Meta() kv.Meta { m := b.View.Meta(); m.SessionsMax = b.max; return m }
func (b boundView) Sessions() int { return min(b.View.Sessions(), b.max) }
func (b boundView) AscendSessions(fn func(kv.SessionRecord) bool) {
	skip := b.View.Sessions() - b.Sessions()
	b.View.AscendSessions(func(s kv.SessionRecord) bool {
		if skip > 0 {
			skip--
			return true
		}
		return fn(s)
	})
}

// memView is a minimal sorted-slice Backend, for tests.
type memView struct {
	meta     kv.Meta
	kvs      []kv.KeyValue
	sessions []kv.SessionRecord
}

func (m *memView) Get(key []byte) (kv.KeyValue, bool) {
	for _, x := range m.kvs {
		if bytes.Equal(x.Key, key) {
			return x, true
		}
	}
	return kv.KeyValue{}, false
}
func (m *memView) Ascend(from, to []byte, fn func(kv.KeyValue) bool) {
	for _, x := range m.kvs {
		if bytes.Compare(x.Key, from) >= 0 && (to == nil || bytes.Compare(x.Key, to) < 0) && !fn(x) {
			return
		}
	}
}
func (m *memView) Len() int      { return len(m.kvs) }
func (m *memView) Meta() kv.Meta { return m.meta }
func (m *memView) Session(id uint64) (kv.SessionRecord, bool) {
	for _, s := range m.sessions {
		if s.ClientID == id {
			return s, true
		}
	}
	return kv.SessionRecord{}, false
}
func (m *memView) AscendSessions(fn func(kv.SessionRecord) bool) {
	for _, s := range m.sessions {
		if !fn(s) {
			return
		}
	}
}
func (m *memView) Sessions() int                 { return len(m.sessions) }
func (m *memView) Put(x kv.KeyValue)             { m.kvs = append(m.kvs, x) }
func (m *memView) Delete([]byte)                 { panic("unused") }
func (m *memView) SetMeta(meta kv.Meta)          { m.meta = meta }
func (m *memView) PutSession(s kv.SessionRecord) { m.sessions = append(m.sessions, s) }
func (m *memView) DeleteSession(uint64)          { panic("unused") }

// pieces returns a kv.ReadSnapshot source that yields data in small pieces.
func pieces(data []byte) func() ([]byte, error) {
	return func() ([]byte, error) {
		n := min(len(data), 7)
		p := data[:n]
		data = data[n:]
		return p, nil
	}
}

// TestOptionsAndReset: a store opened with kv options applies them as the
// in-memory store with the same options does (local revisions refuse
// revision compares), and Reset empties it durably so that the entries
// can be applied again from index 1.
func TestOptionsAndReset(t *testing.T) {
	local := kv.Options{PerKeyOrder: true}
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true, KV: local})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	mem := kv.NewWith(local)
	es := newWorkload(3).entries(2000)
	refused := 0
	for i := 0; i < len(es); i += 50 {
		batch := es[i:min(i+50, len(es))]
		got, err := s.ApplyBatch(batch)
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range batch {
			want := mem.Apply(e)
			if !sameResult(got[j], want) {
				t.Fatalf("entry %d:\ngot  %+v\nwant %+v", e.Index, got[j], want)
			}
			if errors.Is(got[j].Err, kv.ErrRevisionCompare) {
				refused++
			}
		}
	}
	if refused == 0 {
		t.Fatal("no revision compare was refused: the option did not reach Apply")
	}
	ro := kv.Request{Txn: &kv.TxnRequest{Compare: kv.Compare{Key: []byte("a1"), Target: kv.CompareMod, ModRevision: 5}}}
	if res := s.Read(ro); !errors.Is(res.Err, kv.ErrRevisionCompare) {
		t.Fatalf("Read of a revision compare: %v, want ErrRevisionCompare", res.Err)
	}
	if mustHash(t, s) != mem.Hash() {
		t.Fatal("hash differs from the in-memory store's")
	}

	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	empty := kv.New()
	if s.AppliedIndex() != 0 || mustHash(t, s) != empty.Hash() {
		t.Fatalf("after Reset: applied %d, hash %x; want an empty store", s.AppliedIndex(), mustHash(t, s))
	}
	// Durable: a reopened store is still empty, and takes index 1 again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{NoSync: true, KV: local}); err != nil {
		t.Fatal(err)
	}
	if s.AppliedIndex() != 0 || mustHash(t, s) != empty.Hash() {
		t.Fatalf("after Reset and reopen: applied %d; want an empty store", s.AppliedIndex())
	}
	mem = kv.NewWith(local)
	got, err := s.ApplyBatch(es[:100])
	if err != nil {
		t.Fatal(err)
	}
	for j, e := range es[:100] {
		if want := mem.Apply(e); !sameResult(got[j], want) {
			t.Fatalf("entry %d after Reset:\ngot  %+v\nwant %+v", e.Index, got[j], want)
		}
	}
}

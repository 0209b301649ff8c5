package kv

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// model is a naive reference for the store's data semantics: a map, and a
// full scan plus sort for every range.
type model struct {
	rev int64
	kvs map[string]KeyValue
}

func newModel() *model { return &model{rev: 1, kvs: map[string]KeyValue{}} }

func (m *model) selected(key, end []byte) []string {
	k, e := string(key), string(end)
	var out []string
	for x := range m.kvs {
		var in bool
		switch {
		case e == "":
			in = x == k
		case e == "\x00":
			in = x >= k
		default:
			in = x >= k && x < e
		}
		if in {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// apply applies a valid request and returns the expected result.
func (m *model) apply(r *Request) Result {
	next := m.rev + 1
	changed := false
	var events []Event
	var do func(r *Request) Result
	do = func(r *Request) Result {
		var res Result
		switch {
		case r.Range != nil:
			q := r.Range
			for _, k := range m.selected(q.Key, q.RangeEnd) {
				res.Count++
				if q.CountOnly {
					continue
				}
				if q.Limit > 0 && int64(len(res.KVs)) == q.Limit {
					res.More = true
					continue
				}
				kv := m.kvs[k]
				if q.KeysOnly {
					kv.Value = nil
				}
				res.KVs = append(res.KVs, kv)
			}
		case r.Put != nil:
			q := r.Put
			old, ok := m.kvs[string(q.Key)]
			kv := KeyValue{Key: q.Key, Value: q.Value, CreateRevision: next, ModRevision: next, Version: 1}
			if ok {
				if q.PrevKV {
					res.PrevKVs = []KeyValue{old}
				}
				kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
			}
			m.kvs[string(q.Key)] = kv
			changed = true
			events = append(events, Event{Type: EventPut, KV: kv, PrevKV: old})
		case r.DeleteRange != nil:
			q := r.DeleteRange
			for _, k := range m.selected(q.Key, q.RangeEnd) {
				if q.PrevKV {
					res.PrevKVs = append(res.PrevKVs, m.kvs[k])
				}
				events = append(events, Event{Type: EventDelete, KV: KeyValue{Key: []byte(k), ModRevision: next}, PrevKV: m.kvs[k]})
				delete(m.kvs, k)
				res.Deleted++
				changed = true
			}
		case r.Txn != nil:
			c := r.Txn.Compare
			kv, ok := m.kvs[string(c.Key)]
			var rel int
			switch c.Target {
			case CompareValue:
				rel = strings.Compare(string(kv.Value), string(c.Value))
			case CompareVersion:
				rel = sign(kv.Version - c.Version)
			case CompareCreate:
				rel = sign(kv.CreateRevision - c.CreateRevision)
			case CompareMod:
				rel = sign(kv.ModRevision - c.ModRevision)
			}
			holds := map[CompareResult]bool{
				CompareEqual: rel == 0, CompareNotEqual: rel != 0, CompareLess: rel < 0, CompareGreater: rel > 0,
			}[c.Result]
			if !ok && c.Target == CompareValue {
				holds = false
			}
			res.Succeeded = holds
			branch := r.Txn.Failure
			if holds {
				branch = r.Txn.Success
			}
			for i := range branch {
				res.Responses = append(res.Responses, do(&branch[i]))
			}
		}
		return res
	}
	res := do(r)
	if changed {
		m.rev = next
		res.Events = events
	}
	var setRev func(*Result)
	setRev = func(res *Result) {
		res.Revision = m.rev
		for i := range res.Responses {
			setRev(&res.Responses[i])
		}
	}
	setRev(&res)
	return res
}

func sign(x int64) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// gen makes random requests over a small key space, so that ranges,
// overwrites and re-creations are common. Keys are 1–3 letters from a
// 13-letter alphabet (2,379 keys), enough to split the index's chunks.
type gen struct{ r *rand.Rand }

const genAlphabet = "abcdefghijklm"

func (g gen) key() []byte {
	n := 3 // mostly long keys: short ones are few and get overwritten a lot
	if g.r.IntN(4) == 0 {
		n = 1 + g.r.IntN(2)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = genAlphabet[g.r.IntN(len(genAlphabet))]
	}
	return b
}

func (g gen) value() []byte {
	if g.r.IntN(8) == 0 {
		return nil
	}
	return []byte(strings.Repeat("v", g.r.IntN(4)) + string(g.key()))
}

func (g gen) rangeEnd(key []byte) []byte {
	switch g.r.IntN(6) {
	case 0, 1:
		return nil
	case 2:
		return PrefixEnd(key)
	case 3:
		return []byte{0}
	default:
		return g.key() // may be <= key: an empty range
	}
}

func (g gen) op() Request {
	switch n := g.r.IntN(20); {
	case n < 10:
		return Request{Put: &PutRequest{Key: g.key(), Value: g.value(), PrevKV: g.r.IntN(2) == 0}}
	case n < 15:
		k := g.key()
		return Request{Range: &RangeRequest{Key: k, RangeEnd: g.rangeEnd(k), Limit: int64(g.r.IntN(4)) * int64(g.r.IntN(5)),
			CountOnly: g.r.IntN(8) == 0, KeysOnly: g.r.IntN(4) == 0}}
	default:
		// Mostly single keys, so that the store grows to thousands of keys.
		k := g.key()
		var end []byte
		switch g.r.IntN(150) {
		case 0:
			end = g.rangeEnd(k) // possibly wide
		case 1, 2, 3, 4, 5, 6:
			if len(k) > 1 {
				k, end = k[:2], PrefixEnd(k[:2])
			}
		}
		return Request{DeleteRange: &DeleteRangeRequest{Key: k, RangeEnd: end, PrevKV: g.r.IntN(2) == 0}}
	}
}

func (g gen) request() Request {
	if g.r.IntN(6) != 0 {
		return g.op()
	}
	c := Compare{Key: g.key(), Target: CompareTarget(g.r.IntN(4)), Result: CompareResult(g.r.IntN(4))}
	switch c.Target {
	case CompareValue:
		c.Value = g.value()
	case CompareVersion:
		c.Version = int64(g.r.IntN(4))
	default:
		n := int64(g.r.IntN(400))
		c.CreateRevision, c.ModRevision = n, n
	}
	branch := func() []Request {
		ops := make([]Request, g.r.IntN(4))
		for i := range ops {
			ops[i] = g.op()
		}
		return ops
	}
	return Request{Txn: &TxnRequest{Compare: c, Success: branch(), Failure: branch()}}
}

// randomEntries returns n entries with random requests, some with sessions,
// some no-ops, some retries and a little garbage.
func randomEntries(seed uint64, n int) []consensus.Entry {
	g := gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	seqs := map[uint64]uint64{}
	out := make([]consensus.Entry, 0, n)
	for i := 1; i <= n; i++ {
		e := consensus.Entry{Index: uint64(i), Term: 1}
		switch x := g.r.IntN(40); {
		case x == 0:
			e.Type = consensus.EntryNoOp
		case x == 1:
			e.Command.Data = []byte{1, byte(g.r.IntN(256)), byte(g.r.IntN(256))}
		default:
			r := g.request()
			var s consensus.Session
			if x < 12 {
				s.ClientID = 1 + uint64(g.r.IntN(5))
				if g.r.IntN(4) == 0 && seqs[s.ClientID] > 0 {
					s.Seq = seqs[s.ClientID] - uint64(g.r.IntN(2)) // retry, or stale
				} else {
					seqs[s.ClientID]++
					s.Seq = seqs[s.ClientID]
				}
			}
			e.Command = r.Command(s)
		}
		out = append(out, e)
	}
	return out
}

// TestAgainstModel applies thousands of random requests to a Store and to
// the naive model and compares every result and, periodically, the whole
// contents. Every so often the store is replaced by a restore of its own
// snapshot, which must not change anything observable.
func TestAgainstModel(t *testing.T) {
	const seed, n = 1, 12000
	s, m := New(), newModel()
	type cached struct {
		seq uint64
		res Result
	}
	sessions := map[uint64]cached{}
	maxChunks := 0
	for i, e := range randomEntries(seed, n) {
		got := s.Apply(e)
		var want Result
		if e.Type == consensus.EntryNoOp {
			want = Result{Revision: m.rev}
		} else if e.Command.Session.ClientID != 0 && e.Command.Session.Seq == 0 {
			if !errors.Is(got.Err, ErrInvalidSession) {
				t.Fatalf("seed %d entry %d: seq 0 gave %+v", seed, i+1, got)
			}
			want = Result{Revision: m.rev, Err: got.Err}
		} else if c, ok := sessions[e.Command.Session.ClientID]; ok && e.Command.Session.Seq <= c.seq {
			if e.Command.Session.Seq == c.seq {
				want = c.res
			} else if !errors.Is(got.Err, ErrSessionExpired) {
				t.Fatalf("seed %d entry %d: stale seq gave %+v", seed, i+1, got)
			} else {
				want = Result{Revision: m.rev, Err: got.Err}
			}
		} else if req, err := DecodeRequest(e.Command.Data); err != nil {
			if got.Err == nil {
				t.Fatalf("seed %d entry %d: undecodable command applied: %+v", seed, i+1, got)
			}
			want = Result{Revision: m.rev, Err: got.Err}
		} else {
			want = m.apply(&req)
			if id := e.Command.Session.ClientID; id != 0 {
				c := want
				c.Events = nil // a retry reports no changes
				sessions[id] = cached{e.Command.Session.Seq, c}
			}
		}
		if !sameResult(got, want) {
			t.Fatalf("seed %d entry %d: %s\ngot  %+v\nwant %+v", seed, i+1, describeEntry(e), got, want)
		}
		maxChunks = max(maxChunks, len(s.idx.chunks))
		if s.Revision() != m.rev {
			t.Fatalf("seed %d entry %d: revision %d, model %d", seed, i+1, s.Revision(), m.rev)
		}
		if i%500 == 499 {
			compareContents(t, s, m)
			checkStore(t, s)
			r, err := Restore(s.Snapshot())
			if err != nil {
				t.Fatalf("entry %d: restore: %v", i+1, err)
			}
			if r.Hash() != s.Hash() {
				t.Fatalf("entry %d: restored hash differs", i+1)
			}
			s = r
		}
		// Reads through Read agree with the model too.
		if i%7 == 0 {
			g := gen{rand.New(rand.NewPCG(uint64(i), seed))}
			k := g.key()
			q := Request{Range: &RangeRequest{Key: k, RangeEnd: g.rangeEnd(k), Limit: int64(g.r.IntN(3))}}
			if got, want := s.Read(q), m.apply(&q); !sameResult(got, want) {
				t.Fatalf("entry %d: read %s\ngot  %+v\nwant %+v", i+1, describe(q), got, want)
			}
		}
	}
	compareContents(t, s, m)
	if maxChunks < 3 {
		t.Fatalf("at most %d index chunks: the test no longer exercises chunk splits", maxChunks)
	}
}

func describeEntry(e consensus.Entry) string {
	if e.Type == consensus.EntryNoOp {
		return "noop"
	}
	r, err := DecodeRequest(e.Command.Data)
	if err != nil {
		return "garbage"
	}
	return describe(r)
}

func compareContents(t *testing.T, s *Store, m *model) {
	t.Helper()
	got := s.Read(RangePrefix("")).KVs
	keys := m.selected([]byte{0}, []byte{0})
	want := make([]KeyValue, len(keys))
	for i, k := range keys {
		want[i] = m.kvs[k]
	}
	if !reflect.DeepEqual(normKVs(got), normKVs(want)) {
		t.Fatalf("contents differ: store has %d keys, model %d", len(got), len(want))
	}
	if !slices.IsSortedFunc(got, func(a, b KeyValue) int { return strings.Compare(string(a.Key), string(b.Key)) }) {
		t.Fatal("range not sorted")
	}
}

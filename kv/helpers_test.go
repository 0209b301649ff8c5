package kv

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// harness feeds requests to a store as consecutive log entries.
type harness struct {
	t testing.TB
	s *Store
}

func newHarness(t testing.TB) *harness { return &harness{t: t, s: New()} }

func (h *harness) entry(r Request, sess consensus.Session) consensus.Entry {
	return consensus.Entry{
		Index:   h.s.AppliedIndex() + 1,
		Term:    1,
		Type:    consensus.EntryNormal,
		Command: r.Command(sess),
	}
}

// do applies r without a session and fails the test on a result error.
func (h *harness) do(r Request) Result {
	h.t.Helper()
	res := h.s.Apply(h.entry(r, consensus.Session{}))
	if res.Err != nil {
		h.t.Fatalf("apply %s: %v", describe(r), res.Err)
	}
	return res
}

// session applies r for client with seq.
func (h *harness) session(r Request, client, seq uint64) Result {
	return h.s.Apply(h.entry(r, consensus.Session{ClientID: client, Seq: seq}))
}

func (h *harness) noop() Result {
	return h.s.Apply(consensus.Entry{Index: h.s.AppliedIndex() + 1, Type: consensus.EntryNoOp})
}

// get returns key's KeyValue and whether it exists, via Read.
func (h *harness) get(key string) (KeyValue, bool) {
	h.t.Helper()
	res := h.s.Read(Get(key))
	if res.Err != nil {
		h.t.Fatalf("get %q: %v", key, res.Err)
	}
	if len(res.KVs) == 0 {
		return KeyValue{}, false
	}
	return res.KVs[0], true
}

func describe(r Request) string {
	switch {
	case r.Range != nil:
		return fmt.Sprintf("range %+v", *r.Range)
	case r.Put != nil:
		return fmt.Sprintf("put %+v", *r.Put)
	case r.DeleteRange != nil:
		return fmt.Sprintf("delete %+v", *r.DeleteRange)
	case r.Txn != nil:
		return fmt.Sprintf("txn %+v", *r.Txn)
	}
	return "empty request"
}

// kvKeys lists the keys of kvs as strings.
func kvKeys(kvs []KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// normalize maps empty slices to nil, recursively, so results built in
// different ways compare equal with reflect.DeepEqual.
func normalize(r Result) Result {
	r.KVs = normKVs(r.KVs)
	r.PrevKVs = normKVs(r.PrevKVs)
	if len(r.Events) == 0 {
		r.Events = nil
	} else {
		evs := make([]Event, len(r.Events))
		for i, ev := range r.Events {
			if len(ev.KV.Value) == 0 {
				ev.KV.Value = nil
			}
			if len(ev.PrevKV.Key) == 0 {
				ev.PrevKV = KeyValue{}
			} else if len(ev.PrevKV.Value) == 0 {
				ev.PrevKV.Value = nil
			}
			evs[i] = ev
		}
		r.Events = evs
	}
	if len(r.Responses) == 0 {
		r.Responses = nil
	} else {
		rs := make([]Result, len(r.Responses))
		for i := range rs {
			rs[i] = normalize(r.Responses[i])
		}
		r.Responses = rs
	}
	return r
}

func normKVs(kvs []KeyValue) []KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]KeyValue, len(kvs))
	for i, kv := range kvs {
		if len(kv.Value) == 0 {
			kv.Value = nil
		}
		out[i] = kv
	}
	return out
}

func sameResult(a, b Result) bool {
	if (a.Err == nil) != (b.Err == nil) {
		return false
	}
	a.Err, b.Err = nil, nil
	return reflect.DeepEqual(normalize(a), normalize(b))
}

// checkStore asserts the store's internal invariants.
func checkStore(t testing.TB, s *Store) {
	t.Helper()
	s.idx.check()
	if len(s.kvs) != s.idx.len() {
		t.Fatalf("map holds %d keys, index %d", len(s.kvs), s.idx.len())
	}
	s.idx.all(func(e *entry) {
		if s.kvs[string(e.kv.Key)] != e {
			t.Fatalf("index entry %q is not the map's", e.kv.Key)
		}
		kv := e.kv
		if kv.CreateRevision < 2 || kv.CreateRevision > kv.ModRevision || kv.ModRevision > s.rev ||
			kv.Version < 1 || kv.Version > kv.ModRevision-kv.CreateRevision+1 {
			t.Fatalf("key %q has impossible metadata %+v at revision %d", kv.Key, kv, s.rev)
		}
	})
	n := 0
	var last uint64
	s.sessions.all(func(ss *session) {
		n++
		if ss.index <= last || ss.index > s.applied {
			t.Fatalf("session %d index %d out of order (previous %d)", ss.clientID, ss.index, last)
		}
		last = ss.index
	})
	if n != s.sessions.len() || n > s.sessions.max {
		t.Fatalf("session list holds %d, map %d, bound %d", n, s.sessions.len(), s.sessions.max)
	}
}

// enc encodes r (Encode has a pointer receiver).
func enc(r Request) []byte { return r.Encode() }

package kv

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func TestNewStore(t *testing.T) {
	s := New()
	if s.Revision() != 1 || s.AppliedIndex() != 0 || s.Len() != 0 {
		t.Fatalf("new store: revision %d, applied %d, len %d; want 1, 0, 0", s.Revision(), s.AppliedIndex(), s.Len())
	}
}

func TestRevisionSemantics(t *testing.T) {
	// Each step applies one request; want is the store revision after it and
	// the state of key "k" (nil: absent).
	type meta struct {
		value                string
		create, mod, version int64
	}
	steps := []struct {
		name string
		req  Request
		rev  int64
		k    *meta
	}{
		{"put creates", Put("k", "v1"), 2, &meta{"v1", 2, 2, 1}},
		{"put updates", Put("k", "v2"), 3, &meta{"v2", 2, 3, 2}},
		{"same value still writes", Put("k", "v2"), 4, &meta{"v2", 2, 4, 3}},
		{"other key bumps revision", Put("other", "x"), 5, &meta{"v2", 2, 4, 3}},
		{"get does not bump", Get("k"), 5, &meta{"v2", 2, 4, 3}},
		{"delete", Delete("k"), 6, nil},
		{"delete missing does not bump", Delete("k"), 6, nil},
		{"recreate starts at version 1", Put("k", "v3"), 7, &meta{"v3", 7, 7, 1}},
		{"put again", Put("k", "v4"), 8, &meta{"v4", 7, 8, 2}},
		{"failed txn that only reads does not bump", CompareAndSwap("k", "nope", "x"), 8, &meta{"v4", 7, 8, 2}},
		{"cas succeeds", CompareAndSwap("k", "v4", "v5"), 9, &meta{"v5", 7, 9, 3}},
		{"delete range of nothing does not bump",
			Request{DeleteRange: &DeleteRangeRequest{Key: []byte("x"), RangeEnd: []byte("y")}}, 9, &meta{"v5", 7, 9, 3}},
		{"empty value", Put("k", ""), 10, &meta{"", 7, 10, 4}},
	}
	h := newHarness(t)
	for i, st := range steps {
		res := h.do(st.req)
		if res.Revision != st.rev || h.s.Revision() != st.rev {
			t.Fatalf("step %d (%s): result revision %d, store revision %d; want %d", i, st.name, res.Revision, h.s.Revision(), st.rev)
		}
		if h.s.AppliedIndex() != uint64(i+1) {
			t.Fatalf("step %d: applied index %d", i, h.s.AppliedIndex())
		}
		kv, ok := h.get("k")
		if (st.k != nil) != ok {
			t.Fatalf("step %d (%s): k exists = %v, want %v", i, st.name, ok, st.k != nil)
		}
		if ok {
			got := meta{string(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Version}
			if got != *st.k {
				t.Fatalf("step %d (%s): k = %+v, want %+v", i, st.name, got, *st.k)
			}
		}
		checkStore(t, h.s)
	}
}

func TestTxnWritesShareOneRevision(t *testing.T) {
	h := newHarness(t)
	h.do(Put("gone", "x")) // rev 2
	h.do(Put("a", "0"))    // rev 3
	txn := Request{Txn: &TxnRequest{
		Compare: Compare{Key: []byte("a"), Target: CompareVersion, Result: CompareEqual, Version: 1},
		Success: []Request{
			Put("a", "1"),
			Put("b", "2"),
			Get("a"), // sees the txn's own write
			{DeleteRange: &DeleteRangeRequest{Key: []byte("gone"), PrevKV: true}},
			{DeleteRange: &DeleteRangeRequest{Key: []byte("missing")}},
		},
	}}
	res := h.do(txn)
	if !res.Succeeded || res.Revision != 4 || len(res.Responses) != 5 {
		t.Fatalf("txn result %+v; want succeeded at revision 4 with 5 responses", res)
	}
	for i, r := range res.Responses {
		if r.Revision != 4 {
			t.Errorf("response %d revision %d, want 4", i, r.Revision)
		}
	}
	if kvs := res.Responses[2].KVs; len(kvs) != 1 || string(kvs[0].Value) != "1" || kvs[0].ModRevision != 4 || kvs[0].Version != 2 {
		t.Errorf("range inside txn saw %+v; want a=1 at mod revision 4, version 2", kvs)
	}
	if r := res.Responses[3]; r.Deleted != 1 || len(r.PrevKVs) != 1 || string(r.PrevKVs[0].Key) != "gone" {
		t.Errorf("delete inside txn: %+v", r)
	}
	if r := res.Responses[4]; r.Deleted != 0 {
		t.Errorf("delete of missing key inside txn deleted %d", r.Deleted)
	}
	a, _ := h.get("a")
	b, _ := h.get("b")
	if a.ModRevision != 4 || b.ModRevision != 4 || b.CreateRevision != 4 || a.CreateRevision != 3 {
		t.Fatalf("a = %+v, b = %+v; want both modified at revision 4", a, b)
	}
}

func TestPutPrevKV(t *testing.T) {
	h := newHarness(t)
	res := h.do(Request{Put: &PutRequest{Key: []byte("k"), Value: []byte("1"), PrevKV: true}})
	if len(res.PrevKVs) != 0 {
		t.Fatalf("prevKV of a new key: %+v", res.PrevKVs)
	}
	res = h.do(Request{Put: &PutRequest{Key: []byte("k"), Value: []byte("2"), PrevKV: true}})
	want := []KeyValue{{Key: []byte("k"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1}}
	if !reflect.DeepEqual(res.PrevKVs, want) {
		t.Fatalf("prevKV = %+v, want %+v", res.PrevKVs, want)
	}
	// Without PrevKV nothing is returned.
	if res = h.do(Put("k", "3")); res.PrevKVs != nil {
		t.Fatalf("prevKV returned without asking: %+v", res.PrevKVs)
	}
}

func rangeReq(key, end string, limit int64, countOnly, keysOnly bool) Request {
	r := &RangeRequest{Key: []byte(key), Limit: limit, CountOnly: countOnly, KeysOnly: keysOnly}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return Request{Range: r}
}

func TestRange(t *testing.T) {
	h := newHarness(t)
	keys := []string{"b", "a", "abc", "ab", "ba", "c", "\xff", "\xff\xff", "a\xff"}
	for _, k := range keys {
		h.do(Put(k, "v-"+k))
	}
	all := slices.Sorted(slices.Values(keys))
	tests := []struct {
		name  string
		req   Request
		keys  []string
		count int64
		more  bool
	}{
		{"single", Get("ab"), []string{"ab"}, 1, false},
		{"single missing", Get("zz"), []string{}, 0, false},
		{"prefix", RangePrefix("a"), []string{"a", "ab", "abc", "a\xff"}, 4, false},
		{"prefix ab", RangePrefix("ab"), []string{"ab", "abc"}, 2, false},
		{"prefix with 0xff", RangePrefix("a\xff"), []string{"a\xff"}, 1, false},
		{"prefix 0xff", RangePrefix("\xff"), []string{"\xff", "\xff\xff"}, 2, false},
		{"prefix none", RangePrefix("q"), []string{}, 0, false},
		{"empty prefix is everything", RangePrefix(""), all, int64(len(all)), false},
		{"all keys", rangeReq("\x00", "\x00", 0, false, false), all, int64(len(all)), false},
		{"from key to the end", rangeReq("b", "\x00", 0, false, false), []string{"b", "ba", "c", "\xff", "\xff\xff"}, 5, false},
		{"half open", rangeReq("ab", "b", 0, false, false), []string{"ab", "abc", "a\xff"}, 3, false},
		{"end excluded", rangeReq("a", "ab", 0, false, false), []string{"a"}, 1, false},
		{"end below key", rangeReq("b", "a", 0, false, false), []string{}, 0, false},
		{"end equals key", rangeReq("b", "b", 0, false, false), []string{}, 0, false},
		{"limit", rangeReq("a", "c", 2, false, false), []string{"a", "ab"}, 6, true},
		{"limit exact", rangeReq("a", "b", 4, false, false), []string{"a", "ab", "abc", "a\xff"}, 4, false},
		{"limit above", rangeReq("a", "b", 10, false, false), []string{"a", "ab", "abc", "a\xff"}, 4, false},
		{"count only", rangeReq("a", "c", 0, true, false), []string{}, 6, false},
		{"count only with limit", rangeReq("a", "c", 1, true, false), []string{}, 6, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.s.Read(tt.req)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if got := kvKeys(res.KVs); !slices.Equal(got, tt.keys) {
				t.Errorf("keys = %q, want %q", got, tt.keys)
			}
			if res.Count != tt.count || res.More != tt.more {
				t.Errorf("count %d more %v, want %d %v", res.Count, res.More, tt.count, tt.more)
			}
			for _, kv := range res.KVs {
				if string(kv.Value) != "v-"+string(kv.Key) {
					t.Errorf("key %q has value %q", kv.Key, kv.Value)
				}
			}
			if res.Revision != h.s.Revision() {
				t.Errorf("revision %d, want %d", res.Revision, h.s.Revision())
			}
			// The same request through the log gives the same answer.
			if logged := h.do(tt.req); !sameResult(logged, res) {
				t.Errorf("through the log: %+v, via Read: %+v", logged, res)
			}
		})
	}
	t.Run("keys only", func(t *testing.T) {
		res := h.s.Read(rangeReq("a", "b", 0, false, true))
		if got := kvKeys(res.KVs); !slices.Equal(got, []string{"a", "ab", "abc", "a\xff"}) {
			t.Fatalf("keys = %q", got)
		}
		for _, kv := range res.KVs {
			if kv.Value != nil || kv.Version != 1 || kv.CreateRevision < 2 {
				t.Errorf("keys-only kv %+v: want metadata without value", kv)
			}
		}
	})
}

func TestDeleteRange(t *testing.T) {
	h := newHarness(t)
	for _, k := range []string{"a", "ab", "abc", "b", "c"} {
		h.do(Put(k, k))
	}
	rev := h.s.Revision()
	res := h.do(Request{DeleteRange: &DeleteRangeRequest{Key: []byte("ab"), RangeEnd: PrefixEnd([]byte("ab")), PrevKV: true}})
	if res.Deleted != 2 || !slices.Equal(kvKeys(res.PrevKVs), []string{"ab", "abc"}) || res.Revision != rev+1 {
		t.Fatalf("delete prefix ab: %+v", res)
	}
	res = h.do(Request{DeleteRange: &DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte{0}}})
	if res.Deleted != 2 || res.PrevKVs != nil || res.Revision != rev+2 {
		t.Fatalf("delete from b: %+v", res)
	}
	if got := kvKeys(h.s.Read(RangePrefix("")).KVs); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("left %q, want [a]", got)
	}
	checkStore(t, h.s)
}

func TestTxnCompare(t *testing.T) {
	h := newHarness(t)
	h.do(Put("k", "b")) // rev 2: create 2
	h.do(Put("x", "-")) // rev 3
	h.do(Put("k", "b")) // rev 4: k create 2, mod 4, version 2, value "b"

	type cmpCase struct {
		target CompareTarget
		result CompareResult
		value  string
		num    int64
		key    string
		want   bool
	}
	ops := []CompareResult{CompareEqual, CompareNotEqual, CompareLess, CompareGreater}
	// For each target: the operand below, equal to and above k's actual value.
	var cases []cmpCase
	add := func(target CompareTarget, below, equal, above cmpCase) {
		for _, c := range []struct {
			c   cmpCase
			rel int // operand relative to the key's value
		}{{below, -1}, {equal, 0}, {above, 1}} {
			for _, op := range ops {
				cc := c.c
				cc.target, cc.result, cc.key = target, op, "k"
				// The key's value compared with the operand is -rel.
				switch op {
				case CompareEqual:
					cc.want = c.rel == 0
				case CompareNotEqual:
					cc.want = c.rel != 0
				case CompareLess:
					cc.want = c.rel > 0
				case CompareGreater:
					cc.want = c.rel < 0
				}
				cases = append(cases, cc)
			}
		}
	}
	add(CompareValue, cmpCase{value: "a"}, cmpCase{value: "b"}, cmpCase{value: "ba"})
	add(CompareVersion, cmpCase{num: 1}, cmpCase{num: 2}, cmpCase{num: 3})
	add(CompareCreate, cmpCase{num: 1}, cmpCase{num: 2}, cmpCase{num: 3})
	add(CompareMod, cmpCase{num: 3}, cmpCase{num: 4}, cmpCase{num: 5})
	// A missing key: version, create and mod are 0; a value compare always fails.
	for _, op := range ops {
		cases = append(cases, cmpCase{target: CompareValue, result: op, key: "missing", value: "", want: false})
		cases = append(cases, cmpCase{target: CompareValue, result: op, key: "missing", value: "z", want: false})
	}
	for _, target := range []CompareTarget{CompareVersion, CompareCreate, CompareMod} {
		cases = append(cases,
			cmpCase{target: target, result: CompareEqual, key: "missing", num: 0, want: true},
			cmpCase{target: target, result: CompareNotEqual, key: "missing", num: 0, want: false},
			cmpCase{target: target, result: CompareLess, key: "missing", num: 1, want: true},
			cmpCase{target: target, result: CompareGreater, key: "missing", num: -1, want: true},
			cmpCase{target: target, result: CompareGreater, key: "missing", num: 0, want: false},
		)
	}

	for _, c := range cases {
		cmp := Compare{Key: []byte(c.key), Target: c.target, Result: c.result, Value: []byte(c.value)}
		switch c.target {
		case CompareVersion:
			cmp.Version = c.num
		case CompareCreate:
			cmp.CreateRevision = c.num
		case CompareMod:
			cmp.ModRevision = c.num
		}
		txn := Request{Txn: &TxnRequest{Compare: cmp, Success: []Request{Get("k")}, Failure: []Request{Get("x")}}}
		res := h.s.Read(txn)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		wantKey := "x"
		if c.want {
			wantKey = "k"
		}
		if res.Succeeded != c.want || len(res.Responses) != 1 || !slices.Equal(kvKeys(res.Responses[0].KVs), []string{wantKey}) {
			t.Errorf("key %q %v %v value=%q num=%d: succeeded %v (responses %+v), want %v",
				c.key, c.target, c.result, c.value, c.num, res.Succeeded, res.Responses, c.want)
		}
	}
	if h.s.Revision() != 4 {
		t.Fatalf("read-only txns changed the revision to %d", h.s.Revision())
	}
}

func TestCompareAndSwap(t *testing.T) {
	h := newHarness(t)
	res := h.do(CompareAndSwap("k", "", "v"))
	if res.Succeeded || h.s.Len() != 0 {
		t.Fatalf("CAS on a missing key succeeded: %+v", res)
	}
	h.do(Put("k", "old"))
	res = h.do(CompareAndSwap("k", "wrong", "new"))
	if res.Succeeded || len(res.Responses) != 1 || string(res.Responses[0].KVs[0].Value) != "old" {
		t.Fatalf("failed CAS should return the current value: %+v", res)
	}
	res = h.do(CompareAndSwap("k", "old", "new"))
	if !res.Succeeded || res.Revision != 3 {
		t.Fatalf("CAS: %+v", res)
	}
	if kv, _ := h.get("k"); string(kv.Value) != "new" || kv.Version != 2 {
		t.Fatalf("after CAS k = %+v", kv)
	}
}

func TestInvalidRequests(t *testing.T) {
	big := make([]Request, TxnOpsMax+1)
	for i := range big {
		big[i] = Get("k")
	}
	cmpK := Compare{Key: []byte("k")}
	tests := []struct {
		name string
		req  Request
		want error
	}{
		{"no op", Request{}, ErrInvalidRequest},
		{"two ops", Request{Put: &PutRequest{Key: []byte("a")}, Range: &RangeRequest{Key: []byte("a")}}, ErrInvalidRequest},
		{"empty put key", Put("", "v"), ErrEmptyKey},
		{"empty get key", Get(""), ErrEmptyKey},
		{"empty delete key", Delete(""), ErrEmptyKey},
		{"negative limit", rangeReq("a", "", -1, false, false), ErrInvalidRequest},
		{"empty compare key", Request{Txn: &TxnRequest{}}, ErrEmptyKey},
		{"bad target", Request{Txn: &TxnRequest{Compare: Compare{Key: []byte("k"), Target: 9}}}, ErrInvalidRequest},
		{"bad result", Request{Txn: &TxnRequest{Compare: Compare{Key: []byte("k"), Result: 9}}}, ErrInvalidRequest},
		{"nested txn", Request{Txn: &TxnRequest{Compare: cmpK, Success: []Request{CompareAndSwap("a", "b", "c")}}}, ErrNestedTxn},
		{"too many ops", Request{Txn: &TxnRequest{Compare: cmpK, Failure: big}}, ErrTooManyOps},
		{"bad op in branch", Request{Txn: &TxnRequest{Compare: cmpK, Success: []Request{Put("", "")}}}, ErrEmptyKey},
		{"duplicate put", Request{Txn: &TxnRequest{Compare: cmpK, Success: []Request{Put("a", "1"), Put("b", ""), Put("a", "2")}}}, ErrDuplicateKey},
		{"put in deleted range", Request{Txn: &TxnRequest{Compare: cmpK, Failure: []Request{
			{DeleteRange: &DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}}, Put("b", "")}}}, ErrDuplicateKey},
		{"put of deleted key", Request{Txn: &TxnRequest{Compare: cmpK, Success: []Request{Put("a", ""), Delete("a")}}}, ErrDuplicateKey},
		{"put under open-ended delete", Request{Txn: &TxnRequest{Compare: cmpK, Success: []Request{
			Put("zz", ""), {DeleteRange: &DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte{0}}}}}}, ErrDuplicateKey},
	}
	h := newHarness(t)
	h.do(Put("k", "v"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
			// Through the log it is rejected at decode, and changes nothing
			// but the applied index.
			before, idx := h.s.Snapshot(), h.s.AppliedIndex()
			res := h.s.Apply(h.entry(tt.req, consensus.Session{}))
			if res.Err == nil || res.Revision != h.s.Revision() {
				t.Fatalf("Apply = %+v, want an error", res)
			}
			if h.s.AppliedIndex() != idx+1 {
				t.Fatalf("applied index %d, want %d", h.s.AppliedIndex(), idx+1)
			}
			after, _ := Restore(h.s.Snapshot())
			after.applied = idx
			if !slices.Equal(after.Snapshot(), before) {
				t.Fatal("an invalid request changed the state")
			}
		})
	}
	// Allowed: overlapping deletes, and puts of distinct keys beside deletes
	// of other ranges.
	ok := Request{Txn: &TxnRequest{Compare: cmpK, Success: []Request{
		{DeleteRange: &DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}},
		{DeleteRange: &DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("d")}},
		Put("d", ""), Put("e", ""), Get("d"),
	}, Failure: []Request{Put("d", "")}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid txn rejected: %v", err)
	}
}

func TestReadRejectsWrites(t *testing.T) {
	h := newHarness(t)
	for _, r := range []Request{
		Put("a", "b"), Delete("a"), CompareAndSwap("a", "b", "c"),
		{Txn: &TxnRequest{Compare: Compare{Key: []byte("a")}, Failure: []Request{Delete("a")}}},
	} {
		if res := h.s.Read(r); !errors.Is(res.Err, ErrNotReadOnly) {
			t.Errorf("Read(%s) = %v, want ErrNotReadOnly", describe(r), res.Err)
		}
	}
	if res := h.s.Read(Get("")); !errors.Is(res.Err, ErrEmptyKey) {
		t.Errorf("Read of an invalid request: %v", res.Err)
	}
	if h.s.Revision() != 1 || h.s.Len() != 0 || h.s.AppliedIndex() != 0 {
		t.Fatal("Read changed the store")
	}
	ro := Request{Txn: &TxnRequest{Compare: Compare{Key: []byte("a")}, Success: []Request{Get("a")}, Failure: []Request{RangePrefix("")}}}
	if !ro.ReadOnly() {
		t.Fatal("a txn of ranges should be read-only")
	}
	if res := h.s.Read(ro); res.Err != nil {
		t.Fatal(res.Err)
	}
}

func TestApplyOrder(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	h := newHarness(t)
	put := Put("a", "b")
	mustPanic("first index 2", func() {
		h.s.Apply(consensus.Entry{Index: 2, Command: put.Command(consensus.Session{})})
	})
	mustPanic("index 0", func() { h.s.Apply(consensus.Entry{Index: 0}) })
	h.do(put)
	mustPanic("repeat", func() { h.s.Apply(consensus.Entry{Index: 1, Command: put.Command(consensus.Session{})}) })
	mustPanic("gap", func() { h.s.Apply(consensus.Entry{Index: 3, Command: put.Command(consensus.Session{})}) })
	mustPanic("unknown type", func() { h.s.Apply(consensus.Entry{Index: 2, Type: 99}) })
	if h.s.AppliedIndex() != 1 || h.s.Revision() != 2 {
		t.Fatalf("rejected entries changed the store: applied %d, revision %d", h.s.AppliedIndex(), h.s.Revision())
	}
}

func TestNoOpAndGarbage(t *testing.T) {
	h := newHarness(t)
	h.do(Put("a", "1"))
	hash := h.s.Hash()
	if res := h.noop(); res.Err != nil || res.Revision != 2 {
		t.Fatalf("noop: %+v", res)
	}
	if h.s.AppliedIndex() != 2 || h.s.Revision() != 2 {
		t.Fatal("noop should advance only the applied index")
	}
	if h.s.Hash() == hash {
		t.Fatal("hash ignores the applied index")
	}
	for _, data := range [][]byte{nil, {}, {1}, {9, 9, 9}, []byte("garbage")} {
		res := h.s.Apply(consensus.Entry{Index: h.s.AppliedIndex() + 1, Command: consensus.Command{Data: data}})
		if !errors.Is(res.Err, ErrMalformedRequest) || res.Revision != 2 {
			t.Fatalf("garbage %q: %+v", data, res)
		}
	}
	if h.s.Revision() != 2 || h.s.Len() != 1 {
		t.Fatal("garbage changed the data")
	}
}

func TestSessions(t *testing.T) {
	h := newHarness(t)
	first := h.session(Request{Put: &PutRequest{Key: []byte("a"), Value: []byte("1"), PrevKV: true}}, 7, 1)
	if first.Err != nil || first.Revision != 2 {
		t.Fatalf("first: %+v", first)
	}
	h.do(Put("a", "2")) // rev 3, someone else

	// A retry of seq 1, even with different data, returns the cached result.
	retry := h.session(Put("a", "other"), 7, 1)
	if len(first.Events) != 1 || first.Events[0].Type != EventPut || string(first.Events[0].KV.Value) != "1" || first.Events[0].HasPrev() {
		t.Fatalf("first events: %+v", first.Events)
	}
	first.Events = nil // a retry changes nothing, so reports no events
	if !reflect.DeepEqual(retry, first) {
		t.Fatalf("retry = %+v, want the cached %+v", retry, first)
	}
	if h.s.Revision() != 3 {
		t.Fatalf("retry bumped the revision to %d", h.s.Revision())
	}
	if kv, _ := h.get("a"); string(kv.Value) != "2" {
		t.Fatalf("retry re-applied: a = %q", kv.Value)
	}

	second := h.session(Put("a", "3"), 7, 2)
	if second.Err != nil || second.Revision != 4 {
		t.Fatalf("second: %+v", second)
	}
	if res := h.session(Put("a", "4"), 7, 1); !errors.Is(res.Err, ErrSessionExpired) || res.Revision != 4 {
		t.Fatalf("stale seq: %+v, want ErrSessionExpired", res)
	}
	if res := h.session(Put("a", "4"), 7, 0); !errors.Is(res.Err, ErrInvalidSession) {
		t.Fatalf("seq 0: %+v", res)
	}
	// Sequence numbers may skip.
	if res := h.session(Put("a", "5"), 7, 10); res.Err != nil || res.Revision != 5 {
		t.Fatalf("seq 10: %+v", res)
	}
	// Without a session nothing is deduplicated.
	h.do(Put("b", "x"))
	h.do(Put("b", "x"))
	if h.s.Revision() != 7 {
		t.Fatalf("revision %d, want 7", h.s.Revision())
	}
	// A garbage command is not recorded: its seq stays free.
	bad := consensus.Entry{Index: h.s.AppliedIndex() + 1, Command: consensus.Command{
		Session: consensus.Session{ClientID: 8, Seq: 1}, Data: []byte{0xde, 0xad}}}
	if res := h.s.Apply(bad); !errors.Is(res.Err, ErrMalformedRequest) {
		t.Fatalf("garbage with session: %+v", res)
	}
	if h.s.sessions.get(8) != nil {
		t.Fatal("a command that failed to decode was recorded in the session table")
	}
	// Read-only commands through the log are deduplicated too.
	r1 := h.session(Get("a"), 9, 1)
	h.do(Put("a", "6"))
	if r2 := h.session(Get("a"), 9, 1); !reflect.DeepEqual(r1, r2) || string(r2.KVs[0].Value) != "5" {
		t.Fatalf("read retry = %+v, want cached %+v", r2, r1)
	}
	// Sessions survive a snapshot.
	restored, err := Restore(h.s.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	h.s = restored
	if res := h.session(Put("a", "other"), 7, 10); !sameResult(res, Result{Revision: 5}) {
		t.Fatalf("retry after restore: %+v", res)
	}
	if res := h.session(Put("a", "x"), 7, 9); !errors.Is(res.Err, ErrSessionExpired) {
		t.Fatalf("stale after restore: %+v", res)
	}
	checkStore(t, h.s)
}

func TestSessionEviction(t *testing.T) {
	h := newHarness(t)
	h.s.sessions.max = 3
	for c := uint64(1); c <= 3; c++ {
		h.session(Put("k", strings.Repeat("x", int(c))), c, 1)
	}
	h.session(Put("ignored", ""), 1, 1) // a retry makes client 1 recently used
	h.session(Put("k", "four"), 4, 1)   // evicts client 2, the least recently used
	if h.s.sessions.len() != 3 || h.s.sessions.get(2) != nil {
		t.Fatalf("client 2 should be evicted; table has %d sessions", h.s.sessions.len())
	}
	for _, c := range []uint64{1, 3, 4} {
		if h.s.sessions.get(c) == nil {
			t.Fatalf("client %d evicted", c)
		}
	}
	rev := h.s.Revision()
	if res := h.session(Put("k", "again"), 1, 1); res.Revision != 2 {
		t.Fatalf("client 1 retry: %+v", res)
	}
	// The documented hazard: a forgotten client's retry is applied again.
	if res := h.session(Put("k", "xx"), 2, 1); res.Err != nil || res.Revision != rev+1 {
		t.Fatalf("evicted client's retry: %+v", res)
	}
	checkStore(t, h.s)
	// The bound survives a snapshot.
	r, err := Restore(h.s.Snapshot())
	if err != nil || r.sessions.max != 3 {
		t.Fatalf("restore: %v, bound %d", err, r.sessions.max)
	}
}

func TestDeterminism(t *testing.T) {
	entries := randomEntries(7, 3000)
	a, b := New(), New()
	for i, e := range entries {
		ra, rb := a.Apply(e), b.Apply(e)
		if !sameResult(ra, rb) {
			t.Fatalf("entry %d: results differ: %+v vs %+v", i, ra, rb)
		}
	}
	if a.Hash() != b.Hash() {
		t.Fatal("equal histories, different hashes")
	}
	if !slices.Equal(a.Snapshot(), b.Snapshot()) {
		t.Fatal("equal histories, different snapshots")
	}
	// One more write on one side is visible in both digests.
	e := consensus.Entry{Index: a.AppliedIndex() + 1, Command: consensus.Command{Data: enc(Put("zz", "z"))}}
	a.Apply(e)
	if a.Hash() == b.Hash() || slices.Equal(a.Snapshot(), b.Snapshot()) {
		t.Fatal("diverged stores still compare equal")
	}
}

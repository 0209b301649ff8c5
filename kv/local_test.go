package kv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// localCmd is one command of a history applied in different orders: its
// request, session and conflict keys.
type localCmd struct {
	req  Request
	sess consensus.Session
	keys []string
}

// conflictsWith reports whether two commands must be applied in the same
// order on every replica: they share a conflict key (ConflictAll shares
// one with everything). Sessions add no order: a store with PerKeyOrder
// ignores them.
func (c *localCmd) conflictsWith(d *localCmd) bool {
	if slices.Contains(c.keys, consensus.ConflictAll) || slices.Contains(d.keys, consensus.ConflictAll) {
		return true
	}
	for _, k := range c.keys {
		if slices.Contains(d.keys, k) {
			return true
		}
	}
	return false
}

// localHistory returns n random commands, some with sessions (which a
// store with PerKeyOrder ignores).
func localHistory(seed uint64, n int) []localCmd {
	g := gen{rand.New(rand.NewPCG(seed, seed^0x5bd1e995))}
	seqs := map[uint64]uint64{}
	out := make([]localCmd, n)
	for i := range out {
		r := g.request()
		var s consensus.Session
		if g.r.IntN(3) == 0 {
			s.ClientID = 1 + uint64(g.r.IntN(4))
			seqs[s.ClientID]++
			s.Seq = seqs[s.ClientID]
		}
		out[i] = localCmd{req: r, sess: s, keys: r.Keys()}
	}
	return out
}

// linearExtension returns a random order of cmds (as positions) that
// keeps every pair of conflicting commands in their original order: the
// freedom EPaxos has in executing them.
func linearExtension(cmds []localCmd, rng *rand.Rand) []int {
	preds := make([]int, len(cmds))
	succs := make([][]int, len(cmds))
	for j := range cmds {
		for i := range j {
			if cmds[i].conflictsWith(&cmds[j]) {
				preds[j]++
				succs[i] = append(succs[i], j)
			}
		}
	}
	var ready, order []int
	for j, p := range preds {
		if p == 0 {
			ready = append(ready, j)
		}
	}
	for len(ready) > 0 {
		k := rng.IntN(len(ready))
		i := ready[k]
		ready = slices.Delete(ready, k, k+1)
		order = append(order, i)
		for _, j := range succs[i] {
			if preds[j]--; preds[j] == 0 {
				ready = append(ready, j)
			}
		}
	}
	return order
}

// withoutRevisions returns r with every revision zeroed, recursively:
// what replicas with local revisions must agree on.
func withoutRevisions(r Result) Result {
	r = normalize(r)
	r.Revision = 0
	strip := func(kvs []KeyValue) []KeyValue {
		out := slices.Clone(kvs)
		for i := range out {
			out[i].CreateRevision, out[i].ModRevision = 0, 0
		}
		return out
	}
	r.KVs, r.PrevKVs = strip(r.KVs), strip(r.PrevKVs)
	r.Events = slices.Clone(r.Events)
	for i := range r.Events {
		ev := &r.Events[i]
		ev.KV.CreateRevision, ev.KV.ModRevision = 0, 0
		ev.PrevKV.CreateRevision, ev.PrevKV.ModRevision = 0, 0
	}
	r.Responses = slices.Clone(r.Responses)
	for i := range r.Responses {
		r.Responses[i] = withoutRevisions(r.Responses[i])
	}
	return r
}

// localReplica applies a history in one order to a store with local
// revisions, and records each command's result and each key's events.
type localReplica struct {
	s       *Store
	results []Result           // by command position
	events  map[string][]Event // per key, in apply order
}

func applyInOrder(t *testing.T, cmds []localCmd, order []int) *localReplica {
	t.Helper()
	rp := &localReplica{s: NewWith(Options{PerKeyOrder: true}), results: make([]Result, len(cmds)), events: map[string][]Event{}}
	for _, i := range order {
		c := &cmds[i]
		e := consensus.Entry{Index: rp.s.AppliedIndex() + 1, Type: consensus.EntryNormal, Command: c.req.Command(c.sess)}
		res := rp.s.Apply(e)
		rp.results[i] = res
		for _, ev := range res.Events {
			k := string(ev.KV.Key)
			if evs := rp.events[k]; len(evs) > 0 && evs[len(evs)-1].KV.ModRevision >= ev.KV.ModRevision {
				t.Fatalf("key %q: event at revision %d after one at %d", k, ev.KV.ModRevision, evs[len(evs)-1].KV.ModRevision)
			}
			rp.events[k] = append(rp.events[k], ev)
		}
	}
	checkStore(t, rp.s)
	return rp
}

// TestLocalRevisionsConverge applies one random history (puts, deletes of
// keys and ranges, ranges, txns on value, version and revision, with and
// without sessions) to two stores with PerKeyOrder, in two different
// orders that keep every conflicting pair in order, as two EPaxos
// replicas may. Every command must get the same result but for revision
// numbers, every key must end with the same value and version, and every
// key must see the same sequence of events; the revisions themselves must
// differ (or the orders were not really different).
func TestLocalRevisionsConverge(t *testing.T) {
	const n = 1500
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			cmds := localHistory(seed, n)
			oa := linearExtension(cmds, rand.New(rand.NewPCG(seed, 1)))
			ob := linearExtension(cmds, rand.New(rand.NewPCG(seed, 2)))
			if len(oa) != n || len(ob) != n {
				t.Fatalf("orders hold %d and %d commands, want %d", len(oa), len(ob), n)
			}
			if slices.Equal(oa, ob) {
				t.Fatal("the two orders are the same; the test would prove nothing")
			}
			a, b := applyInOrder(t, cmds, oa), applyInOrder(t, cmds, ob)

			refused := 0
			for i := range cmds {
				ra, rb := a.results[i], b.results[i]
				if (ra.Err == nil) != (rb.Err == nil) || ra.Err != nil && ra.Err.Error() != rb.Err.Error() {
					t.Fatalf("command %d (%s): errors differ: %v vs %v", i, describe(cmds[i].req), ra.Err, rb.Err)
				}
				if errors.Is(ra.Err, ErrRevisionCompare) {
					refused++
				}
				if wa, wb := withoutRevisions(ra), withoutRevisions(rb); !reflect.DeepEqual(wa, wb) {
					t.Fatalf("command %d (%s): results differ beyond revisions:\n%+v\n%+v", i, describe(cmds[i].req), wa, wb)
				}
			}
			if refused == 0 {
				t.Error("no revision compare was refused; the history should hold some")
			}

			all := RangePrefix("")
			fa, fb := a.s.Read(all), b.s.Read(all)
			if fa.Count == 0 {
				t.Fatal("the history left no keys; the comparison would prove nothing")
			}
			if len(fa.KVs) != len(fb.KVs) {
				t.Fatalf("%d keys vs %d keys", len(fa.KVs), len(fb.KVs))
			}
			revsDiffer := false
			for i := range fa.KVs {
				x, y := fa.KVs[i], fb.KVs[i]
				if string(x.Key) != string(y.Key) || string(x.Value) != string(y.Value) || x.Version != y.Version {
					t.Fatalf("key %d: %q=%q v%d vs %q=%q v%d", i, x.Key, x.Value, x.Version, y.Key, y.Value, y.Version)
				}
				revsDiffer = revsDiffer || x.ModRevision != y.ModRevision || x.CreateRevision != y.CreateRevision
			}
			if !revsDiffer {
				t.Error("every key has the same revisions in both orders; local revisions were not exercised")
			}
			if a.s.Revision() != b.s.Revision() {
				// The number of writes that changed data is the same; only
				// their numbering differs.
				t.Errorf("final revisions %d and %d: the same writes must count the same", a.s.Revision(), b.s.Revision())
			}
			if len(a.events) != len(b.events) {
				t.Fatalf("events on %d keys vs %d keys", len(a.events), len(b.events))
			}
			for k, ea := range a.events {
				eb := b.events[k]
				if !reflect.DeepEqual(withoutRevisions(Result{Events: ea}), withoutRevisions(Result{Events: eb})) {
					t.Fatalf("key %q: event sequences differ:\n%+v\n%+v", k, ea, eb)
				}
			}
		})
	}
}

// TestRevisionCompareWouldDiverge shows why ErrRevisionCompare exists:
// two replicas that apply two independent puts in different orders give
// a key different revisions, so a compare on the revision takes different
// branches on them unless it is refused.
func TestRevisionCompareWouldDiverge(t *testing.T) {
	guarded := Request{Txn: &TxnRequest{
		Compare: Compare{Key: []byte("a"), Target: CompareMod, Result: CompareEqual, ModRevision: 2},
		Success: []Request{Put("c", "yes")},
		Failure: []Request{Put("c", "no")},
	}}
	run := func(o Options, first, second Request) (Result, *Store) {
		s := NewWith(o)
		for i, r := range []Request{first, second, guarded} {
			res := s.Apply(consensus.Entry{Index: uint64(i + 1), Command: r.Command(consensus.Session{})})
			if i < 2 && res.Err != nil {
				t.Fatal(res.Err)
			}
			if i == 2 {
				return res, s
			}
		}
		panic("unreachable")
	}
	pa, pb := Put("a", "1"), Put("b", "1")

	// With one global revision (what Raft and Multi-Paxos guarantee by
	// applying one order everywhere) the two orders are not allowed to
	// happen; if they did, the replicas would diverge.
	r1, s1 := run(Options{}, pa, pb)
	r2, s2 := run(Options{}, pb, pa)
	if r1.Err != nil || r2.Err != nil || r1.Succeeded == r2.Succeeded {
		t.Fatalf("global revisions: the two orders should take different branches: %+v / %+v", r1, r2)
	}
	if c1, c2 := s1.Read(Get("c")).KVs[0].Value, s2.Read(Get("c")).KVs[0].Value; string(c1) == string(c2) {
		t.Fatalf("global revisions: c is %q on both; the example does not diverge", c1)
	}

	// With local revisions both refuse, alike, and change nothing.
	l1, ls1 := run(Options{PerKeyOrder: true}, pa, pb)
	l2, ls2 := run(Options{PerKeyOrder: true}, pb, pa)
	for _, r := range []Result{l1, l2} {
		if !errors.Is(r.Err, ErrRevisionCompare) || !errors.Is(r.Err, ErrInvalidRequest) {
			t.Fatalf("local revisions: %v, want ErrRevisionCompare (an ErrInvalidRequest)", r.Err)
		}
	}
	if len(ls1.Read(Get("c")).KVs) != 0 || len(ls2.Read(Get("c")).KVs) != 0 {
		t.Fatal("a refused txn wrote c")
	}
}

// TestLocalRevisionsCompares: under local revisions, compares on value
// and version work, a revision compare against an operand <= 0 (does the
// key exist?) works, and one against a positive revision is refused by
// Check, Apply and Read alike, and not remembered in the session table.
func TestLocalRevisionsCompares(t *testing.T) {
	local := Options{PerKeyOrder: true}
	h := &harness{t: t, s: NewWith(local)}
	if h.s.Options() != local {
		t.Fatalf("Options() = %+v", h.s.Options())
	}
	h.do(Put("k", "v1"))
	txn := func(c Compare) Request {
		c.Key = []byte("k")
		return Request{Txn: &TxnRequest{Compare: c, Success: []Request{Put("k", "won")}, Failure: []Request{Get("k")}}}
	}
	allowed := []struct {
		c    Compare
		want bool
	}{
		{Compare{Target: CompareValue, Result: CompareEqual, Value: []byte("v1")}, true},
		{Compare{Target: CompareVersion, Result: CompareEqual, Version: 2}, true},
		{Compare{Target: CompareVersion, Result: CompareGreater, Version: 5}, false},
		{Compare{Target: CompareCreate, Result: CompareEqual, CreateRevision: 0}, false},   // exists
		{Compare{Target: CompareMod, Result: CompareGreater, ModRevision: 0}, true},        // exists
		{Compare{Target: CompareCreate, Result: CompareGreater, CreateRevision: -1}, true}, // always
	}
	for _, tc := range allowed {
		r := txn(tc.c)
		if err := local.Check(&r); err != nil {
			t.Errorf("%s: Check: %v", describe(r), err)
		}
		if res := h.do(r); res.Succeeded != tc.want {
			t.Errorf("%s: succeeded %v, want %v", describe(r), res.Succeeded, tc.want)
		}
	}
	// Create if absent: the etcd idiom "create_revision == 0".
	absent := Request{Txn: &TxnRequest{
		Compare: Compare{Key: []byte("new"), Target: CompareCreate, Result: CompareEqual},
		Success: []Request{Put("new", "x")},
	}}
	if res := h.do(absent); !res.Succeeded {
		t.Error("create-if-absent failed on a missing key")
	}
	if res := h.do(absent); res.Succeeded {
		t.Error("create-if-absent succeeded on a live key")
	}

	rev := h.s.Revision()
	for _, c := range []Compare{
		{Target: CompareMod, Result: CompareEqual, ModRevision: 2},
		{Target: CompareCreate, Result: CompareLess, CreateRevision: 100},
		{Target: CompareMod, Result: CompareNotEqual, ModRevision: 1},
	} {
		r := txn(c)
		if err := local.Check(&r); !errors.Is(err, ErrRevisionCompare) {
			t.Errorf("%s: Check = %v, want ErrRevisionCompare", describe(r), err)
		}
		if err := (Options{}).Check(&r); err != nil {
			t.Errorf("%s: default options refuse it: %v", describe(r), err)
		}
		if res := h.session(r, 7, 1); !errors.Is(res.Err, ErrRevisionCompare) {
			t.Errorf("%s: Apply = %v, want ErrRevisionCompare", describe(r), res.Err)
		}
		ro := Request{Txn: &TxnRequest{Compare: r.Txn.Compare, Success: []Request{Get("k")}}}
		if res := h.s.Read(ro); !errors.Is(res.Err, ErrRevisionCompare) {
			t.Errorf("read-only %s: Read = %v, want ErrRevisionCompare", describe(ro), res.Err)
		}
	}
	if _, ok := h.s.backend().Session(7); ok {
		t.Error("a refused command was recorded in the session table")
	}
	if h.s.Revision() != rev {
		t.Errorf("revision %d after refused txns, want %d", h.s.Revision(), rev)
	}
	if got, _ := h.get("k"); string(got.Value) != "won" || got.Version != 5 {
		t.Errorf("k = %+v after the refused txns, want won at version 5", got)
	}
	checkStore(t, h.s)
}

// TestPerKeyOrderIgnoresSessions: with PerKeyOrder a client's commands
// are applied whatever the order of their sequence numbers (EPaxos runs a
// client's commands on different keys in any order), a repeated sequence
// number is applied again, and the session table stays empty.
func TestPerKeyOrderIgnoresSessions(t *testing.T) {
	h := &harness{t: t, s: NewWith(Options{PerKeyOrder: true})}
	for _, c := range []struct {
		r   Request
		seq uint64
	}{{Put("b", "2"), 2}, {Put("a", "1"), 1}, {Put("a", "again"), 1}, {Get("a"), 0}} {
		if res := h.session(c.r, 9, c.seq); res.Err != nil {
			t.Fatalf("%s (seq %d): %v", describe(c.r), c.seq, res.Err)
		}
	}
	if a, _ := h.get("a"); string(a.Value) != "again" || a.Version != 2 {
		t.Errorf("a = %+v, want again at version 2 (the repeated seq applied)", a)
	}
	if b, ok := h.get("b"); !ok || string(b.Value) != "2" {
		t.Errorf("b = %+v, want 2", b)
	}
	if n := h.s.backend().Sessions(); n != 0 {
		t.Errorf("%d sessions remembered, want none", n)
	}
	// The default options keep exactly-once sessions.
	d := newHarness(t)
	d.session(Put("b", "2"), 9, 2)
	if res := d.session(Put("a", "1"), 9, 1); !errors.Is(res.Err, ErrSessionExpired) {
		t.Errorf("default options, older seq: %v, want ErrSessionExpired", res.Err)
	}
}

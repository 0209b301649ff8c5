package node

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/kv"
)

// gossipNowMs is the physical time of the tests' writes and merges.
const gossipNowMs = 1_000_000

func newGossipStore(t *testing.T, id consensus.NodeID) *store.Store {
	t.Helper()
	s, err := store.New(store.DefaultConfig(id, rand.New(rand.NewPCG(uint64(id), 7))))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gossipDo applies req with gossipWrite and fails the test on an error.
func gossipDo(t *testing.T, s *store.Store, req kv.Request) kv.Result {
	t.Helper()
	res := gossipWrite(s, req, gossipNowMs)
	if res.Err != nil {
		t.Fatalf("write: %v", res.Err)
	}
	if res.Events != nil {
		t.Fatalf("gossipWrite returned events: %v", res.Events)
	}
	return res
}

// renderKVs prints key=value@mod/create/version for each record.
func renderKVs(kvs []kv.KeyValue) string {
	var out []string
	for _, k := range kvs {
		out = append(out, fmt.Sprintf("%s=%s@%d/%d/%d", k.Key, k.Value, k.ModRevision, k.CreateRevision, k.Version))
	}
	return strings.Join(out, " ")
}

func gossipRange(key, end string) kv.Request {
	r := &kv.RangeRequest{Key: []byte(key)}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return kv.Request{Range: r}
}

func TestGossipPutGetRange(t *testing.T) {
	s := newGossipStore(t, 1)
	if res := gossipRead(s, kv.Get("a")); res.Err != nil || res.Count != 0 || res.Revision != 1 {
		t.Fatalf("read of an empty replica: %+v", res)
	}
	// The first change of a replica has revision 1 (see the file comment).
	for i, k := range []string{"b/2", "a", "b/1", "c", "b/3"} {
		res := gossipDo(t, s, kv.Put(k, "v-"+k))
		if res.Revision != int64(i+1) || len(res.PrevKVs) != 0 {
			t.Fatalf("put %s: %+v", k, res)
		}
	}
	res := gossipDo(t, s, kv.Request{Put: &kv.PutRequest{Key: []byte("a"), Value: []byte("v2"), PrevKV: true}})
	if res.Revision != 6 || renderKVs(res.PrevKVs) != "a=v-a@2/2/1" {
		t.Fatalf("put with prev_kv: %+v", res)
	}
	cases := []struct {
		req  kv.Request
		want string
		n    int64
		more bool
	}{
		{kv.Get("a"), "a=v2@6/6/1", 1, false},
		{kv.Get("zz"), "", 0, false},
		{kv.RangePrefix("b/"), "b/1=v-b/1@3/3/1 b/2=v-b/2@1/1/1 b/3=v-b/3@5/5/1", 3, false},
		{kv.RangePrefix(""), "a=v2@6/6/1 b/1=v-b/1@3/3/1 b/2=v-b/2@1/1/1 b/3=v-b/3@5/5/1 c=v-c@4/4/1", 5, false},
		{gossipRange("b", "\x00"), "b/1=v-b/1@3/3/1 b/2=v-b/2@1/1/1 b/3=v-b/3@5/5/1 c=v-c@4/4/1", 4, false},
		{gossipRange("b/2", "c"), "b/2=v-b/2@1/1/1 b/3=v-b/3@5/5/1", 2, false},
		{gossipRange("c", "b"), "", 0, false},
		{kv.Request{Range: &kv.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Limit: 2}}, "a=v2@6/6/1 b/1=v-b/1@3/3/1", 5, true},
		{kv.Request{Range: &kv.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, CountOnly: true}}, "", 5, false},
		{kv.Request{Range: &kv.RangeRequest{Key: []byte("b/"), RangeEnd: kv.PrefixEnd([]byte("b/")), KeysOnly: true}}, "b/1=@3/3/1 b/2=@1/1/1 b/3=@5/5/1", 3, false},
	}
	for _, c := range cases {
		res := gossipRead(s, c.req)
		if res.Err != nil || renderKVs(res.KVs) != c.want || res.Count != c.n || res.More != c.more || res.Revision != 6 {
			t.Errorf("%+v: got %q count %d more %v rev %d err %v; want %q count %d more %v",
				c.req.Range, renderKVs(res.KVs), res.Count, res.More, res.Revision, res.Err, c.want, c.n, c.more)
		}
	}
	if res := gossipRead(s, kv.Put("x", "y")); !errors.Is(res.Err, kv.ErrNotReadOnly) {
		t.Fatalf("gossipRead of a put: %v", res.Err)
	}
	if res := gossipRead(s, kv.Get("")); !errors.Is(res.Err, kv.ErrEmptyKey) {
		t.Fatalf("gossipRead of an empty key: %v", res.Err)
	}
}

func TestGossipDelete(t *testing.T) {
	s := newGossipStore(t, 1)
	for _, k := range []string{"a", "b/1", "b/2", "b/3", "c"} {
		gossipDo(t, s, kv.Put(k, "v"))
	}
	// One key, with prev_kv.
	res := gossipDo(t, s, kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("b/2"), PrevKV: true}})
	if res.Deleted != 1 || renderKVs(res.PrevKVs) != "b/2=v@3/3/1" || res.Revision != 6 {
		t.Fatalf("delete b/2: %+v", res)
	}
	// A missing key: a tombstone all the same (a revision), nothing deleted.
	res = gossipDo(t, s, kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("zz"), PrevKV: true}})
	if res.Deleted != 0 || len(res.PrevKVs) != 0 || res.Revision != 7 {
		t.Fatalf("delete of a missing key: %+v", res)
	}
	// A prefix, with prev_kv: only the live keys count.
	res = gossipDo(t, s, kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("b/"), RangeEnd: kv.PrefixEnd([]byte("b/")), PrevKV: true}})
	if res.Deleted != 2 || renderKVs(res.PrevKVs) != "b/1=v@2/2/1 b/3=v@4/4/1" || res.Revision != 9 {
		t.Fatalf("delete prefix b/: %+v", res)
	}
	// An empty range changes nothing.
	res = gossipDo(t, s, kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("c"), RangeEnd: []byte("a")}})
	if res.Deleted != 0 || res.Revision != 9 {
		t.Fatalf("delete of an empty range: %+v", res)
	}
	// "\x00" as the end: everything from the key on; no prev_kv asked.
	res = gossipDo(t, s, kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte{0}}})
	if res.Deleted != 1 || res.PrevKVs != nil || res.Revision != 10 {
		t.Fatalf("delete from b: %+v", res)
	}
	if all := gossipRead(s, kv.RangePrefix("")); renderKVs(all.KVs) != "a=v@1/1/1" || all.Count != 1 {
		t.Fatalf("left: %q", renderKVs(all.KVs))
	}
}

// noCompareTxn is how server/convert.go encodes an etcd Txn without
// compares: "create_revision > -1" on the first key of the success branch.
func noCompareTxn(key string, success ...kv.Request) kv.Request {
	return kv.Request{Txn: &kv.TxnRequest{
		Compare: kv.Compare{Key: []byte(key), Target: kv.CompareCreate, Result: kv.CompareGreater, CreateRevision: -1},
		Success: success,
	}}
}

func TestGossipTxnWithoutCompare(t *testing.T) {
	s := newGossipStore(t, 1)
	gossipDo(t, s, kv.Put("old", "1"))
	gossipDo(t, s, kv.Put("gone", "1"))
	res := gossipDo(t, s, noCompareTxn("a",
		kv.Put("a", "1"),
		kv.Get("a"), // sees the put before it
		kv.Request{Put: &kv.PutRequest{Key: []byte("old"), Value: []byte("2"), PrevKV: true}},
		kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("gone"), PrevKV: true}},
	))
	if !res.Succeeded || len(res.Responses) != 4 || res.Revision != 5 {
		t.Fatalf("txn: %+v", res)
	}
	for i, r := range res.Responses {
		if r.Revision != 5 || r.Err != nil {
			t.Fatalf("response %d: %+v", i, r)
		}
	}
	if got := renderKVs(res.Responses[1].KVs); got != "a=1@3/3/1" {
		t.Fatalf("range in txn: %q", got)
	}
	if got := renderKVs(res.Responses[2].PrevKVs); got != "old=1@1/1/1" {
		t.Fatalf("put prev_kv in txn: %q", got)
	}
	if r := res.Responses[3]; r.Deleted != 1 || renderKVs(r.PrevKVs) != "gone=1@2/2/1" {
		t.Fatalf("delete in txn: %+v", r)
	}
	// Each write was its own change: one record per write.
	if rd := s.Ready(); len(rd.Persist) != 5 {
		t.Fatalf("%d records, want 5", len(rd.Persist))
	}

	// A read-only txn without compare is served by gossipRead too.
	res = gossipRead(s, noCompareTxn("a", kv.Get("a"), kv.Get("gone")))
	if res.Err != nil || !res.Succeeded || len(res.Responses) != 2 || renderKVs(res.Responses[0].KVs) != "a=1@3/3/1" || res.Responses[1].Count != 0 {
		t.Fatalf("read-only txn: %+v", res)
	}

	// A write the store refuses for its size refuses the whole txn before
	// any operation applies (the server answers InvalidArgument, which
	// etcd clients read as "nothing happened").
	huge := strings.Repeat("k", 5000)
	for _, op := range []kv.Request{kv.Put(huge, "1"), kv.Put("v", strings.Repeat("v", 2<<20)), kv.Delete(huge)} {
		res = gossipWrite(s, noCompareTxn("b", kv.Put("b", "1"), op, kv.Put("c", "1")), gossipNowMs)
		if !errors.Is(res.Err, kv.ErrInvalidRequest) || !errors.Is(res.Err, store.ErrInvalidWrite) || len(res.Responses) != 0 {
			t.Fatalf("txn with a refused write: %+v", res)
		}
		if !strings.Contains(res.Err.Error(), "nothing applied") {
			t.Fatalf("error does not say nothing was applied: %v", res.Err)
		}
	}
	if got := gossipRead(s, kv.RangePrefix("")); renderKVs(got.KVs) != "a=1@3/3/1 old=2@4/4/1" {
		t.Fatalf("after a refused txn: %q", renderKVs(got.KVs))
	}
}

func TestGossipRefusals(t *testing.T) {
	s := newGossipStore(t, 1)
	gossipDo(t, s, kv.Put("k", "v"))
	txns := []kv.Request{
		kv.CompareAndSwap("k", "v", "w"),
		// server/convert.go's put with ignore_lease: "version > 0".
		{Txn: &kv.TxnRequest{Compare: kv.Compare{Key: []byte("k"), Target: kv.CompareVersion, Result: kv.CompareGreater},
			Success: []kv.Request{kv.Put("k", "w")}}},
		{Txn: &kv.TxnRequest{Compare: kv.Compare{Key: []byte("k"), Target: kv.CompareMod, Result: kv.CompareLess, ModRevision: -1},
			Success: []kv.Request{kv.Get("k")}}},
	}
	for _, req := range txns {
		for name, res := range map[string]kv.Result{"write": gossipWrite(s, req, gossipNowMs), "read": gossipRead(s, req)} {
			if !errors.Is(res.Err, kv.ErrInvalidRequest) || !strings.HasPrefix(res.Err.Error(), "transactions with compares are not supported in eventually consistent mode (gossip)") ||
				!strings.Contains(res.Err.Error(), "raft, multipaxos, epaxos") {
				t.Errorf("%s of %+v: %v", name, req.Txn.Compare, res.Err)
			}
		}
	}
	if s.Revision() != 1 {
		t.Fatalf("refused txns changed the store: revision %d", s.Revision())
	}
	if got := gossipRead(s, kv.Get("k")); renderKVs(got.KVs) != "k=v@1/1/1" {
		t.Fatalf("after refusals: %q", renderKVs(got.KVs))
	}
	// Too large a value, and an empty key.
	res := gossipWrite(s, kv.Request{Put: &kv.PutRequest{Key: []byte("k"), Value: make([]byte, 2<<20)}}, gossipNowMs)
	if !errors.Is(res.Err, kv.ErrInvalidRequest) || !errors.Is(res.Err, store.ErrInvalidWrite) || res.Revision != 1 {
		t.Fatalf("too large a value: %+v", res)
	}
	if res := gossipWrite(s, kv.Put("", "v"), gossipNowMs); !errors.Is(res.Err, kv.ErrEmptyKey) {
		t.Fatalf("empty key: %v", res.Err)
	}
}

func renderResults(rs []kv.Result) string {
	var out []string
	for _, r := range rs {
		for _, ev := range r.Events {
			s := fmt.Sprintf("%d:%s %s", r.Revision, ev.Type, ev.KV.Key)
			if ev.Type == kv.EventPut {
				s += fmt.Sprintf("=%s@%d/%d/%d", ev.KV.Value, ev.KV.ModRevision, ev.KV.CreateRevision, ev.KV.Version)
			} else {
				s += fmt.Sprintf("@%d", ev.KV.ModRevision)
			}
			if ev.HasPrev() {
				s += " prev"
			}
			out = append(out, s)
		}
	}
	return strings.Join(out, ", ")
}

// TestGossipEvents: every change of a Ready, local or merged from another
// replica, becomes one result at its local revision, and a WatchHub
// started at the raw store revision takes them.
func TestGossipEvents(t *testing.T) {
	a, b := newGossipStore(t, 1), newGossipStore(t, 2)
	hub := NewWatchHub(int64(a.Revision()), 0, 0)

	gossipDo(t, a, kv.Put("x", "1"))
	gossipDo(t, a, kv.Put("y", "1"))
	rd := a.Ready()
	evs := gossipReadyEvents(a, rd)
	if got := renderResults(evs); got != "1:PUT x=1@1/1/1, 2:PUT y=1@2/2/1" {
		t.Fatalf("first ready: %s", got)
	}
	hub.Publish(evs)
	a.Advance(rd)

	// b writes z and deletes y (b never held y: its tombstone wins on a).
	gossipDo(t, b, kv.Put("z", "b"))
	gossipDo(t, b, kv.Delete("y"))
	gossipDo(t, a, kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("x"), PrevKV: true}})
	news, err := a.Merge(b.Snapshot().Entries, gossipNowMs+1)
	if err != nil || len(news) != 2 {
		t.Fatalf("merge: %v %v", news, err)
	}
	rd = a.Ready()
	base := int64(a.Revision()) - int64(len(rd.Persist))
	evs = gossipEvents(base, rd.Persist)
	// Snapshot entries come in key order: y's tombstone, then z.
	if got := renderResults(evs); got != "3:DELETE x@3, 4:DELETE y@4, 5:PUT z=b@5/5/1" {
		t.Fatalf("second ready: %s", got)
	}
	hub.Publish(evs)
	a.Advance(rd)
	batch, err := hub.Read([]byte{0}, []byte{0}, 1, 100)
	if err != nil || len(batch.Events) != 5 || batch.Revision != 5 || batch.Next != 6 {
		t.Fatalf("hub: %+v %v", batch, err)
	}
	if got := gossipRead(a, kv.RangePrefix("")); renderKVs(got.KVs) != "z=b@5/5/1" || got.Revision != 5 {
		t.Fatalf("a after the merge: %q at %d", renderKVs(got.KVs), got.Revision)
	}
	if evs := gossipEvents(5, nil); evs != nil {
		t.Fatalf("no records: %v", evs)
	}
}

// TestGossipConvergedReplicasReadAlike: a replica that merged another's
// state answers reads with the same keys and values (its revisions are
// its own).
func TestGossipConvergedReplicasReadAlike(t *testing.T) {
	a, b := newGossipStore(t, 1), newGossipStore(t, 2)
	at := func(s *store.Store, nowMs uint64, req kv.Request) {
		t.Helper()
		if res := gossipWrite(s, req, nowMs); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	at(a, gossipNowMs, kv.Put("p/1", "a1"))
	at(a, gossipNowMs, kv.Put("p/2", "a2"))
	at(a, gossipNowMs, noCompareTxn("p/3", kv.Put("p/3", "a3"), kv.Delete("q"), kv.Delete("r")))
	at(b, gossipNowMs-5, kv.Put("r", "b"))    // earlier than a's delete: loses
	at(b, gossipNowMs+5, kv.Put("p/2", "b2")) // later: wins over a's
	at(b, gossipNowMs+5, kv.Put("q", "b"))    // later than a's delete: wins
	for _, pair := range [][2]*store.Store{{a, b}, {b, a}} {
		if _, err := pair[0].Merge(pair[1].Snapshot().Entries, gossipNowMs+10); err != nil {
			t.Fatal(err)
		}
	}
	reqs := []kv.Request{kv.RangePrefix(""), kv.RangePrefix("p/"), kv.Get("p/2"), kv.Get("q"), kv.Get("r"),
		{Range: &kv.RangeRequest{Key: []byte("p/"), RangeEnd: []byte{0}, Limit: 1}}}
	for _, req := range reqs {
		ra, rb := gossipRead(a, req), gossipRead(b, req)
		if ra.Err != nil || rb.Err != nil || keyValues(ra.KVs) != keyValues(rb.KVs) || ra.Count != rb.Count || ra.More != rb.More {
			t.Errorf("%+v: a %q (%d), b %q (%d); %v %v", req.Range, keyValues(ra.KVs), ra.Count, keyValues(rb.KVs), rb.Count, ra.Err, rb.Err)
		}
	}
	if got := keyValues(gossipRead(a, kv.RangePrefix("")).KVs); got != "p/1=a1 p/2=b2 p/3=a3 q=b" {
		t.Fatalf("converged state: %q", got)
	}
}

// keyValues prints key=value for each record, without revisions.
func keyValues(kvs []kv.KeyValue) string {
	var out []string
	for _, k := range kvs {
		out = append(out, fmt.Sprintf("%s=%s", k.Key, k.Value))
	}
	return strings.Join(out, " ")
}

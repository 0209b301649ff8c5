package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func newStore(t *testing.T, edit func(*Config)) *Store {
	t.Helper()
	cfg := testConfig(1, rand.New(rand.NewPCG(1, 2)))
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func keysOf(kvs []KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

// TestLocalReadsAndWrites: read-your-writes on one replica, ranges and
// prefixes in key order, limits, deletes and the local revision.
func TestLocalReadsAndWrites(t *testing.T) {
	s := newStore(t, nil)
	now := uint64(100)
	for _, k := range []string{"b/2", "a", "b/1", "c", "b/3", "b"} {
		if _, err := s.Put(k, []byte("v-"+k), now); err != nil {
			t.Fatal(err)
		}
		if kv, ok := s.Get(k); !ok || string(kv.Value) != "v-"+k || kv.Revision != s.Revision() {
			t.Fatalf("read after writing %q: %v %v (revision %d)", k, kv, ok, s.Revision())
		}
	}
	if s.Revision() != 6 || s.Len() != 6 {
		t.Fatalf("revision %d, %d keys", s.Revision(), s.Len())
	}
	all, more := s.Range("", "", 0)
	if got := keysOf(all); !slices.Equal(got, []string{"a", "b", "b/1", "b/2", "b/3", "c"}) || more {
		t.Fatalf("all keys: %v %v", got, more)
	}
	pre, _ := s.Range("b/", PrefixEnd("b/"), 0)
	if got := keysOf(pre); !slices.Equal(got, []string{"b/1", "b/2", "b/3"}) {
		t.Fatalf("prefix b/: %v", got)
	}
	lim, more := s.Range("b", "c", 2)
	if got := keysOf(lim); !slices.Equal(got, []string{"b", "b/1"}) || !more {
		t.Fatalf("limit 2: %v %v", got, more)
	}
	if ok, err := s.Delete("b/2", now); !ok || err != nil {
		t.Fatalf("delete of a live key: %v %v", ok, err)
	}
	if _, ok := s.Get("b/2"); ok {
		t.Fatal("read after delete found the key")
	}
	if ok, err := s.Delete("zzz", now); ok || err != nil {
		t.Fatalf("delete of a missing key: %v %v", ok, err)
	}
	if n, err := s.DeleteRange("b/", PrefixEnd("b/"), now); n != 2 || err != nil {
		t.Fatalf("delete range: %d %v", n, err)
	}
	pre, _ = s.Range("b", "", 0)
	if got := keysOf(pre); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("after range delete: %v", got)
	}
	if st := s.Status(); st.Keys != 3 || st.Tombstones != 4 {
		t.Fatalf("status: %+v", st)
	}
	// Every write of the same physical millisecond still gets its own,
	// growing timestamp.
	ts1, _ := s.Put("a", []byte("1"), now)
	ts2, _ := s.Put("a", []byte("2"), now)
	if !ts1.Less(ts2) || ts1.WallMs != now {
		t.Fatalf("timestamps %v then %v", ts1, ts2)
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := map[string]string{"": "", "a": "b", "a\xff": "b", "\xff\xff": "", "ab": "ac"}
	for in, want := range cases {
		if got := PrefixEnd(in); got != want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInvalidWrites(t *testing.T) {
	s := newStore(t, nil)
	for name, f := range map[string]func() error{
		"empty key":     func() error { _, err := s.Put("", nil, 1); return err },
		"long key":      func() error { _, err := s.Put(strings.Repeat("k", 65), nil, 1); return err },
		"large value":   func() error { _, err := s.Put("k", make([]byte, 257), 1); return err },
		"delete empty":  func() error { _, err := s.Delete("", 1); return err },
		"delete long":   func() error { _, err := s.Delete(strings.Repeat("k", 65), 1); return err },
		"merge bad key": func() error { _, err := s.Merge([]Entry{{Origin: 2}}, 1); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if s.Revision() != 0 || len(s.Ready().Persist) != 0 {
		t.Fatal("a refused write changed the store")
	}
	_, err := s.Merge([]Entry{{Key: strings.Repeat("k", 65), Origin: 2, TS: Timestamp{WallMs: 1}}}, 1)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("merge beyond KeyBytesMax: %v", err)
	}
}

// TestTombstonePurge: a tombstone is kept TombstoneTTLMs after its
// timestamp and purged by the first Tick after that; a tombstone that
// arrives already expired still deletes what it overrides, and is not
// kept.
func TestTombstonePurge(t *testing.T) {
	s := newStore(t, func(c *Config) { c.TombstoneTTLMs = 10_000; c.ClockDriftMaxMs = 100 })
	s.Put("k", []byte("v"), 1000)
	s.Delete("k", 2000)
	s.Tick(11_999)
	if st := s.Status(); st.Tombstones != 1 {
		t.Fatalf("tombstone purged early: %+v", st)
	}
	rev := s.Revision()
	s.Tick(12_000)
	if st := s.Status(); st.Tombstones != 0 || len(s.items) != 0 || s.Revision() != rev {
		t.Fatalf("after the TTL: %+v, %d items", st, len(s.items))
	}
	// An expired tombstone from a peer, newer than the local value.
	s.Put("j", []byte("v"), 12_000)
	news, err := s.Merge([]Entry{{Key: "j", TS: Timestamp{WallMs: 12_500}, Origin: 2, Tombstone: true}}, 30_000)
	if err != nil || len(news) != 1 {
		t.Fatalf("expired tombstone: %v %v", news, err)
	}
	if _, ok := s.Get("j"); ok || len(s.items) != 0 {
		t.Fatal("an expired tombstone newer than the value did not delete it, or was kept")
	}
	// Nothing to delete: the expired tombstone is dropped, no change.
	rev = s.Revision()
	if news, _ := s.Merge([]Entry{{Key: "x", TS: Timestamp{WallMs: 12_500}, Origin: 2, Tombstone: true}}, 30_000); len(news) != 0 || s.Revision() != rev || len(s.items) != 0 {
		t.Fatal("an expired tombstone for a missing key changed the store")
	}
	// Overwritten tombstones leave their expiries behind; they do not
	// purge the new value, and the heap stays bounded.
	for i := range 1000 {
		now := uint64(40_000 + i)
		s.Delete("y", now)
		s.Put("y", []byte("back"), now)
		s.Tick(now)
	}
	s.Tick(100_000)
	if kv, ok := s.Get("y"); !ok || string(kv.Value) != "back" {
		t.Fatal("purge removed a value that replaced the tombstone")
	}
	if len(s.expiries) > 2*s.tombstones+64 {
		t.Fatalf("%d expiries held for %d tombstones", len(s.expiries), s.tombstones)
	}
}

// TestGossipDissemination: writes spread by Tick's gossip rounds alone
// (no anti-entropy) to every replica, each sent a bounded number of
// times, and the queues empty.
func TestGossipDissemination(t *testing.T) {
	const n = 10
	net := newTestNet(t, 11, n, func(c *Config) { c.GossipIntervalMs = 100 })
	m := model{}
	for i := range 50 {
		m.add(net.put(consensus.NodeID(1+i%n), fmt.Sprintf("k%d", i), "v"))
		net.advance(10)
	}
	for range 50 {
		net.advance(100)
	}
	for _, s := range net.stores {
		if got := state(s); !equalEntries(got, m.entries(0, 0)) {
			t.Fatalf("replica %d holds %d of %d writes", s.id, len(got), len(m))
		}
		if s.queue.len() != 0 {
			t.Fatalf("replica %d still queues %d writes", s.id, s.queue.len())
		}
	}
	// Each replica sends each write at most RetransmitMult·digits(n)
	// times, so the copies sent are bounded by n times that.
	limit := retransmitLimit(4, n)
	if sent := net.stats.entries[MsgPush]; sent > 50*n*limit {
		t.Fatalf("%d copies sent for 50 writes, over %d", sent, 50*n*limit)
	}
	t.Logf("50 writes to %d replicas by gossip alone: %v", n, net.stats)
}

// TestPickUpdates: piggybacked writes fit the budget, go fewest-sent
// first, and stop after the retransmit limit.
func TestPickUpdates(t *testing.T) {
	s := newStore(t, nil)
	s.SetPeers([]consensus.NodeID{2, 3, 4})
	for i := range 5 {
		s.Put(fmt.Sprintf("k%d", i), []byte("0123456789"), 10)
	}
	one := entrySize(&Entry{Key: "k0", Value: []byte("0123456789"), TS: Timestamp{WallMs: 10, Logical: 1}, Origin: 1})
	got := s.PickUpdates(2*one + one/2)
	if len(got) != 2 || got[0].Key != "k0" || got[1].Key != "k1" {
		t.Fatalf("first pick: %v", got)
	}
	if got := s.PickUpdates(3 * one); len(got) != 3 || got[0].Key != "k2" {
		t.Fatalf("second pick, fewest-sent first: %v", got)
	}
	limit := retransmitLimit(4, 4)
	picks := 2 // k0 and k1 went out once, k2..k4 once
	for len(s.PickUpdates(1<<20)) > 0 {
		picks++
		if picks > 10*limit {
			t.Fatal("the queue never empties")
		}
	}
	if s.queue.len() != 0 || picks != limit+1 {
		t.Fatalf("queue emptied after %d picks, retransmit limit %d", picks, limit)
	}
}

// TestKeyIndexAgainstModel drives the key index and a sorted slice with
// the same random inserts and removes.
func TestKeyIndexAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	var x keyIndex
	var model []string
	for step := range 20_000 {
		k := fmt.Sprintf("%05d", rng.IntN(3000))
		i, found := slices.BinarySearch(model, k)
		if found {
			x.remove(k)
			model = slices.Delete(model, i, i+1)
		} else {
			x.insert(&item{e: Entry{Key: k}})
			model = slices.Insert(model, i, k)
		}
		if step%500 == 0 {
			x.check()
			from, to := fmt.Sprintf("%05d", rng.IntN(3000)), fmt.Sprintf("%05d", rng.IntN(3000))
			var got []string
			x.ascend(from, to, func(it *item) bool { got = append(got, it.e.Key); return true })
			lo, _ := slices.BinarySearch(model, from)
			hi, _ := slices.BinarySearch(model, to)
			want := model[lo:max(lo, hi)]
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("step %d: ascend(%s, %s) = %v, want %v", step, from, to, got, want)
			}
		}
	}
	x.check()
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig(1, rand.New(rand.NewPCG(1, 1)))
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(c *Config){
		"ID 0":                  func(c *Config) { c.ID = 0 },
		"no Rand":               func(c *Config) { c.Rand = nil },
		"TreeLevels 0":          func(c *Config) { c.TreeLevels = 0 },
		"TreeLevels too deep":   func(c *Config) { c.TreeLevels = TreeLevelsMax + 1 },
		"TTL 0":                 func(c *Config) { c.TombstoneTTLMs = 0 },
		"TTL below AE rounds":   func(c *Config) { c.TombstoneTTLMs = 31 * c.AntiEntropyIntervalMs },
		"TTL below drift":       func(c *Config) { c.TombstoneTTLMs = 2 * c.ClockDriftMaxMs; c.AntiEntropyIntervalMs = 0 },
		"fanout 0":              func(c *Config) { c.GossipFanout = 0 },
		"retransmit 0":          func(c *Config) { c.RetransmitMult = 0 },
		"queue 0":               func(c *Config) { c.QueueMax = 0 },
		"key bound 0":           func(c *Config) { c.KeyBytesMax = 0 },
		"value over limit":      func(c *Config) { c.ValueBytesMax = ValueBytesMaxLimit + 1 },
		"message below entry":   func(c *Config) { c.MessageBytesMax = c.ValueBytesMax },
		"message over limit":    func(c *Config) { c.MessageBytesMax = MessageBytesMaxLimit + 1 },
		"interval beyond bound": func(c *Config) { c.GossipIntervalMs = DurationMsMax + 1 },
	}
	for name, edit := range bad {
		c := ok
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestStepRefuses: misaddressed messages and trees of another shape.
func TestStepRefuses(t *testing.T) {
	s := newStore(t, nil)
	e := Entry{Key: "k", TS: Timestamp{WallMs: 1}, Origin: 2}
	if err := s.Step(&Message{Type: MsgPush, From: 2, To: 3, Entries: []Entry{e}}, 10); !errors.Is(err, ErrWrongNode) {
		t.Errorf("message for another node: %v", err)
	}
	if err := s.Step(&Message{Type: MsgTree, From: 2, To: 1, TreeLevels: 3, Nodes: []NodeHash{{}}}, 10); !errors.Is(err, ErrTreeShape) {
		t.Errorf("tree of another shape: %v", err)
	}
	if err := s.Step(&Message{Type: MsgPush, From: 2, To: 1}, 10); !errors.Is(err, consensus.ErrMalformed) {
		t.Errorf("empty push: %v", err)
	}
	if err := s.Step(nil, 10); err == nil {
		t.Error("nil message accepted")
	}
	if s.Revision() != 0 {
		t.Fatal("a refused message changed the store")
	}
}

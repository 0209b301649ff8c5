package store

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// randomEntries draws n entries over few keys, timestamps, origins and
// values, so that versions collide often: equal timestamps from different
// origins, and even equal (timestamp, origin) with different values or a
// tombstone (a node that lost its state and reused a timestamp), which
// only the last tie-breaks of Entry.Compare decide.
func randomEntries(rng *rand.Rand, n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		e := Entry{
			Key:    fmt.Sprintf("k%02d", rng.IntN(12)),
			TS:     Timestamp{WallMs: 1 + uint64(rng.IntN(4)), Logical: uint32(rng.IntN(3))},
			Origin: consensus.NodeID(1 + rng.IntN(3)),
		}
		if rng.IntN(4) == 0 {
			e.Tombstone = true
		} else {
			e.Value = []byte{byte('a' + rng.IntN(3))}
		}
		es[i] = e
	}
	return es
}

// mergeNow is a physical time at which no test entry is refused or
// expired.
const mergeNow = 1000

func newMergeStore(t *testing.T, id consensus.NodeID) *Store {
	t.Helper()
	s, err := New(testConfig(id, rand.New(rand.NewPCG(uint64(id), 1))))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// merged returns a new store that merged the batches in order.
func merged(t *testing.T, batches ...[]Entry) *Store {
	t.Helper()
	s := newMergeStore(t, 9)
	for _, b := range batches {
		if _, err := s.Merge(b, mergeNow); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// join merges b's whole state into a, as anti-entropy does.
func join(t *testing.T, a, b *Store) {
	t.Helper()
	if _, err := a.Merge(state(b), mergeNow); err != nil {
		t.Fatal(err)
	}
}

func wantState(t *testing.T, what string, s *Store, m model) {
	t.Helper()
	got, want := state(s), m.entries(0, 0)
	if !equalEntries(got, want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
	ref := newMergeStore(t, 8)
	if _, err := ref.Merge(want, mergeNow); err != nil {
		t.Fatal(err)
	}
	if ref.tree.root() != s.tree.root() {
		t.Fatalf("%s: equal entries, different Merkle roots", what)
	}
}

// TestMergeProperties checks against the naive model (the latest version
// of each key over every write) that merging is deterministic,
// commutative, associative and idempotent, whatever the order, grouping
// and repetition of the writes.
func TestMergeProperties(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x3e7))
		a, b, c := randomEntries(rng, rng.IntN(30)), randomEntries(rng, rng.IntN(30)), randomEntries(rng, rng.IntN(30))
		m := model{}
		for _, es := range [][]Entry{a, b, c} {
			for _, e := range es {
				m.add(e)
			}
		}
		name := func(p string) string { return fmt.Sprintf("seed %d: %s", seed, p) }

		// Commutative: A then B equals B then A, and C likewise.
		wantState(t, name("A,B,C"), merged(t, a, b, c), m)
		wantState(t, name("C,B,A"), merged(t, c, b, a), m)

		// Associative, on whole states: (A ⊔ B) ⊔ C = A ⊔ (B ⊔ C).
		sa, sb, sc := merged(t, a), merged(t, b), merged(t, c)
		left := merged(t, a)
		join(t, left, sb)
		join(t, left, sc)
		right := merged(t, b)
		join(t, right, sc)
		join(t, sa, right)
		wantState(t, name("(A⊔B)⊔C"), left, m)
		wantState(t, name("A⊔(B⊔C)"), sa, m)

		// Any order, one write at a time, each write twice.
		all := append(append(append([]Entry{}, a...), b...), c...)
		all = append(all, all...)
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		one := newMergeStore(t, 7)
		for _, e := range all {
			if _, err := one.Merge([]Entry{e}, mergeNow); err != nil {
				t.Fatal(err)
			}
		}
		wantState(t, name("shuffled singles"), one, m)

		// Idempotent: merging a state into itself, or a batch again,
		// changes nothing at all, not even the revision.
		rev := one.Revision()
		news, err := one.Merge(state(one), mergeNow)
		if err != nil || len(news) != 0 || one.Revision() != rev {
			t.Fatalf("%s: self-merge changed %d entries (revision %d -> %d), %v", name(""), len(news), rev, one.Revision(), err)
		}
		news, err = one.Merge(all, mergeNow)
		if err != nil || len(news) != 0 || one.Revision() != rev {
			t.Fatalf("%s: merging the writes again changed %d entries, %v", name(""), len(news), err)
		}
	}
}

// TestLWWTieBreakByNodeID: two replicas write one key at the same
// physical time with fresh clocks, so both writes carry the same
// timestamp; after they exchange, both hold the write of the higher node
// ID, whichever way the writes travelled.
func TestLWWTieBreakByNodeID(t *testing.T) {
	for _, initiator := range []consensus.NodeID{1, 2} {
		net := newTestNet(t, 3, 2, nil)
		w1 := net.put(1, "k", "from 1")
		w2 := net.put(2, "k", "from 2")
		if w1.TS != w2.TS {
			t.Fatalf("timestamps differ (%v, %v); the test needs a tie", w1.TS, w2.TS)
		}
		net.store(initiator).StartAntiEntropy(3 - initiator)
		net.collect(net.store(initiator))
		net.deliver()
		for _, s := range net.stores {
			if kv, ok := s.Get("k"); !ok || string(kv.Value) != "from 2" || kv.Origin != 2 {
				t.Fatalf("exchange started by %d: replica %d holds %v", initiator, s.id, kv)
			}
		}
	}
	// Through gossip and in the other order of arrival, the same.
	net := newTestNet(t, 4, 3, nil)
	w2 := net.put(2, "k", "from 2")
	w1 := net.put(1, "k", "from 1")
	s3 := net.store(3)
	for _, w := range []Entry{w2, w1} {
		if err := s3.Step(&Message{Type: MsgPush, From: w.Origin, To: 3, Entries: []Entry{w}}, net.now(3)); err != nil {
			t.Fatal(err)
		}
	}
	if kv, _ := s3.Get("k"); kv.Origin != 2 {
		t.Fatalf("replica 3 holds %v, want node 2's write", kv)
	}
}

package store

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// rebuiltTree builds the tree of s's entries from scratch.
func rebuiltTree(s *Store) *tree {
	t := newTree(s.cfg.TreeLevels)
	for _, e := range state(s) {
		t.hashes[t.levels][t.leafOf(e.Key)] += digest(&e)
	}
	for d := t.levels - 1; d >= 0; d-- {
		for i := range t.hashes[d] {
			t.hashes[d][i] = nodeHash(t.hashes[d+1][fanout*i : fanout*i+fanout])
		}
	}
	return t
}

// checkTree compares the incrementally maintained tree with one rebuilt
// from the entries, node by node, and the leaf lists with the entries.
func checkTree(t *testing.T, s *Store) {
	t.Helper()
	want := rebuiltTree(s)
	for d := range want.hashes {
		for i, h := range want.hashes[d] {
			if s.tree.hashes[d][i] != h {
				t.Fatalf("replica %d: node %d at level %d is %x, rebuilt %x", s.id, i, d, s.tree.hashes[d][i], h)
			}
		}
	}
	n := 0
	for j, l := range s.tree.leaves {
		for k, it := range l {
			if it.pos != k || it.leaf != uint32(j) || s.items[it.e.Key] != it || it.digest != digest(&it.e) {
				t.Fatalf("replica %d: leaf %d holds a stale item %v", s.id, j, it.e)
			}
			n++
		}
	}
	if n != len(s.items) {
		t.Fatalf("replica %d: leaves hold %d items, the map %d", s.id, n, len(s.items))
	}
	s.index.check()
	if s.index.n != len(s.items) {
		t.Fatalf("replica %d: index holds %d items, the map %d", s.id, s.index.n, len(s.items))
	}
}

// TestTreeIsMaintainedIncrementally: after random puts, deletes, merges
// and purges, every hash equals the one computed from scratch.
func TestTreeIsMaintainedIncrementally(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x7ee))
		cfg := testConfig(1, rng)
		cfg.TombstoneTTLMs = 500
		cfg.ClockDriftMaxMs = 100
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		now := uint64(1000)
		for step := range 3000 {
			now += uint64(rng.IntN(5))
			key := fmt.Sprintf("k%03d", rng.IntN(300))
			switch r := rng.IntN(10); {
			case r < 5:
				_, err = s.Put(key, []byte{byte(step)}, now)
			case r < 7:
				_, err = s.Delete(key, now)
			case r < 9:
				e := Entry{Key: key, TS: Timestamp{WallMs: now - uint64(rng.IntN(900)), Logical: 1}, Origin: 2, Tombstone: rng.IntN(2) == 0}
				if !e.Tombstone {
					e.Value = []byte("merged")
				}
				_, err = s.Merge([]Entry{e}, now)
			default:
				s.Tick(now)
			}
			if err != nil {
				t.Fatal(err)
			}
			if step%100 == 0 {
				checkTree(t, s)
			}
		}
		checkTree(t, s)
	}
}

// TestMerkleExchangeTransfersOnlyDifferingLeaves: two replicas of a
// 10,000-key store that differ in 10 keys run one anti-entropy exchange.
// It must make them equal while carrying only the entries of the leaves
// that differ, a small fraction of the full state.
func TestMerkleExchangeTransfersOnlyDifferingLeaves(t *testing.T) {
	const keys, differing = 10_000, 10
	seeds := uint64(5)
	if testing.Short() {
		seeds = 1
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		net := newTestNet(t, seed, 2, func(c *Config) { c.TreeLevels = 3; c.MessageBytesMax = 1 << 20 })
		a, b := net.store(1), net.store(2)
		for i := range keys {
			if _, err := a.Put(fmt.Sprintf("user/%05d", i), []byte(fmt.Sprintf("value-%05d-%020d", i, i)), net.now(1)); err != nil {
				t.Fatal(err)
			}
		}
		a.Advance(a.Ready())
		if err := b.Recover(a.Snapshot()); err != nil {
			t.Fatal(err)
		}
		full, err := RecordCodec.AppendRecord(nil, a.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		// The differences: 4 updates on A, 3 new keys on B, 3 deletes on
		// B.
		var changed []string
		for i := range differing {
			k := fmt.Sprintf("user/%05d", net.rng.IntN(keys))
			switch {
			case i < 4:
				net.put(1, k, "newer on A")
			case i < 7:
				k = fmt.Sprintf("new/%d", i)
				net.put(2, k, "new on B")
			default:
				net.del(2, k)
			}
			changed = append(changed, k)
		}
		// What the exchange should carry: the entries of the differing
		// leaves, on either side.
		leaves := map[uint32]bool{}
		for _, k := range changed {
			leaves[a.tree.leafOf(k)] = true
		}
		inLeaves := 0
		for j := range leaves {
			inLeaves += max(len(a.tree.leaves[j]), len(b.tree.leaves[j]))
		}
		net.stats = netStats{}
		a.StartAntiEntropy(2)
		net.collect(a)
		net.deliver()
		if !net.converged() {
			t.Fatalf("seed %d: not converged after one exchange", seed)
		}
		st := net.stats
		msgs := 0
		for _, c := range st.msgs {
			msgs += c
		}
		if msgs > a.cfg.TreeLevels+3 {
			t.Errorf("seed %d: %d messages, more than the %d levels + 3", seed, msgs, a.cfg.TreeLevels)
		}
		sent := st.entries[MsgLeaves]
		if sent < len(leaves) || sent > 2*inLeaves {
			t.Errorf("seed %d: %d entries transferred for %d differing leaves holding %d entries", seed, sent, len(leaves), inLeaves)
		}
		if st.totalBytes()*50 > len(full) {
			t.Errorf("seed %d: %d bytes transferred, over 2%% of the %d-byte state", seed, st.totalBytes(), len(full))
		}
		t.Logf("seed %d: %d keys, %d differing in %d leaves (of %d): %d messages, %d bytes (%d in tree hashes), %d entries; full state %d entries, %d bytes (%.2f%%)",
			seed, keys, differing, len(leaves), len(a.tree.leaves), msgs, st.totalBytes(), st.bytes[MsgTree], sent,
			len(state(a)), len(full), 100*float64(st.totalBytes())/float64(len(full)))

		// Equal replicas: one root message and nothing else.
		net.stats = netStats{}
		b.StartAntiEntropy(1)
		net.collect(b)
		net.deliver()
		if st := net.stats; st.msgs[MsgTree] != 1 || st.msgs[MsgLeaves] != 0 || st.totalBytes() > 32 {
			t.Errorf("seed %d: exchange between equal replicas: %v", seed, st)
		}
	}
}

// TestMerkleExchangeWithSmallMessages: when the differences do not fit
// one message (a replica that starts empty, with 8 KiB messages),
// repeated exchanges still converge, each message within its bound (the
// test network checks every message's size).
func TestMerkleExchangeWithSmallMessages(t *testing.T) {
	net := newTestNet(t, 9, 2, func(c *Config) { c.MessageBytesMax = 8 << 10 })
	a := net.store(1)
	for i := range 3000 {
		if _, err := a.Put(fmt.Sprintf("k%05d", i), []byte("some value of a few dozen bytes ........"), net.now(1)); err != nil {
			t.Fatal(err)
		}
	}
	net.collect(a)
	rounds := 0
	for !net.converged() {
		rounds++
		if rounds > 100 {
			t.Fatalf("not converged after %d exchanges", rounds)
		}
		net.store(consensus.NodeID(1 + rounds%2)).StartAntiEntropy(consensus.NodeID(2 - rounds%2))
		net.collect(net.store(consensus.NodeID(1 + rounds%2)))
		net.deliver()
	}
	t.Logf("3000 keys into an empty replica with 8 KiB messages: %d exchanges, %v", rounds, net.stats)
}

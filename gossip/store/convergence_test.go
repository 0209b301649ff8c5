package store

import (
	"fmt"
	"math"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// roundsBound is the most anti-entropy rounds a healed group of n may
// take to converge in TestConvergenceAfterPartition: push-pull spreads
// news to everyone in about log2(n) + ln(n) rounds, and one round already
// merges the two sides pairwise.
func roundsBound(n int) int {
	return int(math.Ceil(math.Log2(float64(n))+math.Log(float64(n)))) + 2
}

// TestConvergenceAfterPartition: N replicas split in two; random puts and
// deletes land on both sides (over a small key set, so they conflict)
// while gossip runs within each side over a lossy network and clocks are
// skewed; then the partition heals and only anti-entropy runs. Every
// replica must end with exactly the model's state (the latest version of
// each key over all writes) within roundsBound(N) rounds.
func TestConvergenceAfterPartition(t *testing.T) {
	sizes, seeds := []int{3, 8, 16, 32}, uint64(20)
	if testing.Short() {
		sizes, seeds = []int{3, 8, 16}, 5
	}
	for _, n := range sizes {
		worst, total, runs := 0, 0, 0
		for seed := uint64(1); seed <= seeds; seed++ {
			rounds, _ := partitionRun(t, seed, n)
			worst = max(worst, rounds)
			total += rounds
			runs++
		}
		t.Logf("N=%d: converged in %.1f anti-entropy rounds on average, %d at worst (bound %d), over %d seeds",
			n, float64(total)/float64(runs), worst, roundsBound(n), runs)
	}
}

// partitionRun runs the scenario and returns the rounds it took and the
// trace of every message sent.
func partitionRun(t *testing.T, seed uint64, n int) (int, uint32) {
	net := newTestNet(t, seed, n, func(c *Config) { c.GossipIntervalMs = 50 })
	for i := range net.skewMs {
		net.skewMs[i] = int64(net.rng.IntN(401)) - 200
	}
	side := func(id consensus.NodeID) bool { return int(id) <= n/2 }
	net.cut = func(from, to consensus.NodeID) bool { return side(from) != side(to) }
	net.loss = 0.2
	m := model{}
	for range 40 * n {
		id := consensus.NodeID(1 + net.rng.IntN(n))
		key := fmt.Sprintf("key-%02d", net.rng.IntN(60))
		if net.rng.IntN(5) == 0 {
			m.add(net.del(id, key))
		} else {
			m.add(net.put(id, key, fmt.Sprintf("v%d", net.rng.IntN(1000))))
		}
		net.advance(uint64(net.rng.IntN(20)))
	}
	// Let gossip die out, then heal.
	for range 100 {
		net.advance(50)
	}
	net.cut, net.loss = nil, 0
	want := m.entries(0, 0)
	for rounds := 1; rounds <= roundsBound(n); rounds++ {
		net.antiEntropyRound()
		if net.converged() {
			for _, s := range net.stores {
				if got := state(s); !equalEntries(got, want) {
					t.Fatalf("N=%d seed %d: replica %d converged to a state other than the model's:\n got %v\nwant %v", n, seed, s.id, got, want)
				}
			}
			return rounds, net.trace
		}
	}
	t.Fatalf("N=%d seed %d: not converged after %d anti-entropy rounds", n, seed, roundsBound(n))
	return 0, 0
}

// TestDeterministic: the same seed gives the same run, message for
// message (the simulator replays failures by seed).
func TestDeterministic(t *testing.T) {
	r1, t1 := partitionRun(t, 7, 8)
	r2, t2 := partitionRun(t, 7, 8)
	r3, t3 := partitionRun(t, 8, 8)
	if r1 != r2 || t1 != t2 {
		t.Fatalf("two runs of seed 7: %d rounds, trace %x; then %d rounds, trace %x", r1, t1, r2, t2)
	}
	if t1 == t3 {
		t.Fatalf("seeds 7 and 8 sent the same messages (%d, %d rounds): the trace checks nothing", r1, r3)
	}
}

// TestDeleteRacingOlderPut: replica 1 puts k; replica 2, which has not
// seen it, deletes k a little later. Replica 3 gets the delete first and
// the put late: the put is older, so k stays deleted there and, after
// anti-entropy, everywhere, replica 1 included.
func TestDeleteRacingOlderPut(t *testing.T) {
	net := newTestNet(t, 5, 3, nil)
	put := net.put(1, "k", "old")
	net.advance(10)
	del := net.del(2, "k")
	if !put.TS.Less(del.TS) {
		t.Fatalf("the delete (%v) must be newer than the put (%v)", del.TS, put.TS)
	}
	s3 := net.store(3)
	for _, e := range []Entry{del, put} {
		if err := s3.Step(&Message{Type: MsgPush, From: e.Origin, To: 3, Entries: []Entry{e}}, net.now(3)); err != nil {
			t.Fatal(err)
		}
	}
	if kv, ok := s3.Get("k"); ok {
		t.Fatalf("the late older put resurrected k on replica 3: %v", kv)
	}
	for range 3 {
		net.antiEntropyRound()
	}
	if !net.converged() {
		t.Fatal("not converged")
	}
	for _, s := range net.stores {
		if kv, ok := s.Get("k"); ok {
			t.Fatalf("replica %d holds deleted key: %v", s.id, kv)
		}
	}
}

// rejoinRun: 4 replicas agree on k; replica 4 goes away; replica 1
// deletes k and the others learn it; after awayMs replica 4 returns with
// its old put of k and anti-entropy runs. It returns whether any replica
// then holds k, once the tombstones' TTL has passed.
func rejoinRun(t *testing.T, awayMs uint64) bool {
	const ttlMs = 60_000
	net := newTestNet(t, 6, 4, func(c *Config) {
		c.TombstoneTTLMs = ttlMs
		c.AntiEntropyIntervalMs = 1000
	})
	net.put(2, "k", "v")
	net.put(2, "other", "x")
	for range 5 {
		net.antiEntropyRound()
	}
	if _, ok := net.store(4).Get("k"); !ok {
		t.Fatal("setup: replica 4 never got k")
	}
	net.down[3] = true
	net.del(1, "k")
	for range 5 {
		net.advance(1000)
	}
	for _, id := range []consensus.NodeID{1, 2, 3} {
		if _, ok := net.store(id).Get("k"); ok {
			t.Fatalf("replica %d did not learn the delete", id)
		}
	}
	for ; awayMs > 5000; awayMs -= 1000 {
		net.advance(1000)
	}
	net.down[3] = false
	for range 30 {
		net.advance(1000) // anti-entropy every second; tombstones expire meanwhile
	}
	for range 2 * ttlMs / 1000 {
		net.advance(1000)
	}
	if !net.converged() {
		t.Fatal("not converged after rejoining")
	}
	if st := net.store(1).Status(); st.Tombstones != 0 {
		t.Fatalf("%d tombstones left after their TTL", st.Tombstones)
	}
	_, ok := net.store(1).Get("k")
	return ok
}

// TestTombstoneNoResurrectionWithinTTL: a replica that held the old put
// and rejoins within the tombstone TTL takes the delete; once the
// tombstones are purged, k stays deleted everywhere.
func TestTombstoneNoResurrectionWithinTTL(t *testing.T) {
	if rejoinRun(t, 30_000) {
		t.Fatal("deleted key came back after a rejoin within the TTL")
	}
}

// TestTombstoneTTLCaveat documents the known limit: a replica away
// longer than the TTL rejoins after every tombstone of k was purged, and
// its old put of k spreads again. If this test starts failing, the
// package doc's caveat is out of date.
func TestTombstoneTTLCaveat(t *testing.T) {
	if !rejoinRun(t, 120_000) {
		t.Fatal("the caveat no longer holds: update the package doc")
	}
}

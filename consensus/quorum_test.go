package consensus

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// naiveCommitted finds the largest index acknowledged by a majority by
// trying every candidate index and counting.
func naiveCommitted(c MajorityConfig, acked map[NodeID]uint64) uint64 {
	if len(c) == 0 {
		return ^uint64(0)
	}
	var best uint64
	for _, cand := range c {
		idx := acked[cand]
		n := 0
		for _, id := range c {
			if acked[id] >= idx {
				n++
			}
		}
		if n > len(c)/2 && idx > best {
			best = idx
		}
	}
	return best
}

// naiveVote decides a vote by enumerating what the missing voters could
// still say.
func naiveVote(c MajorityConfig, votes map[NodeID]bool) VoteResult {
	if len(c) == 0 {
		return VoteWon
	}
	yes, no := 0, 0
	for _, id := range c {
		if v, ok := votes[id]; ok {
			if v {
				yes++
			} else {
				no++
			}
		}
	}
	switch {
	case 2*yes > len(c):
		return VoteWon
	case 2*(len(c)-no) <= len(c): // even if every missing voter said yes
		return VoteLost
	}
	return VotePending
}

func randConfig(r *rand.Rand, maxN int) MajorityConfig {
	n := r.IntN(maxN + 1)
	c := make(MajorityConfig, 0, n)
	for i := 0; i < n; i++ {
		c = append(c, NodeID(1+r.IntN(12)))
	}
	// Deduplicate while keeping order irrelevant.
	seen := map[NodeID]bool{}
	out := c[:0]
	for _, id := range c {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func TestQuorumMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 20000; iter++ {
		c := randConfig(r, 9)
		acked := map[NodeID]uint64{}
		votes := map[NodeID]bool{}
		for id := NodeID(1); id <= 12; id++ {
			if r.IntN(4) > 0 {
				acked[id] = uint64(r.IntN(20))
			}
			if r.IntN(3) > 0 {
				votes[id] = r.IntN(2) == 0
			}
		}
		got := c.CommittedIndex(func(id NodeID) uint64 { return acked[id] })
		if want := naiveCommitted(c, acked); got != want {
			t.Fatalf("config %v acked %v: CommittedIndex = %d, naive = %d", c, acked, got, want)
		}
		if got, want := c.VoteResult(votes), naiveVote(c, votes); got != want {
			t.Fatalf("config %v votes %v: VoteResult = %v, naive = %v", c, votes, got, want)
		}

		// A joint config must agree with deciding each half separately.
		c2 := randConfig(r, 7)
		j := JointConfig{c, c2}
		wantIdx := min(naiveCommitted(c, acked), naiveCommitted(c2, acked))
		if got := j.CommittedIndex(func(id NodeID) uint64 { return acked[id] }); got != wantIdx {
			t.Fatalf("joint %v acked %v: CommittedIndex = %d, want %d", j, acked, got, wantIdx)
		}
		r0, r1 := naiveVote(c, votes), naiveVote(c2, votes)
		want := VotePending
		switch {
		case r0 == VoteWon && r1 == VoteWon:
			want = VoteWon
		case r0 == VoteLost || r1 == VoteLost:
			want = VoteLost
		}
		if got := j.VoteResult(votes); got != want {
			t.Fatalf("joint %v votes %v: VoteResult = %v, want %v", j, votes, got, want)
		}
	}
}

func TestMajority(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		if got := Majority(n); got != want {
			t.Errorf("Majority(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestNotLeaderError(t *testing.T) {
	var err error = &NotLeaderError{Leader: 3}
	if !errors.Is(err, ErrNotLeader) {
		t.Fatal("errors.Is(NotLeaderError, ErrNotLeader) = false")
	}
}

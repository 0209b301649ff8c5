package consensus

import (
	"slices"
)

// Majority returns the smallest number of voters that forms a majority of n:
// ⌊n/2⌋+1. Any two majorities of the same n voters intersect.
func Majority(n int) int { return n/2 + 1 }

// VoteResult is the outcome of counting votes.
type VoteResult uint8

const (
	// VotePending means the outcome is not yet decided.
	VotePending VoteResult = iota
	// VoteLost means a quorum can no longer be reached.
	VoteLost
	// VoteWon means a quorum voted yes.
	VoteWon
)

// String names the result.
func (r VoteResult) String() string {
	switch r {
	case VotePending:
		return "pending"
	case VoteLost:
		return "lost"
	case VoteWon:
		return "won"
	}
	return "VoteResult(?)"
}

// MajorityConfig is a set of voters decided by simple majority.
type MajorityConfig []NodeID

// VoteResult counts votes (true = yes) among the voters; voters missing from
// votes have not answered. An empty configuration wins every vote, so that a
// joint configuration with one empty half behaves like the other half alone.
func (c MajorityConfig) VoteResult(votes map[NodeID]bool) VoteResult {
	if len(c) == 0 {
		return VoteWon
	}
	yes, missing := 0, 0
	for _, id := range c {
		v, ok := votes[id]
		switch {
		case !ok:
			missing++
		case v:
			yes++
		}
	}
	q := Majority(len(c))
	if yes >= q {
		return VoteWon
	}
	if yes+missing >= q {
		return VotePending
	}
	return VoteLost
}

// CommittedIndex returns the largest index that a majority of the voters
// have acknowledged, given each voter's acknowledged index (voters missing
// from acked count as 0). An empty configuration returns the maximum uint64,
// so that in a joint configuration the other half decides.
func (c MajorityConfig) CommittedIndex(acked func(NodeID) uint64) uint64 {
	n := len(c)
	if n == 0 {
		return ^uint64(0)
	}
	// Small clusters are the common case: sort on the stack.
	var stack [7]uint64
	var idx []uint64
	if n <= len(stack) {
		idx = stack[:n]
	} else {
		idx = make([]uint64, n)
	}
	for i, id := range c {
		idx[i] = acked(id)
	}
	// Insertion sort, descending; n is small.
	for i := 1; i < n; i++ {
		for j := i; j > 0 && idx[j-1] < idx[j]; j-- {
			idx[j-1], idx[j] = idx[j], idx[j-1]
		}
	}
	// The q-th largest value is acknowledged by at least q voters.
	return idx[Majority(n)-1]
}

// JointConfig is the configuration used while membership changes from one
// set of voters to another: a decision needs a majority of both halves.
// When the second half is empty it is an ordinary majority configuration.
type JointConfig [2]MajorityConfig

// VoteResult wins only if both halves win, and loses if either loses.
func (c JointConfig) VoteResult(votes map[NodeID]bool) VoteResult {
	r0, r1 := c[0].VoteResult(votes), c[1].VoteResult(votes)
	if r0 == r1 {
		return r0
	}
	if r0 == VoteLost || r1 == VoteLost {
		return VoteLost
	}
	return VotePending
}

// CommittedIndex is the smaller of the halves' committed indexes.
func (c JointConfig) CommittedIndex(acked func(NodeID) uint64) uint64 {
	return min(c[0].CommittedIndex(acked), c[1].CommittedIndex(acked))
}

// IDs returns the union of both halves' voters, sorted and without
// duplicates.
func (c JointConfig) IDs() []NodeID {
	ids := make([]NodeID, 0, len(c[0])+len(c[1]))
	ids = append(ids, c[0]...)
	ids = append(ids, c[1]...)
	slices.Sort(ids)
	return slices.Compact(ids)
}

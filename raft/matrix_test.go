package raft

import (
	"fmt"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// TestScenarioConfigMatrix runs churn (crashes, restarts, disconnections,
// partitions, loss, duplication, reordering, proposals and reads) under every
// combination of PreVote and CheckQuorum, with default and tiny replication
// windows. The simulator runs only DefaultConfig, so this is the only swarm
// that reaches the other combinations. Besides the cluster's safety checks
// (one leader per term, agreement, linearizable read points) it checks that
// no entry slice handed out in a Ready is modified afterwards, and that the
// cluster converges once the faults stop.
func TestScenarioConfigMatrix(t *testing.T) {
	seeds, iters := uint64(2), 800
	if testing.Short() {
		seeds, iters = 1, 300
	}
	for _, preVote := range []bool{true, false} {
		for _, checkQuorum := range []bool{true, false} {
			for _, tiny := range []bool{false, true} {
				for seed := uint64(1); seed <= seeds; seed++ {
					name := fmt.Sprintf("prevote=%v/checkquorum=%v/tiny=%v/%d", preVote, checkQuorum, tiny, seed)
					t.Run(name, func(t *testing.T) {
						configMatrixRun(t, 700+seed, iters, func(cfg *Config) {
							cfg.PreVote, cfg.CheckQuorum = preVote, checkQuorum
							if tiny {
								cfg.InflightMsgsMax, cfg.EntriesPerMsgMax = 2, 1
							}
						})
					})
				}
			}
		}
	}
}

func configMatrixRun(t *testing.T, seed uint64, iters int, opt clusterOpt) {
	c := newCluster(t, 5, seed, opt)
	c.maxDelay, c.loss, c.dup = 3, 0.08, 0.05

	type held struct{ live, saved []consensus.Entry }
	var handedOut []held
	type heldBytes struct{ live, saved []byte }
	var chunks []heldBytes
	keep := func(es []consensus.Entry) {
		if len(es) > 0 {
			handedOut = append(handedOut, held{es, slices.Clone(es)})
		}
	}
	c.onReady = func(_ *cnode, rd consensus.Ready) {
		for _, rec := range rd.Persist {
			switch rec := rec.(type) {
			case Append:
				keep(rec.Entries)
			case Checkpoint:
				keep(rec.Entries)
			}
		}
		for _, m := range rd.Messages {
			p := m.Payload.(*Msg)
			keep(p.Entries)
			if len(p.Data) > 0 {
				chunks = append(chunks, heldBytes{p.Data, slices.Clone(p.Data)})
			}
		}
		keep(rd.Committed)
	}

	faulty := func() int {
		n := 0
		for _, nd := range c.nodes {
			if !c.connected(nd.id) {
				n++
			}
		}
		return n
	}
	for iter := range iters {
		id := consensus.NodeID(c.rng.IntN(5) + 1)
		nd := c.node(id)
		if c.rng.IntN(100) < 8 {
			switch {
			case !nd.up:
				c.restart(id)
			case !c.connected(id):
				c.connect(id)
			case faulty() < 2 && c.rng.IntN(2) == 0:
				c.crash(id)
			case faulty() < 2:
				c.disconnect(id)
			}
		}
		if c.rng.IntN(200) == 0 {
			c.partition(consensus.NodeID(c.rng.IntN(5)+1), consensus.NodeID(c.rng.IntN(5)+1))
		}
		if c.rng.IntN(50) == 0 {
			c.heal()
		}
		for _, nd := range c.nodes {
			if nd.up && nd.r.role == consensus.RoleLeader {
				_ = nd.r.Propose(consensus.Command{Data: fmt.Appendf(nil, "%d-%d", nd.id, iter)})
				_ = c.readIndex(nd.id)
			}
		}
		c.ticks(1)
	}
	c.loss, c.maxDelay, c.dup = 0, 0, 0
	c.heal()
	for _, nd := range c.nodes {
		if !nd.up {
			c.restart(nd.id)
		}
	}
	c.one("final", 5)
	c.checkLogsAgree()
	for _, h := range handedOut {
		if !slices.EqualFunc(h.live, h.saved, sameEntry) {
			c.fatalf("entries handed out in a Ready changed from %v to %v", h.saved, h.live)
		}
	}
	for _, h := range chunks {
		if !slices.Equal(h.live, h.saved) {
			c.fatalf("a snapshot chunk handed out in a Ready changed")
		}
	}
	if len(c.committed) < iters/10 || c.readsDone < iters/20 {
		c.fatalf("only %d entries committed and %d reads confirmed in %d ticks", len(c.committed), c.readsDone, iters)
	}
}

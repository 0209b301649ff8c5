package raft

import (
	"fmt"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// These tests show that the cluster checker catches each known-wrong
// variant (SetBug), so that its silence on the real protocol means
// something.

type violation struct{ msg string }

// findViolation runs scenario on a fresh cluster per seed until the checker
// reports a violation, and returns it ("" if none in any seed).
func findViolation(t *testing.T, seeds int, n int, bug string, scenario func(c *cluster)) (string, uint64) {
	t.Helper()
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		msg := func() (msg string) {
			c := newCluster(t, n, seed, func(cfg *Config) { SetBug(cfg, bug) })
			c.onViolation = func(m string) { panic(violation{m}) }
			defer func() {
				if r := recover(); r != nil {
					v, ok := r.(violation)
					if !ok {
						panic(r)
					}
					msg = v.msg
				}
			}()
			scenario(c)
			return ""
		}()
		if msg != "" {
			return msg, seed
		}
	}
	return "", 0
}

func TestCheckerCatchesVoteWithoutLogCheck(t *testing.T) {
	msg, seed := findViolation(t, 40, 5, BugVoteWithoutLogCheck, func(c *cluster) {
		c.maxDelay, c.loss, c.dup = 3, 0.1, 0.05
		figure8(c, 600)
	})
	if msg == "" {
		t.Fatal("the checker found no violation with votes granted without the log check")
	}
	t.Logf("seed %d: %s", seed, msg)
}

func TestCheckerCatchesCommitOldTerm(t *testing.T) {
	msg, seed := findViolation(t, 200, 5, BugCommitOldTerm, func(c *cluster) {
		// One entry per message makes a leader count old-term entries on
		// their own, as in the paper's Figure 8.
		for _, nd := range c.nodes {
			nd.cfg.EntriesPerMsgMax = 1
			nd.r.cfg.EntriesPerMsgMax = 1
		}
		c.maxDelay, c.loss, c.dup = 3, 0.1, 0.05
		figure8(c, 600)
	})
	if msg == "" {
		t.Fatal("the checker found no violation with old-term entries committed by counting")
	}
	t.Logf("seed %d: %s", seed, msg)
}

// TestScenarioFigure8OneEntryPerMsg runs the correct protocol through the
// same search that finds the commit-old-term bug.
func TestScenarioFigure8OneEntryPerMsg(t *testing.T) {
	seeds := 100
	if testing.Short() {
		seeds = 20
	}
	msg, seed := findViolation(t, seeds, 5, "", func(c *cluster) {
		for _, nd := range c.nodes {
			nd.cfg.EntriesPerMsgMax = 1
			nd.r.cfg.EntriesPerMsgMax = 1
		}
		c.maxDelay, c.loss, c.dup = 3, 0.1, 0.05
		figure8(c, 600)
	})
	if msg != "" {
		t.Fatalf("seed %d: %s", seed, msg)
	}
}

func TestCheckerCatchesReadWithoutQuorum(t *testing.T) {
	scenario := func(c *cluster) {
		c.one("a", 3)
		l := c.checkOneLeader()
		// The leader is cut off; within its election timeout it still
		// believes it leads, while the others elect and commit.
		c.disconnect(l)
		c.ticks(1)
		var others []consensus.NodeID
		for id := consensus.NodeID(1); id <= 3; id++ {
			if id != l {
				others = append(others, id)
			}
		}
		for _, id := range others {
			c.node(id).r.hup()
		}
		c.settle()
		c.one("b", 2)
		if err := c.readIndex(l); err != nil {
			return // the old leader knows it is not leading: a correct answer
		}
		c.ticks(30)
	}
	msg, _ := findViolation(t, 1, 3, BugReadWithoutQuorum, scenario)
	if !strings.Contains(msg, "confirmed read") {
		t.Fatalf("the checker missed a read served without quorum; got %q", msg)
	}
	t.Log(msg)
	// The real protocol does not confirm the stale read.
	msg, _ = findViolation(t, 1, 3, "", scenario)
	if msg != "" {
		t.Fatalf("the correct protocol violated the read check: %s", msg)
	}
}

// TestReadsUnderChurnAreLinearizable issues many reads under faults and
// checks every confirmed read point against the committed history.
func TestReadsUnderChurnAreLinearizable(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		c := newCluster(t, 5, 300+seed)
		c.maxDelay, c.loss = 2, 0.05
		for iter := range 500 {
			if l, ok := c.leader(); ok {
				_ = c.node(l).r.Propose(consensus.Command{Data: fmt.Appendf(nil, "w%d", iter)})
				_ = c.readIndex(l)
			}
			id := consensus.NodeID(c.rng.IntN(5) + 1)
			switch x := c.rng.IntN(100); {
			case x < 4:
				c.disconnect(id)
			case x < 10:
				c.connect(id)
			case x < 12:
				c.restart(id)
			}
			c.ticks(1)
		}
		if c.readsDone < 50 {
			c.fatalf("only %d reads confirmed", c.readsDone)
		}
	}
}

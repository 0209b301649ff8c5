package raft

import (
	"fmt"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// Scenario tests in the style of the MIT 6.824 Raft lab, over the seeded
// cluster harness. Every Ready is checked for one leader per term and for
// agreement of committed entries (see cluster).

func TestScenarioInitialElection(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		c := newCluster(t, 3, seed)
		c.checkOneLeader()
		term1 := c.checkTerms()
		if term1 < 1 {
			c.fatalf("term is %d, want >= 1", term1)
		}
		// With no failures the leader keeps its term.
		c.ticks(50)
		if term2 := c.checkTerms(); term2 != term1 {
			c.fatalf("term changed from %d to %d without failures", term1, term2)
		}
		c.checkOneLeader()
	}
}

func TestScenarioReElection(t *testing.T) {
	c := newCluster(t, 3, 11)
	l1 := c.checkOneLeader()

	// The leader is cut off: a new one is elected.
	c.disconnect(l1)
	l2 := c.checkOneLeader()
	if l2 == l1 {
		c.fatalf("the disconnected leader %d is still the only leader", l1)
	}

	// The old leader rejoins: that does not disturb the new one.
	c.connect(l1)
	l3 := c.checkOneLeader()
	if l3 != l2 {
		c.fatalf("leader changed from %d to %d when %d rejoined", l2, l3, l1)
	}

	// Without a quorum there is no leader.
	other := consensus.NodeID(l3%3 + 1)
	c.disconnect(l3)
	c.disconnect(other)
	c.ticks(40)
	c.checkNoLeader()

	// A quorum returns: a leader again.
	c.connect(other)
	c.checkOneLeader()

	// The last node rejoins: still one leader.
	c.connect(l3)
	c.checkOneLeader()
}

func TestScenarioManyElections(t *testing.T) {
	const n = 7
	c := newCluster(t, n, 21)
	c.checkOneLeader()
	for round := range 10 {
		// Cut off three random nodes; the other four are a quorum.
		cut := c.rng.Perm(n)[:3]
		for _, i := range cut {
			c.disconnect(consensus.NodeID(i + 1))
		}
		l := c.checkOneLeader()
		for _, i := range cut {
			if consensus.NodeID(i+1) == l {
				c.fatalf("round %d: disconnected node %d counted as leader", round, l)
			}
		}
		for _, i := range cut {
			c.connect(consensus.NodeID(i + 1))
		}
	}
	c.checkOneLeader()
}

func TestScenarioBasicAgree(t *testing.T) {
	c := newCluster(t, 3, 31)
	c.checkOneLeader()
	// Index 1 is the first leader's no-op.
	for i := range 5 {
		index := c.one(fmt.Sprintf("cmd-%d", i), 3)
		if index != uint64(i)+2 {
			c.fatalf("cmd-%d got index %d, want %d", i, index, i+2)
		}
	}
	c.checkLogsAgree()
}

func TestScenarioEntryTooLarge(t *testing.T) {
	c := newCluster(t, 3, 32, func(cfg *Config) { cfg.EntryBytesMax = 100 })
	l := c.checkOneLeader()
	err := c.node(l).r.Propose(consensus.Command{Data: make([]byte, 200)})
	if err == nil || !errorsIs(err, ErrEntryTooLarge) {
		t.Fatalf("Propose of a 200-byte command with EntryBytesMax 100: %v", err)
	}
}

func TestScenarioFailAgree(t *testing.T) {
	c := newCluster(t, 3, 41)
	c.one("101", 3)
	// A follower is cut off: the other two still agree.
	l := c.checkOneLeader()
	f := consensus.NodeID(l%3 + 1)
	c.disconnect(f)
	c.one("102", 2)
	c.one("103", 2)
	c.ticks(20)
	c.one("104", 2)
	c.one("105", 2)
	// It rejoins and catches up.
	c.connect(f)
	c.one("106", 3)
	c.ticks(20)
	c.one("107", 3)
	c.checkLogsAgree()
}

func TestScenarioFailNoAgree(t *testing.T) {
	c := newCluster(t, 5, 51)
	c.one("10", 5)
	l := c.checkOneLeader()
	// Three of five followers are cut off: nothing commits.
	var cut []consensus.NodeID
	for i := 1; len(cut) < 3; i++ {
		if id := consensus.NodeID((int(l)-1+i)%5 + 1); id != l {
			cut = append(cut, id)
		}
	}
	for _, id := range cut {
		c.disconnect(id)
	}
	if err := c.node(l).r.Propose(consensus.Command{Data: []byte("20")}); err != nil {
		c.fatalf("leader rejected a proposal: %v", err)
	}
	index := c.node(l).r.Status().LastIndex
	c.ticks(30)
	if n, _ := c.nCommitted(index); n > 0 {
		c.fatalf("%d nodes committed index %d without a majority", n, index)
	}
	// Repair: the cluster agrees again; the minority leader's entry may or
	// may not survive, but agreement holds.
	for _, id := range cut {
		c.connect(id)
	}
	c.checkOneLeader()
	c.one("30", 5)
	c.one("1000", 5)
	c.checkLogsAgree()
}

func TestScenarioConcurrentProposals(t *testing.T) {
	c := newCluster(t, 3, 61)
	l := c.checkOneLeader()
	r := c.node(l).r
	start := r.Status().LastIndex
	const n = 100
	for i := range n {
		if err := r.Propose(consensus.Command{Data: fmt.Appendf(nil, "c%d", i)}); err != nil {
			c.fatalf("propose %d: %v", i, err)
		}
	}
	c.waitCommitted(start+n, 3, 50)
	// Proposed in one tick, committed in order.
	for i := range n {
		e, _ := r.Entry(start + 1 + uint64(i))
		if got, want := string(e.Command.Data), fmt.Sprintf("c%d", i); got != want {
			c.fatalf("index %d holds %q, want %q", e.Index, got, want)
		}
	}
	c.checkLogsAgree()
}

func TestScenarioRejoin(t *testing.T) {
	c := newCluster(t, 3, 71)
	c.one("101", 3)
	l1 := c.checkOneLeader()
	// The leader is partitioned and takes proposals it cannot commit.
	c.disconnect(l1)
	for _, d := range []string{"102", "103", "104"} {
		if err := c.node(l1).r.Propose(consensus.Command{Data: []byte(d)}); err != nil {
			// With check-quorum it may already have stepped down; fine.
			break
		}
	}
	// The others elect a new leader and commit.
	c.one("103", 2)
	l2 := c.checkOneLeader()
	// The new leader is partitioned; the old one returns.
	c.disconnect(l2)
	c.connect(l1)
	c.one("104", 2)
	// Everyone returns.
	c.connect(l2)
	c.one("105", 3)
	c.checkLogsAgree()
	// Nothing the old leader took alone was committed.
	for _, e := range c.committed {
		if string(e.Command.Data) == "102" {
			c.fatalf("uncommitted entry 102 of the partitioned leader became committed")
		}
	}
}

// TestScenarioBackup is the lab's "leader backs up quickly over incorrect
// follower logs": 50+ conflicting entries each way.
func TestScenarioBackup(t *testing.T) {
	c := newCluster(t, 5, 81)
	c.one("start", 5)
	l := c.checkOneLeader()

	// Put the leader and one follower in a partition.
	f1 := consensus.NodeID(l%5 + 1)
	c.partition(l, f1)
	// Lots of proposals that won't commit.
	for i := range 50 {
		_ = c.node(l).r.Propose(consensus.Command{Data: fmt.Appendf(nil, "lost-%d", i)})
	}
	c.ticks(5)

	// The other three elect a leader and commit lots.
	var rest []consensus.NodeID
	for id := consensus.NodeID(1); id <= 5; id++ {
		if id != l && id != f1 {
			rest = append(rest, id)
		}
	}
	c.partition(rest...)
	for i := range 50 {
		c.one(fmt.Sprintf("ok-%d", i), 3)
	}

	// Now another partitioned leader and one follower.
	l2 := c.checkOneLeader()
	var other consensus.NodeID
	for _, id := range rest {
		if id != l2 {
			other = id
			break
		}
	}
	c.partition(l2, other)
	c.disconnect(rest[0] + rest[1] + rest[2] - l2 - other) // the third of rest
	for i := range 50 {
		_ = c.node(l2).r.Propose(consensus.Command{Data: fmt.Appendf(nil, "lost2-%d", i)})
	}
	c.ticks(5)

	// Bring the original leader and follower back, with the third.
	third := rest[0] + rest[1] + rest[2] - l2 - other
	c.heal()
	c.disconnect(l2)
	c.disconnect(other)
	c.connect(third)
	before := c.delivered
	for i := range 50 {
		c.one(fmt.Sprintf("ok2-%d", i), 3)
	}

	// Everyone together.
	c.heal()
	c.one("end", 5)
	c.checkLogsAgree()
	if c.delivered-before > 20000 {
		c.fatalf("backing up took %d messages", c.delivered-before)
	}
}

func TestScenarioPersist(t *testing.T) {
	c := newCluster(t, 3, 91)
	c.one("11", 3)

	// Crash and restart all.
	for id := consensus.NodeID(1); id <= 3; id++ {
		c.restart(id)
	}
	c.one("12", 3)

	// Restart the leader.
	l := c.checkOneLeader()
	c.restart(l)
	c.one("13", 3)

	// Crash the leader; the rest go on; it comes back.
	l = c.checkOneLeader()
	c.crash(l)
	c.one("14", 2)
	c.restart(l)
	c.waitCommitted(uint64(len(c.committed)), 3, 100)

	// Crash a majority, one at a time, while committing.
	l = c.checkOneLeader()
	f := consensus.NodeID(l%3 + 1)
	c.crash(f)
	c.one("15", 2)
	c.crash(l)
	c.ticks(30)
	c.checkNoLeader() // one of three is up
	c.restart(f)
	c.one("16", 2)
	c.restart(l)
	c.one("17", 3)
	c.checkLogsAgree()
}

func TestScenarioPersistMajorityAndAll(t *testing.T) {
	c := newCluster(t, 5, 95)
	for round := range 6 {
		c.one(fmt.Sprintf("r%d-a", round), 5)
		l := c.checkOneLeader()
		// Crash a majority including the leader.
		victims := []consensus.NodeID{l}
		for _, p := range c.rng.Perm(5) {
			if id := consensus.NodeID(p + 1); id != l && len(victims) < 3 {
				victims = append(victims, id)
			}
		}
		for _, id := range victims {
			c.crash(id)
		}
		c.ticks(20)
		c.checkNoLeader()
		for _, id := range victims {
			c.restart(id)
		}
		c.one(fmt.Sprintf("r%d-b", round), 5)
		// Crash everyone.
		for id := consensus.NodeID(1); id <= 5; id++ {
			c.crash(id)
		}
		for id := consensus.NodeID(1); id <= 5; id++ {
			c.restart(id)
		}
		// Everything committed comes back on every node.
		c.waitCommitted(uint64(len(c.committed)), 5, 200)
	}
	c.checkLogsAgree()
}

// TestScenarioFigure8Unreliable: crashes, partitions, loss, duplication and
// reordering, with the safety checker on every Ready; then the network
// heals and the cluster must commit again.
func TestScenarioFigure8Unreliable(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			c := newCluster(t, 5, 100+seed)
			c.maxDelay, c.loss, c.dup = 3, 0.1, 0.05
			c.one("start", 1)
			figure8(c, 600)
			// Repair everything: the cluster must make progress.
			c.loss, c.dup, c.maxDelay = 0, 0, 0
			c.heal()
			for _, nd := range c.nodes {
				if !nd.up {
					c.restart(nd.id)
				}
			}
			c.one("end", 5)
			c.checkLogsAgree()
			t.Logf("%d ticks, %d messages delivered, %d entries committed, %d terms with a leader", c.now, c.delivered, len(c.committed), len(c.leaders))
		})
	}
}

// TestScenarioChurn: random crashes, restarts, disconnections and proposals
// everywhere; then repair and check that every node agrees.
func TestScenarioChurn(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			c := newCluster(t, 5, 200+seed)
			c.maxDelay, c.loss = 2, 0.05
			faulty := func() int {
				n := 0
				for _, nd := range c.nodes {
					if !c.connected(nd.id) {
						n++
					}
				}
				return n
			}
			for iter := range 400 {
				id := consensus.NodeID(c.rng.IntN(5) + 1)
				nd := c.node(id)
				if c.rng.IntN(100) < 15 {
					// Repair a faulty node, or fault a healthy one while at
					// most two are faulty (a quorum of three stays up, though
					// its leader changes).
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
				// Propose at the leader if there is one, else anywhere.
				if l, ok := c.leader(); ok {
					nd = c.node(l)
				}
				if nd.up {
					_ = nd.r.Propose(consensus.Command{Data: fmt.Appendf(nil, "%d-%d", nd.id, iter)})
					if c.rng.IntN(4) == 0 {
						_ = c.readIndex(nd.id)
					}
				}
				c.ticks(1)
			}
			c.loss, c.maxDelay = 0, 0
			c.heal()
			for _, nd := range c.nodes {
				if !nd.up {
					c.restart(nd.id)
				}
			}
			c.one("final", 5)
			c.checkLogsAgree()
			t.Logf("%d ticks, %d messages delivered, %d entries committed, %d terms with a leader", c.now, c.delivered, len(c.committed), len(c.leaders))
			if len(c.committed) < 100 {
				c.fatalf("only %d entries committed under churn", len(c.committed))
			}
			if c.readsDone < 20 {
				c.fatalf("only %d reads confirmed under churn", c.readsDone)
			}
		})
	}
}

// figure8 drives the lab's Figure 8 pattern: propose everywhere, crash the
// leader often, restart nodes, partition at random, over whatever network
// faults c has.
func figure8(c *cluster, iters int) {
	cmd := 0
	for iter := 0; iter < iters; iter++ {
		// Propose on whatever node leads.
		for _, nd := range c.nodes {
			if nd.up {
				cmd++
				_ = nd.r.Propose(consensus.Command{Data: fmt.Appendf(nil, "x%d", cmd)})
			}
		}
		if c.rng.IntN(100) < 10 {
			c.ticks(c.rng.IntN(20))
		} else {
			c.ticks(c.rng.IntN(3))
		}
		if l, ok := c.leader(); ok && c.rng.IntN(100) < 50 {
			c.crash(l)
		}
		upCount := 0
		for _, nd := range c.nodes {
			if nd.up {
				upCount++
			}
		}
		if upCount < 3 {
			for _, p := range c.rng.Perm(len(c.nodes)) {
				if nd := c.nodes[p]; !nd.up {
					c.restart(nd.id)
					break
				}
			}
		}
		n := len(c.nodes)
		if c.rng.IntN(100) < 10 {
			c.partition(consensus.NodeID(c.rng.IntN(n)+1), consensus.NodeID(c.rng.IntN(n)+1))
		} else if c.rng.IntN(100) < 30 {
			c.heal()
		}
	}
}

package epaxos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// recoveryCluster is a cluster with a short recovery timeout and seeded
// jitter.
func recoveryCluster(t *testing.T, n int, seed uint64) *cluster {
	return newCluster(t, n, seed, recoveryConfig(seed))
}

// recoveryConfig sets a short recovery timeout and seeded jitter.
func recoveryConfig(seed uint64) func(*Config) {
	return func(cfg *Config) {
		cfg.RecoveryTimeoutTicks = 12
		cfg.Rand = rand.New(rand.NewPCG(seed, uint64(cfg.ID)))
	}
}

// deliverWhere delivers, in queue order and without loss, the queued
// messages f selects (and only those present when it is called).
func (c *cluster) deliverWhere(f func(m consensus.Message, p *Msg) bool) {
	var pick, keep []consensus.Message
	for _, m := range c.queue {
		if f(m, m.Payload.(*Msg)) {
			pick = append(pick, m)
		} else {
			keep = append(keep, m)
		}
	}
	c.queue = keep
	for _, m := range pick {
		nd := c.nodes[m.To-1]
		if nd.down || c.drop != nil && c.drop(m) {
			continue
		}
		if err := nd.r.Step(m); err != nil {
			c.t.Fatal(err)
		}
		c.process(nd)
	}
}

// settle delivers everything (randomly ordered, lossless except drop) and
// ticks live nodes until every live node has every instance it knows
// committed, drives nothing and has executed all it can.
func (c *cluster) settle() {
	for round := 0; ; round++ {
		for len(c.queue) > 0 {
			c.deliverOne(false)
		}
		done := true
		anyDown := slices.ContainsFunc(c.nodes, func(nd *tnode) bool { return nd.down })
		for _, nd := range c.nodes {
			if nd.down {
				continue
			}
			for i := 0; i < 1000 && nd.r.exec.busy(); i++ {
				c.process(nd)
			}
			if len(nd.r.uncommitted) > 0 || nd.r.exec.busy() || len(nd.r.exec.waiting) > 0 {
				done = false
			}
			for id := range nd.r.active {
				if nd.r.insts[id].Status != StatusCommitted || !anyDown {
					done = false // commits to a crashed node are resent forever
				}
			}
		}
		if done {
			return
		}
		if round > 3000 {
			for _, nd := range c.nodes {
				if !nd.down {
					c.t.Logf("node %d: %d uncommitted, %d active, waiting %v", nd.id, len(nd.r.uncommitted), len(nd.r.active), nd.r.exec.waiting)
					for id := range nd.r.uncommitted {
						c.t.Logf("  %v", nd.r.insts[id].Instance)
					}
				}
			}
			c.fatalf("cluster did not settle")
		}
		for _, nd := range c.nodes {
			if !nd.down {
				nd.r.Tick()
				c.process(nd)
			}
		}
	}
}

// checkAgree verifies, over live nodes: each executed the same set of
// commands, each once; conflicting commands in the same order; every
// instance committed with the same attributes (no-op or command)
// everywhere. Commands replaced by no-ops are allowed (a client would
// retry them) unless wantAll.
func (c *cluster) checkAgree(wantAll bool) {
	var ref *tnode
	for _, nd := range c.nodes {
		if nd.down {
			continue
		}
		seen := map[string]bool{}
		for _, e := range nd.executed {
			if seen[string(e.Command.Data)] {
				c.fatalf("node %d executed %s twice", nd.id, e.Command.Data)
			}
			seen[string(e.Command.Data)] = true
		}
		if wantAll && len(seen) != c.proposed {
			c.fatalf("node %d executed %d commands of %d", nd.id, len(seen), c.proposed)
		}
		if ref == nil {
			ref = nd
			continue
		}
		for id, it := range nd.r.insts {
			o := ref.r.insts[id]
			if o == nil || o.Status != StatusCommitted || it.Status != StatusCommitted {
				continue
			}
			if o.NoOp != it.NoOp || o.Seq != it.Seq || !slices.Equal(o.Deps, it.Deps) || string(o.Command.Data) != string(it.Command.Data) {
				c.fatalf("instance %v committed differently: node %d %v, node %d %v", id, ref.id, o.Instance, nd.id, it.Instance)
			}
		}
		if a, b, bad := unordered(nd.r); bad {
			c.fatalf("node %d: conflicting %v and %v committed with no path between them; space: %s", nd.id, nd.r.insts[a].Instance, nd.r.insts[b].Instance, dumpSpace(nd.r, 2))
		}
		if a, b, bad := withoutDirectEdge(nd.r); bad {
			c.fatalf("node %d: conflicting %v and %v committed without a direct edge (neither depends on the other or on a later instance of its space); the executor's pruning relies on one", nd.id, nd.r.insts[a].Instance, nd.r.insts[b].Instance)
		}
		if len(nd.executed) != len(ref.executed) {
			c.fatalf("node %d executed %d commands, node %d %d", nd.id, len(nd.executed), ref.id, len(ref.executed))
		}
		rk := perKey(ref.executed)
		for k, order := range perKey(nd.executed) {
			if !slices.Equal(order, rk[k]) {
				c.fatalf("key %s: node %d executed %v, node %d %v", k, nd.id, order, ref.id, rk[k])
			}
		}
		for id, it := range nd.r.insts {
			o := ref.r.insts[id]
			if o == nil || o.Status != StatusCommitted || it.Status != StatusCommitted {
				continue
			}
			if o.NoOp != it.NoOp || o.Seq != it.Seq || !slices.Equal(o.Deps, it.Deps) || string(o.Command.Data) != string(it.Command.Data) {
				c.fatalf("instance %v committed differently: node %d %v, node %d %v", id, ref.id, o.Instance, nd.id, it.Instance)
			}
		}
	}
}

func isType(t MsgType) func(consensus.Message, *Msg) bool {
	return func(_ consensus.Message, p *Msg) bool { return p.Type == t }
}

// TestRecoveryLeaderCrashAfterPreAcceptToMinority: the leader's PreAccept
// reaches one replica, then it crashes; conflicting commands follow. The
// instance is recovered (command or no-op) and every replica, the
// restarted leader included, executes the same order.
func TestRecoveryLeaderCrashAfterPreAcceptToMinority(t *testing.T) {
	for _, n := range []int{3, 5} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("N=%d/seed=%d", n, seed), func(t *testing.T) {
				c := recoveryCluster(t, n, seed)
				l := c.nodes[0]
				c.propose(l, put("k", "x"))
				c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To == 2 })
				c.crash(l)
				for i := range 6 {
					c.propose(c.nodes[1+i%(n-1)], put("k", fmt.Sprint("y", i)))
				}
				c.settle()
				c.checkAgree(false)
				in, _ := c.nodes[1].r.Instance(InstanceID{1, 1})
				t.Logf("1.1 recovered as %v", in)
				c.restart(l)
				c.settle()
				c.checkAgree(false)
				if got := len(c.nodes[1].executed); got < 6 {
					t.Fatalf("executed %d commands, want at least the 6 of live leaders", got)
				}
			})
		}
	}
}

// TestRecoveryAfterFastCommit: the leader reaches a fast quorum and
// commits, but crashes before any Commit is sent. Recovery must commit
// the same attributes, whatever conflicting commands arrive meanwhile.
func TestRecoveryAfterFastCommit(t *testing.T) {
	for _, n := range []int{3, 5, 7} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("N=%d/seed=%d", n, seed), func(t *testing.T) {
				c := recoveryCluster(t, n, seed)
				// Some history on the key first.
				c.propose(c.nodes[1], put("k", "h"))
				c.settle()
				l := c.nodes[0]
				c.propose(l, put("k", "x"))
				id := InstanceID{1, 1}
				fq := FastQuorum(n)
				c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && int(m.To) <= fq })
				c.deliverWhere(isType(MsgPreAcceptOK))
				in, _ := l.r.Instance(id)
				if in.Status != StatusCommitted {
					t.Fatalf("leader did not fast-commit: %v", in)
				}
				c.crash(l) // its Commits are lost
				for i := range 4 {
					c.propose(c.nodes[n-1-i%(n-1)], put("k", fmt.Sprint("y", i)))
				}
				c.settle()
				c.checkAgree(true)
				for _, nd := range c.nodes[1:] {
					got, _ := nd.r.Instance(id)
					if got.Status != StatusCommitted || got.NoOp || got.Seq != in.Seq || !slices.Equal(got.Deps, in.Deps) {
						t.Fatalf("node %d recovered %v; the leader fast-committed %v", nd.id, got, in)
					}
				}
				c.restart(l)
				c.settle()
				c.checkAgree(true)
			})
		}
	}
}

// TestRecoveryAcceptedWins: the leader took the slow path and its Accept
// reached one replica before it crashed; the recoverer, whose majority
// includes that replica, must commit the accepted attributes.
func TestRecoveryAcceptedWins(t *testing.T) {
	c := recoveryCluster(t, 5, 1)
	// 2.1 pre-accepted at 2 and 3 only, unknown to the leader 1.
	c.propose(c.nodes[1], put("k", "y"))
	c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To == 3 })
	c.queue = nil
	l := c.nodes[0]
	c.propose(l, put("k", "x"))
	id := InstanceID{1, 1}
	c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To <= 3 })
	c.deliverWhere(isType(MsgPreAcceptOK))
	acc, _ := l.r.Instance(id)
	if acc.Status != StatusAccepted {
		t.Fatalf("leader did not take the slow path: %v", acc)
	}
	c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgAccept && m.To == 3 })
	c.crash(l)
	c.queue = slices.DeleteFunc(c.queue, func(m consensus.Message) bool { return m.Payload.(*Msg).ID == id })
	// Node 3 holds the Accept and recovers.
	c.nodes[2].r.startRecovery(id)
	c.process(c.nodes[2])
	c.settle()
	c.checkAgree(false)
	for _, nd := range c.nodes[1:] {
		got, _ := nd.r.Instance(id)
		if got.Status != StatusCommitted || got.NoOp || got.Seq != acc.Seq || !slices.Equal(got.Deps, acc.Deps) {
			t.Fatalf("node %d committed %v; accepted was %v", nd.id, got, acc)
		}
	}
}

// TestRecoveryRacingRecoverers: several replicas recover the same
// instance at once, with message loss; one wins and nobody diverges.
func TestRecoveryRacingRecoverers(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			c := recoveryCluster(t, 5, seed)
			l := c.nodes[0]
			c.propose(l, put("k", "x"))
			c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To <= 3 })
			c.crash(l)
			c.propose(c.nodes[3], put("k", "y"))
			for _, nd := range c.nodes[1:] {
				nd.r.startRecovery(InstanceID{1, 1})
				c.process(nd)
			}
			c.loss = 20
			for range 400 {
				if len(c.queue) == 0 {
					break
				}
				c.deliverOne(true)
			}
			c.settle()
			c.checkAgree(false)
		})
	}
}

// TestRecoveryUsesAcceptedBallot (Sutra 2019): replica 2 promised a high
// ballot but accepted V1 at a low one; replicas 3 and 4 accepted V2 at a
// higher ballot (V2 may be chosen). The recoverer must take V2: the
// highest ACCEPTED ballot, not the highest promise.
func TestRecoveryUsesAcceptedBallot(t *testing.T) {
	id := InstanceID{1, 1}
	cmd := put("k", "x")
	v1 := Instance{ID: id, Status: StatusAccepted, Promised: Ballot{5, 4}, Accepted: Ballot{1, 2}, Command: cmd, Seq: 1}
	v2 := Instance{ID: id, Status: StatusAccepted, Promised: Ballot{2, 3}, Accepted: Ballot{2, 3}, Command: cmd, Seq: 7, Deps: []InstanceID{{3, 9}}}
	dep := Instance{ID: InstanceID{3, 9}, Status: StatusCommitted, Promised: Ballot{0, 3}, Accepted: Ballot{0, 3}, Command: put("z", "dep"), Seq: 1}
	c := recoveryCluster(t, 5, 1)
	c.proposed = 2
	state := map[consensus.NodeID][]consensus.Record{
		// 5 promised {9, 2} once (a recovery by 2 that reached only 5), so
		// its own ballot, {10, 5}, is above every promise.
		1: {dep}, 2: {dep, v1}, 3: {dep, v2}, 4: {dep, v2}, 5: {dep, Instance{ID: id, Promised: Ballot{9, 2}}},
	}
	for _, nd := range c.nodes {
		nd.durable = state[nd.id]
		c.crash(nd)
		c.restart(nd)
	}
	rec := c.nodes[4]
	rec.r.startRecovery(id)
	c.process(rec)
	// Only replicas 2 and 3 answer (with 5 itself, a majority).
	c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPrepare && (m.To == 2 || m.To == 3) })
	c.deliverWhere(isType(MsgPrepareOK))
	got, _ := rec.r.Instance(id)
	if got.Seq != v2.Seq || !slices.Equal(got.Deps, v2.Deps) {
		t.Fatalf("recoverer chose %v; want the attributes accepted at %v (%v)", got, v2.Accepted, v2)
	}
	c.settle()
	c.checkAgree(true)
}

// TestRecoveryRandomCrashes: a random workload with message loss, crashes
// and restarts (never more than F down), then everything restarts: all
// instances commit and every replica executes conflicting commands in the
// same order.
func TestRecoveryRandomCrashes(t *testing.T) {
	seeds := 6
	if n := os.Getenv("EPAXOS_RECOVERY_SEEDS"); n != "" {
		seeds, _ = strconv.Atoi(n)
	}
	if testing.Short() {
		seeds = 3
	}
	for _, n := range []int{3, 5, 7} {
		for seed := range uint64(seeds) {
			t.Run(fmt.Sprintf("N=%d/seed=%d", n, seed), func(t *testing.T) {
				randomCrashRun(t, n, seed, nil)
			})
		}
	}
}

// TestTryPreAcceptConflictAll: a replica asked to pre-accept attributes
// that may have been fast-committed refuses when it holds a conflicting
// instance with no edge to or from them, ConflictAll on either side
// conflicting with any key, and accepts when nothing conflicts.
func TestTryPreAcceptConflictAll(t *testing.T) {
	all := []string{consensus.ConflictAll}
	for _, c := range []struct {
		held, tried []string
		refuse      bool
	}{
		{held: all, tried: []string{"a"}, refuse: true},
		{held: []string{"b"}, tried: all, refuse: true},
		{held: all, tried: all, refuse: true},
		{held: []string{"b"}, tried: []string{"a"}, refuse: false},
		{held: nil, tried: all, refuse: false},
	} {
		held := Instance{ID: InstanceID{3, 1}, Status: StatusPreAccepted, Promised: Ballot{Node: 3}, Accepted: Ballot{Node: 3},
			Command: consensus.Command{Keys: c.held, Data: []byte("held")}, Seq: 1}
		r := newReplica(t, 2, 3, []consensus.Record{held})
		reply(t, r, 3, &Msg{Type: MsgTryPreAccept, Ballot: Ballot{Round: 1, Node: 3}, ID: InstanceID{1, 1},
			Command: consensus.Command{Keys: c.tried, Data: []byte("tried")}, Seq: 1})
		got := takeMsgs(r, MsgTryPreAcceptOK)
		if len(got) != 1 {
			t.Fatalf("held %q, tried %q: %d replies", c.held, c.tried, len(got))
		}
		if got[0].Changed != c.refuse || c.refuse && !slices.Equal(got[0].Deps, []InstanceID{held.ID}) {
			t.Errorf("held %q, tried %q: reply %v; want refused=%t citing %v", c.held, c.tried, got[0], c.refuse, held.ID)
		}
	}
}

// TestRecoveryRandomCrashesConflictAll: as TestRecoveryRandomCrashes, with
// one command in six conflicting with everything, so that recovery
// (TryPreAccept's conflict check included) meets ConflictAll instances.
func TestRecoveryRandomCrashesConflictAll(t *testing.T) {
	seeds := 3
	if testing.Short() {
		seeds = 2
	}
	for _, n := range []int{3, 5} {
		for seed := range uint64(seeds) {
			t.Run(fmt.Sprintf("N=%d/seed=%d", n, seed), func(t *testing.T) {
				randomCrashRun(t, n, seed, func(c *cluster) { c.conflictAll = 16 })
			})
		}
	}
}

// randomCrashRun: a random workload with message loss, crashes and
// restarts (never more than F down), then everything restarts and settles.
func randomCrashRun(t *testing.T, n int, seed uint64, adjust func(*cluster)) {
	c := recoveryCluster(t, n, seed)
	if adjust != nil {
		adjust(c)
	}
	c.loss, c.dup = 15, 5
	for range 1500 {
		var live []*tnode
		down := 0
		for _, nd := range c.nodes {
			if nd.down {
				down++
			} else {
				live = append(live, nd)
			}
		}
		switch x := c.rng.IntN(100); {
		case x < 10:
			nd := live[c.rng.IntN(len(live))]
			cmd := put(fmt.Sprint("k", c.rng.IntN(3)), fmt.Sprintf("%d:%d", nd.id, c.proposed))
			if c.rng.IntN(100) < c.conflictAll {
				cmd.Keys = []string{consensus.ConflictAll}
			}
			if nd.r.Propose(cmd) == nil {
				c.proposed++
			}
			c.process(nd)
		case x < 30:
			nd := live[c.rng.IntN(len(live))]
			nd.r.Tick()
			c.process(nd)
		case x < 31:
			if down < MaxFailures(n) {
				c.crash(live[c.rng.IntN(len(live))])
			}
		case x < 33:
			for _, nd := range c.nodes {
				if nd.down {
					c.restart(nd)
					break
				}
			}
		default:
			if len(c.queue) > 0 {
				c.deliverOne(true)
			}
		}
	}
	for _, nd := range c.nodes {
		if nd.down {
			c.restart(nd)
		}
	}
	c.settle()
	c.checkAgree(false)
}

// withoutDirectEdge finds two committed conflicting commands of which
// neither depends on the other or on a later instance of the other's
// space: a violation of the invariant (I) of the package doc.
func withoutDirectEdge(r *Replica) (InstanceID, InstanceID, bool) {
	var ids []InstanceID
	for id, it := range r.insts {
		if it.Status == StatusCommitted && !it.NoOp {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, InstanceID.Compare)
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			ia, ib := r.insts[a], r.insts[b]
			if a.Replica == b.Replica || !keysConflict(ia.keys, ib.keys) {
				continue
			}
			if !covers(ia.Deps, b) && !covers(ib.Deps, a) {
				return a, b, true
			}
		}
	}
	return InstanceID{}, InstanceID{}, false
}

// unordered finds two committed conflicting commands with no dependency
// path between them (following explicit deps and the same-space chain,
// before the executor prunes any edge).
func unordered(r *Replica) (InstanceID, InstanceID, bool) {
	reach := func(from, to InstanceID) bool {
		seen := map[InstanceID]bool{from: true}
		stack := []InstanceID{from}
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if x == to {
				return true
			}
			it := r.insts[x]
			for _, d := range append(slices.Clone(it.Deps), chainPredecessor(it.ID)) {
				if !seen[d] && r.insts[d] != nil {
					seen[d] = true
					stack = append(stack, d)
				}
			}
		}
		return false
	}
	var ids []InstanceID
	for id, it := range r.insts {
		if it.Status == StatusCommitted && !it.NoOp {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, InstanceID.Compare)
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			if !keysConflict(r.insts[a].Command.Keys, r.insts[b].Command.Keys) {
				continue
			}
			if !reach(a, b) && !reach(b, a) {
				return a, b, true
			}
		}
	}
	return InstanceID{}, InstanceID{}, false
}

func dumpSpace(r *Replica, rep consensus.NodeID) string {
	var out []string
	for id, it := range r.insts {
		if id.Replica == rep {
			out = append(out, it.Instance.String())
		}
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}

package epaxos

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// cluster is a deterministic in-memory harness: each node's Readys are
// handled in the documented order (persist, send, apply); messages wait in
// a queue and are delivered in a seeded random order, lost or duplicated.
// Nodes may crash (crash drops a node's in-memory state and its queued
// messages; restart rebuilds it from its records with New), and a test
// may drop chosen messages (drop).
type cluster struct {
	t     *testing.T
	rng   *rand.Rand
	nodes []*tnode
	queue []consensus.Message
	// loss and dup are per-message probabilities in percent.
	loss, dup int
	// conflictAll is the percentage of proposals in run that conflict
	// with everything (consensus.ConflictAll, alone or with a key).
	conflictAll int
	// burstMax, if set, makes run propose bursts of 1 to burstMax
	// commands between two Readys, each with a session (and one in ten
	// without keys); sessions records them, and check verifies that
	// every executed command keeps its own.
	burstMax int
	sessions map[string]consensus.Session
	proposed int
	// drop, if set, loses every message it returns true for.
	drop func(m consensus.Message) bool
	// fatalf reports a violation (t.Fatalf unless a test catches it).
	fatalf func(format string, args ...any)
}

type tnode struct {
	id       consensus.NodeID
	cfg      Config
	r        *Replica
	durable  []consensus.Record
	executed []consensus.Entry
	down     bool
	// snaps, when snapshots are on (withSnapshots), is the node's snapshot
	// store; its state machine is executed, which a snapshot holds whole.
	snaps *memSnaps
	// snapshots and installs count the snapshots taken and installed.
	snapshots, installs int
}

// crash stops nd: its in-memory state and the messages queued for it are
// lost; its records stay.
func (c *cluster) crash(nd *tnode) {
	nd.down = true
	nd.r = nil
	c.queue = slices.DeleteFunc(c.queue, func(m consensus.Message) bool { return m.To == nd.id || m.From == nd.id })
}

// restart rebuilds nd from its records (each through the codec); it
// executes everything again from index 1.
func (c *cluster) restart(nd *tnode) {
	var recs []consensus.Record
	for _, rec := range nd.durable {
		buf, err := Codec.AppendRecord(nil, rec)
		if err != nil {
			c.t.Fatal(err)
		}
		got, err := Codec.DecodeRecord(buf)
		if err != nil {
			c.t.Fatal(err)
		}
		recs = append(recs, got)
	}
	cfg := nd.cfg
	if nd.snaps != nil {
		cfg.Snapshots = nd.snaps
	}
	r, err := New(cfg, recs)
	if err != nil {
		c.t.Fatal(err)
	}
	nd.r, nd.down, nd.executed = r, false, nil
	// The state machine starts from the snapshot the newest checkpoint
	// names.
	if base, ok := newestCheckpoint(recs); ok && nd.snaps != nil {
		nd.executed = nd.snaps.state(c.t, base.Index, base.Term)
	}
	c.process(nd)
}

// newestCheckpoint returns the snapshot the newest checkpoint in recs
// builds on.
func newestCheckpoint(recs []consensus.Record) (consensus.SnapshotMeta, bool) {
	for i := len(recs) - 1; i >= 0; i-- {
		if cp, ok := recs[i].(Checkpoint); ok {
			return cp.Snapshot, true
		}
	}
	return consensus.SnapshotMeta{}, false
}

func newCluster(t *testing.T, n int, seed uint64, adjust ...func(*Config)) *cluster {
	c := &cluster{t: t, rng: rand.New(rand.NewPCG(seed, 99)), fatalf: t.Fatalf}
	for _, id := range ids(n) {
		cfg := DefaultConfig(id, ids(n))
		for _, f := range adjust {
			f(&cfg)
		}
		r, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, &tnode{id: id, cfg: cfg, r: r})
	}
	return c
}

// withSnapshots gives every node of a new cluster a snapshot store and
// asks for a snapshot every entries executed commands.
func (c *cluster) withSnapshots(entries, chunkBytes int) {
	for _, nd := range c.nodes {
		nd.snaps = &memSnaps{}
		nd.cfg.SnapshotEntries, nd.cfg.SnapshotChunkBytes = entries, chunkBytes
		cfg := nd.cfg
		cfg.Snapshots = nd.snaps
		r, err := New(cfg, nil)
		if err != nil {
			c.t.Fatal(err)
		}
		nd.r = r
	}
}

func (c *cluster) process(nd *tnode) {
	rd := nd.r.Ready()
	nd.durable = append(nd.durable, rd.Persist...)
	if nd.snaps != nil {
		// A durable checkpoint releases every record before it.
		for i := len(nd.durable) - 1; i >= 0; i-- {
			if isCheckpoint(nd.durable[i]) {
				nd.durable = slices.Clone(nd.durable[i:])
				break
			}
		}
	}
	for _, m := range rd.Messages {
		// Every message goes through the codec, as on a real transport.
		buf, err := MessageCodec.AppendMessage(nil, m.Payload)
		if err != nil {
			c.t.Fatal(err)
		}
		p, err := MessageCodec.DecodeMessage(buf)
		if err != nil {
			c.t.Fatal(err)
		}
		m.Payload = p
		c.queue = append(c.queue, m)
	}
	if rd.Restore != nil {
		nd.executed = nd.snaps.state(c.t, rd.Restore.Index, rd.Restore.Term)
		nd.installs++
	}
	for _, e := range rd.Committed {
		if e.Index != uint64(len(nd.executed))+1 || e.Term != 0 {
			c.t.Fatalf("node %d executed index %d term %d, want %d and 0", nd.id, e.Index, e.Term, len(nd.executed)+1)
		}
		nd.executed = append(nd.executed, e)
	}
	nd.r.Advance(rd)
	if rd.SnapshotWanted && nd.snaps != nil {
		c.snapshot(nd)
	}
}

// snapshot saves nd's state machine and compacts behind it, as a host
// does after a Ready with SnapshotWanted.
func (c *cluster) snapshot(nd *tnode) {
	index := uint64(len(nd.executed))
	meta, err := nd.r.DescribeSnapshot(index)
	if err != nil {
		c.t.Fatal(err)
	}
	if newest, ok := nd.snaps.Newest(); ok && (newest.Index > meta.Index || newest.Index == meta.Index && newest.Term >= meta.Term) {
		return
	}
	nd.snaps.save(meta, encodeEntries(nd.executed))
	if err := nd.r.Compact(meta); err != nil {
		c.t.Fatal(err)
	}
	nd.snapshots++
}

func (c *cluster) processAll() {
	for _, nd := range c.nodes {
		if !nd.down {
			c.process(nd)
		}
	}
}

// deliverOne delivers (or loses, or duplicates) a random queued message.
func (c *cluster) deliverOne(lossy bool) {
	i := c.rng.IntN(len(c.queue))
	m := c.queue[i]
	c.queue[i] = c.queue[len(c.queue)-1]
	c.queue = c.queue[:len(c.queue)-1]
	if lossy && c.rng.IntN(100) < c.loss {
		return
	}
	if lossy && c.rng.IntN(100) < c.dup {
		c.queue = append(c.queue, m)
	}
	if c.drop != nil && c.drop(m) {
		return
	}
	nd := c.nodes[m.To-1]
	if nd.down {
		return
	}
	if err := nd.r.Step(m); err != nil {
		c.t.Fatal(err)
	}
	c.process(nd)
}

func (c *cluster) propose(nd *tnode, cmd consensus.Command) {
	if err := nd.r.Propose(cmd); err != nil {
		c.t.Fatal(err)
	}
	c.proposed++
	c.process(nd)
}

// run runs a random workload of ops steps on keys keys, then heals the
// network and runs until every command executed everywhere.
func (c *cluster) run(ops, keys int) {
	for range ops {
		switch x := c.rng.IntN(100); {
		case x < 15:
			nd := c.nodes[c.rng.IntN(len(c.nodes))]
			if nd.down {
				continue
			}
			burst := 1
			if c.burstMax > 0 {
				burst = 1 + c.rng.IntN(c.burstMax)
			}
			for range burst {
				k := fmt.Sprint("k", c.rng.IntN(keys))
				cmd := put(k, fmt.Sprintf("%d:%d", nd.id, c.proposed))
				if c.rng.IntN(5) == 0 { // a two-key command
					cmd.Keys = append(cmd.Keys, fmt.Sprint("k", c.rng.IntN(keys)))
				}
				if c.rng.IntN(100) < c.conflictAll {
					cmd.Keys = []string{consensus.ConflictAll}
					if c.rng.IntN(2) == 0 {
						cmd.Keys = append(cmd.Keys, k)
					}
				}
				if c.burstMax == 0 {
					c.propose(nd, cmd)
					continue
				}
				if c.rng.IntN(10) == 0 {
					cmd.Keys = nil
				}
				if c.sessions == nil {
					c.sessions = map[string]consensus.Session{}
				}
				cmd.Session = consensus.Session{ClientID: uint64(nd.id), Seq: uint64(c.proposed + 1)}
				c.sessions[string(cmd.Data)] = cmd.Session
				if err := nd.r.Propose(cmd); err != nil {
					c.t.Fatal(err)
				}
				c.proposed++
			}
			if c.burstMax > 0 {
				c.process(nd)
			}
		case x < 25:
			nd := c.nodes[c.rng.IntN(len(c.nodes))]
			if nd.down {
				continue
			}
			nd.r.Tick()
			c.process(nd)
		default:
			if len(c.queue) > 0 {
				c.deliverOne(true)
			}
		}
	}
	for round := 0; ; round++ {
		for len(c.queue) > 0 {
			c.deliverOne(false)
		}
		done := true
		anyDown := slices.ContainsFunc(c.nodes, func(nd *tnode) bool { return nd.down })
		for _, nd := range c.nodes {
			// With a node down, commits wait for its acknowledgement.
			if !nd.down && (len(nd.executed) != c.proposed || len(nd.r.active) > 0 && !anyDown || nd.r.receiving()) {
				done = false
			}
		}
		if done {
			break
		}
		if round > 200 {
			for _, nd := range c.nodes {
				if !nd.down {
					c.t.Logf("node %d executed %d of %d; %d active; executed %v, waiting for %v", nd.id, len(nd.executed), c.proposed, len(nd.r.active), nd.r.executedTo, slices.Collect(maps.Keys(nd.r.exec.waiting)))
				}
			}
			c.fatalf("cluster did not execute every command after healing")
		}
		for _, nd := range c.nodes {
			if nd.down {
				continue
			}
			nd.r.Tick()
			c.process(nd)
			// A host keeps calling Ready while the executor has work (it
			// would, after every Tick and Step); bound it per round.
			for i := 0; i < 1000 && nd.r.exec.busy(); i++ {
				c.process(nd)
			}
		}
	}
}

// perKey projects an execution onto each key: the commands touching it,
// in execution order. A ConflictAll command touches every key (its own
// projection, under ConflictAll, holds the ConflictAll commands alone), so
// comparing projections compares the order of every conflicting pair.
func perKey(ents []consensus.Entry) map[string][]string {
	out := map[string][]string{}
	for _, e := range ents {
		for _, k := range e.Command.Keys {
			out[k] = nil
		}
	}
	for _, e := range ents {
		keys := e.Command.Keys
		if conflictsWithAll(keys) {
			keys = slices.Collect(maps.Keys(out))
		}
		for _, k := range keys {
			out[k] = append(out[k], string(e.Command.Data))
		}
	}
	return out
}

// check verifies: every replica executed every proposed command exactly
// once; conflicting commands in the same order everywhere; committed
// attributes agree; and a replica rebuilt from its records executes in
// the same order.
func (c *cluster) check() {
	ref := perKey(c.nodes[0].executed)
	for _, nd := range c.nodes {
		seen := map[string]bool{}
		for _, e := range nd.executed {
			if seen[string(e.Command.Data)] {
				c.fatalf("node %d executed %s twice", nd.id, e.Command.Data)
			}
			seen[string(e.Command.Data)] = true
			if s, ok := c.sessions[string(e.Command.Data)]; c.sessions != nil && (!ok || s != e.Command.Session) {
				c.fatalf("node %d executed %s with session %+v; it was proposed with %+v", nd.id, e.Command.Data, e.Command.Session, s)
			}
		}
		if len(seen) != c.proposed {
			c.fatalf("node %d executed %d distinct commands of %d", nd.id, len(seen), c.proposed)
		}
		for k, order := range perKey(nd.executed) {
			if !slices.Equal(order, ref[k]) {
				c.fatalf("key %s: node %d executed %v, node 1 %v", k, nd.id, order, ref[k])
			}
		}
		if a, b, bad := withoutDirectEdge(nd.r); bad {
			c.fatalf("node %d: conflicting %v and %v committed without a direct edge", nd.id, nd.r.insts[a].Instance, nd.r.insts[b].Instance)
		}
		for id, it := range nd.r.insts {
			if it.Status != StatusCommitted {
				c.fatalf("node %d: instance %v is %v after healing", nd.id, id, it.Status)
			}
			o := c.nodes[0].r.insts[id]
			if o == nil {
				continue // compacted there
			}
			if o.Seq != it.Seq || !slices.Equal(o.Deps, it.Deps) || string(o.Command.Data) != string(it.Command.Data) {
				c.fatalf("instance %v committed differently: node 1 %v, node %d %v", id, o.Instance, nd.id, it.Instance)
			}
		}
	}
	// Rebuild the last node from its records (each through the codec).
	nd := c.nodes[len(c.nodes)-1]
	var recs []consensus.Record
	for _, rec := range nd.durable {
		buf, err := Codec.AppendRecord(nil, rec)
		if err != nil {
			c.t.Fatal(err)
		}
		got, err := Codec.DecodeRecord(buf)
		if err != nil {
			c.t.Fatal(err)
		}
		recs = append(recs, got)
	}
	cfg := nd.cfg
	if nd.snaps != nil {
		cfg.Snapshots = nd.snaps
	}
	r, err := New(cfg, recs)
	if err != nil {
		c.t.Fatal(err)
	}
	var again []consensus.Entry
	if base, ok := newestCheckpoint(recs); ok {
		again = nd.snaps.state(c.t, base.Index, base.Term)
	}
	for range 100000 {
		rd := r.Ready()
		again = append(again, rd.Committed...)
		r.Advance(rd)
		if len(again) == c.proposed {
			break
		}
	}
	for k, order := range perKey(again) {
		if !slices.Equal(order, ref[k]) {
			c.fatalf("key %s: rebuilt node %d executed %v, node 1 %v", k, nd.id, order, ref[k])
		}
	}
}

func TestClusterNoFaults(t *testing.T) {
	for _, n := range []int{1, 3, 5, 7, 9} {
		c := newCluster(t, n, 1)
		c.run(600, 4)
		c.check()
	}
}

// TestClusterLossyReordering: random delivery order, 20% loss, 5%
// duplication, across sizes and seeds, conflict-heavy (2 keys) and light
// (50 keys).
func TestClusterLossyReordering(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	for _, n := range []int{3, 5, 7, 9} {
		for _, keys := range []int{2, 50} {
			for seed := range uint64(seeds) {
				t.Run(fmt.Sprintf("N=%d/keys=%d/seed=%d", n, keys, seed), func(t *testing.T) {
					c := newCluster(t, n, seed, func(cfg *Config) { cfg.ExecuteStepsMax = 8 + int(seed) })
					c.loss, c.dup = 20, 5
					c.run(1500, keys)
					c.check()
				})
			}
		}
	}
}

// TestClusterConflictAll: a lossy, reordering workload over many keys in
// which one command in ten conflicts with everything. Every replica
// executes each ConflictAll command on the same side of every other
// command (check compares the per-key projections, in which a ConflictAll
// command touches every key).
func TestClusterConflictAll(t *testing.T) {
	for _, n := range []int{3, 5, 7} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("N=%d/seed=%d", n, seed), func(t *testing.T) {
				c := newCluster(t, n, seed, func(cfg *Config) { cfg.ExecuteStepsMax = 16 })
				c.loss, c.dup, c.conflictAll = 20, 5, 10
				c.run(1500, 40)
				c.check()
			})
		}
	}
}

// TestClusterFastPathWithoutConflicts: commands on distinct keys, delivered
// without loss, all commit on the fast path (no Accept is ever sent).
func TestClusterFastPathWithoutConflicts(t *testing.T) {
	for _, n := range []int{3, 5, 7, 9} {
		c := newCluster(t, n, 3)
		for i := range 40 {
			nd := c.nodes[i%n]
			c.propose(nd, put(fmt.Sprint("key", i), fmt.Sprint(i)))
			for len(c.queue) > 0 {
				for _, m := range c.queue {
					if m.Payload.(*Msg).Type == MsgAccept {
						t.Fatalf("N=%d: Accept sent for a conflict-free command", n)
					}
				}
				c.deliverOne(false)
			}
		}
		c.run(0, 1)
		c.check()
	}
}

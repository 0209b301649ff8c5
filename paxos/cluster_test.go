package paxos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// cluster is a deterministic in-memory harness: each node's Readys are
// handled in the documented order (persist, send, apply), messages wait in
// a queue until delivered, and a crash keeps exactly what was persisted.
type cluster struct {
	t     *testing.T
	nodes []*tnode
	queue []consensus.Message
	// cut[from][to] drops messages on that link.
	cut map[[2]consensus.NodeID]bool
	// chosen is every slot ever applied anywhere, for agreement.
	chosen map[uint64]consensus.Entry
}

type tnode struct {
	id      consensus.NodeID
	cfg     Config
	r       *Replica
	durable []consensus.Record
	up      bool
	applied []consensus.Entry
	reads   []consensus.ReadState
	// snaps is the node's snapshot store, if snapshots are on; it survives
	// crashes (an unfinished incoming transfer does not).
	snaps *memSnapshotStore
}

// snapshotsAlways, set by TestScenariosWithSnapshots, turns snapshots on
// (with tiny thresholds) in every cluster the scenarios build.
var snapshotsAlways bool

// withSnapshots turns snapshots on: the harness snapshots a node's applied
// entries whenever its Ready asks, every entries applied entries, keeping
// retain slots behind the snapshot, in chunks of chunk bytes.
func withSnapshots(entries, retain, chunk int) func(*Config) {
	return func(cfg *Config) {
		cfg.Snapshots = &memSnapshotStore{}
		cfg.SnapshotEntries = entries
		cfg.CompactionRetainEntries = retain
		cfg.SnapshotChunkBytes = chunk
	}
}

func ids(n int) []consensus.NodeID {
	out := make([]consensus.NodeID, n)
	for i := range out {
		out[i] = consensus.NodeID(i + 1)
	}
	return out
}

// zeroRand makes every election timeout exactly E.
type zeroRand struct{}

func (zeroRand) IntN(int) int { return 0 }

func newCluster(t *testing.T, n int, seed uint64, adjust ...func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, cut: map[[2]consensus.NodeID]bool{}, chosen: map[uint64]consensus.Entry{}}
	for _, id := range ids(n) {
		cfg := DefaultConfig(id, ids(n), rand.New(rand.NewPCG(seed, uint64(id))))
		if snapshotsAlways {
			withSnapshots(3, 1, 16)(&cfg)
		}
		for _, f := range adjust {
			f(&cfg)
		}
		var snaps *memSnapshotStore
		if cfg.Snapshots != nil {
			snaps = &memSnapshotStore{} // one store per node
			cfg.Snapshots = snaps
		}
		r, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, &tnode{id: id, cfg: cfg, r: r, up: true, snaps: snaps})
	}
	return c
}

func (c *cluster) node(id consensus.NodeID) *tnode { return c.nodes[id-1] }

// process handles one Ready of node id.
func (c *cluster) process(id consensus.NodeID) bool {
	nd := c.node(id)
	if !nd.up {
		return false
	}
	rd := nd.r.Ready()
	if rd.Empty() {
		return false
	}
	if rd.Restore != nil {
		// Install the received snapshot durably before persisting.
		if err := nd.snaps.install(*rd.Restore); err != nil {
			c.t.Fatalf("node %d: %v", id, err)
		}
	}
	nd.durable = append(nd.durable, rd.Persist...)
	for _, m := range rd.Messages {
		if !c.cut[[2]consensus.NodeID{m.From, m.To}] {
			c.queue = append(c.queue, m)
		}
	}
	if rd.Restore != nil {
		nd.applied = c.loadSnapshot(nd, rd.Restore.Index)
	}
	for _, e := range rd.Committed {
		if want := uint64(len(nd.applied)) + 1; e.Index != want {
			c.t.Fatalf("node %d applied slot %d, want %d", id, e.Index, want)
		}
		if prev, ok := c.chosen[e.Index]; ok && !sameEntry(prev, e) {
			c.t.Fatalf("agreement: slot %d: node %d applied %s, another node %s", e.Index, id, FormatEntry(e), FormatEntry(prev))
		}
		c.chosen[e.Index] = e
		nd.applied = append(nd.applied, e)
	}
	nd.reads = append(nd.reads, rd.Reads...)
	nd.r.Advance(rd)
	if rd.SnapshotWanted {
		c.takeSnapshot(nd)
	}
	return true
}

// takeSnapshot saves the node's applied entries as a snapshot and compacts
// its replica behind it.
func (c *cluster) takeSnapshot(nd *tnode) {
	n := uint64(len(nd.applied))
	if n == 0 {
		return
	}
	if newest, ok := nd.snaps.Newest(); ok && newest.Index >= n {
		return
	}
	var data []byte
	for i := range nd.applied {
		data = consensus.AppendEntry(data, &nd.applied[i])
	}
	meta := consensus.SnapshotMeta{Index: n, Term: nd.applied[n-1].Term, Voters: ids(len(c.nodes))}
	nd.snaps.save(meta, data)
	if err := nd.r.Compact(meta); err != nil {
		c.t.Fatalf("node %d: Compact(%d): %v", nd.id, n, err)
	}
}

// loadSnapshot decodes the entries of the node's stored snapshot at index,
// checking them against what other nodes applied.
func (c *cluster) loadSnapshot(nd *tnode, index uint64) []consensus.Entry {
	data, ok := nd.snaps.get(index)
	if !ok {
		c.t.Fatalf("node %d: snapshot %d is not stored", nd.id, index)
	}
	d := consensus.NewDecoder(data)
	var ents []consensus.Entry
	for d.Remaining() > 0 && d.Err() == nil {
		e := d.Entry()
		if prev, ok := c.chosen[e.Index]; ok && !sameEntry(prev, e) {
			c.t.Fatalf("agreement: node %d's snapshot holds %s at slot %d, another node applied %s", nd.id, FormatEntry(e), e.Index, FormatEntry(prev))
		}
		c.chosen[e.Index] = e
		ents = append(ents, e)
	}
	if d.Err() != nil || uint64(len(ents)) != index {
		c.t.Fatalf("node %d: snapshot %d holds %d entries (%v)", nd.id, index, len(ents), d.Err())
	}
	return ents
}

func sameEntry(a, b consensus.Entry) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		a.Command.Session == b.Command.Session && string(a.Command.Data) == string(b.Command.Data)
}

// deliver steps queued messages that keep returns true for into their
// recipients; the others are dropped. It returns how many were delivered.
func (c *cluster) deliver(keep func(m consensus.Message, p *Msg) bool) int {
	q := c.queue
	c.queue = nil
	n := 0
	for _, m := range q {
		to := c.node(m.To)
		if !to.up || c.cut[[2]consensus.NodeID{m.From, m.To}] {
			continue
		}
		if keep != nil && !keep(m, m.Payload.(*Msg)) {
			continue
		}
		if err := to.r.Step(m); err != nil {
			c.t.Fatal(err)
		}
		n++
	}
	return n
}

// stabilize processes and delivers until nothing moves.
func (c *cluster) stabilize() {
	for range 10000 {
		moved := false
		for _, nd := range c.nodes {
			for c.process(nd.id) {
				moved = true
			}
		}
		if c.deliver(nil) > 0 {
			moved = true
		}
		if !moved {
			return
		}
	}
	c.t.Fatal("cluster does not stabilize")
}

// tick ticks every live node once and stabilizes.
func (c *cluster) tick(n int) {
	for range n {
		for _, nd := range c.nodes {
			if nd.up {
				nd.r.Tick()
			}
		}
		c.stabilize()
	}
}

func (c *cluster) crash(id consensus.NodeID) {
	nd := c.node(id)
	nd.up = false
	nd.r = nil
	nd.applied = nil
	nd.reads = nil
	if nd.snaps != nil {
		nd.snaps.crash() // an unfinished transfer is lost
	}
}

func (c *cluster) restart(id consensus.NodeID) {
	nd := c.node(id)
	r, err := New(nd.cfg, slices.Clone(nd.durable))
	if err != nil {
		c.t.Fatal(err)
	}
	nd.r, nd.up = r, true
	// The state machine starts from the snapshot the newest checkpoint
	// names.
	for i := len(nd.durable) - 1; i >= 0; i-- {
		if cp, ok := nd.durable[i].(consensus.Checkpoint); ok {
			if idx := cp.SnapshotIndex(); idx > 0 {
				nd.applied = c.loadSnapshot(nd, idx)
			}
			break
		}
	}
}

// isolate cuts every link to and from id; heal restores all links.
func (c *cluster) isolate(id consensus.NodeID) {
	for _, nd := range c.nodes {
		if nd.id != id {
			c.cut[[2]consensus.NodeID{id, nd.id}] = true
			c.cut[[2]consensus.NodeID{nd.id, id}] = true
		}
	}
}

func (c *cluster) heal() { clear(c.cut) }

// leaders lists the live nodes that believe they lead.
func (c *cluster) leaders() []consensus.NodeID {
	var out []consensus.NodeID
	for _, nd := range c.nodes {
		if nd.up && nd.r.role == consensus.RoleLeader {
			out = append(out, nd.id)
		}
	}
	return out
}

// waitLeader ticks until exactly one live node leads, within max ticks.
func (c *cluster) waitLeader(max int) consensus.NodeID {
	c.t.Helper()
	for i := range max {
		if l := c.leaders(); len(l) == 1 {
			return l[0]
		}
		_ = i
		c.tick(1)
	}
	c.t.Fatalf("no single leader within %d ticks: %v", max, c.leaders())
	return 0
}

func cmd(s string) consensus.Command { return consensus.Command{Data: []byte(s)} }

func (c *cluster) propose(id consensus.NodeID, data string) {
	c.t.Helper()
	if err := c.node(id).r.Propose(cmd(data)); err != nil {
		c.t.Fatalf("propose at %d: %v", id, err)
	}
}

func appliedData(nd *tnode) []string {
	var out []string
	for _, e := range nd.applied {
		if e.Type == consensus.EntryNoOp {
			out = append(out, "noop")
		} else {
			out = append(out, string(e.Command.Data))
		}
	}
	return out
}

func (c *cluster) String() string {
	s := ""
	for _, nd := range c.nodes {
		if nd.up {
			s += fmt.Sprintf("node %d %v ballot=%v promised=%v commit=%d applied=%v\n", nd.id, nd.r.role, nd.r.ballot, nd.r.promised, nd.r.commit, appliedData(nd))
		}
	}
	return s
}

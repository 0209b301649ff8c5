package raft

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// cluster is a deterministic in-test network of Raft replicas: one
// goroutine, a seeded PRNG, virtual time in ticks. It delivers messages with
// optional delay (reordering), loss and duplication, cuts links, crashes and
// restarts nodes (rebuilding them from their durable records), and checks
// safety after every Ready:
//
//   - at most one leader per term;
//   - every node commits the same entry at every index (so no committed
//     entry is ever lost or replaced, including across restarts, since a
//     restarted node re-emits its committed entries from index 1);
//   - each node hands out committed entries contiguously, without repeats.
//
// With snapshots (withSnapshots), each node gets a memSnapshotStore, answers
// SnapshotWanted by snapshotting its state machine (the list of entries it
// applied) and calling Compact, discards its durable records older than a
// checkpoint, installs received snapshots, and restarts from its newest
// checkpoint's snapshot; a restored state machine is checked entry by entry
// against the committed history.
type cluster struct {
	t     testing.TB
	seed  uint64
	rng   *rand.Rand
	nodes []*cnode // nodes[i] has ID i+1
	now   int

	// Network.
	queue    []pending
	maxDelay int     // ticks; a delay > 0 reorders messages
	loss     float64 // probability a message is dropped
	dup      float64 // probability a message is delivered twice
	// group[i]: nodes talk only within the same group; -1 = disconnected.
	group []int

	// Checker state.
	leaders   map[uint64]consensus.NodeID // term -> leader
	committed []consensus.Entry           // committed[i] is index i+1
	delivered int                         // messages delivered

	// readFloor maps a read's context to the committed history length
	// when it was issued: a linearizable read point is at least that.
	readFloor map[string]uint64
	readSeq   int
	readsDone int

	// onViolation, if set, is called instead of failing the test; it must
	// not return (it panics).
	onViolation func(msg string)
	// onReady, if set, sees every Ready a node hands out.
	onReady func(nd *cnode, rd consensus.Ready)
}

type cnode struct {
	id      consensus.NodeID
	cfg     Config
	r       *Raft
	durable []consensus.Record
	up      bool
	applied []consensus.Entry // the state machine: entries applied, from index 1
	reads   []consensus.ReadState
	store   *memSnapshotStore // nil without snapshots

	snapshots int // snapshots taken
	restores  int // snapshots received and installed
}

type pending struct {
	at  int
	msg consensus.Message
}

type clusterOpt func(*Config)

// extraClusterOpts are applied after every cluster's own options; a test
// sets it to rerun existing scenarios in another configuration.
var extraClusterOpts []clusterOpt

// snapStats counts snapshot activity across every cluster in the test
// binary, so that a test can check its scenarios exercised snapshots.
var snapStats struct{ taken, restored, chunks, checkpoints int }

func newCluster(t testing.TB, n int, seed uint64, opts ...clusterOpt) *cluster {
	t.Helper()
	c := &cluster{
		t:         t,
		seed:      seed,
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		leaders:   map[uint64]consensus.NodeID{},
		readFloor: map[string]uint64{},
		group:     make([]int, n),
	}
	peers := make([]consensus.NodeID, n)
	for i := range peers {
		peers[i] = consensus.NodeID(i + 1)
	}
	for i := range n {
		// Each node draws its jitter from its own seeded source.
		rnd := rand.New(rand.NewPCG(seed+uint64(i)+1, 7))
		cfg := DefaultConfig(peers[i], peers, rnd)
		for _, o := range opts {
			o(&cfg)
		}
		for _, o := range extraClusterOpts {
			o(&cfg)
		}
		nd := &cnode{id: peers[i], cfg: cfg, up: true}
		if _, ok := cfg.Snapshots.(wantSnapshots); ok {
			nd.store = &memSnapshotStore{}
			nd.cfg.Snapshots = nd.store
		}
		r, err := New(nd.cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		nd.r = r
		c.nodes = append(c.nodes, nd)
	}
	return c
}

func (c *cluster) fatalf(format string, args ...any) {
	c.t.Helper()
	msg := fmt.Sprintf("seed %d, tick %d: %s", c.seed, c.now, fmt.Sprintf(format, args...))
	if c.onViolation != nil {
		c.onViolation(msg)
	}
	c.t.Fatal(msg)
}

func (c *cluster) node(id consensus.NodeID) *cnode { return c.nodes[id-1] }

// linked reports whether a message from a to b gets through the partition.
func (c *cluster) linked(a, b consensus.NodeID) bool {
	ga, gb := c.group[a-1], c.group[b-1]
	return ga >= 0 && ga == gb
}

func (c *cluster) disconnect(id consensus.NodeID) { c.group[id-1] = -1 }
func (c *cluster) connect(id consensus.NodeID)    { c.group[id-1] = 0 }

// partition puts the listed nodes in group 1 and every other connected
// node in group 0.
func (c *cluster) partition(ids ...consensus.NodeID) {
	for i := range c.group {
		c.group[i] = 0
	}
	for _, id := range ids {
		c.group[id-1] = 1
	}
}

func (c *cluster) heal() {
	for i := range c.group {
		c.group[i] = 0
	}
}

func (c *cluster) connected(id consensus.NodeID) bool {
	return c.node(id).up && c.group[id-1] >= 0
}

func (c *cluster) crash(id consensus.NodeID) {
	nd := c.node(id)
	nd.up = false
	nd.r = nil
	if nd.store != nil {
		nd.store.crash()
	}
}

func (c *cluster) restart(id consensus.NodeID) {
	nd := c.node(id)
	if nd.up {
		c.crash(id)
	}
	// The node rebuilds from exactly what it persisted. Pass a copy of the
	// record list so New cannot depend on our later appends.
	r, err := New(nd.cfg, slices.Clone(nd.durable))
	if err != nil {
		c.fatalf("restart %d: %v", id, err)
	}
	nd.r = r
	nd.up = true
	nd.reads = nil
	// The host restores the snapshot its checkpoint names.
	applied, err := restartState(nd.durable, nd.store)
	if err != nil {
		c.fatalf("restart %d: %v", id, err)
	}
	nd.applied = nil
	c.checkRestored(nd, applied)
	if st := r.Status(); st.Applied != uint64(len(applied)) {
		c.fatalf("restart %d: applied index %d, but the snapshot it restarts from is at %d", id, st.Applied, len(applied))
	}
}

// checkRestored replaces nd's state machine with a snapshot's, checking
// every entry in it against the committed history.
func (c *cluster) checkRestored(nd *cnode, applied []consensus.Entry) {
	for i, e := range applied {
		if i >= len(c.committed) || !sameEntry(c.committed[i], e) {
			c.fatalf("node %d restored a snapshot holding %s at index %d, not the committed entry", nd.id, FormatEntry(e), i+1)
		}
	}
	nd.applied = applied
}

// tick advances time by one tick on every live node and lets the network
// settle.
func (c *cluster) tick() {
	c.now++
	for _, nd := range c.nodes {
		if nd.up {
			nd.r.Tick()
		}
	}
	c.settle()
}

func (c *cluster) ticks(n int) {
	for range n {
		c.tick()
	}
}

// settle handles Readys and delivers due messages until nothing moves.
func (c *cluster) settle() {
	for range 10000 {
		moved := false
		for _, nd := range c.nodes {
			if nd.up && c.handleReady(nd) {
				moved = true
			}
		}
		if c.deliverDue() {
			moved = true
		}
		if !moved {
			return
		}
	}
	c.fatalf("network did not settle")
}

func (c *cluster) handleReady(nd *cnode) bool {
	rd := nd.r.Ready()
	if rd.Empty() {
		return false
	}
	if c.onReady != nil {
		c.onReady(nd, rd)
	}
	if rd.Restore != nil {
		if nd.store == nil {
			c.fatalf("node %d without snapshots handed out Restore %+v", nd.id, *rd.Restore)
		}
		if err := nd.store.install(*rd.Restore); err != nil {
			c.fatalf("node %d: %v", nd.id, err)
		}
	}
	for _, rec := range rd.Persist {
		if isCheckpoint(rec) {
			snapStats.checkpoints++
		}
	}
	nd.durable = persistRecords(nd.durable, rd.Persist, nd.store)
	for _, m := range rd.Messages {
		if m.From != nd.id {
			c.fatalf("node %d emitted a message from %d", nd.id, m.From)
		}
		if m.Payload.(*Msg).Type == MsgSnap {
			snapStats.chunks++
		}
		c.send(m)
	}
	if rd.Restore != nil {
		applied, err := snapshotEntries(nd.store, rd.Restore.Index)
		if err != nil {
			c.fatalf("node %d restoring: %v", nd.id, err)
		}
		c.checkRestored(nd, applied)
		nd.restores++
		snapStats.restored++
	}
	for _, e := range rd.Committed {
		c.checkCommitted(nd, e)
	}
	for _, rs := range rd.Reads {
		c.checkRead(nd, rs)
	}
	nd.reads = append(nd.reads, rd.Reads...)
	nd.r.Advance(rd)
	if rd.SnapshotWanted {
		if nd.store == nil {
			c.fatalf("node %d without snapshots asked for one", nd.id)
		}
		if _, err := takeSnapshot(nd.r, nd.store, nd.applied); err != nil {
			c.fatalf("node %d: compact: %v", nd.id, err)
		}
		nd.snapshots++
		snapStats.taken++
	}
	c.checkLeader(nd)
	return true
}

func (c *cluster) send(m consensus.Message) {
	if c.loss > 0 && c.rng.Float64() < c.loss {
		return
	}
	copies := 1
	if c.dup > 0 && c.rng.Float64() < c.dup {
		copies = 2
	}
	for range copies {
		at := c.now
		if c.maxDelay > 0 {
			at += c.rng.IntN(c.maxDelay + 1)
		}
		c.queue = append(c.queue, pending{at: at, msg: m})
	}
}

// deliverDue delivers every message due by now. With delays, messages due
// in the same tick are delivered in random order.
func (c *cluster) deliverDue() bool {
	var due []consensus.Message
	rest := c.queue[:0]
	for _, p := range c.queue {
		if p.at <= c.now {
			due = append(due, p.msg)
		} else {
			rest = append(rest, p)
		}
	}
	clear(c.queue[len(rest):])
	c.queue = rest
	if len(due) == 0 {
		return false
	}
	if c.maxDelay > 0 {
		c.rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	}
	for _, m := range due {
		to := c.node(m.To)
		if !to.up || !c.linked(m.From, m.To) {
			continue
		}
		c.delivered++
		if err := to.r.Step(m); err != nil {
			c.fatalf("step %v: %v", m, err)
		}
	}
	return true
}

func (c *cluster) checkLeader(nd *cnode) {
	st := nd.r.Status()
	if st.Role != consensus.RoleLeader {
		return
	}
	if l, ok := c.leaders[st.Term]; ok && l != nd.id {
		c.fatalf("two leaders in term %d: %d and %d", st.Term, l, nd.id)
	}
	c.leaders[st.Term] = nd.id
}

// readIndex issues a read at id, remembering how much was committed.
func (c *cluster) readIndex(id consensus.NodeID) error {
	c.readSeq++
	ctx := fmt.Sprintf("r%d", c.readSeq)
	if err := c.node(id).r.ReadIndex([]byte(ctx)); err != nil {
		return err
	}
	c.readFloor[ctx] = uint64(len(c.committed))
	return nil
}

// checkRead checks a confirmed read point is linearizable: at least every
// index committed (anywhere) before the read was issued.
func (c *cluster) checkRead(nd *cnode, rs consensus.ReadState) {
	floor, ok := c.readFloor[string(rs.Context)]
	if !ok {
		return // not issued through readIndex
	}
	delete(c.readFloor, string(rs.Context))
	c.readsDone++
	if rs.Index < floor {
		c.fatalf("node %d confirmed read %s at index %d, but %d was committed before it was issued",
			nd.id, rs.Context, rs.Index, floor)
	}
}

func sameEntry(a, b consensus.Entry) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && bytes.Equal(a.Command.Data, b.Command.Data)
}

func (c *cluster) checkCommitted(nd *cnode, e consensus.Entry) {
	if want := uint64(len(nd.applied)) + 1; e.Index != want {
		c.fatalf("node %d committed index %d, want %d (gap or repeat)", nd.id, e.Index, want)
	}
	nd.applied = append(nd.applied, e)
	switch {
	case e.Index <= uint64(len(c.committed)):
		if g := c.committed[e.Index-1]; !sameEntry(g, e) {
			c.fatalf("node %d committed %s at index %d, but %s was committed there before",
				nd.id, FormatEntry(e), e.Index, FormatEntry(g))
		}
	case e.Index == uint64(len(c.committed))+1:
		c.committed = append(c.committed, e)
	default:
		c.fatalf("node %d committed index %d beyond the known history %d", nd.id, e.Index, len(c.committed))
	}
}

// ---- Helpers in the style of the 6.824 lab ----

// leaderOf returns the connected leader with the highest term, if any.
func (c *cluster) leader() (consensus.NodeID, bool) {
	var best consensus.NodeID
	var bestTerm uint64
	for _, nd := range c.nodes {
		if !c.connected(nd.id) {
			continue
		}
		st := nd.r.Status()
		if st.Role == consensus.RoleLeader && (best == 0 || st.Term > bestTerm) {
			best, bestTerm = nd.id, st.Term
		}
	}
	return best, best != 0
}

// checkOneLeader waits for a leader among connected nodes and checks there
// is exactly one per term among them.
func (c *cluster) checkOneLeader() consensus.NodeID {
	c.t.Helper()
	for range 20 {
		c.ticks(10)
		byTerm := map[uint64][]consensus.NodeID{}
		var top uint64
		for _, nd := range c.nodes {
			if !c.connected(nd.id) {
				continue
			}
			if st := nd.r.Status(); st.Role == consensus.RoleLeader {
				byTerm[st.Term] = append(byTerm[st.Term], nd.id)
				top = max(top, st.Term)
			}
		}
		for term, ls := range byTerm {
			if len(ls) > 1 {
				c.fatalf("term %d has %d leaders: %v", term, len(ls), ls)
			}
		}
		if top != 0 {
			return byTerm[top][0]
		}
	}
	c.fatalf("expected one leader, got none")
	return 0
}

func (c *cluster) checkNoLeader() {
	c.t.Helper()
	for _, nd := range c.nodes {
		if c.connected(nd.id) && nd.r.Status().Role == consensus.RoleLeader {
			c.fatalf("expected no leader among connected nodes, but %d leads", nd.id)
		}
	}
}

// checkTerms returns the common term of connected nodes, failing if they
// disagree.
func (c *cluster) checkTerms() uint64 {
	c.t.Helper()
	var term uint64
	for _, nd := range c.nodes {
		if !c.connected(nd.id) {
			continue
		}
		t := nd.r.Status().Term
		if term == 0 {
			term = t
		} else if t != term {
			c.fatalf("servers disagree on term: %d and %d", term, t)
		}
	}
	return term
}

// nCommitted returns how many live nodes have applied index, and the entry.
func (c *cluster) nCommitted(index uint64) (int, []byte) {
	n := 0
	var data []byte
	for _, nd := range c.nodes {
		if nd.up && uint64(len(nd.applied)) >= index {
			n++
			data = nd.applied[index-1].Command.Data
		}
	}
	return n, data
}

// one submits data to a leader and waits until at least expected nodes
// have applied it, retrying with other leaders for a while (like the lab's
// cfg.one). It returns the index.
func (c *cluster) one(data string, expected int) uint64 {
	c.t.Helper()
	for attempt := 0; attempt < 30; attempt++ {
		var index uint64
		for _, nd := range c.nodes {
			if !c.connected(nd.id) || nd.r.Status().Role != consensus.RoleLeader {
				continue
			}
			if err := nd.r.Propose(consensus.Command{Data: []byte(data)}); err == nil {
				index = nd.r.Status().LastIndex
				break
			}
		}
		if index == 0 {
			c.ticks(5)
			continue
		}
		for range 40 {
			c.tick()
			if n, d := c.nCommitted(index); n >= expected {
				if string(d) == data {
					return index
				}
				break // another entry won the index; try again
			}
		}
	}
	c.fatalf("one(%q) failed to reach agreement on %d nodes", data, expected)
	return 0
}

// waitCommitted ticks until n nodes applied index, or fails.
func (c *cluster) waitCommitted(index uint64, n int, maxTicks int) []byte {
	c.t.Helper()
	for range maxTicks {
		if got, d := c.nCommitted(index); got >= n {
			return d
		}
		c.tick()
	}
	got, _ := c.nCommitted(index)
	c.fatalf("index %d applied on %d nodes after %d ticks, want %d", index, got, maxTicks, n)
	return nil
}

// checkLogsAgree checks every live node's log agrees with the committed
// history up to its commit index, and that nothing committed is missing
// from a majority's logs.
func (c *cluster) checkLogsAgree() {
	c.t.Helper()
	for _, nd := range c.nodes {
		if !nd.up {
			continue
		}
		st := nd.r.Status()
		for i := nd.r.log.offset + 1; i <= st.Commit && i <= uint64(len(c.committed)); i++ {
			e, ok := nd.r.Entry(i)
			if !ok || !sameEntry(e, c.committed[i-1]) {
				c.fatalf("node %d's log at %d is %s, committed was %s", nd.id, i, FormatEntry(e), FormatEntry(c.committed[i-1]))
			}
		}
	}
	// Every committed entry is held by a majority (durably, counting
	// crashed nodes by their records).
	logs := make([][]consensus.Entry, len(c.nodes))
	for i, nd := range c.nodes {
		logs[i] = c.durableLog(nd)
	}
	for i := range c.committed {
		holders := 0
		for _, l := range logs {
			if i < len(l) && sameEntry(l[i], c.committed[i]) {
				holders++
			}
		}
		if holders < consensus.Majority(len(c.nodes)) {
			c.fatalf("committed index %d is durable on only %d nodes", i+1, holders)
		}
	}
}

// durableLog replays a node's durable records (and the snapshot its
// checkpoint names) into the entries they hold, by index-1.
func (c *cluster) durableLog(nd *cnode) []consensus.Entry {
	var l []consensus.Entry
	for _, rec := range nd.durable {
		switch rec := rec.(type) {
		case Checkpoint:
			l = nil
			if s := rec.SnapshotIndex(); s > 0 {
				ents, err := snapshotEntries(nd.store, s)
				if err != nil {
					c.fatalf("node %d: checkpoint: %v", nd.id, err)
				}
				l = ents[:rec.LogIndex:rec.LogIndex]
			}
			l = append(l, rec.Entries...)
		case Append:
			if rec.Index-1 > uint64(len(l)) {
				c.fatalf("node %d: durable Append at %d leaves a gap after %d", nd.id, rec.Index, len(l))
			}
			l = append(l[:rec.Index-1:rec.Index-1], rec.Entries...)
		}
	}
	return l
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

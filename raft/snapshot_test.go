package raft

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// snapNode is a single replica with a memory snapshot store, driven by hand.
type snapNode struct {
	r       *Raft
	store   *memSnapshotStore
	durable []consensus.Record
	applied []consensus.Entry
	wanted  int
}

func newSnapNode(t *testing.T, edit func(*Config)) *snapNode {
	t.Helper()
	n := &snapNode{store: &memSnapshotStore{}}
	cfg := DefaultConfig(1, ids(1), zeroRand{})
	cfg.Snapshots = n.store
	if edit != nil {
		edit(&cfg)
	}
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.r = r
	for range cfg.ElectionTimeoutTicks {
		r.Tick()
	}
	n.ready(t)
	if r.role != consensus.RoleLeader {
		t.Fatal("single node did not lead")
	}
	return n
}

// ready handles every Ready (persist, apply, advance) and returns the
// records persisted.
func (n *snapNode) ready(t *testing.T) []consensus.Record {
	t.Helper()
	var recs []consensus.Record
	for {
		rd := n.r.Ready()
		if rd.Empty() {
			return recs
		}
		recs = append(recs, rd.Persist...)
		n.durable = persistRecords(n.durable, rd.Persist, n.store)
		n.applied = append(n.applied, rd.Committed...)
		if rd.SnapshotWanted {
			n.wanted++
		}
		n.r.Advance(rd)
	}
}

func (n *snapNode) propose(t *testing.T, count int) {
	t.Helper()
	for i := range count {
		if err := n.r.Propose(consensus.Command{Data: fmt.Appendf(nil, "v%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	n.ready(t)
}

func (n *snapNode) snapshotAt(t *testing.T, index uint64) consensus.SnapshotMeta {
	t.Helper()
	meta, err := takeSnapshot(n.r, n.store, n.applied[:index])
	if err != nil {
		t.Fatalf("Compact at %d: %v", index, err)
	}
	return meta
}

func TestCompactErrors(t *testing.T) {
	// Without a store.
	rs := newTestRafts(t, 1, nil)
	if err := rs[0].Compact(consensus.SnapshotMeta{}); !errors.Is(err, ErrSnapshotsDisabled) {
		t.Fatalf("Compact without a store: %v", err)
	}
	n := newSnapNode(t, func(c *Config) { c.CompactionRetainEntries = 0 })
	n.propose(t, 10) // applied 11
	term := n.r.term
	for _, tc := range []struct {
		meta consensus.SnapshotMeta
		want string
	}{
		{consensus.SnapshotMeta{Index: 12, Term: term}, "beyond the applied index 11"},
		{consensus.SnapshotMeta{Index: 5, Term: term + 1}, "has term 2, but the log's entry there has term 1"},
		{consensus.SnapshotMeta{Index: 5, Term: term, Voters: make([]consensus.NodeID, PeersMax+1)}, "voters"},
	} {
		if err := n.r.Compact(tc.meta); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compact(%+v): %v, want %q", tc.meta, err, tc.want)
		}
	}
	n.snapshotAt(t, 8)
	if err := n.r.Compact(consensus.SnapshotMeta{Index: 7, Term: term}); err == nil || !strings.Contains(err.Error(), "older than the current snapshot at 8") {
		t.Fatalf("Compact below the snapshot: %v", err)
	}
	// The same index again changes nothing.
	n.ready(t)
	if err := n.r.Compact(consensus.SnapshotMeta{Index: 8, Term: term}); err != nil {
		t.Fatal(err)
	}
	if recs := n.ready(t); len(recs) != 0 {
		t.Fatalf("repeated Compact persisted %v", recs)
	}
}

// TestCompactionBounds: Compact keeps CompactionRetainEntries behind the
// snapshot and persists one checkpoint holding the rest of the log.
func TestCompactionBounds(t *testing.T) {
	n := newSnapNode(t, func(c *Config) { c.CompactionRetainEntries = 3; c.SnapshotEntries = 0 })
	n.propose(t, 19) // 1..20
	if err := n.r.Propose(consensus.Command{Data: []byte("unapplied")}); err != nil {
		t.Fatal(err)
	}
	// Entry 21 is not handed out yet: the checkpoint must carry it.
	meta := n.snapshotAt(t, 15)
	if _, ok := n.r.Entry(12); ok {
		t.Fatal("entry 12 survived compaction to 12")
	}
	if e, ok := n.r.Entry(13); !ok || e.Index != 13 {
		t.Fatalf("entry 13 missing: %v", e)
	}
	recs := n.ready(t)
	if len(recs) != 1 {
		t.Fatalf("persisted %v, want one checkpoint", recs)
	}
	cp, ok := recs[0].(Checkpoint)
	if !ok {
		t.Fatalf("persisted %T, want a Checkpoint", recs[0])
	}
	if cp.LogIndex != 12 || cp.LogTerm != 1 || len(cp.Entries) != 9 || cp.Entries[0].Index != 13 || cp.Entries[8].Index != 21 ||
		cp.SnapshotIndex() != 15 || cp.Snapshot.Term != meta.Term || cp.HardState != n.r.hardState() {
		t.Fatalf("checkpoint %v", cp)
	}
	if err := cp.validate(); err != nil {
		t.Fatal(err)
	}
	// The durable records are now the checkpoint alone; the next entries
	// follow it as Appends.
	n.propose(t, 2)
	if len(n.durable) < 2 || !isCheckpoint(n.durable[0]) {
		t.Fatalf("durable %v", n.durable)
	}
	// A retain window larger than the log compacts nothing but still
	// checkpoints.
	n2 := newSnapNode(t, func(c *Config) { c.CompactionRetainEntries = 100 })
	n2.propose(t, 5)
	n2.snapshotAt(t, 6)
	if n2.r.log.offset != 0 {
		t.Fatalf("compacted to %d with a retain window of 100", n2.r.log.offset)
	}
	if recs := n2.ready(t); len(recs) != 1 || !isCheckpoint(recs[0]) {
		t.Fatalf("persisted %v", recs)
	}
}

// TestSnapshotWanted: SnapshotWanted is set once per threshold's worth of
// applied entries, and Compact starts the count again from the snapshot.
func TestSnapshotWanted(t *testing.T) {
	n := newSnapNode(t, func(c *Config) { c.SnapshotEntries = 5; c.SnapshotBytes = 0 })
	n.propose(t, 3) // applied 4 (with the no-op)
	if n.wanted != 0 {
		t.Fatalf("wanted after 4 entries")
	}
	n.propose(t, 1)
	if n.wanted != 1 {
		t.Fatalf("wanted %d times after 5 entries", n.wanted)
	}
	n.propose(t, 4)
	if n.wanted != 1 {
		t.Fatalf("wanted again after 4 more entries")
	}
	n.propose(t, 1)
	if n.wanted != 2 {
		t.Fatalf("wanted %d times after 10 entries", n.wanted)
	}
	// Compact at 8: two entries count since; three more reach 5.
	n.snapshotAt(t, 8)
	n.ready(t)
	n.propose(t, 2)
	if n.wanted != 2 {
		t.Fatal("wanted too early after Compact")
	}
	n.propose(t, 1)
	if n.wanted != 3 {
		t.Fatalf("wanted %d times; want 3", n.wanted)
	}
	// Bytes.
	b := newSnapNode(t, func(c *Config) { c.SnapshotEntries = 0; c.SnapshotBytes = 100 })
	if err := b.r.Propose(consensus.Command{Data: make([]byte, 100)}); err != nil {
		t.Fatal(err)
	}
	b.ready(t)
	if b.wanted != 1 {
		t.Fatal("byte threshold did not ask for a snapshot")
	}
	// Without a store, never.
	rs := newTestRafts(t, 1, func(c *Config) { c.SnapshotEntries = 1 })
	for range 10 {
		rs[0].Tick()
	}
	for i := range 5 {
		_ = rs[0].Propose(consensus.Command{Data: fmt.Appendf(nil, "%d", i)})
		rd := rs[0].Ready()
		if rd.SnapshotWanted || rd.Restore != nil {
			t.Fatal("snapshot fields set without a store")
		}
		rs[0].Advance(rd)
	}
}

// TestRestartFromCheckpoint: a replica rebuilt from a checkpoint and the
// records after it has the same state, starts applied at the snapshot and
// re-emits the committed entries after it.
func TestRestartFromCheckpoint(t *testing.T) {
	n := newSnapNode(t, func(c *Config) { c.CompactionRetainEntries = 2; c.SnapshotEntries = 0 })
	n.propose(t, 20)
	n.snapshotAt(t, 10)
	n.ready(t)
	n.propose(t, 5) // applied 26
	old := n.r
	for _, durable := range [][]consensus.Record{
		n.durable, // the checkpoint and its tail
		append([]consensus.Record{HardState{Term: 1}, Append{Index: 1, Entries: []consensus.Entry{{Index: 1, Term: 1, Type: consensus.EntryNoOp}}}}, n.durable...), // older records are ignored
	} {
		r, err := New(old.cfg, slices.Clone(durable))
		if err != nil {
			t.Fatal(err)
		}
		if r.term != old.term || r.vote != old.vote || r.log.committed != old.log.committed || r.log.lastIndex() != old.log.lastIndex() || r.log.offset != 8 || r.snap.Index != 10 {
			t.Fatalf("restarted as term %d vote %d commit %d last %d offset %d snap %d", r.term, r.vote, r.log.committed, r.log.lastIndex(), r.log.offset, r.snap.Index)
		}
		for i := uint64(9); i <= old.log.lastIndex(); i++ {
			a, _ := old.Entry(i)
			b, ok := r.Entry(i)
			if !ok || !sameEntry(a, b) {
				t.Fatalf("entry %d: %v vs %v", i, b, a)
			}
		}
		if st := r.Status(); st.Applied != 10 || st.Commit != 26 {
			t.Fatalf("status %+v", st)
		}
		rd := r.Ready()
		if len(rd.Persist) != 0 || !slices.EqualFunc(rd.Committed, n.applied[10:], sameEntry) {
			t.Fatalf("re-emitted %v", rd.Committed)
		}
		r.Advance(rd)
		// It can lead and go on.
		for range 20 {
			r.Tick()
		}
		drive(r)
		if err := r.Propose(consensus.Command{Data: []byte("after")}); err != nil {
			t.Fatal(err)
		}
	}

	// The snapshot the checkpoint names must be in the store.
	cfg := old.cfg
	cfg.Snapshots = &memSnapshotStore{}
	if _, err := New(cfg, n.durable); err == nil || !strings.Contains(err.Error(), "the snapshot the log depends on is missing") {
		t.Fatalf("New without the snapshot: %v", err)
	}
	cfg.Snapshots = nil
	if _, err := New(cfg, n.durable); err == nil || !strings.Contains(err.Error(), "Config.Snapshots is nil") {
		t.Fatalf("New without a store: %v", err)
	}
}

func TestNewRejectsBadCheckpoints(t *testing.T) {
	store := &memSnapshotStore{}
	store.save(consensus.SnapshotMeta{Index: 5, Term: 1}, nil)
	cfg := DefaultConfig(1, ids(3), zeroRand{})
	cfg.Snapshots = store
	good := Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 5, Term: 1}, HardState: HardState{Term: 2, Commit: 5}, LogIndex: 4, LogTerm: 1,
		Entries: []consensus.Entry{{Index: 5, Term: 1}, {Index: 6, Term: 2}}}
	if _, err := New(cfg, []consensus.Record{good}); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*Checkpoint){
		"snapshot past log":   func(cp *Checkpoint) { cp.Snapshot.Index = 7 },
		"snapshot before log": func(cp *Checkpoint) { cp.LogIndex = 6; cp.Entries = nil },
		"snapshot term":       func(cp *Checkpoint) { cp.Snapshot.Term = 2 },
		"entry index":         func(cp *Checkpoint) { cp.Entries = []consensus.Entry{{Index: 6, Term: 1}} },
		"term goes back":      func(cp *Checkpoint) { cp.Entries = []consensus.Entry{{Index: 5, Term: 1}, {Index: 6, Term: 0}} },
		"commit below snap":   func(cp *Checkpoint) { cp.HardState.Commit = 4 },
		"commit past log":     func(cp *Checkpoint) { cp.HardState.Commit = 7 },
		"log after term":      func(cp *Checkpoint) { cp.HardState.Term = 1 },
	} {
		cp := good
		cp.Entries = slices.Clone(good.Entries)
		edit(&cp)
		if _, err := New(cfg, []consensus.Record{cp}); err == nil {
			t.Errorf("%s: New accepted %v", name, cp)
		}
		if _, err := Codec.AppendRecord(nil, cp); err == nil {
			t.Errorf("%s: Codec encoded %v", name, cp)
		}
	}
}

// ---- Scenarios over the cluster harness ----

// snapTraffic counts the snapshot chunks a cluster sends, and checks each
// against the chunk bound.
type snapTraffic struct {
	chunks, bytes int
	to            map[consensus.NodeID]int
}

func watchSnapshots(c *cluster, chunkMax int) *snapTraffic {
	st := &snapTraffic{to: map[consensus.NodeID]int{}}
	c.onReady = func(nd *cnode, rd consensus.Ready) {
		for _, m := range rd.Messages {
			if p := m.Payload.(*Msg); p.Type == MsgSnap {
				if len(p.Data) > chunkMax {
					c.fatalf("snapshot chunk of %d bytes; SnapshotChunkBytes is %d", len(p.Data), chunkMax)
				}
				st.chunks++
				st.bytes += len(p.Data)
				st.to[m.To]++
			}
		}
	}
	return st
}

// checkConverged checks every node applied the whole committed history.
func (c *cluster) checkConverged() {
	c.t.Helper()
	c.waitCommitted(uint64(len(c.committed)), len(c.nodes), 200)
	for _, nd := range c.nodes {
		if !slices.EqualFunc(nd.applied[:len(c.committed)], c.committed, sameEntry) {
			c.fatalf("node %d's state machine differs from the committed history", nd.id)
		}
	}
	c.checkLogsAgree()
}

// lagBehindCompaction cuts follower f off while the others commit and
// compact far past it, then reconnects it. It returns the leader.
func lagBehindCompaction(c *cluster, f consensus.NodeID, entries int) consensus.NodeID {
	c.disconnect(f)
	for i := range entries {
		c.one(fmt.Sprintf("lag-%d", i), len(c.nodes)-1)
	}
	l := c.checkOneLeader()
	if off := c.node(l).r.log.offset; off <= c.node(f).r.log.lastIndex() {
		c.fatalf("leader %d compacted only to %d; follower %d has %d", l, off, f, c.node(f).r.log.lastIndex())
	}
	c.connect(f)
	return l
}

func TestSnapshotToLaggingFollower(t *testing.T) {
	const chunk = 128
	c := newCluster(t, 3, 401, withSnapshots(10, 2, chunk))
	traffic := watchSnapshots(c, chunk)
	c.one("first", 3)
	l := c.checkOneLeader()
	f := consensus.NodeID(l%3 + 1)
	lagBehindCompaction(c, f, 60)
	c.one("after", 3)
	c.checkConverged()
	nd := c.node(f)
	if nd.restores == 0 || traffic.to[f] < 2 {
		c.fatalf("follower %d installed %d snapshots from %d chunks; want a snapshot in several chunks", f, nd.restores, traffic.to[f])
	}
	if c.node(l).snapshots == 0 {
		c.fatalf("leader took no snapshot")
	}
	t.Logf("%d chunks, %d bytes; follower restored %d snapshots", traffic.chunks, traffic.bytes, nd.restores)
}

// TestSnapshotUnreliableTransfer: chunks are lost, duplicated and reordered
// during transfers; the follower still converges.
func TestSnapshotUnreliableTransfer(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			const chunk = 64
			c := newCluster(t, 3, 410+seed, withSnapshots(10, 1, chunk))
			traffic := watchSnapshots(c, chunk)
			c.one("first", 3)
			l := c.checkOneLeader()
			f := consensus.NodeID(l%3 + 1)
			lagBehindCompaction(c, f, 50)
			c.maxDelay, c.loss, c.dup = 3, 0.2, 0.2
			c.ticks(60)
			c.maxDelay, c.loss, c.dup = 0, 0, 0
			c.one("after", 3)
			c.checkConverged()
			if c.node(f).restores == 0 || traffic.to[f] < 2 {
				c.fatalf("follower %d installed %d snapshots from %d chunks", f, c.node(f).restores, traffic.to[f])
			}
		})
	}
}

// midTransfer ticks until follower f has accepted part of a snapshot but
// not installed it.
func midTransfer(c *cluster, f consensus.NodeID) {
	for range 200 {
		if r := c.node(f).r; r != nil && r.recv.active && r.recv.next > 0 {
			return
		}
		c.tick()
	}
	c.fatalf("follower %d never got part of a snapshot", f)
}

// TestSnapshotLeaderChangeMidTransfer: the leader is cut off while a
// follower holds part of its snapshot; the next leader's transfer starts
// over and completes.
func TestSnapshotLeaderChangeMidTransfer(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			const chunk = 32
			c := newCluster(t, 5, 420+seed, withSnapshots(8, 0, chunk))
			watchSnapshots(c, chunk)
			c.one("first", 5)
			l := c.checkOneLeader()
			f := consensus.NodeID(l%5 + 1)
			lagBehindCompaction(c, f, 40)
			c.maxDelay = 2 // so the transfer spans ticks
			midTransfer(c, f)
			c.disconnect(l)
			c.checkOneLeader()
			c.one("new leader", 4)
			c.connect(l)
			c.maxDelay = 0
			c.one("all", 5)
			c.checkConverged()
		})
	}
}

// TestSnapshotFollowerCrashMidTransfer: the follower crashes holding part
// of a snapshot, restarts, and receives it again.
func TestSnapshotFollowerCrashMidTransfer(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			const chunk = 32
			c := newCluster(t, 3, 430+seed, withSnapshots(8, 0, chunk))
			watchSnapshots(c, chunk)
			c.one("first", 3)
			l := c.checkOneLeader()
			f := consensus.NodeID(l%3 + 1)
			lagBehindCompaction(c, f, 40)
			c.maxDelay = 2
			midTransfer(c, f)
			c.crash(f)
			c.ticks(5)
			c.restart(f)
			c.maxDelay = 0
			c.one("after", 3)
			c.checkConverged()
			// And once more after it installed: restart from its checkpoint.
			c.restart(f)
			c.one("again", 3)
			c.checkConverged()
		})
	}
}

// TestSnapshotReceiveFailure: the follower's store fails to take chunks; the
// transfer starts over and completes.
func TestSnapshotReceiveFailure(t *testing.T) {
	const chunk = 32
	c := newCluster(t, 3, 440, withSnapshots(8, 0, chunk))
	c.one("first", 3)
	l := c.checkOneLeader()
	f := consensus.NodeID(l%3 + 1)
	lagBehindCompaction(c, f, 30)
	c.node(f).store.failReceives = 3
	c.one("after", 3)
	c.checkConverged()
	if c.node(f).restores == 0 {
		c.fatalf("no snapshot installed")
	}
}

// TestSnapshotRestartAll: every node restarts from its checkpoint and log
// tail, and ends in the same state as before.
func TestSnapshotRestartAll(t *testing.T) {
	c := newCluster(t, 3, 450, withSnapshots(7, 3, 64))
	for i := range 40 {
		c.one(fmt.Sprintf("v%d", i), 3)
	}
	type state struct {
		term, commit, last, snap uint64
	}
	before := map[consensus.NodeID]state{}
	for _, nd := range c.nodes {
		r := nd.r
		if r.snap.Index == 0 || !isCheckpoint(nd.durable[0]) {
			c.fatalf("node %d did not compact (snapshot %d)", nd.id, r.snap.Index)
		}
		before[nd.id] = state{r.term, r.log.committed, r.log.lastIndex(), r.snap.Index}
	}
	for _, nd := range c.nodes {
		c.restart(nd.id)
		r := nd.r
		if got := (state{r.term, r.log.committed, r.log.lastIndex(), r.snap.Index}); got != before[nd.id] {
			c.fatalf("node %d restarted as %+v, was %+v", nd.id, got, before[nd.id])
		}
	}
	c.ticks(1)
	for _, nd := range c.nodes {
		if !slices.EqualFunc(nd.applied, c.committed[:len(nd.applied)], sameEntry) || uint64(len(nd.applied)) != before[nd.id].commit {
			c.fatalf("node %d re-applied %d entries, want %d", nd.id, len(nd.applied), before[nd.id].commit)
		}
	}
	c.one("end", 3)
	c.checkConverged()
}

// TestScenariosWithSnapshots runs the lab scenarios with snapshots on and
// small thresholds, so that logs are compacted often and lagging or
// restarted nodes catch up from snapshots.
func TestScenariosWithSnapshots(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(*testing.T)
	}{
		{"FailAgree", TestScenarioFailAgree},
		{"FailNoAgree", TestScenarioFailNoAgree},
		{"Rejoin", TestScenarioRejoin},
		{"Backup", TestScenarioBackup},
		{"Persist", TestScenarioPersist},
		{"PersistMajorityAndAll", TestScenarioPersistMajorityAndAll},
		{"Figure8Unreliable", TestScenarioFigure8Unreliable},
		{"Churn", TestScenarioChurn},
	}
	defer func(saved []clusterOpt) { extraClusterOpts = saved }(extraClusterOpts)
	extraClusterOpts = []clusterOpt{withSnapshots(4, 1, 64)}
	for _, sc := range scenarios {
		snapStats = struct{ taken, restored, chunks, checkpoints int }{}
		t.Run(sc.name, sc.run)
		t.Logf("%s: %d snapshots taken, %d checkpoints, %d chunks sent, %d snapshots installed", sc.name, snapStats.taken, snapStats.checkpoints, snapStats.chunks, snapStats.restored)
		if snapStats.taken == 0 || snapStats.checkpoints == 0 {
			t.Errorf("%s: no snapshots taken with snapshots on", sc.name)
		}
		switch sc.name {
		case "FailAgree", "Backup", "Figure8Unreliable", "Churn":
			if snapStats.restored == 0 {
				t.Errorf("%s: no snapshot was sent and installed", sc.name)
			}
		}
	}
}

func TestConfigMatrixWithSnapshots(t *testing.T) {
	seeds, iters := uint64(2), 600
	if testing.Short() {
		seeds, iters = 1, 300
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		for _, tiny := range []bool{false, true} {
			t.Run(fmt.Sprintf("tiny=%v/%d", tiny, seed), func(t *testing.T) {
				snapStats = struct{ taken, restored, chunks, checkpoints int }{}
				configMatrixRun(t, 760+seed, iters, func(cfg *Config) {
					withSnapshots(10, 2, 48)(cfg)
					if tiny {
						cfg.InflightMsgsMax, cfg.EntriesPerMsgMax = 1, 1
					}
				})
				t.Logf("%d snapshots taken, %d chunks sent, %d installed", snapStats.taken, snapStats.chunks, snapStats.restored)
				if snapStats.restored == 0 {
					t.Error("no snapshot was sent and installed")
				}
			})
		}
	}
}

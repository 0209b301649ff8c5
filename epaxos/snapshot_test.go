package epaxos

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

var compactionSeeds = flag.Int("epaxos.compaction-seeds", 0, "seeds TestClusterCompactionCrashes runs (0: 10)")

// memSnaps is an in-memory consensus.SnapshotStore for the cluster
// harness: every snapshot saved or received is kept.
type memSnaps struct {
	saved []memSnap
	recv  []byte
}

type memSnap struct {
	meta consensus.SnapshotMeta
	data []byte
}

func (s *memSnaps) save(meta consensus.SnapshotMeta, data []byte) {
	s.saved = append(s.saved, memSnap{meta: cloneMeta(meta), data: slices.Clone(data)})
}

func (s *memSnaps) find(index uint64) *memSnap {
	var best *memSnap
	for i := range s.saved {
		sn := &s.saved[i]
		if sn.meta.Index == index && (best == nil || sn.meta.Term > best.meta.Term) {
			best = sn
		}
	}
	return best
}

// state decodes the state machine (the executed entries) of the snapshot
// with the given index and term.
func (s *memSnaps) state(t *testing.T, index, term uint64) []consensus.Entry {
	t.Helper()
	for _, sn := range s.saved {
		if sn.meta.Index == index && sn.meta.Term == term {
			ents := decodeEntries(t, sn.data)
			if uint64(len(ents)) != index {
				t.Fatalf("snapshot %d/%d holds %d entries", index, term, len(ents))
			}
			return ents
		}
	}
	t.Fatalf("no snapshot %d/%d", index, term)
	return nil
}

func (s *memSnaps) Newest() (consensus.SnapshotMeta, bool) {
	var best *memSnap
	for i := range s.saved {
		sn := &s.saved[i]
		if best == nil || sn.meta.Index > best.meta.Index || sn.meta.Index == best.meta.Index && sn.meta.Term > best.meta.Term {
			best = sn
		}
	}
	if best == nil {
		return consensus.SnapshotMeta{}, false
	}
	return cloneMeta(best.meta), true
}

func (s *memSnaps) ReadChunk(index uint64, offset int64, max int) ([]byte, bool, error) {
	sn := s.find(index)
	if sn == nil {
		return nil, false, fmt.Errorf("no snapshot %d", index)
	}
	if offset < 0 || offset > int64(len(sn.data)) {
		return nil, false, fmt.Errorf("offset %d outside snapshot %d", offset, index)
	}
	end := min(int64(len(sn.data)), offset+int64(max))
	return slices.Clone(sn.data[offset:end]), end == int64(len(sn.data)), nil
}

func (s *memSnaps) ReceiveChunk(meta consensus.SnapshotMeta, offset int64, data []byte, last bool) error {
	if offset == 0 {
		s.recv = nil
	}
	if offset != int64(len(s.recv)) {
		return fmt.Errorf("chunk at %d, expected %d", offset, len(s.recv))
	}
	s.recv = append(s.recv, data...)
	if last {
		if len(meta.Protocol) == 0 {
			return errors.New("a received snapshot without protocol state")
		}
		s.save(meta, s.recv)
		s.recv = nil
	}
	return nil
}

func encodeEntries(ents []consensus.Entry) []byte {
	buf := consensus.AppendEntry(nil, &consensus.Entry{Index: uint64(len(ents))})
	for i := range ents {
		buf = consensus.AppendEntry(buf, &ents[i])
	}
	return buf
}

func decodeEntries(t *testing.T, data []byte) []consensus.Entry {
	d := consensus.NewDecoder(data)
	n := d.Entry().Index
	var out []consensus.Entry
	for range n {
		out = append(out, d.Entry())
	}
	d.End()
	if d.Err() != nil {
		t.Fatal(d.Err())
	}
	return out
}

// records counts nd's durable records and the instances its newest
// checkpoint holds.
func records(nd *tnode) (recs, inCheckpoint int) {
	for _, r := range nd.durable {
		if cp, ok := r.(Checkpoint); ok {
			inCheckpoint = len(cp.Instances)
		}
	}
	return len(nd.durable), inCheckpoint
}

// TestClusterCompaction: a lossy cluster that snapshots every few
// commands keeps few instances in memory and few records in its log, and
// every node still executes everything in one order per key; a node
// rebuilt from its compacted log (check) starts from its snapshot.
func TestClusterCompaction(t *testing.T) {
	for _, n := range []int{3, 5} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("N=%d/seed=%d", n, seed), func(t *testing.T) {
				c := newCluster(t, n, seed, func(cfg *Config) { cfg.ExecuteStepsMax = 16 })
				c.withSnapshots(10, 64)
				c.loss, c.dup, c.conflictAll = 10, 5, 5
				for range 12 {
					c.run(300, 6)
				}
				c.check()
				for _, nd := range c.nodes {
					recs, held := records(nd)
					if nd.snapshots < 5 {
						t.Fatalf("node %d took %d snapshots", nd.id, nd.snapshots)
					}
					// Executed instances stay until the snapshot after the
					// one that holds them: here, about two rounds' worth.
					if len(nd.r.insts) > c.proposed/4 || recs > c.proposed/2 {
						t.Fatalf("node %d holds %d instances and %d records (%d in its checkpoint) after %d commands, %d snapshots, snapshot %d at %v, executed %d at %v",
							nd.id, len(nd.r.insts), recs, held, c.proposed, nd.snapshots, nd.r.snap.Index, nd.r.snapE, nd.r.applied, nd.r.executedTo)
					}
				}
			})
		}
	}
}

// TestClusterCompactionCrashes: nodes crash and restart from their
// compacted logs and snapshots while the workload runs; one that missed
// instances its peers compacted installs a snapshot.
func TestClusterCompactionCrashes(t *testing.T) {
	installs := 0
	seeds := uint64(10)
	if *compactionSeeds > 0 {
		seeds = uint64(*compactionSeeds)
	}
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			c := newCluster(t, 3+2*int(seed%3), seed, func(cfg *Config) { cfg.ExecuteStepsMax = 8 + int(seed%5)*8 })
			c.withSnapshots(8, 100)
			c.loss, c.dup = 10, 5
			c.conflictAll = int(seed % 3 * 5)
			for round := range 6 {
				nd := c.nodes[c.rng.IntN(len(c.nodes))]
				c.crash(nd)
				c.run(400, 5)
				if round%2 == 0 {
					c.restart(nd)
				} else {
					// Stay down a while longer: the others compact past it.
					c.run(400, 5)
					c.restart(nd)
				}
				c.run(200, 5)
			}
			c.check()
			for _, nd := range c.nodes {
				installs += nd.installs
			}
		})
	}
	if installs == 0 {
		t.Fatal("no node ever installed a snapshot")
	}
	t.Logf("%d snapshots installed", installs)
}

// TestLaggingReplicaInstallsSnapshot: a replica down while the others
// execute and compact many instances catches up by installing a peer's
// snapshot (in bounded chunks), keeps executing afterwards in the same
// order as the others, and restarts from the installed snapshot.
func TestLaggingReplicaInstallsSnapshot(t *testing.T) {
	c := newCluster(t, 3, 7)
	c.withSnapshots(10, 50)
	lag := c.nodes[2]
	c.crash(lag)
	for i := range 200 {
		c.propose(c.nodes[i%2], put(fmt.Sprint("k", i%4), fmt.Sprint("v", i)))
		for len(c.queue) > 0 {
			c.deliverOne(false)
		}
		if i%10 == 0 {
			for _, nd := range c.nodes[:2] {
				nd.r.Tick()
				c.process(nd)
			}
		}
	}
	c.run(0, 1)
	c.restart(lag)
	chunks := 0
	c.drop = func(m consensus.Message) bool {
		if p := m.Payload.(*Msg); p.Type == MsgSnap && len(p.Data) > 0 {
			chunks++
			if len(p.Data) > 50 {
				t.Fatalf("a snapshot chunk of %d bytes, above SnapshotChunkBytes", len(p.Data))
			}
		}
		return false
	}
	for i := range 20 {
		c.propose(c.nodes[i%3], put(fmt.Sprint("k", i%4), fmt.Sprint("after", i)))
	}
	c.run(0, 1)
	c.check()
	if lag.installs == 0 || chunks < 2 {
		t.Fatalf("the lagging node installed %d snapshots in %d chunks", lag.installs, chunks)
	}
	if st := lag.r.Status(); st.Applied != uint64(c.proposed) {
		t.Fatalf("lagging node applied %d of %d", st.Applied, c.proposed)
	}
	// It restarts from the snapshot it installed, not from the start.
	c.crash(lag)
	c.restart(lag)
	if base, ok := newestCheckpoint(lag.durable); !ok || base.Index == 0 {
		t.Fatal("the lagging node has no checkpoint after installing a snapshot")
	}
	c.run(0, 1)
	c.check()
}

// TestSnapshotStateFolds: a conflict index too large for a snapshot folds
// its coldest keys into a floor; replicas that restart from or install
// such snapshots still order every conflicting pair alike.
func TestSnapshotStateFolds(t *testing.T) {
	defer func(v int) { snapshotStateBytesMax = v }(snapshotStateBytesMax)
	snapshotStateBytesMax = 200
	for seed := range uint64(4) {
		c := newCluster(t, 3, seed)
		c.withSnapshots(10, 64)
		c.loss = 5
		lag := c.nodes[int(seed)%3]
		c.crash(lag)
		c.run(1500, 40)
		c.restart(lag)
		c.run(1500, 40)
		c.check()
		folded := false
		for _, nd := range c.nodes {
			if nd.r.floor != nil {
				folded = true
			}
			meta, ok := nd.snaps.Newest()
			if !ok {
				t.Fatalf("node %d has no snapshot", nd.id)
			}
			if len(meta.Protocol) > snapshotStateBytesMax+64 {
				t.Fatalf("node %d: snapshot state of %d bytes", nd.id, len(meta.Protocol))
			}
		}
		if !folded {
			t.Fatalf("seed %d: no replica restarted from or installed a folded snapshot", seed)
		}
	}
}

func TestSnapshotStateRoundTrip(t *testing.T) {
	st := &snapState{index: 12, executed: frontier{1: 4, 3: 9}, anyKey: newKeyIndex(false), floor: newKeyIndex(false),
		keys: map[string]*keyIndex{"a": {last: []repLast{{1, 3}}, maxSeq: 5}, "": {last: []repLast{{1, 4}, {3, 9}}, maxSeq: 7}}}
	st.anyKey.add(InstanceID{1, 4}, 7)
	st.anyKey.add(InstanceID{3, 9}, 6)
	st.floor.add(InstanceID{3, 2}, 2)
	b := st.encode()
	got, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.encode(), b) || got.index != 12 || !got.executed.equal(st.executed) || len(got.keys) != 2 {
		t.Fatalf("round trip: %+v", got)
	}
	for i := range b {
		if _, err := decodeState(b[:i]); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
	// An index naming an instance beyond the frontier is refused.
	st.keys["b"] = &keyIndex{last: []repLast{{1, 5}}}
	if _, err := decodeState(st.encode()); err == nil {
		t.Fatal("decoded an index beyond the frontier")
	}
}

func TestCompactRefuses(t *testing.T) {
	r := newReplica(t, 1, 1, nil)
	if _, err := r.DescribeSnapshot(0); !errors.Is(err, ErrSnapshotsDisabled) {
		t.Fatalf("DescribeSnapshot without snapshots: %v", err)
	}
	snaps := &memSnaps{}
	r = newReplica(t, 1, 1, nil, func(c *Config) { c.Snapshots = snaps })
	for i := range 3 {
		if err := r.Propose(put("k", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		rd := r.Ready()
		r.Advance(rd)
	}
	if _, err := r.DescribeSnapshot(2); err == nil {
		t.Fatal("described a snapshot below the execution counter")
	}
	meta, err := r.DescribeSnapshot(3)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Index != 3 || meta.Term != 3 {
		t.Fatalf("meta %d/%d", meta.Index, meta.Term)
	}
	if err := r.Compact(consensus.SnapshotMeta{Index: 3, Term: 3}); err == nil {
		t.Fatal("compacted without protocol state")
	}
	bad := meta
	bad.Index = 2
	if err := r.Compact(bad); err == nil {
		t.Fatal("compacted with a mismatched index")
	}
	snaps.save(meta, nil)
	if err := r.Compact(meta); err != nil {
		t.Fatal(err)
	}
	rd := r.Ready()
	cp, ok := rd.Persist[len(rd.Persist)-1].(Checkpoint)
	if !ok || cp.Snapshot.Index != 3 || cp.Next != 4 || len(cp.Instances) != 0 {
		t.Fatalf("checkpoint after Compact: %v", rd.Persist)
	}
	r.Advance(rd)
	// Restart from the checkpoint alone: the counter resumes at 3.
	r2 := newReplica(t, 1, 1, []consensus.Record{cp}, func(c *Config) { c.Snapshots = snaps })
	if st := r2.Status(); st.Applied != 3 || st.LastIndex != 3 {
		t.Fatalf("restarted at %+v", st)
	}
	if err := r2.Propose(put("k", "x")); err != nil {
		t.Fatal(err)
	}
	rd = r2.Ready()
	if len(rd.Committed) != 1 || rd.Committed[0].Index != 4 {
		t.Fatalf("after restart: %v", rd.Committed)
	}
	if in, _ := r2.Instance(InstanceID{1, 4}); len(in.Deps) != 1 || in.Deps[0] != (InstanceID{1, 3}) || in.Seq != 4 {
		t.Fatalf("a new command on k does not depend on the compacted latest one: %v", in)
	}
	// Without the snapshot the checkpoint names, New fails.
	if _, err := New(DefaultConfig(1, ids(1)), []consensus.Record{cp}); err == nil {
		t.Fatal("restarted from a checkpoint without a snapshot store")
	}
}

// stateWithKey is a snapshot state in which space 2's instances 1..n are
// executed, the last one on key k with seq seq.
func stateWithKey(n uint64, k string, seq uint64) *snapState {
	st := &snapState{index: n, executed: frontier{2: n}, anyKey: newKeyIndex(false), floor: newKeyIndex(false),
		keys: map[string]*keyIndex{k: newKeyIndex(false)}}
	st.keys[k].add(InstanceID{2, n}, seq)
	st.anyKey.add(InstanceID{2, n}, seq)
	return st
}

// TestConflictIndexSurvivesCompaction: a replica restarted from a
// checkpoint holds none of the executed instances, yet a new command on a
// key one of them touched depends on it (here, an acceptor merging its
// conflicts into a PreAccept that lacks it: without that, a fast quorum
// could commit the two unordered). A message about a compacted instance
// is answered MsgCompacted, never as unknown, and TryPreAccept reports a
// compacted conflict the tried deps do not reach as committed.
func TestConflictIndexSurvivesCompaction(t *testing.T) {
	snaps := &memSnaps{}
	st := stateWithKey(5, "k", 9)
	meta := consensus.SnapshotMeta{Index: 5, Term: 5, Protocol: st.encode()}
	snaps.save(meta, nil)
	cp := Checkpoint{Snapshot: meta, Next: 1}
	r := newReplica(t, 3, 3, []consensus.Record{cp}, func(c *Config) { c.Snapshots = snaps })
	if _, ok := r.Instance(InstanceID{2, 5}); ok {
		t.Fatal("the restarted replica holds an executed instance")
	}
	step := func(m *Msg) {
		t.Helper()
		if err := r.Step(consensus.Message{From: 1, To: 3, Payload: m}); err != nil {
			t.Fatal(err)
		}
	}
	step(&Msg{Type: MsgPreAccept, Ballot: Ballot{0, 1}, ID: InstanceID{1, 1}, Command: put("k", "gamma"), Seq: 1})
	ok := takeMsgs(r, MsgPreAcceptOK)
	if len(ok) != 1 || !slices.Equal(ok[0].Deps, []InstanceID{{2, 5}}) || ok[0].Seq != 10 || !ok[0].Changed {
		t.Fatalf("PreAcceptOK from the restarted replica: %v; want deps [2.5], seq 10, changed", ok)
	}
	for _, typ := range []MsgType{MsgPrepare, MsgAccept, MsgPreAccept, MsgLearn, MsgTryPreAccept} {
		step(&Msg{Type: typ, Ballot: Ballot{1, 1}, ID: InstanceID{2, 3}, Command: put("k", "x")})
		if got := takeMsgs(r, MsgCompacted); len(got) != 1 || got[0].ID != (InstanceID{2, 3}) {
			t.Fatalf("%v about a compacted instance: %v", typ, got)
		}
	}
	if got := takeMsgs(r, MsgPrepareOK); len(got) != 0 {
		t.Fatalf("a compacted instance reported in a PrepareOK: %v", got)
	}
	step(&Msg{Type: MsgCommit, Ballot: Ballot{0, 2}, ID: InstanceID{2, 4}, Command: put("k", "x")})
	if got := takeMsgs(r, MsgCommitOK); len(got) != 1 {
		t.Fatalf("a Commit of a compacted instance is not acknowledged: %v", got)
	}
	// TryPreAccept of attributes that do not reach 2.5: a committed
	// conflict with no edge.
	step(&Msg{Type: MsgTryPreAccept, Ballot: Ballot{1, 1}, ID: InstanceID{1, 2}, Command: put("k", "delta"), Seq: 1, Deps: []InstanceID{{2, 4}}})
	try := takeMsgs(r, MsgTryPreAcceptOK)
	if len(try) != 1 || !try[0].Changed || try[0].Status != StatusCommitted || !slices.Equal(try[0].Deps, []InstanceID{{2, 5}}) {
		t.Fatalf("TryPreAccept missing a compacted conflict: %v", try)
	}
	// Attributes that reach it are pre-accepted.
	step(&Msg{Type: MsgTryPreAccept, Ballot: Ballot{1, 1}, ID: InstanceID{1, 3}, Command: put("k", "eps"), Seq: 11, Deps: []InstanceID{{2, 5}}})
	if try := takeMsgs(r, MsgTryPreAcceptOK); len(try) != 1 || try[0].Changed {
		t.Fatalf("TryPreAccept reaching the compacted conflict refused: %v", try)
	}
}

// TestInstalledConflictIndex: a replica that installed a peer's snapshot
// depends on the instances it holds for the keys they touched, though it
// never saw them.
func TestInstalledConflictIndex(t *testing.T) {
	c := newCluster(t, 3, 11)
	c.withSnapshots(5, 40)
	lag := c.nodes[2]
	c.crash(lag)
	for i := range 100 {
		// k1 and k2 early only: their latest instances are long compacted
		// by the time the lagging replica comes back.
		k := "k0"
		if i < 60 {
			k = fmt.Sprint("k", i%3)
		}
		c.propose(c.nodes[i%2], put(k, fmt.Sprint("v", i)))
		for len(c.queue) > 0 {
			c.deliverOne(false)
		}
	}
	c.run(0, 1)
	c.restart(lag)
	c.propose(c.nodes[0], put("k0", "wake"))
	c.run(0, 1)
	if lag.installs == 0 {
		t.Fatal("no snapshot installed")
	}
	latest := c.nodes[0].r.keys["k1"]
	if err := lag.r.Step(consensus.Message{From: 1, To: 3, Payload: &Msg{Type: MsgPreAccept, Ballot: Ballot{0, 1}, ID: InstanceID{1, 999}, Command: put("k1", "late"), Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	ok := takeMsgs(lag.r, MsgPreAcceptOK)
	if len(ok) != 1 {
		t.Fatalf("no PreAcceptOK: %v", ok)
	}
	for _, e := range latest.last {
		rep, n := e.rep, e.inst
		if !covers(ok[0].Deps, InstanceID{rep, n}) {
			t.Fatalf("after installing a snapshot, a command on k1 depends on %v, not on the latest instance %v", ok[0].Deps, InstanceID{rep, n})
		}
		if _, held := lag.r.Instance(InstanceID{rep, n}); held {
			t.Fatalf("%v is held: the test does not show that the installed index is used", InstanceID{rep, n})
		}
	}
}

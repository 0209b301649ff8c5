package paxos

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// snapCluster is a 3-node cluster with snapshots every 4 applied slots,
// keeping 1 slot behind each, in 8-byte chunks; node 1 leads.
func snapCluster(t *testing.T, adjust ...func(*Config)) *cluster {
	t.Helper()
	c := newCluster(t, 3, 1, append([]func(*Config){withSnapshots(4, 1, 8)}, adjust...)...)
	c.node(1).r.campaign()
	c.stabilize()
	if l := c.leaders(); !slices.Equal(l, []consensus.NodeID{1}) {
		t.Fatalf("leaders %v", l)
	}
	return c
}

func (c *cluster) proposeN(id consensus.NodeID, n int, prefix string) {
	c.t.Helper()
	for i := range n {
		c.propose(id, fmt.Sprintf("%s%d", prefix, i))
		c.stabilize()
	}
}

// countMsgs counts the queued-and-delivered messages of type t to node to,
// by wrapping deliver.
func (c *cluster) deliverCounting(t MsgType, to consensus.NodeID, n *int) {
	c.deliver(func(m consensus.Message, p *Msg) bool {
		if p.Type == t && m.To == to {
			*n++
		}
		return true
	})
}

func checkSameApplied(t *testing.T, c *cluster) {
	t.Helper()
	var ref []string
	for _, nd := range c.nodes {
		if !nd.up {
			continue
		}
		got := appliedData(nd)
		if ref == nil {
			ref = got
			continue
		}
		if !slices.Equal(got, ref) {
			t.Fatalf("node %d applied %v, another node %v\n%v", nd.id, got, ref, c)
		}
	}
}

func TestCompactErrors(t *testing.T) {
	// Disabled.
	c := newCluster(t, 3, 1)
	c.node(1).r.campaign()
	c.stabilize()
	c.proposeN(1, 3, "x")
	if err := c.node(1).r.Compact(consensus.SnapshotMeta{Index: 1, Term: 1}); !errors.Is(err, ErrSnapshotsDisabled) {
		t.Fatalf("Compact without a store: %v", err)
	}

	c = snapCluster(t, func(cfg *Config) { cfg.SnapshotEntries = 0 })
	c.proposeN(1, 5, "x")
	r := c.node(1).r
	term := r.log[2].entry.Term // slot 3
	for _, tc := range []struct {
		meta consensus.SnapshotMeta
		want string
	}{
		{consensus.SnapshotMeta{Index: r.applied + 1, Term: term}, "beyond the applied"},
		{consensus.SnapshotMeta{Index: 3, Term: term + 1}, "has term"},
		{consensus.SnapshotMeta{Index: 3, Term: term, Voters: make([]consensus.NodeID, PeersMax+1)}, "voters"},
	} {
		if err := r.Compact(tc.meta); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compact(%+v) = %v, want an error containing %q", tc.meta, err, tc.want)
		}
	}
	if err := r.Compact(consensus.SnapshotMeta{Index: 3, Term: term}); err != nil {
		t.Fatal(err)
	}
	if err := r.Compact(consensus.SnapshotMeta{Index: 3, Term: term}); err != nil {
		t.Fatalf("compacting again at the same snapshot: %v", err)
	}
	if err := r.Compact(consensus.SnapshotMeta{Index: 3, Term: term + 1}); err == nil {
		t.Fatal("compacting at the same index with another term succeeded")
	}
	if err := r.Compact(consensus.SnapshotMeta{Index: 2, Term: term}); err == nil || !strings.Contains(err.Error(), "older") {
		t.Fatalf("compacting behind the snapshot: %v", err)
	}
}

// After Compact, the next Ready persists exactly one Checkpoint that holds
// the promise, tried round, commit, and every slot after the compacted
// prefix with the ballot it was accepted at.
func TestCheckpointContent(t *testing.T) {
	c := snapCluster(t, func(cfg *Config) { cfg.SnapshotEntries = 0; cfg.CompactionRetainEntries = 2 })
	c.proposeN(1, 6, "x")
	r := c.node(2).r
	// An accepted but not chosen slot at the end: an accept from the leader
	// that node 2 alone receives.
	if err := c.node(1).r.Propose(cmd("tail")); err != nil {
		t.Fatal(err)
	}
	c.process(1)
	c.deliver(func(m consensus.Message, p *Msg) bool { return m.To == 2 && p.Type == MsgAccept })
	c.queue = nil
	c.process(2)
	c.queue = nil
	applied := r.applied
	if applied < 6 || r.lastIndex() != applied+1 {
		t.Fatalf("node 2 applied %d, last slot %d", applied, r.lastIndex())
	}
	meta := consensus.SnapshotMeta{Index: 5, Term: r.at(5).entry.Term, Voters: ids(3)}
	if err := r.Compact(meta); err != nil {
		t.Fatal(err)
	}
	rd := r.Ready()
	if len(rd.Persist) != 1 {
		t.Fatalf("Persist = %v, want one checkpoint", rd.Persist)
	}
	cp, ok := rd.Persist[0].(Checkpoint)
	if !ok {
		t.Fatalf("persisted %T", rd.Persist[0])
	}
	if rd.SyncOptional {
		t.Fatal("a checkpoint Ready is sync-optional")
	}
	r.Advance(rd)
	if cp.SnapshotIndex() != 5 || cp.Snapshot.Term != meta.Term || cp.LogIndex != 3 {
		t.Fatalf("checkpoint %v: want snapshot 5, log after 3", cp)
	}
	if cp.HardState != r.hardState() || cp.HardState.Promised != c.node(1).r.ballot {
		t.Fatalf("checkpoint hard state %+v, replica %+v", cp.HardState, r.hardState())
	}
	if len(cp.Entries) != int(r.lastIndex()-3) {
		t.Fatalf("checkpoint holds %d entries, want slots 4..%d", len(cp.Entries), r.lastIndex())
	}
	last := len(cp.Entries) - 1
	if e := cp.Entries[last]; string(e.Command.Data) != "tail" || cp.Ballots[last] != c.node(1).r.ballot || e.Index <= cp.HardState.Commit {
		t.Fatalf("last checkpoint entry %s@%v, commit %d: want the unchosen accepted tail", FormatEntry(e), cp.Ballots[last], cp.HardState.Commit)
	}
	if r.FirstIndex() != 4 {
		t.Fatalf("first index %d, want 4", r.FirstIndex())
	}
	if _, ok := r.Entry(3); ok {
		t.Fatal("a compacted slot is still readable")
	}
	if err := cp.validate(); err != nil {
		t.Fatal(err)
	}
}

// replicaState is what restart must rebuild.
type replicaState struct {
	Promised       Ballot
	Tried, Commit  uint64
	Offset         uint64
	Snap           consensus.SnapshotMeta
	Entries        []consensus.Entry
	Accepted       []Ballot
	ChosenToCommit bool
}

func stateOf(r *Replica) replicaState {
	st := replicaState{Promised: r.promised, Tried: r.tried, Commit: r.commit, Offset: r.offset, Snap: r.snap, ChosenToCommit: true}
	for i := range r.log {
		s := &r.log[i]
		if s.has {
			st.Entries = append(st.Entries, s.entry)
			st.Accepted = append(st.Accepted, s.accepted)
		}
		if idx := r.offset + 1 + uint64(i); idx <= r.commit && !s.chosen {
			st.ChosenToCommit = false
		}
	}
	return st
}

// Restarting from the checkpoint and the records after it gives back the
// same durable state, and the committed slots after the snapshot again.
func TestRestartFromCheckpointAndTail(t *testing.T) {
	c := snapCluster(t)
	c.proposeN(1, 10, "a")
	c.proposeN(1, 1, "b") // a tail after the last snapshot (at 8)
	for _, id := range []consensus.NodeID{1, 2} {
		nd := c.node(id)
		if nd.r.snap.Index == 0 {
			t.Fatalf("node %d took no snapshot", id)
		}
		want := stateOf(nd.r)
		wantApplied := appliedData(nd)
		// The records from the newest checkpoint on are enough.
		cpAt := -1
		for i, rec := range nd.durable {
			if _, ok := rec.(Checkpoint); ok {
				cpAt = i
			}
		}
		if cpAt < 0 || cpAt == len(nd.durable)-1 || want.Commit == nd.r.snap.Index {
			t.Fatalf("node %d: no checkpoint with a tail after it", id)
		}
		for _, durable := range [][]consensus.Record{nd.durable, nd.durable[cpAt:]} {
			r, err := New(nd.cfg, slices.Clone(durable))
			if err != nil {
				t.Fatal(err)
			}
			got := stateOf(r)
			got.Promised, want.Promised = Ballot{}, Ballot{} // the leader's self-promise is volatile until its next Ready
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("node %d restarted:\n got %+v\nwant %+v", id, got, want)
			}
			rd := r.Ready()
			if len(rd.Committed) == 0 || rd.Committed[0].Index != r.snap.Index+1 || rd.Committed[len(rd.Committed)-1].Index != r.commit {
				t.Fatalf("node %d restarted re-emits %d entries from %v, want %d..%d", id, len(rd.Committed), rd.Committed, r.snap.Index+1, r.commit)
			}
		}
		c.crash(id)
		c.restart(id)
		c.stabilize()
		if got := appliedData(nd); !slices.Equal(got, wantApplied) {
			t.Fatalf("node %d applied %v after restart, want %v", id, got, wantApplied)
		}
	}
	c.waitLeader(100)
	c.proposeN(c.leaders()[0], 3, "c")
	c.tick(5)
	checkSameApplied(t, c)

	// New fails clearly without the snapshot the checkpoint names.
	nd := c.node(2)
	cfg := nd.cfg
	cfg.Snapshots = nil
	if _, err := New(cfg, nd.durable); err == nil || !strings.Contains(err.Error(), "Config.Snapshots is nil") {
		t.Fatalf("New without a store: %v", err)
	}
	cfg.Snapshots = &memSnapshotStore{}
	if _, err := New(cfg, nd.durable); err == nil || !strings.Contains(err.Error(), "snapshot store") {
		t.Fatalf("New with an empty store: %v", err)
	}
}

// A replica that missed slots the others compacted gets the snapshot, in
// more than one chunk, then learns the rest from the log.
func TestLaggingReplicaGetsSnapshot(t *testing.T) {
	c := snapCluster(t)
	c.crash(3)
	c.proposeN(1, 20, "a")
	if c.node(1).r.offset == 0 {
		t.Fatal("the leader did not compact")
	}
	c.restart(3)
	chunks := 0
	for range 40 {
		for _, nd := range c.nodes {
			nd.r.Tick()
		}
		for range 50 {
			for _, nd := range c.nodes {
				for c.process(nd.id) {
				}
			}
			c.deliverCounting(MsgSnap, 3, &chunks)
		}
	}
	if chunks < 2 {
		t.Fatalf("node 3 got %d snapshot chunks, want more than one", chunks)
	}
	if c.node(3).r.snap.Index == 0 || c.node(3).snaps.received < 2 {
		t.Fatalf("node 3 installed no snapshot (snap %v, %d chunks stored)", c.node(3).r.snap, c.node(3).snaps.received)
	}
	c.proposeN(1, 3, "b")
	c.tick(5)
	checkSameApplied(t, c)
	if len(c.node(3).applied) != 23 {
		t.Fatalf("node 3 applied %d slots\n%v", len(c.node(3).applied), c)
	}
}

// driveUntil runs ticks (delivering all messages) until cond holds.
func (c *cluster) driveUntil(t *testing.T, max int, keep func(m consensus.Message, p *Msg) bool, cond func() bool) {
	t.Helper()
	for range max {
		if cond() {
			return
		}
		for _, nd := range c.nodes {
			if nd.up {
				nd.r.Tick()
			}
		}
		for range 20 {
			for _, nd := range c.nodes {
				for c.process(nd.id) {
				}
			}
			c.deliver(keep)
		}
	}
	t.Fatalf("condition not reached in %d ticks\n%v", max, c)
}

// The leader changes while a snapshot is on its way: the transfer is
// abandoned or finished, and the lagging replica catches up either way.
func TestSnapshotLeaderChangeMidTransfer(t *testing.T) {
	c := newCluster(t, 5, 1, withSnapshots(4, 1, 8))
	c.node(1).r.campaign()
	c.stabilize()
	c.crash(5)
	c.proposeN(1, 20, "a")
	c.restart(5)
	// Let one chunk through to node 5, then crash the leader.
	got := 0
	c.driveUntil(t, 50, func(m consensus.Message, p *Msg) bool {
		if p.Type == MsgSnap && m.To == 5 {
			got++
			return got <= 1
		}
		return true
	}, func() bool { return got > 1 })
	if c.node(5).r.recv.next == 0 {
		t.Fatalf("node 5 received no chunk")
	}
	c.crash(1)
	c.driveUntil(t, 300, nil, func() bool {
		l := c.leaders()
		return len(l) == 1 && c.node(5).r.commit >= 20
	})
	c.proposeN(c.leaders()[0], 2, "b")
	c.tick(5)
	checkSameApplied(t, c)
}

// The receiver crashes mid-transfer (losing the partial snapshot), and the
// sender crashes mid-transfer: both recover.
func TestSnapshotCrashMidTransfer(t *testing.T) {
	c := snapCluster(t)
	c.crash(3)
	c.proposeN(1, 20, "a")
	c.restart(3)
	got := 0
	c.driveUntil(t, 50, func(m consensus.Message, p *Msg) bool {
		if p.Type == MsgSnap && m.To == 3 {
			got++
			return got <= 1
		}
		return true
	}, func() bool { return got > 1 })
	c.crash(3)
	c.restart(3)
	if c.node(3).r.snap.Index != 0 {
		t.Fatal("node 3 has a snapshot before the transfer finished")
	}
	// Now the sender crashes mid-transfer.
	got = 0
	c.driveUntil(t, 50, func(m consensus.Message, p *Msg) bool {
		if p.Type == MsgSnap && m.To == 3 {
			got++
			return got <= 1
		}
		return true
	}, func() bool { return got > 1 })
	c.crash(1)
	c.restart(1)
	c.driveUntil(t, 300, nil, func() bool {
		return len(c.leaders()) == 1 && c.node(3).r.commit >= 20
	})
	c.proposeN(c.leaders()[0], 2, "b")
	c.tick(5)
	checkSameApplied(t, c)
}

// A candidate behind an acceptor's compaction point does not count that
// acceptor's promise until it has installed the acceptor's snapshot; then
// it leads, recovering only the slots after it.
func TestCandidateBehindCompactionGetsSnapshot(t *testing.T) {
	c := snapCluster(t)
	c.crash(3)
	c.proposeN(1, 20, "a")
	c.crash(1)
	c.restart(3)
	r3 := c.node(3).r
	r3.campaign()
	start := r3.start
	if start > c.node(2).r.offset {
		t.Fatalf("node 3 starts phase 1 at %d, not behind node 2's compaction point %d", start, c.node(2).r.offset)
	}
	c.stabilize()
	if r3.role == consensus.RoleLeader && r3.snap.Index == 0 {
		t.Fatal("node 3 leads without the compacted slots")
	}
	// Tick only node 3 (node 2 must not campaign itself).
	for range 60 {
		if r3.role == consensus.RoleLeader {
			break
		}
		r3.Tick()
		c.stabilize()
	}
	if r3.role != consensus.RoleLeader || r3.snap.Index == 0 {
		t.Fatalf("node 3: role %v, snapshot %v\n%v", r3.role, r3.snap, c)
	}
	c.proposeN(3, 2, "b")
	c.tick(3)
	checkSameApplied(t, c)
	if len(c.node(3).applied) < 22 {
		t.Fatalf("node 3 applied %d\n%v", len(c.node(3).applied), c)
	}
}

// A Ready whose only record is a commit-index change is sync-optional;
// one with an acceptance or a promise is not.
func TestSyncOptionalOnlyForCommit(t *testing.T) {
	c := newCluster(t, 3, 1)
	c.node(1).r.campaign()
	c.stabilize()
	if err := c.node(1).r.Propose(cmd("y")); err != nil {
		t.Fatal(err)
	}
	c.process(1)
	c.deliver(func(m consensus.Message, p *Msg) bool { return m.To == 2 })
	r := c.node(2).r
	rd := r.Ready()
	if rd.SyncOptional || len(rd.Persist) == 0 {
		t.Fatalf("accepting Ready: sync-optional %v, %v", rd.SyncOptional, rd.Persist)
	}
	c.queue = append(c.queue, rd.Messages...)
	r.Advance(rd)
	c.stabilize()
	// The next heartbeat's commit notification is node 2's only change.
	c.node(1).r.Tick()
	c.process(1)
	c.deliver(func(m consensus.Message, p *Msg) bool { return m.To == 2 })
	rd = r.Ready()
	if len(rd.Persist) != 1 {
		t.Fatalf("heartbeat Ready persists %v", rd.Persist)
	}
	if _, ok := rd.Persist[0].(HardState); !ok || !rd.SyncOptional {
		t.Fatalf("commit-only Ready %v: sync-optional %v", rd.Persist, rd.SyncOptional)
	}
}

// Every scenario again, with snapshots every 3 slots, 1 retained, 16-byte
// chunks.
func TestScenariosWithSnapshots(t *testing.T) {
	snapshotsAlways = true
	defer func() { snapshotsAlways = false }()
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"AcceptorRefusesLowerBallots", TestAcceptorRefusesLowerBallots},
		{"ProposerRestartDoesNotReuseBallot", TestProposerRestartDoesNotReuseBallot},
		{"AcceptorCrashKeepsWhatItReplied", TestAcceptorCrashKeepsWhatItReplied},
		{"NewLeaderFillsGapWithNoOp", TestNewLeaderFillsGapWithNoOp},
		{"NewLeaderReproposesAcceptedValue", TestNewLeaderReproposesAcceptedValue},
		{"DuellingProposersConverge", TestDuellingProposersConverge},
		{"PartitionedLeaderServesNoStaleRead", TestPartitionedLeaderServesNoStaleRead},
		{"NotLeaderAndLimits", TestNotLeaderAndLimits},
		{"LaggingReplicaCatchesUp", TestLaggingReplicaCatchesUp},
	} {
		t.Run(tc.name, tc.f)
	}
}

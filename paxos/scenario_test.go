package paxos

import (
	"errors"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// ---- Basic Paxos (single decree) ----

// Five acceptors: two accepted (1, X), three accepted (2, Y), so Y is
// chosen. A proposer with ballot 3 whose promises come from one X acceptor,
// one Y acceptor and a third (another X acceptor: X is the majority of its
// promises) must propose Y, the value of the highest accepted ballot. The
// known-wrong variant proposes X.
func TestBasicPhase2ProposesHighestAccepted(t *testing.T) {
	for _, bug := range []string{"", BugPhase2AnyAccepted} {
		acc := make([]*Acceptor, 5)
		for i := range acc {
			acc[i] = NewAcceptor(consensus.NodeID(i+1), AcceptorState{})
		}
		b1, b2 := Ballot{Round: 1, Node: 1}, Ballot{Round: 2, Node: 2}
		learner := NewLearner(5)
		for i, a := range acc {
			b, v := b1, []byte("X")
			if i >= 2 {
				b, v = b2, []byte("Y")
			}
			if _, ok, _ := a.Prepare(b); !ok {
				t.Fatalf("acceptor %d refused prepare %v", a.ID, b)
			}
			if _, ok, persist := a.Accept(b, v); !ok || !persist {
				t.Fatalf("acceptor %d refused accept %v", a.ID, b)
			}
			learner.Accepted(a.ID, b, v)
		}
		if v, ok := learner.Accepted(5, b2, []byte("Y")); !ok || string(v) != "Y" {
			t.Fatalf("learner: chosen %q %v, want Y", v, ok)
		}

		p := NewProposer(3, 2, 5, 2)
		if bug != "" {
			SetProposerBug(p, bug)
		}
		b3, tried := p.Prepare([]byte("Z"))
		if b3.Round != 3 || tried != 3 {
			t.Fatalf("ballot %v (tried %d), want round 3", b3, tried)
		}
		var value []byte
		var done bool
		for _, a := range []*Acceptor{acc[0], acc[2], acc[1]} { // X, Y, X
			pr, ok, _ := a.Prepare(b3)
			if !ok {
				t.Fatalf("acceptor %d refused %v", a.ID, b3)
			}
			value, done = p.Promised(pr)
		}
		if !done {
			t.Fatal("three promises of five did not complete phase 1")
		}
		want := "Y"
		if bug != "" {
			want = "X"
		}
		if string(value) != want {
			t.Fatalf("bug=%q: phase 2 proposes %q, want %q", bug, value, want)
		}
	}
	// No accepted value among the promises: the proposer's own.
	if v, free := SelectValue([]Promise{{From: 1}, {From: 2}}, []byte("own")); !free || string(v) != "own" {
		t.Fatalf("SelectValue with nothing accepted = %q, %v", v, free)
	}
}

// An acceptor that accepted a value never accepts (or promises) a lower
// ballot afterwards, and an accept raises its promise.
func TestAcceptorRefusesLowerBallots(t *testing.T) {
	a := NewAcceptor(1, AcceptorState{})
	b1, b2, b3 := Ballot{1, 1}, Ballot{2, 2}, Ballot{3, 3}
	if _, ok, _ := a.Accept(b2, []byte("v")); !ok {
		t.Fatal("fresh acceptor refused an accept")
	}
	if promised, ok, _ := a.Accept(b1, []byte("w")); ok || promised != b2 {
		t.Fatalf("accept at lower %v: ok=%v promised=%v", b1, ok, promised)
	}
	if pr, ok, _ := a.Prepare(b1); ok || pr.Ballot != b2 {
		t.Fatalf("prepare at lower %v: ok=%v promise=%v", b1, ok, pr.Ballot)
	}
	if _, ok, _ := a.Accept(b3, []byte("x")); !ok || a.State().Promised != b3 {
		t.Fatalf("accept at %v without prepare: ok=%v promised=%v", b3, ok, a.State().Promised)
	}
	if _, ok, _ := a.Prepare(b2); ok {
		t.Fatal("prepare below the promise raised by an accept was granted")
	}

	// The same through a Multi-Paxos replica: a lower-ballot accept is
	// refused with the promise, and an accept raises the durable promise.
	c := newCluster(t, 3, 1)
	r := c.node(2).r
	step := func(b Ballot, slot uint64, data string) *Msg {
		t.Helper()
		r.msgs = nil
		if err := r.Step(consensus.Message{From: 1, To: 2, Payload: &Msg{Type: MsgAccept, Ballot: b,
			Entries: []consensus.Entry{{Index: slot, Term: b.Round, Command: cmd(data)}}}}); err != nil {
			t.Fatal(err)
		}
		return r.msgs[0].Payload.(*Msg)
	}
	if m := step(Ballot{4, 1}, 1, "a"); m.Reject || r.promised != (Ballot{4, 1}) {
		t.Fatalf("accept at 4.1: %v, promised %v", m, r.promised)
	}
	if m := step(Ballot{1, 1}, 1, "b"); !m.Reject || m.Ballot != (Ballot{4, 1}) {
		t.Fatalf("accept at 1.1 after 4.1: %v", m)
	}
	if e, _ := r.Entry(1); string(e.Command.Data) != "a" {
		t.Fatalf("slot 1 holds %s after a refused accept", FormatEntry(e))
	}
	rd := r.Ready()
	if !slices.ContainsFunc(rd.Persist, func(rec consensus.Record) bool {
		hs, ok := rec.(HardState)
		return ok && hs.Promised == (Ballot{4, 1})
	}) {
		t.Fatalf("the raised promise is not persisted: %v", rd.Persist)
	}
}

// A proposer that restarts never reuses a ballot it used before the crash,
// even if no acceptor ever heard of it: the round is durable before the
// prepares go out.
func TestProposerRestartDoesNotReuseBallot(t *testing.T) {
	c := newCluster(t, 3, 1)
	nd := c.node(1)
	nd.r.campaign()
	first := nd.r.ballot
	rd := nd.r.Ready()
	if len(rd.Messages) == 0 {
		t.Fatal("no prepares")
	}
	if !slices.ContainsFunc(rd.Persist, func(rec consensus.Record) bool {
		hs, ok := rec.(HardState)
		return ok && hs.Tried == first.Round && hs.Promised == first
	}) {
		t.Fatalf("the Ready sending prepares at %v does not persist that round: %v", first, rd.Persist)
	}
	nd.durable = append(nd.durable, rd.Persist...)
	// Crash before any prepare is delivered.
	c.crash(1)
	c.restart(1)
	nd.r.campaign()
	if !first.Less(nd.r.ballot) || nd.r.ballot.Round == first.Round {
		t.Fatalf("after restart the proposer campaigns at %v; it used %v before the crash", nd.r.ballot, first)
	}
	// Basic Paxos proposer: the same from the durable round.
	p := NewProposer(1, 0, 3, first.Round)
	if b, _ := p.Prepare(nil); b.Round <= first.Round {
		t.Fatalf("basic proposer restarted at round %d reuses %v", first.Round, b)
	}
	// Rounds are partitioned among proposers: never shared.
	seen := map[uint64]int{}
	for pos := range 5 {
		r := uint64(0)
		for range 20 {
			r = NextRound(r, pos, 5)
			if other, ok := seen[r]; ok {
				t.Fatalf("round %d used by positions %d and %d", r, other, pos)
			}
			seen[r] = pos
		}
	}
}

// An acceptor that crashes right after promising (and after accepting)
// loses nothing it replied with.
func TestAcceptorCrashKeepsWhatItReplied(t *testing.T) {
	c := newCluster(t, 3, 1)
	l := c.node(1)
	l.r.campaign()
	c.process(1)
	c.deliver(func(m consensus.Message, _ *Msg) bool { return m.To == 2 })
	c.process(2) // persists the promise, queues the reply
	promise := c.queue[len(c.queue)-1].Payload.(*Msg)
	if promise.Type != MsgPromise || promise.Reject {
		t.Fatalf("node 2 answered %v", promise)
	}
	c.crash(2)
	c.restart(2)
	if got := c.node(2).r.promised; got != promise.Ballot {
		t.Fatalf("after the crash node 2 promised %v; it replied with a promise of %v", got, promise.Ballot)
	}
	// The promise gets node 1 elected; node 2 accepts a value and crashes.
	c.stabilize()
	if c.leaders()[0] != 1 {
		t.Fatalf("leaders %v", c.leaders())
	}
	c.propose(1, "x")
	c.process(1)
	c.deliver(func(m consensus.Message, _ *Msg) bool { return m.To == 2 })
	c.process(2)
	ack := c.queue[len(c.queue)-1].Payload.(*Msg)
	if ack.Type != MsgAccepted || ack.Reject || len(ack.Slots) != 1 {
		t.Fatalf("node 2 answered %v", ack)
	}
	c.crash(2)
	c.restart(2)
	r2 := c.node(2).r
	e, ok := r2.Entry(ack.Slots[0])
	if !ok || string(e.Command.Data) != "x" || r2.log[ack.Slots[0]-1].accepted != ack.Ballot {
		t.Fatalf("after the crash node 2 holds %s at %v for slot %d; it acknowledged x at %v", FormatEntry(e), r2.log[ack.Slots[0]-1].accepted, ack.Slots[0], ack.Ballot)
	}
	// And reports it to the next proposer.
	r2.msgs = nil
	next := Ballot{Round: 100, Node: 3}
	if err := r2.Step(consensus.Message{From: 3, To: 2, Payload: &Msg{Type: MsgPrepare, Ballot: next, Index: 1}}); err != nil {
		t.Fatal(err)
	}
	p := r2.msgs[0].Payload.(*Msg)
	if len(p.Entries) != 1 || string(p.Entries[0].Command.Data) != "x" || p.Ballots[0] != ack.Ballot {
		t.Fatalf("promise after restart: %v", p)
	}
}

// The leader's accepts for slot 2 of 3 are lost and the leader crashes: the
// new leader fills slot 2 with a no-op, and slot 3 is executed.
func TestNewLeaderFillsGapWithNoOp(t *testing.T) {
	c := newCluster(t, 3, 1)
	c.node(1).r.campaign()
	c.stabilize()
	for _, d := range []string{"a", "b", "c"} {
		c.propose(1, d)
		c.process(1)
	}
	// Slot 2's accepts are lost; slots 1 and 3 reach both followers, but
	// their acknowledgements die with the leader.
	c.deliver(func(_ consensus.Message, m *Msg) bool {
		return !(m.Type == MsgAccept && slices.ContainsFunc(m.Entries, func(e consensus.Entry) bool { return e.Index == 2 }))
	})
	c.process(2)
	c.process(3)
	c.crash(1)
	c.queue = nil
	c.waitLeader(100)
	c.tick(5)
	for _, id := range []consensus.NodeID{2, 3} {
		if got := appliedData(c.node(id)); !slices.Equal(got, []string{"a", "noop", "c"}) {
			t.Fatalf("node %d applied %v, want [a noop c]\n%v", id, got, c)
		}
	}
	c.restart(1)
	c.tick(5)
	if got := appliedData(c.node(1)); !slices.Equal(got, []string{"a", "noop", "c"}) {
		t.Fatalf("restarted node 1 applied %v\n%v", got, c)
	}
}

// If slot 2 reached one acceptor, the new leader re-proposes that value
// instead of a no-op when the acceptor is in its quorum.
func TestNewLeaderReproposesAcceptedValue(t *testing.T) {
	c := newCluster(t, 3, 1)
	c.node(1).r.campaign()
	c.stabilize()
	for _, d := range []string{"a", "b", "c"} {
		c.propose(1, d)
		c.process(1)
	}
	c.deliver(func(msg consensus.Message, m *Msg) bool {
		return !(m.Type == MsgAccept && msg.To == 3 && slices.ContainsFunc(m.Entries, func(e consensus.Entry) bool { return e.Index == 2 }))
	})
	c.process(2)
	c.process(3)
	c.crash(1)
	c.queue = nil
	c.waitLeader(100)
	c.tick(5)
	for _, id := range []consensus.NodeID{2, 3} {
		if got := appliedData(c.node(id)); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("node %d applied %v, want [a b c]\n%v", id, got, c)
		}
	}
}

// Two proposers start phase 1 in the same tick, with the same base
// timeout: the randomized back-off drawn from Config.Rand separates them,
// and a command commits within a bound.
func TestDuellingProposersConverge(t *testing.T) {
	const boundTicks = 100
	for seed := uint64(1); seed <= 30; seed++ {
		c := newCluster(t, 3, seed)
		c.node(1).r.campaign()
		c.node(2).r.campaign()
		c.stabilize()
		committed := false
		for tick := 0; tick < boundTicks && !committed; tick++ {
			c.tick(1)
			if l := c.leaders(); len(l) == 1 && len(c.node(l[0]).applied) == 0 && c.node(l[0]).r.lastIndex() == c.node(l[0]).r.commit {
				c.propose(l[0], "x")
			}
			for _, nd := range c.nodes {
				if slices.Contains(appliedData(nd), "x") {
					committed = true
				}
			}
		}
		if !committed {
			t.Fatalf("seed %d: nothing committed within %d ticks of duelling proposers\n%v", seed, boundTicks, c)
		}
	}
}

// A leader cut off from the majority never confirms a read, while the
// majority elects a new leader and commits a write; the known-wrong variant
// serves the stale value at once.
func TestPartitionedLeaderServesNoStaleRead(t *testing.T) {
	for _, bug := range []string{"", BugReadWithoutBarrier} {
		c := newCluster(t, 5, 1, func(cfg *Config) { SetBug(cfg, bug) })
		c.node(1).r.campaign()
		c.stabilize()
		c.propose(1, "x")
		c.tick(2)
		old := c.node(1).r.commit
		c.isolate(1)
		// Node 1 is paused (not ticked) while it still believes it leads.
		if err := c.node(1).r.ReadIndex([]byte("r1")); err != nil {
			t.Fatal(err)
		}
		c.stabilize()
		var l2 consensus.NodeID
		for range 100 {
			for _, nd := range c.nodes[1:] {
				nd.r.Tick()
			}
			c.stabilize()
			for _, nd := range c.nodes[1:] {
				if nd.r.role == consensus.RoleLeader {
					l2 = nd.id
				}
			}
			if l2 != 0 {
				break
			}
		}
		if l2 == 0 {
			t.Fatal("the majority elected no leader")
		}
		c.propose(l2, "y")
		for _, nd := range c.nodes[1:] {
			nd.r.Tick()
		}
		c.stabilize()
		newCommit := c.node(l2).r.commit
		c.heal()
		c.tick(3)
		reads := c.node(1).reads
		if bug == "" {
			if len(reads) != 0 {
				t.Fatalf("the partitioned leader served a read: %v (commit %d, new leader's %d)", reads, old, newCommit)
			}
			// The new leader serves reads at an index covering y.
			if err := c.node(l2).r.ReadIndex([]byte("r2")); err != nil {
				t.Fatal(err)
			}
			c.tick(2)
			if rs := c.node(l2).reads; len(rs) != 1 || rs[0].Index < newCommit {
				t.Fatalf("new leader's read: %v, want index >= %d", rs, newCommit)
			}
			continue
		}
		if len(reads) != 1 || reads[0].Index >= newCommit {
			t.Fatalf("bug %s: want a stale read below %d, got %v", bug, newCommit, reads)
		}
	}
}

// Non-leaders refuse proposals and reads with a hint; oversized entries
// and a full window are refused.
func TestNotLeaderAndLimits(t *testing.T) {
	c := newCluster(t, 3, 1, func(cfg *Config) { cfg.InflightSlotsMax = 2; cfg.EntryBytesMax = 100 })
	c.node(1).r.campaign()
	c.stabilize()
	c.tick(1)
	var nl *consensus.NotLeaderError
	if err := c.node(2).r.Propose(cmd("x")); !errors.As(err, &nl) || nl.Leader != 1 || !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("propose at a follower: %v", err)
	}
	if err := c.node(3).r.ReadIndex(nil); !errors.As(err, &nl) || nl.Leader != 1 {
		t.Fatalf("read at a follower: %v", err)
	}
	if err := c.node(1).r.Propose(consensus.Command{Data: make([]byte, 200)}); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	c.propose(1, "a")
	c.propose(1, "b")
	if err := c.node(1).r.Propose(cmd("c")); !errors.Is(err, consensus.ErrProposalDropped) {
		t.Fatalf("third proposal in a window of 2: %v", err)
	}
	c.stabilize()
	c.propose(1, "c")
	c.tick(2)
	if got := appliedData(c.node(3)); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("node 3 applied %v", got)
	}
}

// A replica that was down while many slots were chosen catches up from
// the leader's log (MsgLearn), in bounded batches.
func TestLaggingReplicaCatchesUp(t *testing.T) {
	c := newCluster(t, 3, 1, func(cfg *Config) { cfg.EntriesPerMsgMax = 7 })
	c.node(1).r.campaign()
	c.stabilize()
	c.crash(3)
	for i := range 50 {
		c.propose(1, string(rune('A'+i%26)))
		c.stabilize()
	}
	c.restart(3)
	c.tick(30)
	if got, want := len(c.node(3).applied), len(c.node(1).applied); got != want || want < 50 {
		t.Fatalf("node 3 applied %d slots, the leader %d\n%v", got, want, c)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig(1, ids(3), zeroRand{})
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    func(*Config)
		want string
	}{
		{func(c *Config) { c.ID = 0 }, "ID must not be 0"},
		{func(c *Config) { c.ID = 9 }, "does not include"},
		{func(c *Config) { c.Peers = []consensus.NodeID{1, 1} }, "twice"},
		{func(c *Config) { c.ElectionTimeoutTicks = 1 }, "ElectionTimeoutTicks"},
		{func(c *Config) { c.InflightSlotsMax = 0 }, "InflightSlotsMax"},
		{func(c *Config) { c.EntriesPerMsgMax = 0 }, "EntriesPerMsgMax"},
		{func(c *Config) { c.AcceptRetryTicks = 0 }, "AcceptRetryTicks"},
		{func(c *Config) { c.Rand = nil }, "Rand"},
	} {
		cfg := good
		cfg.Peers = ids(3)
		tc.f(&cfg)
		if err := cfg.Validate(); err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %q, got %v", tc.want, err)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

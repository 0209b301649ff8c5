package epaxos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func ids(n int) []consensus.NodeID {
	out := make([]consensus.NodeID, n)
	for i := range out {
		out[i] = consensus.NodeID(i + 1)
	}
	return out
}

func newReplica(t *testing.T, id consensus.NodeID, n int, durable []consensus.Record, adjust ...func(*Config)) *Replica {
	t.Helper()
	cfg := DefaultConfig(id, ids(n))
	for _, f := range adjust {
		f(&cfg)
	}
	r, err := New(cfg, durable)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func put(key string, data string) consensus.Command {
	return consensus.Command{Keys: []string{key}, Data: []byte(data)}
}

func TestFastQuorumSizes(t *testing.T) {
	for _, c := range []struct{ n, f, fq int }{{1, 0, 1}, {3, 1, 2}, {5, 2, 3}, {7, 3, 5}, {9, 4, 6}, {11, 5, 8}} {
		if got := MaxFailures(c.n); got != c.f {
			t.Errorf("MaxFailures(%d) = %d, want %d", c.n, got, c.f)
		}
		if got := FastQuorum(c.n); got != c.fq {
			t.Errorf("FastQuorum(%d) = %d, want %d", c.n, got, c.fq)
		}
	}
}

func TestPreAcceptDecision(t *testing.T) {
	for _, n := range []int{3, 5, 7, 9} {
		fq, maj := FastQuorum(n), consensus.Majority(n)
		for replies := 0; replies < n; replies++ {
			have := replies + 1
			// Unchanged replies at the initial ballot.
			want := decideWait
			if have >= fq {
				want = decideFast
			}
			if got := preAcceptDecision(n, fq, replies, false, true, false); got != want {
				t.Errorf("n=%d replies=%d unchanged: %v, want %v", n, replies, got, want)
			}
			// One changed reply: slow once a majority answered.
			want = decideWait
			if have >= maj {
				want = decideSlow
			}
			if got := preAcceptDecision(n, fq, replies, true, true, false); got != want {
				t.Errorf("n=%d replies=%d changed: %v, want %v", n, replies, got, want)
			}
			// Unchanged but timed out before a fast quorum: slow with a majority.
			want = decideWait
			switch {
			case have >= fq:
				want = decideFast
			case have >= maj:
				want = decideSlow
			}
			if got := preAcceptDecision(n, fq, replies, false, true, true); got != want {
				t.Errorf("n=%d replies=%d timed out: %v, want %v", n, replies, got, want)
			}
			// Not the initial ballot: never fast.
			if got := preAcceptDecision(n, fq, replies, false, false, false); got == decideFast {
				t.Errorf("n=%d replies=%d non-initial ballot decided fast", n, replies)
			}
		}
	}
}

// takeMsgs returns and clears r's pending messages of type typ.
func takeMsgs(r *Replica, typ MsgType) []*Msg {
	rd := r.Ready()
	r.Advance(rd)
	var out []*Msg
	for _, m := range rd.Messages {
		if p := m.Payload.(*Msg); p.Type == typ {
			out = append(out, p)
		}
	}
	return out
}

func reply(t *testing.T, r *Replica, from consensus.NodeID, m *Msg) {
	t.Helper()
	if err := r.Step(consensus.Message{From: from, To: r.id, Payload: m}); err != nil {
		t.Fatal(err)
	}
}

// TestFastAndSlowPathAtLeader drives a leader by hand for N = 3, 5, 7, 9.
func TestFastAndSlowPathAtLeader(t *testing.T) {
	for _, n := range []int{3, 5, 7, 9} {
		t.Run(fmt.Sprint("N=", n), func(t *testing.T) {
			fq := FastQuorum(n)
			id := InstanceID{1, 1}
			// Fast: fq-1 unchanged replies commit; fq-2 do not.
			r := newReplica(t, 1, n, nil)
			if err := r.Propose(put("k", "a")); err != nil {
				t.Fatal(err)
			}
			if got := len(takeMsgs(r, MsgPreAccept)); got != n-1 {
				t.Fatalf("sent %d PreAccepts, want %d", got, n-1)
			}
			for i := 0; i < fq-1; i++ {
				in, _ := r.Instance(id)
				if in.Status != StatusPreAccepted {
					t.Fatalf("committed after %d replies (fast quorum %d)", i+1, fq)
				}
				reply(t, r, consensus.NodeID(i+2), &Msg{Type: MsgPreAcceptOK, Ballot: Ballot{Node: 1}, ID: id, Seq: 1})
			}
			if in, _ := r.Instance(id); in.Status != StatusCommitted {
				t.Fatalf("not committed on the fast path after %d replies: %v", fq-1, in)
			}
			if len(takeMsgs(r, MsgCommit)) != n-1 {
				t.Fatal("no Commit broadcast")
			}

			// Slow: one reply changed (a new dependency, higher seq).
			r = newReplica(t, 1, n, nil)
			if err := r.Propose(put("k", "a")); err != nil {
				t.Fatal(err)
			}
			takeMsgs(r, MsgPreAccept)
			other := InstanceID{2, 7}
			reply(t, r, 2, &Msg{Type: MsgPreAcceptOK, Ballot: Ballot{Node: 1}, ID: id, Seq: 3, Deps: []InstanceID{other}, Changed: true})
			for i := 1; i < consensus.Majority(n)-1; i++ {
				reply(t, r, consensus.NodeID(i+2), &Msg{Type: MsgPreAcceptOK, Ballot: Ballot{Node: 1}, ID: id, Seq: 1})
			}
			in, _ := r.Instance(id)
			if in.Status != StatusAccepted || in.Seq != 3 || !slices.Equal(in.Deps, []InstanceID{other}) {
				t.Fatalf("want slow path with seq 3 deps [2.7], got %v", in)
			}
			acc := takeMsgs(r, MsgAccept)
			if len(acc) != n-1 {
				t.Fatalf("sent %d Accepts", len(acc))
			}
			for i := 0; i < consensus.Majority(n)-1; i++ {
				reply(t, r, consensus.NodeID(i+2), &Msg{Type: MsgAcceptOK, Ballot: Ballot{Node: 1}, ID: id})
			}
			if in, _ := r.Instance(id); in.Status != StatusCommitted || in.Seq != 3 {
				t.Fatalf("slow path did not commit: %v", in)
			}

			// Matching replies one short of the fast quorum: wait, then
			// the slow path after RetryTicks (if a majority answered).
			if fq > consensus.Majority(n) {
				r = newReplica(t, 1, n, nil)
				r.Propose(put("k", "a"))
				takeMsgs(r, MsgPreAccept)
				for i := 0; i < fq-2; i++ {
					reply(t, r, consensus.NodeID(i+2), &Msg{Type: MsgPreAcceptOK, Ballot: Ballot{Node: 1}, ID: id, Seq: 1})
				}
				if in, _ := r.Instance(id); in.Status != StatusPreAccepted {
					t.Fatalf("%d matching replies (fast quorum %d) decided: %v", fq-1, fq, in)
				}
				for i := 0; i < r.cfg.RetryTicks; i++ {
					r.Tick()
				}
				if in, _ := r.Instance(id); in.Status != StatusAccepted {
					t.Fatalf("no slow path after timeout: %v", in)
				}
			}
		})
	}
}

func TestDependenciesByKey(t *testing.T) {
	r := newReplica(t, 2, 3, nil)
	pre := func(id InstanceID, keys ...string) *Msg {
		reply(t, r, id.Replica, &Msg{Type: MsgPreAccept, Ballot: Ballot{Node: id.Replica}, ID: id, Command: consensus.Command{Keys: keys}, Seq: 1})
		oks := takeMsgs(r, MsgPreAcceptOK)
		if len(oks) != 1 {
			t.Fatalf("got %d replies", len(oks))
		}
		return oks[0]
	}
	if m := pre(InstanceID{1, 1}, "a"); m.Changed || len(m.Deps) != 0 {
		t.Fatalf("first command got %v", m)
	}
	if m := pre(InstanceID{3, 1}, "b"); m.Changed || len(m.Deps) != 0 {
		t.Fatalf("command on another key got %v", m)
	}
	m := pre(InstanceID{3, 2}, "a", "c")
	if !m.Changed || m.Seq != 2 || !slices.Equal(m.Deps, []InstanceID{{1, 1}}) {
		t.Fatalf("conflicting command got %v", m)
	}
	// Latest instance of each replica on each key: 1.1 and 3.2 on a, 3.1 on b.
	m = pre(InstanceID{1, 2}, "a", "b")
	if !slices.Equal(m.Deps, []InstanceID{{1, 1}, {3, 1}, {3, 2}}) || m.Seq != 3 {
		t.Fatalf("command on a and b got %v", m)
	}
	// Own proposal on a depends on the latest of each replica on a.
	r.Propose(put("a", "x"))
	takeMsgs(r, MsgPreAccept) // the Ready starts the instance
	in, _ := r.Instance(InstanceID{2, 1})
	if !slices.Equal(in.Deps, []InstanceID{{1, 2}, {3, 2}}) || in.Seq != 4 {
		t.Fatalf("own proposal attributes %v", in)
	}
	// A command without keys conflicts with nothing.
	r.Propose(consensus.Command{Data: []byte("nokeys")})
	takeMsgs(r, MsgPreAccept)
	if in, _ := r.Instance(InstanceID{2, 2}); len(in.Deps) != 0 || in.Seq != 1 {
		t.Fatalf("keyless command attributes %v", in)
	}
}

// TestConflictAllAttributes: a ConflictAll command depends on the latest
// instance of every replica on any key and takes a seq above all of them;
// a later command on any key depends on it and takes a seq above it; a
// command without keys stays unordered.
func TestConflictAllAttributes(t *testing.T) {
	r := newReplica(t, 2, 3, nil)
	pre := func(id InstanceID, seq uint64, keys ...string) *Msg {
		t.Helper()
		reply(t, r, id.Replica, &Msg{Type: MsgPreAccept, Ballot: Ballot{Node: id.Replica}, ID: id, Command: consensus.Command{Keys: keys}, Seq: seq})
		oks := takeMsgs(r, MsgPreAcceptOK)
		if len(oks) != 1 {
			t.Fatalf("got %d replies", len(oks))
		}
		return oks[0]
	}
	pre(InstanceID{1, 1}, 4, "a")
	pre(InstanceID{1, 2}, 1, "b")
	pre(InstanceID{3, 1}, 2, "c")
	pre(InstanceID{3, 2}, 1, "d", "e")
	// Unrelated keys, so far: no deps among them.
	if m := pre(InstanceID{3, 3}, 1, "f"); len(m.Deps) != 0 || m.Seq != 1 {
		t.Fatalf("command on a fresh key got %v", m)
	}
	all := pre(InstanceID{1, 3}, 1, consensus.ConflictAll)
	if want := []InstanceID{{1, 2}, {3, 3}}; !slices.Equal(all.Deps, want) || all.Seq != 5 || !all.Changed {
		t.Fatalf("ConflictAll command got seq %d deps %v; want seq 5 (above a's 4) and deps %v", all.Seq, all.Deps, want)
	}
	// A command on a key nobody used before still follows it.
	if m := pre(InstanceID{3, 4}, 1, "z"); !slices.Equal(m.Deps, []InstanceID{{1, 3}}) || m.Seq != 6 {
		t.Fatalf("command after ConflictAll got %v; want seq 6 deps [1.3]", m)
	}
	// ConflictAll with a key is ConflictAll; it also follows the first one.
	if m := pre(InstanceID{1, 4}, 1, consensus.ConflictAll, "q"); !slices.Equal(m.Deps, []InstanceID{{1, 3}, {3, 4}}) || m.Seq != 7 {
		t.Fatalf("second ConflictAll command got %v; want seq 7 deps [1.3 3.4]", m)
	}
	// Own proposals use the same index.
	if err := r.Propose(put("y", "own")); err != nil {
		t.Fatal(err)
	}
	takeMsgs(r, MsgPreAccept)
	if in, _ := r.Instance(InstanceID{2, 1}); !slices.Equal(in.Deps, []InstanceID{{1, 4}}) || in.Seq != 8 {
		t.Fatalf("own proposal after ConflictAll: %v", in)
	}
	// Without keys: conflicts with nothing, ConflictAll included.
	if m := pre(InstanceID{3, 5}, 1); len(m.Deps) != 0 || m.Seq != 1 {
		t.Fatalf("keyless command got %v", m)
	}
	for _, c := range []struct {
		a, b []string
		want bool
	}{
		{[]string{"a"}, []string{"a", "b"}, true},
		{[]string{"a"}, []string{"b"}, false},
		{[]string{consensus.ConflictAll}, []string{"b"}, true},
		{[]string{"x"}, []string{consensus.ConflictAll, "y"}, true},
		{nil, []string{consensus.ConflictAll}, false},
		{[]string{consensus.ConflictAll}, nil, false},
	} {
		if got := keysConflict(c.a, c.b); got != c.want {
			t.Errorf("keysConflict(%q, %q) = %t", c.a, c.b, got)
		}
	}
}

// TestConflictAllOrderedEverywhere: replicas 1 and 2 propose on unrelated
// keys while replica 3 proposes a ConflictAll command, and each replica
// hears of the three in a different order. Every replica executes the
// ConflictAll command on the same side of each of the two others.
func TestConflictAllOrderedEverywhere(t *testing.T) {
	for seed := range uint64(40) {
		c := newCluster(t, 3, seed)
		c.propose(c.nodes[0], put("a", "A"))
		c.propose(c.nodes[1], put("b", "B"))
		c.propose(c.nodes[2], consensus.Command{Keys: []string{consensus.ConflictAll}, Data: []byte("ALL")})
		c.run(0, 1)
		c.check()
		pos := func(nd *tnode, data string) int {
			return slices.IndexFunc(nd.executed, func(e consensus.Entry) bool { return string(e.Command.Data) == data })
		}
		for _, other := range []string{"A", "B"} {
			before := pos(c.nodes[0], "ALL") < pos(c.nodes[0], other)
			for _, nd := range c.nodes[1:] {
				if got := pos(nd, "ALL") < pos(nd, other); got != before {
					t.Fatalf("seed %d: node 1 executed ALL before %s: %t, node %d: %t", seed, other, before, nd.id, got)
				}
			}
		}
		in, _ := c.nodes[0].r.Instance(InstanceID{3, 1})
		a, _ := c.nodes[0].r.Instance(InstanceID{1, 1})
		if !covers(in.Deps, a.ID) && !covers(a.Deps, in.ID) {
			t.Fatalf("seed %d: ConflictAll %v and %v committed without an edge", seed, in, a)
		}
	}
}

func committed(id InstanceID, seq uint64, key string, deps ...InstanceID) Instance {
	return Instance{ID: id, Status: StatusCommitted, Promised: Ballot{Node: id.Replica}, Accepted: Ballot{Node: id.Replica},
		Command: put(key, id.String()), Seq: seq, Deps: normDeps(deps)}
}

func executeAll(t *testing.T, r *Replica) []string {
	t.Helper()
	var out []string
	for range 1000 {
		rd := r.Ready()
		for _, e := range rd.Committed {
			if e.Index != uint64(len(out))+1 || e.Term != 0 {
				t.Fatalf("entry index %d term %d, want %d and 0", e.Index, e.Term, len(out)+1)
			}
			out = append(out, string(e.Command.Data))
		}
		r.Advance(rd)
		if rd.Empty() && len(r.exec.frames) == 0 {
			break
		}
	}
	return out
}

// graph is a committed dependency graph with cycles (1.1 <-> 2.1 with
// equal seq, 3.1 <-> 1.2, 1.3 <-> 2.3) and an independent key. Like every
// graph the protocol commits, it gives each pair of conflicting instances
// a direct edge: one depends on the other or on a later instance of its
// space (the executor's pruning relies on that).
func graph() []Instance {
	return []Instance{
		committed(InstanceID{1, 1}, 1, "a", InstanceID{2, 1}),
		committed(InstanceID{2, 1}, 1, "a", InstanceID{1, 1}),
		committed(InstanceID{3, 1}, 2, "a", InstanceID{1, 1}, InstanceID{2, 1}, InstanceID{1, 2}),
		committed(InstanceID{1, 2}, 3, "a", InstanceID{3, 1}, InstanceID{2, 1}),
		committed(InstanceID{2, 2}, 2, "a", InstanceID{1, 2}, InstanceID{3, 1}),
		committed(InstanceID{3, 2}, 4, "a", InstanceID{2, 2}, InstanceID{1, 2}),
		committed(InstanceID{2, 3}, 5, "a", InstanceID{3, 2}, InstanceID{1, 3}),
		committed(InstanceID{1, 3}, 5, "a", InstanceID{2, 3}, InstanceID{3, 2}),
		committed(InstanceID{3, 3}, 1, "z"),
	}
}

func TestExecutionOrderDeterministic(t *testing.T) {
	want := []string{"1.1", "2.1", "3.1", "1.2", "2.2", "3.2", "1.3", "2.3"}
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		g := graph()
		rng.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
		recs := make([]consensus.Record, len(g))
		for i := range g {
			recs[i] = g[i]
		}
		steps := 1 + rng.IntN(6) // a tiny budget, to exercise suspension
		r := newReplica(t, 1, 3, recs, func(c *Config) { c.ExecuteStepsMax = steps })
		got := executeAll(t, r)
		var onA []string
		for _, s := range got {
			if s != "3.3" {
				onA = append(onA, s)
			}
		}
		if !slices.Equal(onA, want) || len(got) != len(g) {
			t.Fatalf("trial %d (budget %d): executed %v, want %v plus 3.3", trial, steps, got, want)
		}
	}
}

// randomGraph builds a committed graph on spaces 1..3 in which every two
// conflicting instances have a direct edge, one depending on the other or
// on a later instance of its space, in either or both directions, as the
// protocol guarantees; with random seqs (so cycles abound), no-ops, and a
// few dependencies beyond the conflicts.
func randomGraph(rng *rand.Rand) []Instance {
	keys := []string{"a", "b", "c"}
	var g []Instance
	last := map[consensus.NodeID]uint64{}
	for rep := consensus.NodeID(1); rep <= 3; rep++ {
		last[rep] = uint64(1 + rng.IntN(7))
		for i := uint64(1); i <= last[rep]; i++ {
			id := InstanceID{rep, i}
			in := Instance{ID: id, Status: StatusCommitted, Promised: Ballot{Node: rep}, Accepted: Ballot{Node: rep}}
			if rng.IntN(10) == 0 {
				in.NoOp = true
			} else {
				in.Command = consensus.Command{Keys: []string{keys[rng.IntN(3)]}, Data: []byte(id.String())}
				if rng.IntN(4) == 0 {
					in.Command.Keys = append(in.Command.Keys, keys[rng.IntN(3)])
				}
				in.Seq = uint64(1 + rng.IntN(8))
			}
			g = append(g, in)
		}
	}
	coverFrom := func(u, v *Instance) { // u gets a dep covering v
		u.Deps = append(u.Deps, InstanceID{v.ID.Replica, v.ID.Instance + uint64(rng.IntN(int(last[v.ID.Replica]-v.ID.Instance)+1))})
	}
	for i := range g {
		for j := i + 1; j < len(g); j++ {
			u, v := &g[i], &g[j]
			if u.NoOp || v.NoOp || u.ID.Replica == v.ID.Replica || !keysConflict(u.Command.Keys, v.Command.Keys) {
				continue
			}
			switch rng.IntN(3) {
			case 0:
				coverFrom(u, v)
			case 1:
				coverFrom(v, u)
			default:
				coverFrom(u, v)
				coverFrom(v, u)
			}
		}
	}
	for i := range g {
		if !g[i].NoOp && rng.IntN(5) == 0 {
			o := g[rng.IntN(len(g))].ID
			if o.Replica != g[i].ID.Replica {
				g[i].Deps = append(g[i].Deps, o)
			}
		}
		g[i].Deps = normDeps(g[i].Deps)
	}
	return g
}

// TestExecutionOrderRandomGraphs: replicas that learn the commits of a
// random graph (see randomGraph) in different orders, running the
// executor with different small budgets in between, each execute every
// command once, and every two conflicting commands in the same order;
// with the executor's pruning and without it.
func TestExecutionOrderRandomGraphs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for trial := range 300 {
		g := randomGraph(rng)
		for _, bug := range []string{"", BugExecuteFullGraph} {
			var ref map[string]int
			for learner := range 4 {
				steps := 1 + rng.IntN(12)
				r := newReplica(t, 4, 4, nil, func(c *Config) { c.ExecuteStepsMax = steps; c.noRecovery = true; SetBug(c, bug) })
				var out []string
				drain := func() {
					rd := r.Ready()
					for _, e := range rd.Committed {
						out = append(out, string(e.Command.Data))
					}
					r.Advance(rd)
				}
				for _, i := range rng.Perm(len(g)) {
					in := g[i]
					reply(t, r, in.ID.Replica, &Msg{Type: MsgCommit, Ballot: in.Accepted, ID: in.ID, NoOp: in.NoOp, Command: in.Command, Seq: in.Seq, Deps: in.Deps})
					for range rng.IntN(3) {
						drain()
					}
				}
				for range 10000 {
					if !r.exec.busy() {
						break
					}
					drain()
				}
				drain()
				pos := map[string]int{}
				for i, d := range out {
					pos[d] = i
				}
				for _, in := range g {
					if _, ok := pos[in.ID.String()]; !ok && !in.NoOp {
						t.Fatalf("trial %d %q learner %d (budget %d): %v never executed; executed %v", trial, bug, learner, steps, in.ID, out)
					}
				}
				if ref == nil {
					ref = pos
					continue
				}
				for i, u := range g {
					for _, v := range g[i+1:] {
						if u.NoOp || v.NoOp || !keysConflict(u.Command.Keys, v.Command.Keys) {
							continue
						}
						a, b := u.ID.String(), v.ID.String()
						if (ref[a] < ref[b]) != (pos[a] < pos[b]) {
							t.Fatalf("trial %d %q: conflicting %s and %s executed in different orders (learner %d, budget %d)\ngraph: %v", trial, bug, a, b, learner, steps, g)
						}
					}
				}
			}
		}
	}
}

func TestExecutionWaitsForUncommitted(t *testing.T) {
	a := committed(InstanceID{1, 1}, 2, "a", InstanceID{2, 1})
	b := committed(InstanceID{3, 1}, 1, "b")
	r := newReplica(t, 1, 3, []consensus.Record{a, b})
	if got := executeAll(t, r); !slices.Equal(got, []string{"3.1"}) {
		t.Fatalf("executed %v, want only 3.1 (1.1 waits for 2.1)", got)
	}
	// 2.1 arrives pre-accepted: still waiting.
	reply(t, r, 2, &Msg{Type: MsgPreAccept, Ballot: Ballot{Node: 2}, ID: InstanceID{2, 1}, Command: put("a", "2.1"), Seq: 1})
	if got := executeAll(t, r); len(got) != 0 {
		t.Fatalf("executed %v before 2.1 committed", got)
	}
	reply(t, r, 2, &Msg{Type: MsgCommit, Ballot: Ballot{Node: 2}, ID: InstanceID{2, 1}, Command: put("a", "2.1"), Seq: 1})
	rd := r.Ready()
	var got []string
	for _, e := range rd.Committed {
		got = append(got, string(e.Command.Data))
	}
	if !slices.Equal(got, []string{"2.1", "1.1"}) || rd.Committed[0].Index != 2 {
		t.Fatalf("executed %v (first index %d), want [2.1 1.1] from index 2", got, rd.Committed[0].Index)
	}
}

// TestExecutorBounded: one Ready never takes more than ExecuteStepsMax
// steps, and a component far larger than the budget still executes.
func TestExecutorBounded(t *testing.T) {
	const n = 500
	var recs []consensus.Record
	for i := 1; i <= n; i++ {
		// Each space numbered 1, 2, 3, … without gaps (the executor
		// orders each space as a chain).
		next := InstanceID{consensus.NodeID(i%3 + 1), uint64((i-1)/3 + 1)}
		nxt := i%n + 1
		dep := InstanceID{consensus.NodeID(nxt%3 + 1), uint64((nxt-1)/3 + 1)}
		recs = append(recs, committed(next, uint64(n-i), "k", dep)) // one big cycle
	}
	r := newReplica(t, 1, 3, recs, func(c *Config) { c.ExecuteStepsMax = 16 })
	readys := 0
	total := 0
	for total < n {
		rd := r.Ready()
		total += len(rd.Committed)
		r.Advance(rd)
		readys++
		if readys > 10*n {
			t.Fatalf("only %d of %d executed after %d Readys", total, n, readys)
		}
	}
	if readys < 2*n/16 {
		t.Fatalf("executed %d instances in %d Readys with a budget of 16 steps", n, readys)
	}
}

func TestReadIndexAndPropose(t *testing.T) {
	r := newReplica(t, 3, 5, nil)
	if err := r.ReadIndex([]byte("x")); err != ErrReadThroughLog {
		t.Fatalf("ReadIndex: %v", err)
	}
	if err := r.Propose(put("k", "v")); err != nil {
		t.Fatal(err)
	}
	// Proposals wait for the next Ready, which starts their instance.
	if st := r.Status(); st.Role != consensus.RolePeer || st.LastIndex != 0 {
		t.Fatalf("status after Propose %+v", st)
	}
	if rd := r.Ready(); len(rd.Persist) != 1 || len(rd.Messages) != 4 {
		t.Fatalf("Ready after Propose: %d records, %d messages; want the instance and 4 PreAccepts", len(rd.Persist), len(rd.Messages))
	}
	if st := r.Status(); st.LastIndex != 1 {
		t.Fatalf("status after Ready %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.ID = 0 },
		func(c *Config) { c.ID = 9 },
		func(c *Config) { c.Peers = append(c.Peers, 1) },
		func(c *Config) { c.RetryTicks = 0 },
		func(c *Config) { c.ExecuteStepsMax = 0 },
		func(c *Config) { c.InflightMax = 0 },
		func(c *Config) { c.RecoveryTimeoutTicks = 0 },
		func(c *Config) { c.RecoveryTimeoutTicks = RecoveryTimeoutTicksMax + 1 },
	}
	for i, f := range bad {
		cfg := DefaultConfig(1, ids(3))
		f(&cfg)
		if cfg.Validate() == nil {
			t.Errorf("bad config %d validated", i)
		}
	}
	if err := DefaultConfig(1, ids(3)).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestRebuild: New from the durable records restores instances and the
// instance counter.
func TestRebuild(t *testing.T) {
	r := newReplica(t, 1, 3, nil)
	r.Propose(put("k", "a"))
	started := r.Ready()
	r.Advance(started)
	id := InstanceID{1, 1}
	reply(t, r, 2, &Msg{Type: MsgPreAcceptOK, Ballot: Ballot{Node: 1}, ID: id, Seq: 1})
	rd := r.Ready()
	r.Advance(rd)
	r2, err := New(DefaultConfig(1, ids(3)), append(started.Persist, rd.Persist...))
	if err != nil {
		t.Fatal(err)
	}
	in, _ := r2.Instance(id)
	want, _ := r.Instance(id)
	if in.Status != StatusCommitted || in.Seq != want.Seq || r2.next != 2 {
		t.Fatalf("rebuilt %v next %d", in, r2.next)
	}
	if got := executeAll(t, r2); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("rebuilt replica executed %v", got)
	}
}

package gossip

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// testNode returns node id knowing members 1..size as alive, with
// periodic push-pull off, its first Ready drained.
func testNode(t *testing.T, id consensus.NodeID, size int, edit func(*Config)) *Node {
	t.Helper()
	cfg := DefaultConfig(id, addrOf(id), rand.New(rand.NewPCG(uint64(id), 7)))
	cfg.PushPullTicks = 0
	if edit != nil {
		edit(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ms []Member
	for i := 1; i <= size; i++ {
		ms = append(ms, Member{ID: consensus.NodeID(i), Addr: addrOf(consensus.NodeID(i)), State: StateAlive})
	}
	n.bootstrap(ms)
	drain(n)
	return n
}

func drain(n *Node) Ready {
	rd := n.Ready()
	n.Advance(rd)
	return rd
}

// tickUntilSent ticks n until it sends a message of type t, and returns
// that message and the ticks taken.
func tickUntilSent(t *testing.T, n *Node, typ MsgType, limit int) (*Message, int) {
	t.Helper()
	for i := 1; i <= limit; i++ {
		n.Tick()
		for _, out := range drain(n).Messages {
			if out.Message.Type == typ {
				return out.Message, i
			}
		}
	}
	t.Fatalf("node %d sent no %v within %d ticks", n.id, typ, limit)
	return nil, 0
}

func step(t *testing.T, n *Node, m *Message) Ready {
	t.Helper()
	if err := n.Step(m); err != nil {
		t.Fatalf("Step(%v): %v", m, err)
	}
	return drain(n)
}

func from(id consensus.NodeID, typ MsgType, us ...Update) *Message {
	return &Message{Type: typ, From: id, FromAddr: addrOf(id), Updates: us}
}

func eventTypes(rd Ready) []EventType {
	var out []EventType
	for _, e := range rd.Events {
		out = append(out, e.Type)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig(1, "a", rand.New(rand.NewPCG(1, 1)))
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(c *Config){
		"ID":                     func(c *Config) { c.ID = 0 },
		"Addr":                   func(c *Config) { c.Addr = "" },
		"Seeds":                  func(c *Config) { c.Seeds = []Seed{{ID: 2}} },
		"ProbeIntervalTicks":     func(c *Config) { c.ProbeIntervalTicks = 1 },
		"ProbeTimeoutTicks":      func(c *Config) { c.ProbeTimeoutTicks = c.ProbeIntervalTicks },
		"IndirectProbes":         func(c *Config) { c.IndirectProbes = IndirectProbesMax + 1 },
		"HealthMax":              func(c *Config) { c.HealthMax = -1 },
		"SuspicionAlpha":         func(c *Config) { c.SuspicionAlpha = 0 },
		"SuspicionBeta":          func(c *Config) { c.SuspicionBeta = SuspicionMultMax + 1 },
		"SuspicionConfirmations": func(c *Config) { c.SuspicionConfirmations = 0 },
		"RetransmitMult":         func(c *Config) { c.RetransmitMult = 0 },
		"PushPullTicks":          func(c *Config) { c.PushPullTicks = -1 },
		"JoinRetryTicks":         func(c *Config) { c.JoinRetryTicks = 0 },
		"ReapTicks":              func(c *Config) { c.ReapTicks = c.ProbeIntervalTicks - 1 },
		"MembersMax":             func(c *Config) { c.MembersMax = MembersMaxLimit + 1 },
		"MetaBytesMax":           func(c *Config) { c.MetaBytesMax = MetaBytesMaxLimit + 1 },
		"Meta":                   func(c *Config) { c.Meta = make([]byte, c.MetaBytesMax+1) },
		"PiggybackBytesMax":      func(c *Config) { c.PiggybackBytesMax = updateSizeMax(c.MetaBytesMax) - 1 },
		"RelaysMax":              func(c *Config) { c.RelaysMax = 0 },
		"Rand":                   func(c *Config) { c.Rand = nil },
	}
	for field, edit := range bad {
		c := ok
		edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Config with bad %s: %v", field, err)
		}
		if _, err := New(c); err == nil {
			t.Errorf("New accepted a Config with bad %s", field)
		}
	}
}

func TestStepRejects(t *testing.T) {
	n := testNode(t, 1, 3, nil)
	m := from(2, MsgPing)
	m.To = 3
	if err := n.Step(m); !errors.Is(err, ErrWrongNode) {
		t.Errorf("message for node 3: %v", err)
	}
	if err := n.Step(from(1, MsgPing)); err == nil {
		t.Error("accepted a message from its own ID")
	}
	if err := n.Step(&Message{Type: MsgPing, From: 2}); !errors.Is(err, consensus.ErrMalformed) {
		t.Errorf("message without a sender address: %v", err)
	}
	if err := n.Step(nil); err == nil {
		t.Error("accepted nil")
	}
}

func TestPingIsAcked(t *testing.T) {
	n := testNode(t, 1, 3, nil)
	m := from(2, MsgPing)
	m.Seq, m.To = 42, 1
	rd := step(t, n, m)
	if len(rd.Messages) != 1 {
		t.Fatalf("want one ack, got %v", rd.Messages)
	}
	out := rd.Messages[0]
	if out.Addr != addrOf(2) || out.Message.Type != MsgAck || out.Message.To != 2 || out.Message.Seq != 42 {
		t.Fatalf("bad ack %v to %s", out.Message, out.Addr)
	}
	// A seed knows no ID: To None is accepted.
	m = from(9, MsgPing)
	m.Seq = 1
	if rd := step(t, n, m); len(rd.Messages) != 1 || rd.Messages[0].Addr != addrOf(9) {
		t.Fatalf("ping from a stranger: %v", rd.Messages)
	}
}

func TestPrecedenceAndEvents(t *testing.T) {
	n := testNode(t, 1, 1, nil)
	type stepCase struct {
		u    Update
		want []EventType
		inc  uint64
		st   State
	}
	a := func(inc uint64, meta string) Update {
		return Update{ID: 2, Incarnation: inc, State: StateAlive, Addr: addrOf(2), Meta: []byte(meta)}
	}
	s := func(inc uint64, by consensus.NodeID) Update {
		return Update{ID: 2, Incarnation: inc, State: StateSuspect, From: by}
	}
	d := func(inc uint64, st State) Update { return Update{ID: 2, Incarnation: inc, State: st, From: 3} }
	cases := []stepCase{
		{d(0, StateDead), nil, 0, 0}, // news of a stranger's death: ignored
		{s(0, 3), nil, 0, 0},         // a suspicion without an address: ignored
		{a(0, ""), []EventType{EventJoined}, 0, StateAlive},
		{a(0, "x"), nil, 0, StateAlive}, // same incarnation: not news
		{s(0, 3), []EventType{EventSuspect}, 0, StateSuspect},
		{s(0, 4), nil, 0, StateSuspect}, // a confirmation
		{a(0, ""), nil, 0, StateSuspect},
		{a(1, ""), []EventType{EventAlive}, 1, StateAlive}, // refuted
		{d(1, StateDead), []EventType{EventDead}, 1, StateDead},
		{a(1, ""), nil, 1, StateDead},
		{s(1, 3), nil, 1, StateDead},
		{d(1, StateLeft), nil, 1, StateDead}, // final for the incarnation
		{a(2, "m"), []EventType{EventAlive}, 2, StateAlive},
		{a(3, "m"), nil, 3, StateAlive}, // newer, but nothing changed
		{a(4, "n"), []EventType{EventUpdated}, 4, StateAlive},
		{d(4, StateLeft), []EventType{EventLeft}, 4, StateLeft},
		{s(5, 3), []EventType{EventSuspect}, 5, StateSuspect}, // back, and suspected at once
	}
	for i, c := range cases {
		rd := step(t, n, from(3, MsgGossip, c.u))
		if got := eventTypes(rd); !slices.Equal(got, c.want) {
			t.Fatalf("step %d (%v): events %v, want %v", i, c.u, got, c.want)
		}
		m, ok := n.Member(2)
		if c.st == 0 {
			if ok {
				t.Fatalf("step %d (%v): remembers %v", i, c.u, m)
			}
			continue
		}
		if !ok || m.State != c.st || m.Incarnation != c.inc {
			t.Fatalf("step %d (%v): member %v, want %v at %d", i, c.u, m, c.st, c.inc)
		}
		if err := n.checkInvariants(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if m, _ := n.Member(2); string(m.Meta) != "n" {
		t.Fatalf("metadata %q, want the last alive update's", m.Meta)
	}
}

func TestRefutation(t *testing.T) {
	for _, lifeguard := range []bool{true, false} {
		n := testNode(t, 1, 3, func(c *Config) { c.Lifeguard = lifeguard })
		ping := from(2, MsgPing, Update{ID: 1, State: StateSuspect, From: 2})
		ping.To, ping.Seq = 1, 5
		rd := step(t, n, ping)
		if n.inc != 1 {
			t.Fatalf("lifeguard=%v: incarnation %d after a suspicion at 0, want 1", lifeguard, n.inc)
		}
		ack := rd.Messages[0].Message
		if ack.Type != MsgAck || len(ack.Updates) == 0 || !reflect.DeepEqual(ack.Updates[0], Update{ID: 1, Incarnation: 1, State: StateAlive, Addr: addrOf(1)}) {
			t.Fatalf("lifeguard=%v: the ack must carry the refutation first: %v", lifeguard, ack)
		}
		wantHealth := 0
		if lifeguard {
			wantHealth = 1 // refuting a suspicion of oneself
		}
		if n.Health() != wantHealth {
			t.Fatalf("lifeguard=%v: health %d, want %d", lifeguard, n.Health(), wantHealth)
		}
		// Dead and left news about itself are refuted too.
		step(t, n, from(3, MsgGossip, Update{ID: 1, Incarnation: 1, State: StateDead, From: 3}))
		step(t, n, from(3, MsgGossip, Update{ID: 1, Incarnation: 2, State: StateLeft}))
		if n.inc != 3 {
			t.Fatalf("incarnation %d after death at 1 and leave at 2, want 3", n.inc)
		}
		// A stale accusation does not raise the incarnation, but the
		// current state goes out again once the old news is spent.
		for n.queue.pending(n.id) {
			n.queue.pick(1<<20, 1)
		}
		step(t, n, from(3, MsgGossip, Update{ID: 1, Incarnation: 2, State: StateSuspect, From: 3}))
		if n.inc != 3 || !n.queue.pending(n.id) {
			t.Fatalf("after a stale accusation: incarnation %d, resent %v", n.inc, n.queue.pending(n.id))
		}
		// An alive of its own incarnation with other contents (an earlier
		// life of this ID) is refuted; the same contents are not news.
		step(t, n, from(3, MsgGossip, Update{ID: 1, Incarnation: 3, State: StateAlive, Addr: addrOf(1)}))
		if n.inc != 3 {
			t.Fatalf("own alive state echoed: incarnation %d, want 3", n.inc)
		}
		step(t, n, from(3, MsgGossip, Update{ID: 1, Incarnation: 3, State: StateAlive, Addr: "elsewhere"}))
		if n.inc != 4 {
			t.Fatalf("alive at 3 with another address: incarnation %d, want 4", n.inc)
		}
	}
}

// TestProbeCycle follows one failed probe: direct ping, ping-reqs to k
// helpers at the probe timeout, suspicion at the end of the period, and
// Lifeguard's health going up by two (a failed probe, missed nacks).
func TestProbeCycle(t *testing.T) {
	n := testNode(t, 1, 6, nil)
	ping, _ := tickUntilSent(t, n, MsgPing, n.cfg.ProbeIntervalTicks)
	target := ping.To
	start := n.now
	// run ticks to the end of the period at multiplier mult, answering
	// ping-reqs with nack if asked; it returns the ping-reqs and the ping
	// that starts the next period.
	run := func(mult uint64, nack bool) (reqs []*Message, next *Message) {
		for n.now < start+uint64(n.cfg.ProbeIntervalTicks)*mult {
			n.Tick()
			for _, out := range drain(n).Messages {
				switch out.Message.Type {
				case MsgPingReq:
					if n.now != start+uint64(n.cfg.ProbeTimeoutTicks)*mult {
						t.Fatalf("ping-req at tick %d, want %d", n.now-start, uint64(n.cfg.ProbeTimeoutTicks)*mult)
					}
					reqs = append(reqs, out.Message)
					if nack {
						m := from(out.Message.To, MsgNack)
						m.Seq, m.To = out.Message.Seq, 1
						step(t, n, m)
					}
				case MsgPing:
					next = out.Message
				}
			}
		}
		return reqs, next
	}
	reqs, next := run(1, false)
	if len(reqs) != n.cfg.IndirectProbes {
		t.Fatalf("%d ping-reqs, want k = %d", len(reqs), n.cfg.IndirectProbes)
	}
	helpers := map[consensus.NodeID]bool{}
	for _, r := range reqs {
		if r.Target != target || r.TargetAddr != addrOf(target) || r.Seq != ping.Seq || r.To == target || helpers[r.To] {
			t.Fatalf("bad ping-req %v (target %d)", r, target)
		}
		helpers[r.To] = true
	}
	if m, _ := n.Member(target); m.State != StateSuspect {
		t.Fatalf("target %d is %v after a failed probe, want suspect", target, m.State)
	}
	if n.Health() != 2 {
		t.Fatalf("health %d after a failed probe without nacks, want 2", n.Health())
	}
	if next == nil {
		t.Fatal("no probe started at the end of the period")
	}

	// The next probe, at multiplier 3: helpers nack, the target stays
	// silent: one more.
	start = n.now
	reqs, next = run(3, true)
	if len(reqs) != n.cfg.IndirectProbes {
		t.Fatalf("%d ping-reqs in the second period", len(reqs))
	}
	if n.Health() != 3 {
		t.Fatalf("health %d after a failed probe with every nack, want 3", n.Health())
	}

	// A successful probe lowers it by one.
	ping = next
	ack := from(ping.To, MsgAck)
	ack.Seq, ack.To = ping.Seq, 1
	step(t, n, ack)
	if n.Health() != 2 {
		t.Fatalf("health %d after an ack, want 2", n.Health())
	}
	// An ack with a stale seq or from a stranger counts for nothing.
	ack.Seq = ping.Seq - 1
	step(t, n, ack)
	if n.Health() != 2 {
		t.Fatalf("health %d after a stale ack, want 2", n.Health())
	}
}

// TestHealthScalesPeriod: with every probe failing, the health saturates
// at HealthMax and the period stretches to (HealthMax+1)·T; acks bring it
// back to T. Lifeguard off, the period never changes.
func TestHealthScalesPeriod(t *testing.T) {
	for _, lifeguard := range []bool{true, false} {
		n := testNode(t, 1, 20, func(c *Config) { c.Lifeguard = lifeguard; c.HealthMax = 4 })
		_, _ = tickUntilSent(t, n, MsgPing, n.cfg.ProbeIntervalTicks)
		var gaps []int
		for range 12 {
			_, gap := tickUntilSent(t, n, MsgPing, 100*n.cfg.ProbeIntervalTicks)
			gaps = append(gaps, gap)
		}
		T := n.cfg.ProbeIntervalTicks
		want := T * (n.cfg.HealthMax + 1)
		if !lifeguard {
			want = T
		}
		if gaps[len(gaps)-1] != want {
			t.Fatalf("lifeguard=%v: periods %v, want them to reach %d", lifeguard, gaps, want)
		}
		if lifeguard && n.Health() != n.cfg.HealthMax {
			t.Fatalf("health %d, want saturated at %d", n.Health(), n.cfg.HealthMax)
		}
		if !lifeguard && n.Health() != 0 {
			t.Fatalf("health %d with Lifeguard off", n.Health())
		}
		// Answer every probe from now on.
		for range n.cfg.HealthMax + 2 {
			ping, _ := tickUntilSent(t, n, MsgPing, 100*T)
			ack := from(ping.To, MsgAck)
			ack.Seq, ack.To = ping.Seq, 1
			step(t, n, ack)
		}
		_, gap := tickUntilSent(t, n, MsgPing, 100*T)
		if n.Health() != 0 || gap != T {
			t.Fatalf("lifeguard=%v: after acks health %d and period %d, want 0 and %d", lifeguard, n.Health(), gap, T)
		}
	}
}

func TestHelperRelaysAndNacks(t *testing.T) {
	for _, lifeguard := range []bool{true, false} {
		n := testNode(t, 3, 5, func(c *Config) { c.Lifeguard = lifeguard })
		n.nextProbeTick = 1 << 40 // keep its own probes out of the way
		req := from(1, MsgPingReq)
		req.To, req.Seq, req.Target, req.TargetAddr = 3, 77, 2, addrOf(2)
		rd := step(t, n, req)
		if len(rd.Messages) != 1 || rd.Messages[0].Message.Type != MsgPing || rd.Messages[0].Message.To != 2 {
			t.Fatalf("helper sent %v, want a ping to 2", rd.Messages)
		}
		mySeq := rd.Messages[0].Message.Seq
		var nacks []*Message
		for range n.cfg.ProbeIntervalTicks {
			n.Tick()
			for _, out := range drain(n).Messages {
				if out.Message.Type == MsgNack {
					if n.now != n.nackDelayTicks() {
						t.Fatalf("nack at tick %d, want %d", n.now, n.nackDelayTicks())
					}
					nacks = append(nacks, out.Message)
				}
			}
		}
		if lifeguard != (len(nacks) == 1) || (lifeguard && (nacks[0].Seq != 77 || nacks[0].To != 1)) {
			t.Fatalf("lifeguard=%v: nacks %v", lifeguard, nacks)
		}
		// A late ack is still relayed, with the requester's seq.
		ack := from(2, MsgAck)
		ack.To, ack.Seq = 3, mySeq
		rd = step(t, n, ack)
		if len(rd.Messages) != 1 || rd.Messages[0].Message.Type != MsgAck || rd.Messages[0].Message.Seq != 77 || rd.Messages[0].Addr != addrOf(1) {
			t.Fatalf("relayed %v, want an ack with seq 77 to node 1", rd.Messages)
		}
		if len(n.relays) != 0 {
			t.Fatalf("%d relays left after the ack", len(n.relays))
		}
	}
}

func TestRelaysAreBounded(t *testing.T) {
	n := testNode(t, 3, 5, func(c *Config) { c.RelaysMax = 2 })
	n.nextProbeTick = 1 << 40
	sent := 0
	for i := range 5 {
		req := from(1, MsgPingReq)
		req.Seq, req.Target, req.TargetAddr = uint64(i), 2, addrOf(2)
		sent += len(step(t, n, req).Messages)
	}
	if sent != 2 || len(n.relays) != 2 {
		t.Fatalf("%d pings for 5 ping-reqs with RelaysMax 2 (%d relays)", sent, len(n.relays))
	}
	// They expire.
	for range 3 * n.cfg.ProbeIntervalTicks {
		n.Tick()
		drain(n)
	}
	if len(n.relays) != 0 {
		t.Fatalf("%d relays never expired", len(n.relays))
	}
}

// TestBuddySystem: a probe of a suspect carries the suspicion first, even
// when its news is no longer queued; without Lifeguard it does not.
func TestBuddySystem(t *testing.T) {
	for _, lifeguard := range []bool{true, false} {
		n := testNode(t, 1, 2, func(c *Config) { c.Lifeguard = lifeguard })
		step(t, n, from(3, MsgGossip, Update{ID: 2, State: StateSuspect, From: 3}))
		for n.queue.len() > 0 {
			n.queue.pick(1<<20, 1)
		}
		ping, _ := tickUntilSent(t, n, MsgPing, n.cfg.ProbeIntervalTicks)
		if ping.To != 2 {
			t.Fatalf("probed %d, want 2", ping.To)
		}
		carries := len(ping.Updates) > 0 && ping.Updates[0].ID == 2 && ping.Updates[0].State == StateSuspect
		if carries != lifeguard {
			t.Fatalf("lifeguard=%v: ping to a suspect carries %v", lifeguard, ping.Updates)
		}
	}
}

// TestSuspicionTimeout: a lone suspicion waits Max = β·Min with Lifeguard,
// Min without; K confirmations bring it to Min.
func TestSuspicionTimeout(t *testing.T) {
	const size = 10 // log10 N = 1: Min = α·T
	cases := []struct {
		lifeguard bool
		confirm   int
		want      func(c Config) int
	}{
		{true, 0, func(c Config) int { return c.SuspicionBeta * c.SuspicionAlpha * c.ProbeIntervalTicks }},
		{true, 3, func(c Config) int { return c.SuspicionAlpha * c.ProbeIntervalTicks }},
		{true, 1, func(c Config) int {
			lo := c.SuspicionAlpha * c.ProbeIntervalTicks
			return suspicionTimeoutTicks(lo, c.SuspicionBeta*lo, 1, c.SuspicionConfirmations)
		}},
		{false, 0, func(c Config) int { return c.SuspicionAlpha * c.ProbeIntervalTicks }},
		{false, 3, func(c Config) int { return c.SuspicionAlpha * c.ProbeIntervalTicks }},
	}
	for _, c := range cases {
		n := testNode(t, 1, size, func(cfg *Config) { cfg.Lifeguard = c.lifeguard })
		n.nextProbeTick = 1 << 40
		step(t, n, from(3, MsgGossip, Update{ID: 2, State: StateSuspect, From: 3}))
		for i := range c.confirm {
			step(t, n, from(3, MsgGossip, Update{ID: 2, State: StateSuspect, From: consensus.NodeID(4 + i)}))
		}
		// Confirmations are passed on with Lifeguard.
		if c.lifeguard && c.confirm > 0 {
			if b := n.queue.byID[2]; b == nil || b.u.From != consensus.NodeID(3+c.confirm) {
				t.Fatalf("the last confirmation is not queued: %v", b)
			}
		}
		want := c.want(n.cfg)
		for i := 1; i <= 10*want; i++ {
			n.Tick()
			if m, _ := n.Member(2); m.State == StateDead {
				if i != want {
					t.Fatalf("lifeguard=%v confirmations=%d: dead after %d ticks, want %d", c.lifeguard, c.confirm, i, want)
				}
				break
			}
		}
		if m, _ := n.Member(2); m.State != StateDead {
			t.Fatalf("never declared dead")
		}
	}
}

func TestProbeOrderRoundRobin(t *testing.T) {
	const size = 8
	n := testNode(t, 1, size, nil)
	probed := func(passes int) [][]consensus.NodeID {
		var out [][]consensus.NodeID
		var pass []consensus.NodeID
		for len(out) < passes {
			ping, _ := tickUntilSent(t, n, MsgPing, 100)
			ack := from(ping.To, MsgAck)
			ack.Seq, ack.To = ping.Seq, 1
			step(t, n, ack)
			pass = append(pass, ping.To)
			if len(pass) == len(n.members) {
				out = append(out, pass)
				pass = nil
			}
		}
		return out
	}
	passes := probed(4)
	for i, p := range passes {
		s := slices.Sorted(slices.Values(p))
		if !slices.Equal(slices.Compact(s), s) || len(s) != size-1 {
			t.Fatalf("pass %d probed %v: every member exactly once, please", i, p)
		}
	}
	if slices.Equal(passes[0], passes[1]) && slices.Equal(passes[1], passes[2]) {
		t.Fatalf("the order is never reshuffled: %v", passes)
	}
	// A member joining mid-pass is probed within the current or next pass.
	step(t, n, from(3, MsgGossip, Update{ID: 50, State: StateAlive, Addr: addrOf(50)}))
	found := false
	for _, p := range probed(2) {
		found = found || slices.Contains(p, 50)
	}
	if !found {
		t.Fatal("new member 50 never probed")
	}
}

func TestSetMetaAndLeave(t *testing.T) {
	n := testNode(t, 1, 4, nil)
	if err := n.SetMeta(make([]byte, n.cfg.MetaBytesMax+1)); err == nil {
		t.Fatal("accepted metadata over MetaBytesMax")
	}
	if err := n.SetMeta([]byte("v2")); err != nil || n.inc != 1 {
		t.Fatalf("SetMeta: %v, incarnation %d", err, n.inc)
	}
	if b := n.queue.byID[1]; b == nil || string(b.u.Meta) != "v2" || b.u.Incarnation != 1 {
		t.Fatalf("new metadata not queued: %v", b)
	}
	n.Leave()
	rd := drain(n)
	if len(rd.Messages) != n.cfg.IndirectProbes {
		t.Fatalf("Leave sent %d messages, want %d", len(rd.Messages), n.cfg.IndirectProbes)
	}
	for _, out := range rd.Messages {
		announces := slices.ContainsFunc(out.Message.Updates, func(u Update) bool {
			return u.ID == 1 && u.State == StateLeft && u.Incarnation == 1
		})
		if out.Message.Type != MsgGossip || !announces {
			t.Fatalf("leave message %v does not announce it", out.Message)
		}
	}
	if n.Left() {
		t.Fatal("Left before the news was spread")
	}
	if err := n.SetMeta(nil); !errors.Is(err, ErrLeaving) {
		t.Fatalf("SetMeta while leaving: %v", err)
	}
	// It refutes nothing and accuses nobody now.
	step(t, n, from(3, MsgGossip, Update{ID: 1, Incarnation: 5, State: StateSuspect, From: 3}))
	if n.inc != 1 {
		t.Fatalf("a leaving node refuted: incarnation %d", n.inc)
	}
	for range 200 {
		n.Tick()
		drain(n)
	}
	if !n.Left() {
		t.Fatal("Left never reported")
	}
	for _, m := range n.Status().Members {
		if m.ID != 1 && m.State != StateAlive {
			t.Fatalf("a leaving node suspected %v", m)
		}
	}
	if st := n.Status(); !st.Leaving || st.Members[0].State != StateLeft {
		t.Fatalf("status %+v", st)
	}
}

func TestMembersMax(t *testing.T) {
	n := testNode(t, 1, 1, func(c *Config) { c.MembersMax = 4 })
	for id := consensus.NodeID(2); id < 10; id++ {
		step(t, n, from(id, MsgGossip, Update{ID: id, State: StateAlive, Addr: addrOf(id)}))
	}
	if got := len(n.Status().Members); got != 4 {
		t.Fatalf("%d members remembered with MembersMax 4, want 4 (itself included; joins refused at the bound)", got)
	}
}

// TestJoinRetries: a node whose seeds do not answer keeps asking, and
// stops once it knows a live member.
func TestJoinRetries(t *testing.T) {
	n := testNode(t, 9, 0, func(c *Config) { c.Seeds = []Seed{{Addr: addrOf(1)}, {ID: 9, Addr: addrOf(9)}} })
	asked := 0
	for range 5 * n.cfg.JoinRetryTicks {
		n.Tick()
		for _, out := range drain(n).Messages {
			if out.Message.Type == MsgPushPull {
				if out.Addr != addrOf(1) {
					t.Fatalf("join sent to %s: only seed 1 is not itself", out.Addr)
				}
				asked++
			}
		}
	}
	if asked != 5 {
		t.Fatalf("%d join attempts in 5 retry intervals, want 5", asked)
	}
	reply := from(1, MsgPushPull, Update{ID: 1, State: StateAlive, Addr: addrOf(1)})
	reply.Reply = true
	if rd := step(t, n, reply); len(rd.Messages) != 0 {
		t.Fatalf("answered a push-pull reply: %v", rd.Messages)
	}
	for range 3 * n.cfg.JoinRetryTicks {
		n.Tick()
		for _, out := range drain(n).Messages {
			if out.Message.Type == MsgPushPull {
				t.Fatalf("still joining after the reply: %v", out.Message)
			}
		}
	}
}

// TestJoinRetriesUntilSeedAnswers: knowing a live member is not enough
// to stop joining when that member is not a seed (it may be another
// joiner): the node keeps asking its seeds until one of them answers, or
// until every seed is known dead.
func TestJoinRetriesUntilSeedAnswers(t *testing.T) {
	joins := func(n *Node, ticks int) int {
		asked := 0
		for range ticks {
			n.Tick()
			for _, out := range drain(n).Messages {
				if out.Message.Type == MsgPushPull {
					if out.Addr != addrOf(1) && out.Addr != addrOf(2) {
						t.Fatalf("join sent to %s, not a seed", out.Addr)
					}
					asked++
				}
			}
		}
		return asked
	}
	n := testNode(t, 9, 0, func(c *Config) { c.Seeds = []Seed{{Addr: addrOf(1)}, {ID: 2, Addr: addrOf(2)}} })
	n.nextProbeTick = 1 << 40
	// A non-seed (another joiner) answers and becomes known alive.
	reply := from(5, MsgPushPull, Update{ID: 5, State: StateAlive, Addr: addrOf(5)})
	reply.Reply = true
	step(t, n, reply)
	// A push-pull reply from seed 2's address under another ID is not seed 2.
	imp := from(6, MsgPushPull, Update{ID: 6, State: StateAlive, Addr: addrOf(6)})
	imp.FromAddr, imp.Reply = addrOf(2), true
	step(t, n, imp)
	if got := joins(n, 3*n.cfg.JoinRetryTicks); got != 6 {
		t.Fatalf("%d join messages in 3 retry intervals after a non-seed answered, want 6 (2 seeds each time)", got)
	}
	// Seed 2 answers: the join is done.
	reply = from(2, MsgPushPull, Update{ID: 2, State: StateAlive, Addr: addrOf(2)})
	reply.Reply = true
	step(t, n, reply)
	if got := joins(n, 3*n.cfg.JoinRetryTicks); got != 0 {
		t.Fatalf("%d join messages after seed 2 answered, want 0", got)
	}

	// Every seed known dead (seed 1 by its address) also ends the join.
	n = testNode(t, 9, 0, func(c *Config) { c.Seeds = []Seed{{Addr: addrOf(1)}, {ID: 2, Addr: addrOf(2)}} })
	n.nextProbeTick = 1 << 40
	step(t, n, from(5, MsgGossip, Update{ID: 5, State: StateAlive, Addr: addrOf(5)},
		Update{ID: 1, State: StateAlive, Addr: addrOf(1)}, Update{ID: 2, State: StateAlive, Addr: addrOf(2)}))
	step(t, n, from(5, MsgGossip, Update{ID: 1, State: StateDead}))
	if got := joins(n, 2*n.cfg.JoinRetryTicks); got != 4 {
		t.Fatalf("%d join messages with seed 2 alive, want 4", got)
	}
	step(t, n, from(5, MsgGossip, Update{ID: 2, State: StateLeft}))
	if got := joins(n, 3*n.cfg.JoinRetryTicks); got != 0 {
		t.Fatalf("%d join messages with every seed dead or left, want 0", got)
	}
}

// TestSuspicionWithoutAccuser: news of a suspicion that names nobody
// still times out, at the longest timeout.
func TestSuspicionWithoutAccuser(t *testing.T) {
	n := testNode(t, 1, 10, nil)
	n.nextProbeTick = 1 << 40
	step(t, n, from(3, MsgGossip, Update{ID: 2, State: StateSuspect}))
	want := n.cfg.SuspicionBeta * n.cfg.SuspicionAlpha * n.cfg.ProbeIntervalTicks
	for i := 1; i <= want; i++ {
		n.Tick()
		if m, _ := n.Member(2); m.State == StateDead && i != want {
			t.Fatalf("dead after %d ticks, want %d", i, want)
		}
	}
	if m, _ := n.Member(2); m.State != StateDead {
		t.Fatalf("member 2 is %v after %d ticks, want dead", m.State, want)
	}
}

// TestPushPullExchange: a push-pull request is answered with the whole
// view, this node first, and the sender's view is merged: strangers alive
// or suspect join, dead strangers are not learnt.
func TestPushPullExchange(t *testing.T) {
	n := testNode(t, 1, 3, nil)
	step(t, n, from(2, MsgGossip, Update{ID: 3, State: StateDead, From: 2}))
	req := from(9, MsgPushPull,
		Update{ID: 9, State: StateAlive, Addr: addrOf(9), Meta: []byte("m9")},
		Update{ID: 4, Incarnation: 2, State: StateSuspect, From: 9, Addr: addrOf(4)},
		Update{ID: 5, Incarnation: 1, State: StateDead, From: 9, Addr: addrOf(5)},
		Update{ID: 2, Incarnation: 1, State: StateAlive, Addr: addrOf(2)},
	)
	rd := step(t, n, req)
	if len(rd.Messages) != 1 {
		t.Fatalf("want one reply, got %v", rd.Messages)
	}
	reply := rd.Messages[0].Message
	if reply.Type != MsgPushPull || !reply.Reply || rd.Messages[0].Addr != addrOf(9) || reply.Updates[0].ID != 1 {
		t.Fatalf("bad reply %v", reply)
	}
	got := map[consensus.NodeID]State{}
	for _, u := range reply.Updates {
		got[u.ID] = u.State
		if u.Addr == "" {
			t.Fatalf("push-pull entry without an address: %v", u)
		}
	}
	want := map[consensus.NodeID]State{1: StateAlive, 2: StateAlive, 3: StateDead, 4: StateSuspect, 9: StateAlive}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reply holds %v, want %v", got, want)
	}
	if _, ok := n.Member(5); ok {
		t.Fatal("learnt a dead stranger")
	}
	if m, _ := n.Member(2); m.Incarnation != 1 {
		t.Fatalf("member 2 at incarnation %d after the merge, want 1", m.Incarnation)
	}
	if !slices.Equal(eventTypes(rd), []EventType{EventJoined, EventJoined}) {
		t.Fatalf("events %v, want two joins (9, and 4 as suspect)", rd.Events)
	}
	if err := n.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestPushPullDeathStartsSuspicion: a death heard in a merged view (a
// push-pull, perhaps from across a healed partition) makes a live member
// suspect, not dead: it is still probed, told it is suspected, and can
// refute; heard by gossip, the same death is taken as it is.
func TestPushPullDeathStartsSuspicion(t *testing.T) {
	n := testNode(t, 1, 4, nil)
	step(t, n, from(9, MsgPushPull, Update{ID: 9, State: StateAlive, Addr: addrOf(9)}, Update{ID: 2, State: StateDead, From: 9, Addr: addrOf(2)}))
	if m, _ := n.Member(2); m.State != StateSuspect {
		t.Fatalf("member 2 is %v after a merged death, want suspect", m.State)
	}
	step(t, n, from(2, MsgGossip, Update{ID: 2, Incarnation: 1, State: StateAlive, Addr: addrOf(2)}))
	if m, _ := n.Member(2); m.State != StateAlive || m.Incarnation != 1 {
		t.Fatalf("member 2 is %v@%d after refuting, want alive@1", m.State, m.Incarnation)
	}
	step(t, n, from(9, MsgGossip, Update{ID: 3, State: StateDead, From: 9}))
	if m, _ := n.Member(3); m.State != StateDead {
		t.Fatalf("member 3 is %v after a gossiped death, want dead", m.State)
	}
}

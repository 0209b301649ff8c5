package gossip

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// simNet is a deterministic network of gossip nodes in virtual time: one
// goroutine, one seeded generator for the network and one per node for
// its Config.Rand. It delivers messages after a latency, loses some,
// delays some more (per link, by a hook), and crashes and pauses nodes.
// The same seed gives the same run.
type simNet struct {
	tb  testing.TB
	rng *rand.Rand
	now uint64

	nodes  []*simNode // by ID-1
	byAddr map[string]*simNode
	// inflight[tick] are the messages delivered at that tick, in send order.
	inflight map[uint64][]delivery

	// loss is the probability that a message is lost.
	loss float64
	// latencyTicks is the base one-way delay (at least 1).
	latencyTicks int
	// extraDelay, if set, adds ticks to a message from one node to
	// another (the slow-member scenarios).
	extraDelay func(from, to consensus.NodeID) int
	// drop, if set, loses every message from one node to another for
	// which it returns true (partitions).
	drop func(from, to consensus.NodeID) bool
	// codec sends every message through MessageCodec.
	codec bool

	// log records every membership event of every node.
	log []eventRec

	sent, lost int
}

type simNode struct {
	id      consensus.NodeID
	addr    string
	cfg     Config
	node    *Node
	crashed bool
	// pausedUntil: the node neither ticks nor handles messages before this
	// tick; messages that arrive meanwhile wait in inbox.
	pausedUntil uint64
	inbox       []*Message
}

type delivery struct {
	addr string
	msg  *Message
	data []byte
}

type eventRec struct {
	tick     uint64
	observer consensus.NodeID
	ev       Event
}

func addrOf(id consensus.NodeID) string { return "node-" + strconv.FormatUint(uint64(id), 10) }

// newNet returns an empty network seeded with seed.
func newNet(tb testing.TB, seed uint64) *simNet {
	return &simNet{
		tb:           tb,
		rng:          rand.New(rand.NewPCG(seed, 0x9055)),
		byAddr:       map[string]*simNode{},
		inflight:     map[uint64][]delivery{},
		latencyTicks: 1,
	}
}

// add starts a node with ID len(nodes)+1; edit adjusts its config.
func (s *simNet) add(edit func(*Config)) *simNode {
	id := consensus.NodeID(len(s.nodes) + 1)
	cfg := DefaultConfig(id, addrOf(id), rand.New(rand.NewPCG(s.rng.Uint64(), uint64(id))))
	if edit != nil {
		edit(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		s.tb.Fatal(err)
	}
	sn := &simNode{id: id, addr: cfg.Addr, cfg: cfg, node: n}
	s.nodes = append(s.nodes, sn)
	s.byAddr[sn.addr] = sn
	s.collect(sn)
	return sn
}

// restart replaces a crashed node's state with a fresh node of the same
// ID and address (incarnation 0, nothing remembered).
func (s *simNet) restart(sn *simNode, edit func(*Config)) {
	cfg := sn.cfg
	cfg.Rand = rand.New(rand.NewPCG(s.rng.Uint64(), uint64(sn.id)))
	if edit != nil {
		edit(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		s.tb.Fatal(err)
	}
	sn.node, sn.crashed, sn.inbox, sn.pausedUntil = n, false, nil, 0
	s.collect(sn)
}

// cluster builds n nodes that already know each other as alive at
// incarnation 0, as if they had converged: for measuring detection and
// dissemination apart from joining.
func cluster(tb testing.TB, seed uint64, size int, edit func(*Config)) *simNet {
	s := newNet(tb, seed)
	for range size {
		s.add(edit)
	}
	all := make([]Member, size)
	for i, sn := range s.nodes {
		all[i] = Member{ID: sn.id, Addr: sn.addr, State: StateAlive}
	}
	for _, sn := range s.nodes {
		sn.node.bootstrap(all)
	}
	return s
}

// bootstrap makes n remember every member of ms but itself, silently: no
// events, no news queued.
func (n *Node) bootstrap(ms []Member) {
	for _, m := range ms {
		if m.ID == n.id || n.members[m.ID] != nil {
			continue
		}
		mm := &member{Member: m}
		mm.State = 0
		n.members[m.ID] = mm
		n.setState(mm, m.State, consensus.None)
		n.order = append(n.order, m.ID)
	}
	n.shuffle()
	n.next = 0
}

func (s *simNet) node(id consensus.NodeID) *simNode { return s.nodes[id-1] }

// collect takes a node's Ready: messages enter the network, events the log.
func (s *simNet) collect(sn *simNode) {
	rd := sn.node.Ready()
	for _, ev := range rd.Events {
		s.log = append(s.log, eventRec{tick: s.now, observer: sn.id, ev: ev})
	}
	for _, out := range rd.Messages {
		s.send(sn.id, out)
	}
	sn.node.Advance(rd)
}

func (s *simNet) send(from consensus.NodeID, out Outbound) {
	s.sent++
	if s.loss > 0 && s.rng.Float64() < s.loss {
		s.lost++
		return
	}
	to := out.Message.To
	if dst := s.byAddr[out.Addr]; to == consensus.None && dst != nil {
		to = dst.id
	}
	if s.drop != nil && s.drop(from, to) {
		s.lost++
		return
	}
	delay := s.latencyTicks
	if s.extraDelay != nil {
		delay += s.extraDelay(from, to)
	}
	d := delivery{addr: out.Addr, msg: out.Message}
	if s.codec {
		buf, err := MessageCodec.AppendMessage(nil, out.Message)
		if err != nil {
			s.tb.Fatalf("node %d sent a message that does not encode: %v: %v", from, out.Message, err)
		}
		d.msg, d.data = nil, buf
	}
	at := s.now + uint64(max(delay, 1))
	s.inflight[at] = append(s.inflight[at], d)
}

func (s *simNet) deliver(d delivery) {
	dst := s.byAddr[d.addr]
	if dst == nil || dst.crashed {
		return
	}
	m := d.msg
	if d.data != nil {
		p, err := MessageCodec.DecodeMessage(d.data)
		if err != nil {
			s.tb.Fatalf("message to %s does not decode: %v", d.addr, err)
		}
		m = p.(*Message)
	}
	if s.now < dst.pausedUntil {
		dst.inbox = append(dst.inbox, m)
		return
	}
	s.step(dst, m)
}

func (s *simNet) step(dst *simNode, m *Message) {
	if err := dst.node.Step(m); err != nil {
		s.tb.Fatalf("node %d: Step(%v): %v", dst.id, m, err)
	}
}

// tick advances virtual time by one tick: deliver what is due, tick every
// running node, collect what they want sent.
func (s *simNet) tick() {
	s.now++
	due := s.inflight[s.now]
	delete(s.inflight, s.now)
	for _, d := range due {
		s.deliver(d)
	}
	for _, sn := range s.nodes {
		if sn.crashed || s.now < sn.pausedUntil {
			continue
		}
		if len(sn.inbox) > 0 {
			inbox := sn.inbox
			sn.inbox = nil
			for _, m := range inbox {
				s.step(sn, m)
			}
		}
		sn.node.Tick()
		s.collect(sn)
	}
}

func (s *simNet) run(ticks int) {
	for range ticks {
		s.tick()
	}
}

// runUntil ticks until cond holds or limit ticks pass; it reports the
// ticks taken and whether cond held.
func (s *simNet) runUntil(limit int, cond func() bool) (int, bool) {
	for i := range limit {
		if cond() {
			return i, true
		}
		s.tick()
	}
	return limit, cond()
}

func (s *simNet) crash(id consensus.NodeID) { s.node(id).crashed = true }

func (s *simNet) pause(id consensus.NodeID, ticks int) {
	sn := s.node(id)
	sn.pausedUntil = max(sn.pausedUntil, s.now+uint64(ticks))
}

// running returns the nodes that are not crashed.
func (s *simNet) running() []*simNode {
	var out []*simNode
	for _, sn := range s.nodes {
		if !sn.crashed {
			out = append(out, sn)
		}
	}
	return out
}

// stateAt is what observer believes of id: its state, or 0 if it does
// not remember id.
func (s *simNet) stateAt(observer, id consensus.NodeID) State {
	m, ok := s.node(observer).node.Member(id)
	if !ok {
		return 0
	}
	return m.State
}

// allSee reports whether every running node other than id (and those in
// except) sees id in one of states (0 meaning "not remembered").
func (s *simNet) allSee(id consensus.NodeID, states ...State) bool {
	for _, sn := range s.running() {
		if sn.id == id {
			continue
		}
		if !slices.Contains(states, s.stateAt(sn.id, id)) {
			return false
		}
	}
	return true
}

// events returns the logged events of type t about id (any id if None)
// at or after tick from.
func (s *simNet) events(t EventType, id consensus.NodeID, from uint64) []eventRec {
	var out []eventRec
	for _, r := range s.log {
		if r.ev.Type == t && (id == consensus.None || r.ev.Member.ID == id) && r.tick >= from {
			out = append(out, r)
		}
	}
	return out
}

// checkInvariants asserts the node's indexes agree with its members.
func (s *simNet) checkInvariants() {
	for _, sn := range s.running() {
		if err := sn.node.checkInvariants(); err != nil {
			s.tb.Fatalf("tick %d node %d: %v", s.now, sn.id, err)
		}
	}
}

// checkInvariants verifies the invariants written on Node's fields.
func (n *Node) checkInvariants() error {
	live := 0
	for id, m := range n.members {
		if m.ID != id {
			return fmt.Errorf("member keyed %d has ID %d", id, m.ID)
		}
		if m.State.live() {
			live++
		}
		if (m.State == StateSuspect) != (m.susp != nil) || (m.State == StateSuspect) != (n.suspects[id] != nil) {
			return fmt.Errorf("member %d in state %v: suspicion %v, indexed %v", id, m.State, m.susp != nil, n.suspects[id] != nil)
		}
		if m.susp != nil && (m.susp.inc != m.Incarnation || len(m.susp.accusers) > m.susp.k+1) {
			return fmt.Errorf("member %d: suspicion at incarnation %d with %d accusers (k=%d), member at %d", id, m.susp.inc, len(m.susp.accusers), m.susp.k, m.Incarnation)
		}
		if down := m.State == StateDead || m.State == StateLeft; down != (n.down[id] != nil) {
			return fmt.Errorf("member %d in state %v: down index %v", id, m.State, n.down[id] != nil)
		}
	}
	if live != n.nlive {
		return fmt.Errorf("nlive %d, counted %d", n.nlive, live)
	}
	if len(n.suspects)+len(n.down) > len(n.members) {
		return fmt.Errorf("indexes hold %d+%d of %d members", len(n.suspects), len(n.down), len(n.members))
	}
	if n.health < 0 || n.health > n.cfg.HealthMax || (!n.cfg.Lifeguard && n.health != 0) {
		return fmt.Errorf("health %d outside 0..%d (lifeguard %v)", n.health, n.cfg.HealthMax, n.cfg.Lifeguard)
	}
	seen := map[consensus.NodeID]bool{}
	for _, id := range n.order {
		if seen[id] || n.members[id] == nil {
			return fmt.Errorf("probe order holds %d twice or unremembered", id)
		}
		seen[id] = true
	}
	if len(seen) != len(n.members) || n.next > len(n.order) {
		return fmt.Errorf("probe order holds %d of %d members, next %d", len(seen), len(n.members), n.next)
	}
	return nil
}

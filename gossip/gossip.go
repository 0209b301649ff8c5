package gossip

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// ErrWrongNode is matched by the error Step returns for a message meant
// for another node (its To names another ID): the host routed it to an
// address that has changed hands.
var ErrWrongNode = errors.New("gossip: message addressed to another node")

// ErrLeaving is returned by SetMeta after Leave.
var ErrLeaving = errors.New("gossip: node is leaving")

// member is this node's record of another member.
type member struct {
	Member
	// by is the accuser of the current suspect or dead state.
	by consensus.NodeID
	// downTick is when the member became dead or left, for reaping.
	downTick uint64
	// susp is set while the member is suspect. Invariant: susp != nil
	// exactly when State == StateSuspect, and susp.inc == Incarnation.
	susp *suspicion
}

// suspicion is the timer of one suspected member.
type suspicion struct {
	inc       uint64
	startTick uint64
	// minTicks and maxTicks bound the timeout, fixed when the suspicion
	// starts; k is the number of confirmations expected (0 with
	// Lifeguard off, or when nobody else could confirm).
	minTicks, maxTicks, k int
	// accusers are the distinct nodes that suspected the member at this
	// incarnation, the first one first (none if the news named nobody);
	// all but the first are independent confirmations. Invariant:
	// len(accusers) <= k+1.
	accusers []consensus.NodeID
}

// timeoutTicks is the suspicion's timeout with the confirmations held.
func (s *suspicion) timeoutTicks() int {
	return suspicionTimeoutTicks(s.minTicks, s.maxTicks, max(0, len(s.accusers)-1), s.k)
}

// probe is the probe of the current protocol period.
type probe struct {
	target consensus.NodeID
	seq    uint64
	// timeoutTick starts the indirect probe; endTick ends the period.
	timeoutTick, endTick uint64
	acked                bool
	indirect             bool
	// helpers were sent a ping-req; nacked are those that answered with
	// a nack (each at most once).
	helpers, nacked []consensus.NodeID
}

// relay is an indirect probe this node runs for a requester.
type relay struct {
	target     consensus.NodeID
	requester  consensus.NodeID
	addr       string // the requester's
	seq        uint64 // the requester's probe seq
	nackTick   uint64
	expireTick uint64
	nacked     bool
}

// Node is one member of a SWIM group. It is a pure, deterministic state
// machine: time arrives as Tick, messages as Step, and what it wants done
// comes out of Ready. It is not safe for concurrent use.
type Node struct {
	cfg  Config
	id   consensus.NodeID
	addr string
	meta []byte
	inc  uint64
	now  uint64
	// health is the Local Health Multiplier. Invariant: 0 <= health <=
	// cfg.HealthMax, and 0 with Lifeguard off.
	health  int
	leaving bool

	// members holds every other member remembered. Invariant: nlive
	// counts those alive or suspect; suspects and down index the suspect
	// and the dead or left ones.
	members  map[consensus.NodeID]*member
	nlive    int
	suspects map[consensus.NodeID]*member
	down     map[consensus.NodeID]*member

	// order is the probe order: every member remembered, shuffled at
	// each full pass; next is the position of the next probe.
	order []consensus.NodeID
	next  int

	probe         *probe
	nextProbeTick uint64
	seq           uint64
	// relays are keyed by the seq of this node's ping to the target.
	relays map[uint64]*relay

	queue            queue
	nextPushPullTick uint64
	nextJoinTick     uint64
	// seedAnswered: a seed has answered a push-pull, so it knows this
	// node and join retries may stop (see tickJoin).
	seedAnswered bool

	msgs   []Outbound
	events []Event
}

// New returns a node configured by cfg. If cfg names seeds, the first
// Ready holds a push-pull to each.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.clone()
	if cfg.Logger == nil {
		cfg.Logger = consensus.DiscardLogger
	}
	if !cfg.Lifeguard {
		cfg.HealthMax = 0
	}
	n := &Node{
		cfg:      cfg,
		id:       cfg.ID,
		addr:     cfg.Addr,
		meta:     cfg.Meta,
		inc:      cfg.Incarnation,
		members:  map[consensus.NodeID]*member{},
		suspects: map[consensus.NodeID]*member{},
		down:     map[consensus.NodeID]*member{},
		relays:   map[uint64]*relay{},
		queue:    newQueue(),
	}
	// Start at a random point of the first period, so that nodes started
	// together do not probe in lockstep.
	n.nextProbeTick = uint64(1 + cfg.Rand.IntN(cfg.ProbeIntervalTicks))
	if cfg.PushPullTicks > 0 {
		n.nextPushPullTick = uint64(1 + cfg.Rand.IntN(cfg.PushPullTicks))
	}
	n.queue.push(n.selfUpdate())
	n.join()
	return n, nil
}

// ID is this node's ID.
func (n *Node) ID() consensus.NodeID { return n.id }

// groupSize is N: the live members, this node included.
func (n *Node) groupSize() int { return n.nlive + 1 }

func (n *Node) selfState() State {
	if n.leaving {
		return StateLeft
	}
	return StateAlive
}

func (n *Node) selfUpdate() Update {
	return Update{ID: n.id, Incarnation: n.inc, State: n.selfState(), Addr: n.addr, Meta: n.meta}
}

// Tick advances time by one tick: the probe of the period, relays for
// others, suspicion timers, push-pull, join retries and reaping.
func (n *Node) Tick() {
	n.now++
	n.tickProbe()
	n.tickRelays()
	n.tickSuspicions()
	n.tickPushPull()
	n.tickJoin()
	n.tickReap()
}

// Ready returns the work for the host. It must be handled and passed to
// Advance before Ready is called again.
func (n *Node) Ready() Ready {
	return Ready{Messages: slices.Clone(n.msgs), Events: slices.Clone(n.events)}
}

// Advance drops the work of rd, which the host has done.
func (n *Node) Advance(rd Ready) {
	n.msgs = n.msgs[len(rd.Messages):]
	n.events = n.events[len(rd.Events):]
	if len(n.msgs) == 0 {
		n.msgs = nil
	}
	if len(n.events) == 0 {
		n.events = nil
	}
}

// Status reports this node's view. It does not change the node.
func (n *Node) Status() Status {
	st := Status{ID: n.id, Incarnation: n.inc, Health: n.health, Leaving: n.leaving}
	st.Members = make([]Member, 0, len(n.members)+1)
	st.Members = append(st.Members, Member{ID: n.id, Addr: n.addr, Meta: n.meta, Incarnation: n.inc, State: n.selfState()})
	for _, m := range n.members {
		st.Members = append(st.Members, m.Member)
	}
	slices.SortFunc(st.Members, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return st
}

// Member returns this node's view of member id (itself included).
func (n *Node) Member(id consensus.NodeID) (Member, bool) {
	if id == n.id {
		return Member{ID: n.id, Addr: n.addr, Meta: n.meta, Incarnation: n.inc, State: n.selfState()}, true
	}
	m := n.members[id]
	if m == nil {
		return Member{}, false
	}
	return m.Member, true
}

// Health is the local health multiplier (see Status).
func (n *Node) Health() int { return n.health }

// SetMeta publishes new metadata for this node: it raises the incarnation
// so the news overrides the old alive state everywhere.
func (n *Node) SetMeta(meta []byte) error {
	if n.leaving {
		return ErrLeaving
	}
	if len(meta) > n.cfg.MetaBytesMax {
		return fmt.Errorf("gossip: metadata of %d bytes exceeds MetaBytesMax %d", len(meta), n.cfg.MetaBytesMax)
	}
	n.meta = slices.Clone(meta)
	n.inc++
	n.queue.push(n.selfUpdate())
	return nil
}

// Leave starts a graceful leave: the node announces that it left (at its
// current incarnation, which nobody can override without it), sends the
// news at once to a few members, and from then on only answers and
// disseminates: it accuses nobody and refutes nothing. The host keeps
// running it until Left reports true, then stops it.
func (n *Node) Leave() {
	if n.leaving {
		return
	}
	n.leaving = true
	n.queue.push(n.selfUpdate())
	for _, m := range n.randomLive(max(1, n.cfg.IndirectProbes), consensus.None) {
		n.send(m.ID, m.Addr, &Message{Type: MsgGossip}, nil)
	}
}

// Left reports whether a leave is complete: the news was piggybacked as
// often as any update is, or there is nobody left to tell.
func (n *Node) Left() bool {
	return n.leaving && (!n.queue.pending(n.id) || n.nlive == 0)
}

// Step hands the node a message. It returns an error for a message that
// is malformed or meant for another node; anything else, stale or
// duplicated, is absorbed. The node keeps no reference to m.
func (n *Node) Step(m *Message) error {
	if m == nil {
		return errors.New("gossip: nil message")
	}
	if err := m.validate(); err != nil {
		return err
	}
	if m.To != consensus.None && m.To != n.id {
		return fmt.Errorf("%w: %v is for %d, this is %d", ErrWrongNode, m.Type, m.To, n.id)
	}
	if m.From == n.id {
		return fmt.Errorf("gossip: %v from this node's own ID %d", m.Type, n.id)
	}
	// News first: a ping that tells this node it is suspected (the buddy
	// system) gets an ack that carries the refutation.
	for i := range m.Updates {
		u := m.Updates[i]
		if m.Type == MsgPushPull && u.State == StateDead && n.members[u.ID] != nil {
			// A death learned by merging a whole view starts a
			// suspicion instead (as memberlist does): the view may come
			// from across a partition that just healed, and would
			// otherwise kill, in one step, every member on this side
			// that the other side could not reach, leaving this node
			// nobody to probe. A suspect is still probed and told it is
			// suspected, so a live one refutes within its timeout; a
			// dead one is declared dead when the timeout expires.
			// (A dead stranger is still not learnt, and news about
			// this node is refuted either way.)
			u.State = StateSuspect
		}
		n.apply(u)
	}
	switch m.Type {
	case MsgPing:
		n.send(m.From, m.FromAddr, &Message{Type: MsgAck, Seq: m.Seq}, nil)
	case MsgAck:
		n.onAck(m)
	case MsgPingReq:
		n.onPingReq(m)
	case MsgNack:
		n.onNack(m)
	case MsgPushPull:
		if !m.Reply {
			n.send(m.From, m.FromAddr, &Message{Type: MsgPushPull, Reply: true, Updates: n.fullState()}, nil)
		} else if n.isSeed(m.From, m.FromAddr) {
			n.seedAnswered = true
		}
	case MsgGossip:
	}
	return nil
}

// send queues msg to id at addr, filling in the envelope and piggybacking
// updates on every type but push-pull. first, if set, goes ahead of the
// queue and outside its retransmission count (the buddy system).
func (n *Node) send(to consensus.NodeID, addr string, msg *Message, first *Update) {
	msg.From, msg.FromAddr, msg.To = n.id, n.addr, to
	if msg.Type != MsgPushPull {
		budget := n.cfg.PiggybackBytesMax
		if first != nil {
			msg.Updates = append(msg.Updates, *first)
			budget -= updateSize(first)
		}
		msg.Updates = append(msg.Updates, n.queue.pick(budget, retransmitLimit(n.cfg.RetransmitMult, n.groupSize()))...)
	}
	n.msgs = append(n.msgs, Outbound{Addr: addr, Message: msg})
}

func (n *Node) emit(t EventType, m *member) {
	n.events = append(n.events, Event{Type: t, Member: m.Member})
}

func (n *Node) adjustHealth(delta int) {
	if n.cfg.Lifeguard {
		n.health = min(max(n.health+delta, 0), n.cfg.HealthMax)
	}
}

// --- membership state ---

// apply merges one piece of news (see Overrides and the package doc).
func (n *Node) apply(u Update) {
	if u.ID == n.id {
		n.applySelf(u)
		return
	}
	m := n.members[u.ID]
	if m == nil {
		n.applyNew(u)
		return
	}
	if !Overrides(m.Incarnation, m.State, u.Incarnation, u.State) {
		if u.State == StateSuspect && m.State == StateSuspect && u.Incarnation == m.Incarnation {
			n.confirm(m, u.From)
		}
		return
	}
	prev := m.State
	m.Incarnation = u.Incarnation
	switch u.State {
	case StateAlive:
		changed := false
		if u.Addr != "" && u.Addr != m.Addr {
			m.Addr, changed = u.Addr, true
		}
		if !bytes.Equal(u.Meta, m.Meta) {
			m.Meta, changed = slices.Clone(u.Meta), true
		}
		n.setState(m, StateAlive, consensus.None)
		switch {
		case prev != StateAlive:
			n.emit(EventAlive, m)
		case changed:
			n.emit(EventUpdated, m)
		}
		n.queue.push(Update{ID: m.ID, Incarnation: m.Incarnation, State: StateAlive, Addr: m.Addr, Meta: m.Meta})
	case StateSuspect:
		n.setState(m, StateSuspect, u.From)
		n.emit(EventSuspect, m)
		n.queue.push(Update{ID: m.ID, Incarnation: m.Incarnation, State: StateSuspect, From: u.From})
	case StateDead, StateLeft:
		n.setState(m, u.State, u.From)
		if u.State == StateDead {
			n.emit(EventDead, m)
		} else {
			n.emit(EventLeft, m)
		}
		n.queue.push(Update{ID: m.ID, Incarnation: m.Incarnation, State: u.State, From: u.From})
	}
}

// applyNew handles news of a member not remembered. Only alive or suspect
// news with an address adds it: dead or left news about a stranger (or a
// member already reaped) is dropped, so reaped members stay forgotten.
func (n *Node) applyNew(u Update) {
	if !u.State.live() || u.Addr == "" {
		return
	}
	if len(n.members)+1 >= n.cfg.MembersMax {
		n.cfg.Logger.Warnf("gossip %d: %d members remembered (MembersMax); dropping news of %d", n.id, len(n.members)+1, u.ID)
		return
	}
	m := &member{Member: Member{ID: u.ID, Addr: u.Addr, Meta: slices.Clone(u.Meta), Incarnation: u.Incarnation}}
	n.members[u.ID] = m
	n.setState(m, u.State, u.From)
	n.insertOrder(u.ID)
	n.emit(EventJoined, m)
	n.queue.push(Update{ID: m.ID, Incarnation: m.Incarnation, State: u.State, From: u.From, Addr: m.Addr, Meta: m.Meta})
}

// applySelf handles news about this node: anything that would override
// its own alive state (a suspicion, a death, a stale alive with other
// contents) is refuted with a higher incarnation.
func (n *Node) applySelf(u Update) {
	if n.leaving {
		return
	}
	if u.Incarnation < n.inc {
		if u.State != StateAlive && !n.queue.pending(n.id) {
			// An accusation of an older incarnation: its sender missed the
			// refutation, whose retransmissions may be over. Send the
			// current state again (the ack to a buddy ping carries it).
			n.queue.push(n.selfUpdate())
		}
		return
	}
	if u.State == StateAlive && u.Incarnation == n.inc && u.Addr == n.addr && bytes.Equal(u.Meta, n.meta) {
		return
	}
	if u.State != StateAlive {
		// Lifeguard: having to refute a suspicion of oneself suggests one
		// is slow to answer.
		n.adjustHealth(1)
	}
	n.inc = u.Incarnation + 1
	n.cfg.Logger.Debugf("gossip %d: refuting %v with incarnation %d", n.id, u, n.inc)
	n.queue.push(n.selfUpdate())
}

// setState moves m to st, keeping the indexes; by is the accuser of a
// suspect or dead state.
func (n *Node) setState(m *member, st State, by consensus.NodeID) {
	if m.State.live() {
		n.nlive--
	}
	delete(n.suspects, m.ID)
	delete(n.down, m.ID)
	m.State, m.by, m.susp = st, by, nil
	switch st {
	case StateAlive:
		n.nlive++
	case StateSuspect:
		n.nlive++
		n.suspects[m.ID] = m
		n.startSuspicion(m, by)
	case StateDead, StateLeft:
		n.down[m.ID] = m
		m.downTick = n.now
	}
}

// startSuspicion sets m's suspicion timer (Lifeguard's dynamic timeout,
// or the fixed minimum without it).
func (n *Node) startSuspicion(m *member, accuser consensus.NodeID) {
	size := n.groupSize()
	lo := suspicionMinTicks(n.cfg.SuspicionAlpha, size, n.cfg.ProbeIntervalTicks)
	s := &suspicion{inc: m.Incarnation, startTick: n.now, minTicks: lo, maxTicks: lo}
	if n.cfg.Lifeguard {
		s.maxTicks = n.cfg.SuspicionBeta * lo
		s.k = max(0, min(n.cfg.SuspicionConfirmations, size-2))
	}
	if accuser != consensus.None {
		s.accusers = []consensus.NodeID{accuser}
	}
	m.susp = s
}

// confirm counts an independent confirmation of m's suspicion, and passes
// it on so that it shortens the timers of others too (Lifeguard).
func (n *Node) confirm(m *member, accuser consensus.NodeID) {
	s := m.susp
	if !n.cfg.Lifeguard || accuser == consensus.None || len(s.accusers) > s.k || slices.Contains(s.accusers, accuser) {
		return
	}
	s.accusers = append(s.accusers, accuser)
	n.queue.push(Update{ID: m.ID, Incarnation: m.Incarnation, State: StateSuspect, From: accuser})
}

func (n *Node) tickSuspicions() {
	if len(n.suspects) == 0 {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(n.suspects)) {
		m := n.suspects[id]
		if n.now-m.susp.startTick >= uint64(m.susp.timeoutTicks()) {
			n.cfg.Logger.Debugf("gossip %d: suspicion of %d timed out after %d ticks with %d accusers", n.id, id, n.now-m.susp.startTick, len(m.susp.accusers))
			n.apply(Update{ID: id, Incarnation: m.Incarnation, State: StateDead, From: n.id})
		}
	}
}

func (n *Node) tickReap() {
	if len(n.down) == 0 {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(n.down)) {
		m := n.down[id]
		if n.now-m.downTick < uint64(n.cfg.ReapTicks) {
			continue
		}
		delete(n.down, id)
		delete(n.members, id)
		n.queue.drop(id)
		if i := slices.Index(n.order, id); i >= 0 {
			n.order = slices.Delete(n.order, i, i+1)
			if i < n.next {
				n.next--
			}
		}
	}
}

// fullState is this node's whole view, itself first, as push-pull sends
// it.
func (n *Node) fullState() []Update {
	out := make([]Update, 0, len(n.members)+1)
	out = append(out, n.selfUpdate())
	for _, id := range slices.Sorted(maps.Keys(n.members)) {
		m := n.members[id]
		out = append(out, Update{ID: id, Incarnation: m.Incarnation, State: m.State, From: m.by, Addr: m.Addr, Meta: m.Meta})
	}
	return out
}

// --- probe order and random choices ---

// insertOrder puts a new member at a random position among those not yet
// probed in this pass (the one there moves to the end).
func (n *Node) insertOrder(id consensus.NodeID) {
	n.order = append(n.order, id)
	last := len(n.order) - 1
	j := n.next + n.cfg.Rand.IntN(last-n.next+1)
	n.order[j], n.order[last] = n.order[last], n.order[j]
}

// nextTarget returns the next live member in probe order, reshuffling at
// the end of each pass, or nil if there is none.
func (n *Node) nextTarget() *member {
	for range len(n.order) + 1 {
		if n.next >= len(n.order) {
			n.shuffle()
			n.next = 0
			if len(n.order) == 0 {
				return nil
			}
		}
		m := n.members[n.order[n.next]]
		n.next++
		if m != nil && m.State.live() {
			return m
		}
	}
	return nil
}

func (n *Node) shuffle() {
	for i := len(n.order) - 1; i > 0; i-- {
		j := n.cfg.Rand.IntN(i + 1)
		n.order[i], n.order[j] = n.order[j], n.order[i]
	}
}

// randomLive returns up to k distinct live members other than except,
// chosen uniformly.
func (n *Node) randomLive(k int, except consensus.NodeID) []*member {
	if k <= 0 || n.nlive == 0 {
		return nil
	}
	cands := make([]*member, 0, n.nlive)
	for _, id := range n.order {
		if m := n.members[id]; m != nil && m.State.live() && id != except {
			cands = append(cands, m)
		}
	}
	k = min(k, len(cands))
	for i := range k {
		j := i + n.cfg.Rand.IntN(len(cands)-i)
		cands[i], cands[j] = cands[j], cands[i]
	}
	return cands[:k]
}

// --- joining and anti-entropy ---

// join sends a push-pull to every seed but this node.
func (n *Node) join() {
	for _, s := range n.cfg.Seeds {
		if s.ID == n.id || s.Addr == n.addr {
			continue
		}
		n.send(s.ID, s.Addr, &Message{Type: MsgPushPull, Updates: n.fullState()}, nil)
	}
	n.nextJoinTick = n.now + uint64(n.cfg.JoinRetryTicks)
}

// tickJoin sends the join again every JoinRetryTicks until a seed itself
// has answered one: knowing some live member is not enough, since it may
// be another joiner, and two groups joined only through each other's
// joiners would never merge. It stops early if every seed is known dead
// or left, and starts again whenever the node knows no live member.
func (n *Node) tickJoin() {
	if n.leaving || n.now < n.nextJoinTick {
		return
	}
	if n.nlive > 0 && (n.seedAnswered || n.seedsDown()) {
		return
	}
	n.join()
}

// isSeed reports whether the sender of a message is one of the seeds:
// by ID if the seed's ID is known, by address otherwise.
func (n *Node) isSeed(id consensus.NodeID, addr string) bool {
	for _, s := range n.cfg.Seeds {
		if s.ID != consensus.None && s.ID == id || s.ID == consensus.None && s.Addr == addr {
			return true
		}
	}
	return false
}

// seedsDown reports whether every seed but this node is known dead or
// left.
func (n *Node) seedsDown() bool {
	for _, s := range n.cfg.Seeds {
		if s.ID == n.id || s.Addr == n.addr {
			continue
		}
		m := n.members[s.ID]
		if s.ID == consensus.None {
			m = nil
			for _, mm := range n.members {
				if mm.Addr == s.Addr {
					m = mm
					break
				}
			}
		}
		if m == nil || m.State.live() {
			return false
		}
	}
	return true
}

func (n *Node) tickPushPull() {
	if n.cfg.PushPullTicks == 0 || n.leaving || n.now < n.nextPushPullTick {
		return
	}
	n.nextPushPullTick = n.now + uint64(n.cfg.PushPullTicks*pushPullScale(n.groupSize()))
	var dead []consensus.NodeID
	for _, id := range slices.Sorted(maps.Keys(n.down)) {
		if n.down[id].State == StateDead {
			dead = append(dead, id)
		}
	}
	// Reconnect: pick a member believed dead as often as it is one of the
	// members remembered and not gone by choice. If it is alive after all
	// (a partition healed), it refutes its death and the two views merge;
	// nobody else would ever contact it, since dead members are not
	// probed.
	if len(dead) > 0 && n.cfg.Rand.IntN(n.nlive+len(dead)) < len(dead) {
		m := n.members[dead[n.cfg.Rand.IntN(len(dead))]]
		n.send(m.ID, m.Addr, &Message{Type: MsgPushPull, Updates: n.fullState()}, nil)
		return
	}
	for _, m := range n.randomLive(1, consensus.None) {
		n.send(m.ID, m.Addr, &Message{Type: MsgPushPull, Updates: n.fullState()}, nil)
	}
}

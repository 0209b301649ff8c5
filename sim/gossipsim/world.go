package gossipsim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/sim/check"
)

// readyLoopsMax bounds the Readys a core may produce after one input; a
// core that keeps producing work is a bug.
const readyLoopsMax = 100

// node is one simulated machine: a SWIM member and a store replica.
type node struct {
	id    consensus.NodeID
	index int
	addr  string
	// up is false while crashed; permanent marks a crash for good.
	up, permanent bool
	g             *gossip.Node
	st            *store.Store
	// records are the store's durable records (they survive crashes),
	// and incarnation the last incarnation of the member (the host
	// persists it, so that a restart does not have to refute its death).
	records     []consensus.Record
	incarnation uint64
	// life counts starts; dataLife counts wipes of the store.
	life, dataLife uint64
	downAt         int64
	tickPeriod     int64
	// pausedUntil: while now < pausedUntil the node does nothing;
	// pauseEnd is the end of its latest pause.
	pausedUntil, pauseEnd int64
	skewMs                int64
	slow                  bool
	// live[j] is set while this node believes node j+1 alive or suspect;
	// the store's peers follow it.
	live       []bool
	peersDirty bool
	peersSetAt int64
	// gossipSent counts the membership messages it sent.
	gossipSent int
}

// partition is one symmetric partition: side[i] is node i's side.
type partition struct {
	side         []bool
	start, end   int64 // end is math.MaxInt64 while it lasts
	healed       bool
	sizeA, sizeB int
}

// world is the state of one run.
type world struct {
	cfg   Config
	rng   *rand.Rand // network and faults
	wrng  *rand.Rand // workload
	now   int64
	seq   uint64
	queue eventQueue
	nodes []*node
	// byAddr maps an address to a node index.
	byAddr map[string]int

	net        NetworkConfig
	slowNodes  []*node
	partitions []*partition
	active     int // partitions not healed
	quiet      bool
	quietAt    int64
	permanents int
	// windowUnits: a death declared within this long after a partition,
	// pause or slowness involving the two nodes is put down to it.
	windowUnits int64
	periodTicks int64

	clients []*client
	// stopClients ends the clients' work early (scripted runs).
	stopClients bool
	// written collects the writes of a client's operation (flush).
	written []store.Entry

	members *check.Membership
	model   *check.Eventual

	membershipBound, storeBound int64 // ticks
	// membershipAt and storeAt are when the membership last became
	// accurate and the replicas last converged (units; -1 while not).
	membershipAt, storeAt int64
	done                  bool

	violations []*check.Violation
	trace      traceLog
	res        *Result

	// observe, if set, sees every membership event (experiments).
	observe func(observer consensus.NodeID, ev gossip.Event)
	// onGossipSend, if set, sees every membership message sent
	// (experiments).
	onGossipSend func(from *node, to int, m *gossip.Message)
}

// Run executes one simulation and checks it. It returns an error only
// for an invalid Config; broken rules are reported in Result.Violations.
func Run(cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	w := newWorld(cfg)
	if err := w.boot(); err != nil {
		return nil, err
	}
	w.schedule(w.cfg.FaultTicks*UnitsPerTick, event{kind: evQuiet, node: -1})
	w.loop(math.MaxInt64)
	w.res.SimWall = time.Since(start)
	w.finish()
	w.res.Wall = time.Since(start)
	return w.res, nil
}

func newWorld(cfg Config) *world {
	seed := uint64(cfg.Seed)
	w := &world{
		cfg:          cfg,
		rng:          rand.New(rand.NewPCG(seed, 0x905510001)),
		wrng:         rand.New(rand.NewPCG(seed, 0x905510002)),
		byAddr:       make(map[string]int, cfg.Nodes),
		net:          cfg.Network,
		members:      check.NewMembership(cfg.Nodes),
		model:        check.NewEventual(cfg.Nodes, cfg.storeConfig().TombstoneTTLMs),
		membershipAt: -1,
		storeAt:      -1,
		trace:        newTraceLog(cfg.TraceTail),
		res:          &Result{Config: cfg, Seed: cfg.Seed, Nodes: cfg.Nodes},
	}
	w.membershipBound, w.storeBound = cfg.Bounds()
	w.res.MembershipBoundTicks, w.res.StoreBoundTicks = w.membershipBound, w.storeBound
	g := cfg.gossipConfig()
	w.periodTicks = int64(g.ProbeIntervalTicks)
	minTicks := math.Ceil(float64(g.SuspicionAlpha) * math.Max(1, math.Log10(float64(cfg.Nodes))) * float64(g.ProbeIntervalTicks))
	w.windowUnits = (int64(minTicks)*int64(max(1, g.SuspicionBeta)) + 2*int64(g.HealthMax+1)*w.periodTicks) * UnitsPerTick
	return w
}

// The seeded generator's stream constants.
const (
	_ = iota
	streamGossip
	streamStore
)

func (w *world) schedule(at int64, e event) {
	w.seq++
	e.at, e.seq = at, w.seq
	w.queue.push(e)
}

func (w *world) tick() float64 { return float64(w.now) / UnitsPerTick }

func (w *world) violate(v *check.Violation) {
	if v != nil {
		w.violations = append(w.violations, v)
		w.trace.note(w.now, "VIOLATION "+v.Error())
		w.done = true
	}
}

// nowMs is node n's physical clock: true time plus its skew.
func (w *world) nowMs(n *node) uint64 {
	return uint64(max(0, w.now*MsPerTick/UnitsPerTick+n.skewMs))
}

func addrOf(id consensus.NodeID) string { return "n" + strconv.FormatUint(uint64(id), 10) }

// boot creates the nodes, each joining through the first Seeds nodes
// (or, with ChainSeeds, up to Seeds random earlier ones), the clients and
// the fault scheduler.
func (w *world) boot() error {
	f := &w.cfg.Faults
	for i := range w.cfg.Nodes {
		n := &node{id: consensus.NodeID(i + 1), index: i, addr: addrOf(consensus.NodeID(i + 1))}
		drift := 1.0
		if f.TickDrift > 0 {
			drift += (w.rng.Float64()*2 - 1) * f.TickDrift
		}
		n.tickPeriod = max(1, int64(float64(UnitsPerTick)*drift))
		if f.ClockSkewMs > 0 {
			n.skewMs = w.rng.Int64N(2*f.ClockSkewMs+1) - f.ClockSkewMs
		}
		w.nodes = append(w.nodes, n)
		if i < f.SlowNodes {
			w.makeSlow(n)
		}
		w.byAddr[n.addr] = i
	}
	for _, n := range w.nodes {
		var seeds []gossip.Seed
		if w.cfg.ChainSeeds {
			for _, j := range w.rng.Perm(n.index)[:min(n.index, w.cfg.Seeds)] {
				seeds = append(seeds, w.seed(j))
			}
		} else {
			for j := range min(w.cfg.Seeds, len(w.nodes)) {
				if j != n.index {
					seeds = append(seeds, w.seed(j))
				}
			}
		}
		if err := w.start(n, seeds); err != nil {
			return err
		}
		w.schedule(w.rng.Int64N(n.tickPeriod)+1, event{kind: evTick, node: int32(n.index)})
	}
	w.schedule(UnitsPerTick, event{kind: evFaults, node: -1})
	w.bootClients()
	return nil
}

// makeSlow makes n a slow member (see FaultConfig.SlowNodes).
func (w *world) makeSlow(n *node) {
	n.slow = true
	w.slowNodes = append(w.slowNodes, n)
}

// seed names node j as a seed: by ID half the time, else by address
// only.
func (w *world) seed(j int) gossip.Seed {
	s := gossip.Seed{Addr: w.nodes[j].addr}
	if w.rng.IntN(2) == 0 {
		s.ID = w.nodes[j].id
	}
	return s
}

// start builds (or rebuilds, after a crash) a node's member and replica:
// the member at the incarnation after the last one its host persisted,
// the replica from its durable records unless wiped.
func (w *world) start(n *node, seeds []gossip.Seed) error {
	n.life++
	base := uint64(w.cfg.Seed) ^ uint64(n.id)<<32
	gc := w.cfg.gossipConfig()
	gc.ID, gc.Addr, gc.Seeds = n.id, n.addr, seeds
	gc.Rand = rand.New(rand.NewPCG(base, n.life<<8|streamGossip))
	if n.life > 1 {
		n.incarnation++
	}
	gc.Incarnation = n.incarnation
	g, err := gossip.New(gc)
	if err != nil {
		return fmt.Errorf("gossipsim: starting node %d: %w", n.id, err)
	}
	sc := w.cfg.storeConfig()
	sc.ID = n.id
	sc.Rand = rand.New(rand.NewPCG(base, n.life<<8|streamStore))
	st, err := store.New(sc)
	if err != nil {
		return fmt.Errorf("gossipsim: starting replica %d: %w", n.id, err)
	}
	for _, r := range n.records {
		if err := st.Recover(r); err != nil {
			w.violate(&check.Violation{Checker: "store-recover", Tick: w.tick(), Detail: fmt.Sprintf("replica %d cannot recover its records: %v", n.id, err)})
			return nil
		}
	}
	if len(n.records) > 1 {
		n.records = []consensus.Record{st.Snapshot()}
	}
	n.g, n.st, n.up = g, st, true
	n.pausedUntil = 0
	n.live = make([]bool, len(w.nodes))
	n.peersDirty = true
	w.members.Start(n.id, n.incarnation)
	w.flush(n, false)
	return nil
}

// crash stops n: its member and replica are gone; its durable records
// and incarnation stay.
func (w *world) crash(n *node, permanent bool) {
	if m, ok := n.g.Member(n.id); ok {
		n.incarnation = m.Incarnation
	}
	n.up, n.permanent, n.g, n.st, n.live = false, permanent, nil, nil, nil
	n.downAt = w.now
	n.pausedUntil = 0
	w.members.Crash(n.id)
	w.res.Faults.Crash++
	what := "crash"
	if permanent {
		w.permanents++
		w.res.Faults.Permanent++
		what = "crash for good"
	}
	w.trace.note(w.now, fmt.Sprintf("%s node %d", what, n.id))
}

// restart starts a crashed node again, joining through up to Seeds
// running nodes. A node down longer than half the tombstone TTL comes
// back with its store wiped: it could otherwise resurrect deletes it
// missed (the store's documented rule).
func (w *world) restart(n *node) {
	if n.up || n.permanent {
		return
	}
	downMs := uint64((w.now - n.downAt) * MsPerTick / UnitsPerTick)
	if downMs > w.cfg.storeConfig().TombstoneTTLMs/2 {
		n.records = nil
		n.dataLife++
		w.model.Wiped(n.id)
		w.res.Faults.Wiped++
		w.trace.note(w.now, fmt.Sprintf("wipe node %d's store after %d ms down", n.id, downMs))
	}
	var running []int
	for _, m := range w.nodes {
		if m.up && m != n {
			running = append(running, m.index)
		}
	}
	if len(running) == 0 {
		for _, m := range w.nodes {
			if m != n {
				running = append(running, m.index)
			}
		}
	}
	var seeds []gossip.Seed
	for _, k := range w.rng.Perm(len(running))[:min(len(running), w.cfg.Seeds)] {
		seeds = append(seeds, w.seed(running[k]))
	}
	if err := w.start(n, seeds); err != nil {
		w.violate(&check.Violation{Checker: "restart", Tick: w.tick(), Detail: err.Error()})
		return
	}
	w.res.Faults.Restart++
	w.trace.note(w.now, fmt.Sprintf("restart node %d at incarnation %d", n.id, n.incarnation))
}

// loop handles events until the run ends or until time limit.
func (w *world) loop(limit int64) {
	for w.queue.len() > 0 && !w.done {
		if w.queue.h[0].at > limit {
			return
		}
		ev := w.queue.pop()
		w.now = ev.at
		w.handle(ev)
	}
}

func (w *world) handle(ev event) {
	switch ev.kind {
	case evTick:
		n := w.nodes[ev.node]
		w.schedule(w.now+n.tickPeriod, ev)
		if !n.up || w.now < n.pausedUntil {
			return
		}
		w.tickNode(n)
	case evFaults:
		if !w.quiet {
			w.schedule(w.now+UnitsPerTick, ev)
			w.injectFaults()
		}
	case evDeliver:
		w.deliver(ev)
	case evClient:
		w.clientNext(w.clients[ev.node])
	case evRestart:
		w.restart(w.nodes[ev.node])
	case evHeal:
		w.heal(w.partitions[ev.node])
	case evQuiet:
		w.beginQuiet()
	case evCheck:
		w.checkConvergence()
		if !w.done {
			w.schedule(w.now+UnitsPerTick, ev)
		}
	}
}

func (w *world) tickNode(n *node) {
	if n.peersDirty && w.now-n.peersSetAt >= 5*UnitsPerTick {
		w.setPeers(n)
	}
	n.g.Tick()
	n.st.Tick(w.nowMs(n))
	w.flush(n, false)
}

// setPeers tells the replica the members its node believes live.
func (w *world) setPeers(n *node) {
	peers := make([]consensus.NodeID, 0, len(n.live))
	for j, l := range n.live {
		if l {
			peers = append(peers, consensus.NodeID(j+1))
		}
	}
	if err := n.st.SetPeers(peers); err != nil {
		w.violate(&check.Violation{Checker: "store-peers", Tick: w.tick(), Detail: err.Error()})
	}
	n.peersDirty, n.peersSetAt = false, w.now
}

// flush hands out the work of n's member and replica until both are
// idle: membership events to the checker, messages to the network,
// records to the node's durable log and the checker. clientWrite marks
// the flush after a client's write: every record in it is then the
// replica's own write.
func (w *world) flush(n *node, clientWrite bool) {
	for range readyLoopsMax {
		if !n.up {
			return
		}
		rd := n.g.Ready()
		srd := n.st.Ready()
		if rd.Empty() && srd.Empty() {
			return
		}
		for _, ev := range rd.Events {
			w.onEvent(n, ev)
		}
		for _, out := range rd.Messages {
			w.sendGossip(n, out)
		}
		n.g.Advance(rd)
		for _, r := range srd.Persist {
			w.persist(n, r, clientWrite)
		}
		for _, m := range srd.Messages {
			w.sendStore(n, m)
		}
		n.st.Advance(srd)
		clientWrite = false
	}
	w.violate(&check.Violation{Checker: "progress", Tick: w.tick(),
		Detail: fmt.Sprintf("node %d produced %d Readys in a row without settling", n.id, readyLoopsMax)})
}

// onEvent feeds one membership event to the checker and the store's
// peers.
func (w *world) onEvent(n *node, ev gossip.Event) {
	m := ev.Member
	j := int(m.ID) - 1
	if j < 0 || j >= len(w.nodes) || j == n.index {
		w.violate(&check.Violation{Checker: "membership-event", Tick: w.tick(), Detail: fmt.Sprintf("node %d reported an event about unknown member: %v", n.id, ev)})
		return
	}
	l := m.State == gossip.StateAlive || m.State == gossip.StateSuspect
	if n.live[j] != l {
		n.live[j], n.peersDirty = l, true
	}
	cause := check.CauseNone
	if m.State == gossip.StateDead {
		cause = w.cause(n.index, j)
	}
	w.members.Observe(n.id, m.ID, m.State, m.Incarnation, cause)
	if w.observe != nil {
		w.observe(n.id, ev)
	}
}

// cause says what the simulator knows about nodes a and b that may
// explain a death one declares of the other: a recent partition between
// them, a recent pause or slowness of either.
func (w *world) cause(a, b int) check.Cause {
	since := w.now - w.windowUnits
	for _, p := range w.partitions {
		if p.side[a] != p.side[b] && p.end >= since {
			return check.CausePartition
		}
	}
	na, nb := w.nodes[a], w.nodes[b]
	if (na.pauseEnd > 0 && na.pauseEnd >= since) || (nb.pauseEnd > 0 && nb.pauseEnd >= since) {
		return check.CausePause
	}
	if (na.slow || nb.slow) && (!w.quiet || w.quietAt >= since) {
		return check.CauseSlow
	}
	return check.CauseNone
}

// persist makes a store record durable (the simulated disk loses
// nothing) and feeds it to the checker.
func (w *world) persist(n *node, r consensus.Record, clientWrite bool) {
	if w.cfg.Codec {
		buf, err := store.RecordCodec.AppendRecord(nil, r)
		if err == nil {
			r, err = store.RecordCodec.DecodeRecord(buf)
		}
		if err != nil {
			w.violate(&check.Violation{Checker: "store-codec", Tick: w.tick(), Detail: fmt.Sprintf("replica %d record %T: %v", n.id, r, err)})
			return
		}
	}
	n.records = append(n.records, r)
	er, ok := r.(*store.EntryRecord)
	if !ok {
		return
	}
	if clientWrite {
		w.violate(w.model.Wrote(n.id, er.Entry, w.tick()))
		w.written = append(w.written, er.Entry)
		w.res.Writes++
	}
	w.violate(w.model.Held(n.id, er.Entry, w.nowMs(n), w.tick()))
	// Keep the log short: a snapshot supersedes every record before it.
	if len(n.records) > 4*(n.st.Len()+n.st.Status().Tombstones)+256 {
		n.records = []consensus.Record{n.st.Snapshot()}
	}
}

// finish fills in the result.
func (w *world) finish() {
	r := w.res
	r.Ticks = w.tick()
	r.TraceHash = w.trace.sum
	r.Deaths = w.members.Deaths()
	r.RYWChecked = w.model.RYWChecked
	r.Resurrections = w.model.Resurrections
	r.WritesLost = w.model.Lost(w.liveData)
	if w.membershipAt >= 0 {
		r.MembershipTicks = float64(w.membershipAt-w.quietAt) / UnitsPerTick
	} else {
		r.MembershipTicks = -1
	}
	if w.storeAt >= 0 {
		r.StoreTicks = float64(w.storeAt-w.quietAt) / UnitsPerTick
	} else {
		r.StoreTicks = -1
	}
	for _, n := range w.nodes {
		if n.up {
			r.Live++
			r.Keys, r.Tombstones = n.st.Len(), n.st.Status().Tombstones
		}
		r.GossipMessages += n.gossipSent
	}
	for _, c := range w.clients {
		r.Ops.add(c.stats)
	}
	r.Violations = w.violations
	if len(w.violations) > 0 {
		r.TraceTail = w.trace.tail()
	}
}

// liveData reports whether replica id runs with its data: what it ever
// held is still there.
func (w *world) liveData(id consensus.NodeID) bool { return w.nodes[id-1].up }

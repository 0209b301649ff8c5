package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/sim/check"
	"github.com/synod-io/synod/storage/durable"
	"github.com/synod-io/synod/storage/snap"
	"github.com/synod-io/synod/storage/vfs"
)

// readyLoopsMax bounds how many Readys a node may produce in a row after
// one input; a replica that keeps producing work forever is a bug.
const readyLoopsMax = 1000

// node is one simulated machine.
type node struct {
	id    consensus.NodeID
	index int
	// alive is false while crashed.
	alive bool
	// incarnation counts restarts; it seeds the replica's randomness.
	incarnation uint64
	replica     consensus.Replica
	store       *kv.Store
	// records is every record persisted, in order, when disks are off; it
	// survives crashes.
	records []consensus.Record
	// disk is the node's simulated disk, when disks are on, and snaps
	// the snapshot store on it.
	disk  *disk
	snaps *nodeSnapshots
	// refused is set when the node found its disk untrustworthy at start
	// and refused to run; it stays down.
	refused bool
	// tickPeriod is this node's tick length in units (clock drift).
	tickPeriod int64
	// pausedUntil: while now < pausedUntil the node does nothing.
	pausedUntil int64
	// crashAfterPersist: the node crashes in the middle of handling its
	// next Ready, after persisting and before sending or applying.
	crashAfterPersist bool
	// crashMidPersist: the node crashes after writing its next Ready's
	// records, before syncing them.
	crashMidPersist bool
	applied         uint64
	appliedTerm     uint64
	role            consensus.Role
	term            uint64
	// Client work waiting on this node.
	pendingWrites map[consensus.Session]pendingWrite
	pendingReads  map[uint64]pendingRead
	readStates    []consensus.ReadState
}

type pendingWrite struct {
	client  int32
	attempt uint64
}

type pendingRead struct {
	client  int32
	attempt uint64
	key     string
}

// world is the state of one run.
type world struct {
	cfg   Config
	rng   *rand.Rand // network, faults
	wrng  *rand.Rand // workload
	now   int64
	seq   uint64
	queue eventQueue
	nodes []*node
	peers []consensus.NodeID

	// Network state.
	net       NetworkConfig
	latency   [][]int64 // base latency per directed link
	blocked   [][]int   // > 0: link drops everything
	clogUntil [][]int64 // link holds messages until this time
	blocks    [][][2]int
	quiet     bool
	// linkLast is, with a latency matrix, the latest delivery time
	// scheduled on each link (links deliver in order); nil otherwise.
	linkLast [][]int64

	clients []*client
	history []check.KVOperation
	hclock  int64 // history timestamps: strictly increasing
	nextID  uint64
	// nextSessionID numbers the per-key sessions of leaderless runs.
	nextSessionID uint64

	// Checkers.
	election   *check.ElectionSafety
	agreement  *check.Agreement
	keyOrder   *check.KeyOrder // leaderless protocols only
	maxTerm    uint64
	violations []*check.Violation
	livenessOK bool

	trace traceLog
	res   *Result
	// snapHashes is the state hash of each snapshot taken or installed,
	// by its content's name (see noteSnapshot).
	snapHashes map[string]uint64
}

// Run executes one simulation and checks it. It returns an error only for
// an invalid Config; broken rules are reported in Result.Violations.
func Run(cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	w := newWorld(cfg)
	if err := w.boot(); err != nil {
		return nil, err
	}
	end := (cfg.FaultTicks + cfg.LivenessTicks) * UnitsPerTick
	for w.queue.len() > 0 && len(w.violations) == 0 {
		ev := w.queue.pop()
		if ev.at > end {
			break
		}
		w.now = ev.at
		w.handle(ev)
	}
	w.now = end
	w.res.SimWall = time.Since(start)
	w.finish()
	w.res.Wall = time.Since(start)
	return w.res, nil
}

func newWorld(cfg Config) *world {
	seed := uint64(cfg.Seed)
	w := &world{
		cfg:       cfg,
		rng:       rand.New(rand.NewPCG(seed, 0x5eed0001)),
		wrng:      rand.New(rand.NewPCG(seed, 0x5eed0002)),
		net:       cfg.Network,
		election:  check.NewElectionSafety(),
		agreement: check.NewAgreement(),
		keyOrder:  check.NewKeyOrder(),
		trace:     newTraceLog(cfg.TraceTail),
		res:       &Result{Config: cfg, Seed: cfg.Seed, Protocol: cfg.Protocol.Name, Nodes: cfg.Nodes},
	}
	n := cfg.Nodes
	w.latency = make([][]int64, n)
	w.blocked = make([][]int, n)
	w.clogUntil = make([][]int64, n)
	for i := range n {
		w.peers = append(w.peers, consensus.NodeID(i+1))
		w.latency[i] = make([]int64, n)
		w.blocked[i] = make([]int, n)
		w.clogUntil[i] = make([]int64, n)
		for j := range n {
			if m := cfg.Network.Matrix; m != nil {
				w.latency[i][j] = oneWayUnits(m.RTT(i, j), cfg.Network.UnitsPerMs)
				continue
			}
			w.latency[i][j] = cfg.Network.LatencyMinUnits + w.rng.Int64N(cfg.Network.LatencyMaxUnits-cfg.Network.LatencyMinUnits+1)
		}
	}
	if m := cfg.Network.Matrix; m != nil {
		w.linkLast = make([][]int64, n)
		for i := range n {
			w.linkLast[i] = make([]int64, n)
		}
		w.res.siteCommitUnits = make([][]int64, m.Len())
		w.res.siteExecUnits = make([][]int64, m.Len())
	}
	return w
}

// oneWayUnits is half a round-trip time of rttMs milliseconds, in units.
func oneWayUnits(rttMs float64, unitsPerMs int64) int64 {
	return int64(math.Round(rttMs * float64(unitsPerMs) / 2))
}

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
	}
}

// boot starts the nodes, the clients and the fault scheduler.
func (w *world) boot() error {
	faulty := map[int]bool{}
	if w.cfg.Disk.Enabled {
		for _, i := range w.rng.Perm(w.cfg.Nodes)[:min(w.cfg.Disk.Faulty, (w.cfg.Nodes-1)/2)] {
			faulty[i] = true
		}
	}
	for i := range w.cfg.Nodes {
		n := &node{id: consensus.NodeID(i + 1), index: i}
		if w.cfg.Disk.Enabled {
			n.disk = w.newDisk(n, faulty[i])
		}
		drift := 1.0
		if d := w.cfg.Faults.ClockDrift; d > 0 {
			drift += (w.rng.Float64()*2 - 1) * d
		}
		n.tickPeriod = max(1, int64(float64(UnitsPerTick)*drift))
		w.nodes = append(w.nodes, n)
		if err := w.start(n); err != nil {
			return err
		}
		// Stagger the nodes' clocks.
		w.schedule(w.rng.Int64N(n.tickPeriod)+1, event{kind: evTick, node: int32(i)})
	}
	w.schedule(UnitsPerTick, event{kind: evFaults, node: -1})
	w.schedule(w.cfg.FaultTicks*UnitsPerTick, event{kind: evQuiet, node: -1})
	for i := range w.cfg.Workload.Clients {
		c := &client{index: int32(i), id: uint64(i + 1), site: -1, lastSeen: map[string]string{}}
		if w.cfg.Network.Matrix != nil {
			// Node i sits at site i: a client starts at its own site's.
			c.site = i % w.cfg.Nodes
			c.target = c.site
		} else {
			c.target = w.wrng.IntN(w.cfg.Nodes)
		}
		w.clients = append(w.clients, c)
		w.schedule(w.wrng.Int64N(UnitsPerTick)+1, event{kind: evClientNext, node: -1, client: int32(i)})
	}
	return nil
}

// start builds (or rebuilds, after a crash) a node's replica from its disk.
func (w *world) start(n *node) error {
	n.incarnation++
	rng := rand.New(rand.NewPCG(uint64(w.cfg.Seed)^uint64(n.id)<<32, n.incarnation))
	nc := NodeConfig{ID: n.id, Peers: slices.Clone(w.peers), Durable: slices.Clone(n.records), Rand: rng,
		SnapshotEntries: w.cfg.Disk.SnapshotEntries, SnapshotChunkBytes: w.cfg.Disk.SnapshotChunkBytes}
	store, applied, appliedTerm := kv.New(), uint64(0), uint64(0)
	var baseMeta consensus.SnapshotMeta // the snapshot the state machine starts from
	n.snaps = nil
	if n.disk != nil {
		refuse := func(err error) error {
			if errors.Is(err, vfs.ErrInjected) || errors.Is(err, errPowerLoss) {
				// A failed fsync or a power cut while starting: try again
				// later from what is durable.
				w.trace.note(w.now, fmt.Sprintf("node %d failed to start: %v", n.id, err))
				w.crashDisk(n)
				w.res.Faults.DiskFailure++
				w.scheduleRestart(n)
				return nil
			}
			// A node that cannot trust its disk must not vote or serve.
			n.refused = true
			w.res.Faults.RefusedStart++
			w.trace.note(w.now, fmt.Sprintf("node %d refuses to start: %v", n.id, err))
			return nil
		}
		recs, err := w.openLog(n)
		if err != nil {
			return refuse(err)
		}
		if n.disk.corrupted {
			w.res.Faults.CorruptionUnnoticed++
		}
		ss, err := snap.Open(n.disk.cfs, snapDir, snap.Options{Keep: 2})
		if err != nil {
			return refuse(err)
		}
		n.snaps = &nodeSnapshots{durable.NewSnapshots(ss, w.peers)}
		// The newest checkpoint names the snapshot the log builds on; the
		// state machine starts from it.
		var base uint64
		for _, r := range recs {
			if cp, ok := r.(consensus.Checkpoint); ok {
				base = cp.SnapshotIndex()
			}
		}
		if base > 0 {
			if store, baseMeta, err = n.snaps.loadState(base); err != nil {
				return refuse(fmt.Errorf("loading snapshot %d: %w", base, err))
			}
			applied = base
			if m, ok := n.snaps.Newest(); ok && m.Index == base {
				appliedTerm = m.Term
			}
		}
		nc.Durable, nc.Snapshots = recs, n.snaps
	}
	if n.disk != nil && n.disk.cfs.tripped {
		w.trace.note(w.now, fmt.Sprintf("node %d lost power while starting", n.id))
		w.crashDisk(n)
		w.res.Faults.CrashAtDiskOp++
		w.scheduleRestart(n)
		return nil
	}
	r, err := w.cfg.Protocol.New(nc)
	if err != nil {
		return fmt.Errorf("sim: starting node %d (incarnation %d): %w", n.id, n.incarnation, err)
	}
	n.replica = r
	n.store = store
	n.alive = true
	n.applied, n.appliedTerm = applied, appliedTerm
	n.role, n.term = consensus.RoleFollower, 0
	n.pendingWrites = map[consensus.Session]pendingWrite{}
	n.pendingReads = map[uint64]pendingRead{}
	n.readStates = nil
	n.crashAfterPersist = false
	n.crashMidPersist = false
	if w.cfg.Protocol.Leaderless {
		if applied > 0 {
			// The replica executes on from the snapshot.
			w.resumeKeyOrder(n, &baseMeta)
		} else {
			// The replica executes from its first command again.
			w.keyOrder.Restart(n.id)
		}
	}
	return nil
}

func (w *world) crash(n *node) {
	if n.disk != nil {
		w.crashDisk(n)
	}
	n.alive = false
	n.replica = nil
	n.store = nil
	n.pendingWrites = nil
	n.pendingReads = nil
	n.readStates = nil
	n.crashAfterPersist = false
	n.crashMidPersist = false
	n.role = consensus.RoleFollower
	w.res.Faults.Crash++
	w.trace.note(w.now, fmt.Sprintf("crash node %d", n.id))
}

func (w *world) handle(ev event) {
	switch ev.kind {
	case evTick:
		n := w.nodes[ev.node]
		w.schedule(w.now+n.tickPeriod, ev)
		if !n.alive || w.now < n.pausedUntil {
			return
		}
		n.replica.Tick()
		w.process(n)
	case evFaults:
		w.schedule(w.now+UnitsPerTick, ev)
		if !w.quiet {
			w.injectFaults()
		}
	case evDeliver:
		w.deliver(ev)
	case evClientRequest:
		w.serveRequest(ev)
	case evClientReply:
		w.clientReply(ev)
	case evClientTimeout:
		w.clientTimeout(ev)
	case evClientNext:
		w.clientNext(w.clients[ev.client])
	case evRestart:
		n := w.nodes[ev.node]
		if n.alive || n.refused {
			return
		}
		if err := w.start(n); err != nil {
			w.violate(&check.Violation{Checker: "restart", Tick: w.tick(), Detail: err.Error()})
			return
		}
		if !n.alive {
			return // refused
		}
		w.res.Faults.Restart++
		w.trace.note(w.now, fmt.Sprintf("restart node %d", n.id))
		w.process(n)
	case evUnblock:
		w.unblock(int(ev.client))
	case evQuiet:
		w.beginQuiet()
	}
}

// process handles a node's Readys until it has no more work: persist, then
// (unless a crash is armed) send, apply and serve reads, then Advance.
func (w *world) process(n *node) {
	for range readyLoopsMax {
		if !n.alive || w.powerLost(n) {
			return
		}
		rd := n.replica.Ready()
		if rd.Empty() {
			w.observe(n)
			return
		}
		var sendAt int64
		if n.disk != nil {
			n.disk.slowUnits = 0
			if !w.persist(n, rd.Persist, rd.SyncOptional) {
				return // the node crashed
			}
			sendAt = n.disk.slowUnits
		} else {
			n.records = append(n.records, rd.Persist...)
		}
		if n.crashAfterPersist {
			w.res.Faults.CrashMidReady++
			w.crash(n)
			w.scheduleRestart(n)
			return
		}
		for _, m := range rd.Messages {
			w.send(m, sendAt)
		}
		if rd.Restore != nil && !w.restoreSnapshot(n, rd.Restore) {
			return
		}
		if w.res.siteCommitUnits != nil && w.cfg.Protocol.Commits != nil {
			w.cfg.Protocol.Commits(&rd, func(s consensus.Session) { w.committed(n, s) })
		}
		for i := range rd.Committed {
			w.apply(n, &rd.Committed[i])
		}
		n.readStates = append(n.readStates, rd.Reads...)
		n.replica.Advance(rd)
		w.serveReads(n)
		if rd.SnapshotWanted {
			w.takeSnapshot(n)
		}
	}
	w.violate(&check.Violation{Checker: "progress", Tick: w.tick(),
		Detail: fmt.Sprintf("node %d produced %d Readys in a row without settling", n.id, readyLoopsMax)})
}

// scheduleRestart restarts a crashed node after a random downtime.
func (w *world) scheduleRestart(n *node) {
	w.schedule(w.now+(1+w.rng.Int64N(w.cfg.Faults.CrashDowntimeMaxTicks))*UnitsPerTick, event{kind: evRestart, node: int32(n.index)})
}

// entryReader is implemented by replicas whose log the checkers may read.
type entryReader interface {
	Entry(index uint64) (consensus.Entry, bool)
}

// roleReporter is implemented by replicas that report role and term more
// cheaply than Status.
type roleReporter interface {
	RoleTerm() (consensus.Role, uint64)
}

// observe feeds the node's role and term to the checkers.
func (w *world) observe(n *node) {
	var role consensus.Role
	var term uint64
	if rr, ok := n.replica.(roleReporter); ok {
		role, term = rr.RoleTerm()
	} else {
		st := n.replica.Status()
		role, term = st.Role, st.Term
	}
	if term > w.maxTerm {
		w.maxTerm = term
	}
	becameLeader := role == consensus.RoleLeader && (n.role != consensus.RoleLeader || n.term != term)
	n.role, n.term = role, term
	st := consensus.Status{Role: role, Term: term}
	if !becameLeader {
		return
	}
	w.trace.note(w.now, fmt.Sprintf("node %d leads term %d", n.id, st.Term))
	w.res.LastLeader = n.id
	w.violate(w.election.ObserveLeader(n.id, st.Term, w.tick()))
	if er, ok := n.replica.(entryReader); ok {
		first := uint64(1)
		if fi, ok := n.replica.(interface{ FirstIndex() uint64 }); ok {
			first = fi.FirstIndex()
		}
		w.violate(w.agreement.CheckLeader(n.id, st.Term, first, er.Entry, w.tick()))
	}
}

func (w *world) apply(n *node, e *consensus.Entry) {
	w.trace.hash(uint64(w.now), 0xa991, uint64(n.id), e.Index, e.Term)
	var v *check.Violation
	if w.cfg.Protocol.Leaderless {
		v = w.keyOrder.Applied(n.id, n.applied, e, w.tick())
	} else {
		v = w.agreement.Applied(n.id, n.applied, e, w.maxTerm, w.tick())
	}
	if v != nil {
		w.violate(v)
		return
	}
	n.applied, n.appliedTerm = e.Index, e.Term
	res := n.store.Apply(*e)
	if e.Type != consensus.EntryNormal || e.Command.Session.ClientID == 0 {
		return
	}
	pw, ok := n.pendingWrites[e.Command.Session]
	if !ok {
		return
	}
	delete(n.pendingWrites, e.Command.Session)
	w.replyTo(n, pw.client, pw.attempt, &reply{result: res})
}

// serveReads answers reads whose read point the node has applied.
func (w *world) serveReads(n *node) {
	kept := n.readStates[:0]
	for _, rs := range n.readStates {
		if rs.Index > n.applied {
			kept = append(kept, rs)
			continue
		}
		id := readID(rs.Context)
		pr, ok := n.pendingReads[id]
		if !ok {
			continue
		}
		delete(n.pendingReads, id)
		res := n.store.Read(kv.Get(pr.key))
		w.replyTo(n, pr.client, pr.attempt, &reply{result: res})
	}
	n.readStates = kept
}

// finish ends the run: it records outstanding operations, checks liveness
// and linearizability, and fills in the result.
func (w *world) finish() {
	for _, c := range w.clients {
		if op := c.op; op != nil {
			// Still in flight: a write may yet take effect.
			if op.input.Kind != check.KVGet {
				op.mayHaveApplied = true
			}
			w.res.OpsPending++
			w.abandon(c)
		}
	}
	r := w.res
	r.Ticks = w.tick()
	r.LeaderChanges = w.election.Leaders()
	r.Committed = w.agreement.CommittedIndex()
	if w.cfg.Protocol.Leaderless {
		r.Committed = w.keyOrder.Executed()
	}
	r.TraceHash = w.trace.sum
	if len(w.violations) == 0 && w.cfg.Workload.Clients > 0 && !w.livenessOK {
		w.violate(&check.Violation{Checker: "liveness", Tick: w.tick(),
			Detail: fmt.Sprintf("no operation completed in the %d ticks after faults stopped at tick %d", w.cfg.LivenessTicks, w.cfg.FaultTicks)})
	}
	r.latencies()
	r.siteLatencies()
	if len(w.violations) == 0 {
		timeout := time.Duration(w.cfg.CheckTimeoutSec) * time.Second
		lin := check.CheckLinearizable(w.history, timeout)
		r.Linearizability = string(lin.Result)
		r.lin = lin
		if lin.Result == "Illegal" {
			w.violate(&check.Violation{Checker: "linearizability", Tick: w.tick(),
				Detail: fmt.Sprintf("the history of %d operations is not linearizable (see the visualization)", lin.Operations)})
		}
	}
	r.Violations = w.violations
	if len(w.violations) > 0 {
		r.TraceTail = w.trace.tail()
	}
}

// readID decodes a read context.
func readID(ctx []byte) uint64 {
	if len(ctx) != 8 {
		return 0
	}
	var id uint64
	for _, b := range ctx {
		id = id<<8 | uint64(b)
	}
	return id
}

func readContext(id uint64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(id)
		id >>= 8
	}
	return b
}

func checkViolation(w *world, checker, detail string) *check.Violation {
	return &check.Violation{Checker: checker, Tick: w.tick(), Detail: detail}
}

// ErrViolation is matched by errors describing a run with violations.
var ErrViolation = errors.New("sim: violation")

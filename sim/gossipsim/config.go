package gossipsim

import (
	"errors"
	"fmt"
	"math"

	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
)

// Virtual time. A tick is one call of gossip.Node.Tick and of
// store.Store.Tick, and stands for MsPerTick milliseconds of physical
// time: gossip's default 10-tick protocol period is one second, and the
// store's nowMs advances 100 per tick. Network latencies are in units,
// UnitsPerTick to a tick (0.1 ms each), as in package sim.
const (
	UnitsPerTick = 1000
	MsPerTick    = 100
)

// Bounds checked by Config.Validate.
const (
	// NodesMax bounds Config.Nodes.
	NodesMax = 1000
	// TicksMax bounds every duration in ticks.
	TicksMax = 10_000_000
	// ClientsMax bounds WorkloadConfig.Clients.
	ClientsMax = 10_000
	// KeysMax bounds WorkloadConfig.Keys.
	KeysMax = 100_000
)

// NetworkConfig describes the simulated network. Rates are chances per
// message, in [0, 1].
type NetworkConfig struct {
	// LatencyMinUnits and LatencyMaxUnits bound each directed link's base
	// one-way latency (fixed per link for the run).
	LatencyMinUnits, LatencyMaxUnits int64
	// JitterUnits is the most added to a link's latency per message.
	JitterUnits int64
	// Loss is the chance a message is lost; Duplicate that it is
	// delivered twice; Reorder that it is held back by up to
	// ReorderDelayUnits, so that later ones overtake it.
	Loss, Duplicate, Reorder float64
	ReorderDelayUnits        int64
}

// FaultConfig describes the faults of the fault phase. Rates are chances
// per tick that a fault of that kind starts somewhere in the group.
type FaultConfig struct {
	// Crash: a node stops, losing nothing durable (the store's records
	// and its incarnation survive), and restarts after a downtime in
	// [1, CrashDowntimeMaxTicks] ticks, unless the crash is for good
	// (chance Permanent; at most PermanentMax nodes per run). A node down
	// longer than half the tombstone TTL restarts with its store wiped,
	// as the store's documentation asks.
	Crash                 float64
	CrashDowntimeMaxTicks int64
	Permanent             float64
	PermanentMax          int
	// Partition: the group splits in two random sides that cannot talk
	// (both directions), for up to PartitionMaxTicks ticks.
	Partition         float64
	PartitionMaxTicks int64
	// Pause: a node stops ticking and handling messages (a long GC pause,
	// a stopped VM) for up to PauseMaxTicks ticks; messages to it wait.
	Pause         float64
	PauseMaxTicks int64
	// SlowNodes members (the first ones) are slow but alive for the
	// whole fault phase: each message to or from one is delayed, with
	// chance SlowChance, by up to SlowDelayMaxTicks ticks, and the node
	// pauses for SlowPauseTicks about every SlowPauseEveryTicks ticks.
	SlowNodes           int
	SlowChance          float64
	SlowDelayMaxTicks   int64
	SlowPauseEveryTicks int64
	SlowPauseTicks      int64
	// ClockSkewMs is the most a node's physical clock (the store's nowMs)
	// is off the true time, drawn per node and kept for the run; keep it
	// within the store's ClockDriftMaxMs so that no write is refused.
	ClockSkewMs int64
	// TickDrift is the most a node's tick period differs from nominal, as
	// a fraction (0.01 = ±1%), drawn per node.
	TickDrift float64
}

// WorkloadConfig describes the clients. Each client issues one operation
// at a time on the store replica of a node, directly (a client is
// co-located with the node it uses): at its home node with chance Home,
// else at a random node. Operations on a crashed node fail; on a paused
// node they wait. Clients work during the fault phase only, so that the
// store can converge afterwards.
type WorkloadConfig struct {
	Clients int
	// Keys is the size of the key space ("k0".."k<Keys-1>").
	Keys int
	// Weights of each operation kind. A delete-range deletes the keys
	// with a random one-digit prefix.
	PutWeight, GetWeight, DeleteWeight, DeleteRangeWeight int
	// ThinkTicksMax is the most a client waits between operations.
	ThinkTicksMax int64
	// Home is the chance an operation goes to the client's home node,
	// where read-your-writes is checked.
	Home float64
}

// Config is one gossip simulation run.
type Config struct {
	Seed  int64
	Nodes int
	// FaultTicks is the length of the fault phase. Then every fault
	// stops: partitions heal, the network stops losing, duplicating and
	// reordering, pauses end, crashed nodes restart (except those crashed
	// for good), and client writes stop. The membership must then be
	// accurate within MembershipBoundTicks, and the store replicas
	// converged within StoreBoundTicks (zero: Bounds computes them).
	FaultTicks           int64
	MembershipBoundTicks int64
	StoreBoundTicks      int64
	// StableTicks: after both converged, the run goes on this long and
	// checks again that they stayed so.
	StableTicks int64

	Network  NetworkConfig
	Faults   FaultConfig
	Workload WorkloadConfig

	// Lifeguard turns on gossip's Lifeguard extensions (gossip.Config).
	Lifeguard bool
	// PushPullTicks is gossip's push-pull interval (gossip.Config).
	PushPullTicks int
	// AntiEntropyIntervalMs and TombstoneTTLMs configure the store
	// (store.Config); its other settings are store.DefaultConfig's, with
	// a 256-leaf tree.
	AntiEntropyIntervalMs uint64
	TombstoneTTLMs        uint64
	// Seeds is how many nodes each node joins through: the first Seeds
	// nodes, a seed list every node shares as in a deployment. A node
	// that restarts joins through Seeds nodes running at the time.
	Seeds int
	// ChainSeeds makes each node join through up to Seeds random earlier
	// nodes instead, so joiners learn of each other before any seed
	// answers them; gossip keeps retrying until a seed has answered, so
	// the group still becomes one (TestChainSeedsMerge).
	ChainSeeds bool
	// Codec sends every message, and stores every record, through the
	// cores' codecs.
	Codec bool
	// TraceTail is how many recent events a violation report shows.
	TraceTail int

	// AdjustGossip and AdjustStore, if set, change each node's core
	// configuration last (experiments, tests). A run that uses them is
	// not reproducible from the command line.
	AdjustGossip func(*gossip.Config)
	AdjustStore  func(*store.Config)
}

// DefaultConfig returns a moderate run: 10 nodes, every fault kind at a
// low rate, 1,500 ticks (two and a half simulated minutes) of faults.
func DefaultConfig(seed int64) Config {
	return Config{
		Seed:        seed,
		Nodes:       10,
		FaultTicks:  1500,
		StableTicks: 50,
		Network: NetworkConfig{
			LatencyMinUnits:   50,
			LatencyMaxUnits:   500,
			JitterUnits:       200,
			Loss:              0.02,
			Duplicate:         0.01,
			Reorder:           0.02,
			ReorderDelayUnits: 3000,
		},
		Faults: FaultConfig{
			Crash:                 0.004,
			CrashDowntimeMaxTicks: 200,
			Permanent:             0.25,
			PermanentMax:          2,
			Partition:             0.003,
			PartitionMaxTicks:     300,
			Pause:                 0.004,
			PauseMaxTicks:         50,
			SlowChance:            0.3,
			SlowDelayMaxTicks:     30,
			SlowPauseEveryTicks:   300,
			SlowPauseTicks:        10,
			ClockSkewMs:           200,
			TickDrift:             0.01,
		},
		Workload: WorkloadConfig{
			Clients:           8,
			Keys:              20,
			PutWeight:         4,
			GetWeight:         4,
			DeleteWeight:      1,
			DeleteRangeWeight: 0,
			ThinkTicksMax:     10,
			Home:              0.5,
		},
		Lifeguard:             true,
		PushPullTicks:         300,
		AntiEntropyIntervalMs: 2000,
		TombstoneTTLMs:        30 * 60 * 1000,
		Seeds:                 3,
		TraceTail:             40,
	}
}

// gossipConfig is node id's membership configuration.
func (c *Config) gossipConfig() gossip.Config {
	g := gossip.DefaultConfig(1, "n1", nil)
	g.Lifeguard = c.Lifeguard
	g.PushPullTicks = c.PushPullTicks
	if c.AdjustGossip != nil {
		c.AdjustGossip(&g)
	}
	return g
}

// storeConfig is a replica's configuration.
func (c *Config) storeConfig() store.Config {
	s := store.DefaultConfig(1, nil)
	s.TreeLevels = 2
	s.AntiEntropyIntervalMs = c.AntiEntropyIntervalMs
	s.TombstoneTTLMs = c.TombstoneTTLMs
	s.ClockDriftMaxMs = max(s.ClockDriftMaxMs, uint64(2*c.Faults.ClockSkewMs))
	s.KeyBytesMax = 64
	s.ValueBytesMax = 256
	s.MessageBytesMax = 256 << 10
	if c.AdjustStore != nil {
		c.AdjustStore(&s)
	}
	return s
}

// Bounds returns the bounds after the faults stop: how long the
// membership may take to become accurate, and the store replicas to
// converge, in ticks. Unless Config sets them, they are computed from
// the cores' configurations and N:
//
//	membership = S + 2·P + H + (4·⌈log2 N⌉ + 30)·T
//	store      = membership + (2·⌈log2 N⌉ + 2·⌈ln N⌉ + 10)·A
//
// where T is the protocol period, S the longest suspicion timeout
// (β·Min with Lifeguard, Min without), P the push-pull interval scaled
// for N (a healed partition merges through push-pull with a member
// believed dead), H the time a node at the highest local health takes to
// come back to the base period, and A the anti-entropy interval in
// ticks. The store's term is about twice the rounds the store measures
// to converge (its package doc).
func (c *Config) Bounds() (membershipTicks, storeTicks int64) {
	g, s := c.gossipConfig(), c.storeConfig()
	n := float64(c.Nodes)
	t := int64(g.ProbeIntervalTicks)
	minTicks := int64(math.Ceil(float64(g.SuspicionAlpha) * math.Max(1, math.Log10(n)) * float64(t)))
	susp := minTicks
	if g.Lifeguard {
		susp *= int64(g.SuspicionBeta)
	}
	pp := int64(g.PushPullTicks) * pushPullScale(c.Nodes)
	h := int64(0)
	if g.Lifeguard {
		h = int64(g.HealthMax*(g.HealthMax+1)/2) * t
	}
	log2 := int64(math.Ceil(math.Log2(n)))
	membershipTicks = susp + 2*pp + h + (4*log2+30)*t
	ae := int64(s.AntiEntropyIntervalMs+MsPerTick-1) / MsPerTick
	ln := int64(math.Ceil(math.Log(n)))
	storeTicks = membershipTicks + (2*log2+2*ln+10)*ae
	if c.MembershipBoundTicks > 0 {
		membershipTicks = c.MembershipBoundTicks
	}
	if c.StoreBoundTicks > 0 {
		storeTicks = c.StoreBoundTicks
	}
	return membershipTicks, storeTicks
}

// pushPullScale is gossip's scaling of the push-pull interval beyond 32
// members (gossip's package doc): 1+⌈log2(N/32)⌉.
func pushPullScale(n int) int64 {
	if n <= 32 {
		return 1
	}
	return 1 + int64(math.Ceil(math.Log2(float64(n)/32)))
}

// Validate reports every bad field, saying what is allowed.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("gossipsim: "+format, args...)) }
	if c.Nodes < 2 || c.Nodes > NodesMax {
		bad("Nodes = %d; want 2..%d", c.Nodes, NodesMax)
	}
	for _, d := range []struct {
		name string
		v    int64
		lo   int64
	}{
		{"FaultTicks", c.FaultTicks, 0}, {"MembershipBoundTicks", c.MembershipBoundTicks, 0},
		{"StoreBoundTicks", c.StoreBoundTicks, 0}, {"StableTicks", c.StableTicks, 0},
		{"Faults.CrashDowntimeMaxTicks", c.Faults.CrashDowntimeMaxTicks, 1},
		{"Faults.PartitionMaxTicks", c.Faults.PartitionMaxTicks, 1},
		{"Faults.PauseMaxTicks", c.Faults.PauseMaxTicks, 1},
		{"Faults.SlowDelayMaxTicks", c.Faults.SlowDelayMaxTicks, 1},
		{"Faults.SlowPauseEveryTicks", c.Faults.SlowPauseEveryTicks, 1},
		{"Faults.SlowPauseTicks", c.Faults.SlowPauseTicks, 0},
		{"Workload.ThinkTicksMax", c.Workload.ThinkTicksMax, 0},
	} {
		if d.v < d.lo || d.v > TicksMax {
			bad("%s = %d; want %d..%d", d.name, d.v, d.lo, TicksMax)
		}
	}
	n := &c.Network
	if n.LatencyMinUnits < 1 || n.LatencyMaxUnits < n.LatencyMinUnits || n.LatencyMaxUnits > 100*UnitsPerTick {
		bad("latency bounds [%d, %d] units; want 1 <= min <= max <= %d", n.LatencyMinUnits, n.LatencyMaxUnits, 100*UnitsPerTick)
	}
	if n.JitterUnits < 0 || n.ReorderDelayUnits < 0 || n.JitterUnits > 100*UnitsPerTick || n.ReorderDelayUnits > 100*UnitsPerTick {
		bad("JitterUnits and ReorderDelayUnits must be in 0..%d", 100*UnitsPerTick)
	}
	f := &c.Faults
	for _, r := range []struct {
		name string
		p    float64
	}{{"Network.Loss", n.Loss}, {"Network.Duplicate", n.Duplicate}, {"Network.Reorder", n.Reorder},
		{"Faults.Crash", f.Crash}, {"Faults.Permanent", f.Permanent}, {"Faults.Partition", f.Partition},
		{"Faults.Pause", f.Pause}, {"Faults.SlowChance", f.SlowChance}, {"Workload.Home", c.Workload.Home}} {
		if !(r.p >= 0 && r.p <= 1) {
			bad("%s = %v; want a probability in [0, 1]", r.name, r.p)
		}
	}
	if n.Loss >= 0.5 {
		bad("Network.Loss = %v; want < 0.5 (SWIM assumes most messages arrive)", n.Loss)
	}
	if f.PermanentMax < 0 || f.PermanentMax > (c.Nodes-1)/2 {
		bad("Faults.PermanentMax = %d; want 0..%d (a minority of %d nodes)", f.PermanentMax, (c.Nodes-1)/2, c.Nodes)
	}
	if f.SlowNodes < 0 || f.SlowNodes > c.Nodes/2 {
		bad("Faults.SlowNodes = %d; want 0..%d", f.SlowNodes, c.Nodes/2)
	}
	if f.ClockSkewMs < 0 || f.ClockSkewMs > 60_000 {
		bad("Faults.ClockSkewMs = %d; want 0..60000", f.ClockSkewMs)
	}
	if f.TickDrift < 0 || f.TickDrift > 0.2 {
		bad("Faults.TickDrift = %v; want 0..0.2", f.TickDrift)
	}
	w := &c.Workload
	if w.Clients < 0 || w.Clients > ClientsMax {
		bad("Workload.Clients = %d; want 0..%d", w.Clients, ClientsMax)
	}
	if w.Keys < 1 || w.Keys > KeysMax {
		bad("Workload.Keys = %d; want 1..%d", w.Keys, KeysMax)
	}
	if w.PutWeight < 0 || w.GetWeight < 0 || w.DeleteWeight < 0 || w.DeleteRangeWeight < 0 ||
		w.PutWeight+w.GetWeight+w.DeleteWeight+w.DeleteRangeWeight == 0 {
		bad("operation weights must be >= 0 and not all zero")
	}
	if c.Seeds < 1 || c.Seeds > gossip.SeedsMax {
		bad("Seeds = %d; want 1..%d", c.Seeds, gossip.SeedsMax)
	}
	if c.TraceTail < 0 || c.TraceTail > 1_000_000 {
		bad("TraceTail = %d; want 0..1000000", c.TraceTail)
	}
	g := c.gossipConfig()
	g.Rand = zeroRand{}
	if err := g.Validate(); err != nil {
		bad("gossip configuration: %v", err)
	}
	s := c.storeConfig()
	s.Rand = zeroRand{}
	if err := s.Validate(); err != nil {
		bad("store configuration: %v", err)
	}
	return errors.Join(errs...)
}

// zeroRand stands in for a node's generator when validating.
type zeroRand struct{}

func (zeroRand) IntN(int) int { return 0 }

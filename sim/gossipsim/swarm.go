package gossipsim

import "math/rand/v2"

// Swarm draws a whole configuration from seed: the group size (5 to 50,
// small sizes more often), which fault kinds are on and at what rates,
// the network, the cores' timing (Lifeguard on or off, push-pull and
// anti-entropy intervals, a tombstone TTL short enough to expire within
// the run or not) and the workload. Running many seeds explores many
// fault mixes, not just many schedules of one mix.
func Swarm(seed int64) Config {
	r := rand.New(rand.NewPCG(uint64(seed), 0x5a4a4d9055))
	cfg := DefaultConfig(seed)
	sizes := []int{5, 5, 7, 8, 10, 12, 16, 20, 30, 50}
	cfg.Nodes = sizes[r.IntN(len(sizes))]
	// on returns a rate in [0, hi) half the time and 0 otherwise.
	on := func(hi float64) float64 {
		if r.IntN(2) == 0 {
			return 0
		}
		return r.Float64() * hi
	}
	n := &cfg.Network
	n.LatencyMinUnits = 10 + r.Int64N(300)
	n.LatencyMaxUnits = n.LatencyMinUnits + r.Int64N(1500)
	n.JitterUnits = r.Int64N(500)
	n.Loss = on(0.1)
	n.Duplicate = on(0.05)
	n.Reorder = on(0.05)
	n.ReorderDelayUnits = 500 + r.Int64N(5000)
	f := &cfg.Faults
	f.Crash = on(0.01)
	f.CrashDowntimeMaxTicks = 10 + r.Int64N(400)
	f.Permanent = r.Float64() * 0.5
	f.PermanentMax = r.IntN((cfg.Nodes-1)/2 + 1)
	f.Partition = on(0.006)
	f.PartitionMaxTicks = 10 + r.Int64N(600)
	f.Pause = on(0.01)
	f.PauseMaxTicks = 5 + r.Int64N(100)
	if r.IntN(4) == 0 {
		f.SlowNodes = 1
	}
	f.ClockSkewMs = r.Int64N(250)
	f.TickDrift = r.Float64() * 0.02
	cfg.Lifeguard = r.IntN(4) > 0
	cfg.PushPullTicks = []int{100, 300}[r.IntN(2)]
	cfg.AntiEntropyIntervalMs = []uint64{1000, 2000, 5000}[r.IntN(3)]
	// A TTL of the minimum (32 intervals) expires tombstones within the
	// run, and exercises purging; the others keep them.
	cfg.TombstoneTTLMs = []uint64{32 * cfg.AntiEntropyIntervalMs, 10 * 60 * 1000, 24 * 3600 * 1000}[r.IntN(3)]
	cfg.Seeds = 1 + r.IntN(3)
	cfg.Codec = r.IntN(2) == 0
	wl := &cfg.Workload
	wl.Clients = 1 + r.IntN(8)
	wl.Keys = 1 + r.IntN(40)
	wl.PutWeight = 1 + r.IntN(4)
	wl.GetWeight = 1 + r.IntN(5)
	wl.DeleteWeight = r.IntN(3)
	wl.DeleteRangeWeight = r.IntN(2)
	wl.ThinkTicksMax = 5 + r.Int64N(30)
	wl.Home = r.Float64()
	cfg.FaultTicks = 500 + r.Int64N(1500)
	return cfg
}

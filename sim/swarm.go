package sim

import "math/rand/v2"

// Swarm draws a whole configuration from seed: the cluster size (3, 5 or
// 7), which fault kinds are on and at what rates, the network's latency,
// loss, duplication and reordering, and the workload's shape. Running many
// seeds explores many fault mixes, not just many schedules of one mix.
func Swarm(seed int64, p Protocol) Config {
	r := rand.New(rand.NewPCG(uint64(seed), 0x5a4a4d))
	cfg := DefaultConfig(seed, p)
	cfg.Nodes = []int{3, 5, 7}[r.IntN(3)]
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
	n.Loss = on(0.15)
	n.Duplicate = on(0.1)
	n.Reorder = on(0.1)
	n.ReorderDelayUnits = 500 + r.Int64N(5000)
	f := &cfg.Faults
	f.Crash = on(0.02)
	f.CrashDowntimeMaxTicks = 5 + r.Int64N(100)
	f.CrashLeader = on(0.01)
	f.Partition = on(0.015)
	f.PartitionMaxTicks = 10 + r.Int64N(150)
	f.AsymmetricPartition = on(0.01)
	f.Clog = on(0.02)
	f.ClogMaxTicks = 5 + r.Int64N(50)
	f.Pause = on(0.01)
	f.PauseMaxTicks = 5 + r.Int64N(50)
	f.ClockDrift = r.Float64() * 0.02
	d := &cfg.Disk
	if d.Enabled {
		d.SegmentBytes = []int64{16 << 10, 64 << 10, 256 << 10}[r.IntN(3)]
		d.TornWrites = r.IntN(4) > 0
		d.SyncFail = on(0.002)
		d.SlowSync = on(0.05)
		d.SlowSyncMaxUnits = 1 + r.Int64N(3*UnitsPerTick)
		d.Faulty = r.IntN((cfg.Nodes-1)/2 + 1)
		d.ReadBitFlip = on(0.002)
		d.Corrupt = on(0.003)
		d.CrashMidPersist = r.Float64() * 0.4
		d.CrashAtDiskOp = r.Float64() * 0.4
		d.SnapshotEntries = []int{20, 100, 300, 1000}[r.IntN(4)]
		d.SnapshotChunkBytes = []int{512, 4 << 10, 64 << 10}[r.IntN(3)]
	}
	wl := &cfg.Workload
	wl.Clients = 1 + r.IntN(8) // per-key concurrency above ~10 makes the linearizability check exponential
	wl.Keys = 1 + r.IntN(10)
	wl.HotKey = r.Float64() * 0.5
	wl.PutWeight = 1 + r.IntN(4)
	wl.GetWeight = 1 + r.IntN(5)
	wl.DeleteWeight = r.IntN(3)
	wl.CASWeight = r.IntN(4)
	wl.ThinkTicksMax = 1 + r.Int64N(4)
	cfg.FaultTicks = 1000 + r.Int64N(2000)
	cfg.LivenessTicks = 300
	return cfg
}

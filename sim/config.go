// Package sim is synod's deterministic simulator. It runs real protocol
// cores (the same code the real node runs) on one goroutine, in virtual
// time, over a simulated network that delays, loses, duplicates and
// reorders messages and can be partitioned, with nodes that crash, restart
// from what they persisted, and pause. Closed-loop clients drive a
// key-value workload and record a history, and checkers (package
// sim/check) verify linearizability, election safety, state-machine safety,
// leader completeness and liveness.
//
// Every random choice comes from Config.Seed, so a run is reproducible: the
// same Config gives the same trace, and Result.TraceHash tells.
//
// With a latency matrix (NetworkConfig.Matrix, LatencyMatrix) the network
// is a wide-area one: one node per site, links as slow as half the RTT
// between their sites, clients at every site, and latency reported per
// site (Result.Sites). wan.go holds the wide-area experiment built on it
// (WANConfig, WANProtocol, PredictWAN), which synod sim wan runs.
package sim

import (
	"errors"
	"fmt"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// UnitsPerTick is the resolution of virtual time: one tick is this many
// units. Network latencies are given in units, so a message can arrive
// between two ticks.
const UnitsPerTick = 1000

// Protocol builds replicas for the simulator.
type Protocol struct {
	// Name identifies the protocol in summaries ("raft").
	Name string
	// New builds one replica.
	New func(NodeConfig) (consensus.Replica, error)
	// Codec encodes the protocol's records for the simulated disks; a
	// protocol without one runs with disks off.
	Codec consensus.RecordCodec
	// Leaderless marks a protocol that orders only conflicting commands
	// (EPaxos): every replica accepts proposals, Entry.Index is each
	// replica's local execution counter, agreement is checked per
	// conflict key (check.KeyOrder) instead of per index, and reads are
	// proposed as commands (the replica has no ReadIndex). A client's
	// commands on different keys may execute in different orders on
	// different replicas, so clients keep one session per key.
	Leaderless bool
	// Commits calls committed with the session of each client command that
	// rd shows the replica has learned is committed, whether or not it is
	// executed yet. The simulator uses it, with a latency matrix, to time
	// commits at the node that accepted the proposal (see
	// SiteLatency.CommitMs); it observes the core from outside, through
	// what the core already hands its host. Nil: commits are not timed.
	Commits func(rd *consensus.Ready, committed func(consensus.Session))
}

// NodeConfig is what the simulator gives a protocol to build one replica.
type NodeConfig struct {
	ID    consensus.NodeID
	Peers []consensus.NodeID
	// Durable holds every record the replica's previous incarnations
	// persisted and the disk kept, in order (nil on first start).
	Durable []consensus.Record
	// Rand is the replica's own seeded source.
	Rand consensus.Rand
	// Snapshots is the node's snapshot store on its simulated disk, or nil
	// when disks are off.
	Snapshots consensus.SnapshotStore
	// SnapshotEntries asks for a snapshot every that many applied entries
	// (0: the protocol's default); SnapshotChunkBytes bounds a snapshot
	// message.
	SnapshotEntries    int
	SnapshotChunkBytes int
}

// NetworkConfig describes the simulated network. Rates are probabilities
// per message, in [0, 1].
type NetworkConfig struct {
	// LatencyMinUnits and LatencyMaxUnits bound each directed link's base
	// one-way latency, drawn once per link at the start.
	LatencyMinUnits int64
	LatencyMaxUnits int64
	// JitterUnits is the most added to a link's latency per message.
	JitterUnits int64
	// Loss is the chance a message is dropped.
	Loss float64
	// Duplicate is the chance a message is delivered twice.
	Duplicate float64
	// Reorder is the chance a message is held back by up to
	// ReorderDelayUnits, so later messages overtake it.
	Reorder           float64
	ReorderDelayUnits int64
	// Matrix, when set, replaces the random per-link latencies with a
	// wide-area placement. Node i+1 sits at site Matrix.Sites[i], so Nodes
	// must equal the number of sites. A link's base one-way latency is
	// half the RTT between its nodes' sites, converted at UnitsPerMs
	// (LatencyMinUnits and LatencyMaxUnits are unused), and each link
	// delivers in order, as a TCP connection does: jitter never lets a
	// message overtake an earlier one on its link (the Reorder fault
	// still does). Clients are placed at the sites in turn (client i at
	// site i mod Nodes) and send to the node at their own site first (see
	// WorkloadConfig.ClientLatencyUnits).
	Matrix *LatencyMatrix
	// UnitsPerMs converts the matrix's milliseconds to units; used only
	// with Matrix. WANUnitsPerMs is the usual choice.
	UnitsPerMs int64
}

// FaultConfig describes the faults injected during the fault phase. Rates
// are the chance per tick that a fault of that kind starts.
type FaultConfig struct {
	// Crash: a node crashes, losing everything it did not persist, and
	// restarts after a downtime in [1, CrashDowntimeMaxTicks] ticks.
	Crash                 float64
	CrashDowntimeMaxTicks int64
	// CrashLeader: a node that believes it leads crashes (the "kill the
	// primary" fault), with the same downtime as Crash.
	CrashLeader float64
	// Partition: the nodes split into two random groups that cannot talk,
	// for up to PartitionMaxTicks ticks.
	Partition         float64
	PartitionMaxTicks int64
	// AsymmetricPartition: one node can send but not receive (or the
	// other way round), for up to PartitionMaxTicks ticks.
	AsymmetricPartition float64
	// Clog: one directed link holds every message until the clog clears,
	// up to ClogMaxTicks ticks later.
	Clog         float64
	ClogMaxTicks int64
	// Pause: a node stops (as in a long GC pause or a stopped VM) for up to
	// PauseMaxTicks ticks; messages to it queue and arrive when it resumes.
	Pause         float64
	PauseMaxTicks int64
	// ClockDrift is the most a node's tick period differs from nominal,
	// as a fraction (0.01 = ±1%), drawn per node.
	ClockDrift float64
}

// WorkloadConfig describes the clients.
type WorkloadConfig struct {
	// Clients is the number of closed-loop clients; each has at most one
	// operation outstanding.
	Clients int
	// Keys is the size of the key space.
	Keys int
	// HotKey is the chance an operation goes to key 0, raising conflicts.
	HotKey float64
	// Weights of each operation kind in the mix.
	PutWeight, GetWeight, DeleteWeight, CASWeight int
	// ThinkTicksMax is the most a client waits between operations.
	ThinkTicksMax int64
	// TimeoutTicks is how long a client waits for one attempt before
	// retrying at another node.
	TimeoutTicks int64
	// AttemptsMax bounds the attempts of one operation; then the client
	// gives up, and an operation that may have taken effect is recorded
	// with an unknown outcome.
	AttemptsMax int
	// ClientLatencyUnits is the one-way latency between a client and any
	// node; with a latency matrix, between a client and the node at its
	// own site, and a client reaching a node at another site pays half
	// the RTT between the sites on top (as if its own site's node
	// forwarded the request and the reply).
	ClientLatencyUnits int64
	// PrivateKeys sends every operation that does not go to the hot key
	// (key "k0", chosen with chance HotKey) to a key only its client
	// uses, so HotKey is exactly the share of operations that can
	// conflict with another client's; Keys is then unused.
	PrivateKeys bool
}

// Config is one simulation run.
type Config struct {
	Seed     int64
	Protocol Protocol
	// Nodes is the cluster size.
	Nodes int
	// FaultTicks is the length of the fault phase. After it, every fault
	// stops: partitions heal, crashed nodes restart, the network becomes
	// reliable, and the cluster must commit again within LivenessTicks.
	FaultTicks    int64
	LivenessTicks int64
	Network       NetworkConfig
	Faults        FaultConfig
	Disk          DiskConfig
	Workload      WorkloadConfig
	// TraceTail is how many recent events a violation report shows.
	TraceTail int
	// CheckTimeoutSec bounds the wall time of the linearizability check
	// (0: no bound); a check that runs out is reported as inconclusive.
	CheckTimeoutSec int
	// WarmupTicks: operations issued before this tick are left out of the
	// latency statistics (Result.Latency, Result.Sites); they are still
	// checked.
	WarmupTicks int64
}

// DefaultConfig returns a moderate run: five nodes, all fault kinds at low
// rates, 2,000 ticks of faults.
func DefaultConfig(seed int64, p Protocol) Config {
	return Config{
		Seed:          seed,
		Protocol:      p,
		Nodes:         5,
		FaultTicks:    2000,
		LivenessTicks: 200,
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
			Crash:                 0.005,
			CrashLeader:           0.002,
			CrashDowntimeMaxTicks: 60,
			Partition:             0.004,
			PartitionMaxTicks:     80,
			AsymmetricPartition:   0.002,
			Clog:                  0.004,
			ClogMaxTicks:          30,
			Pause:                 0.003,
			PauseMaxTicks:         30,
			ClockDrift:            0.01,
		},
		Disk: DiskConfig{
			Enabled:            p.Codec != nil,
			SegmentBytes:       256 << 10,
			TornWrites:         true,
			SyncFail:           0.0005,
			SlowSync:           0.01,
			SlowSyncMaxUnits:   2 * UnitsPerTick,
			Faulty:             1,
			ReadBitFlip:        0.001,
			Corrupt:            0.001,
			CrashMidPersist:    0.2,
			CrashAtDiskOp:      0.2,
			SnapshotEntries:    500,
			SnapshotChunkBytes: 16 << 10,
		},
		Workload: WorkloadConfig{
			Clients:            10,
			Keys:               8,
			HotKey:             0.2,
			PutWeight:          3,
			GetWeight:          4,
			DeleteWeight:       1,
			CASWeight:          2,
			ThinkTicksMax:      2,
			TimeoutTicks:       40,
			AttemptsMax:        8,
			ClientLatencyUnits: 100,
		},
		TraceTail:       40,
		CheckTimeoutSec: 60,
	}
}

// Validate reports the first bad field, saying what is allowed.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("sim: "+format, args...)) }
	if c.Protocol.New == nil {
		bad("Protocol.New is nil; choose a protocol (for example sim.Raft())")
	}
	if c.Nodes < 1 || c.Nodes > 64 {
		bad("Nodes = %d; want 1..64", c.Nodes)
	}
	if c.FaultTicks < 0 {
		bad("FaultTicks = %d; want >= 0", c.FaultTicks)
	}
	if c.LivenessTicks < 1 {
		bad("LivenessTicks = %d; want >= 1", c.LivenessTicks)
	}
	if c.WarmupTicks < 0 {
		bad("WarmupTicks = %d; want >= 0", c.WarmupTicks)
	}
	n := &c.Network
	if m := n.Matrix; m != nil {
		if err := m.Validate(); err != nil {
			bad("%v", err)
		} else if c.Nodes != m.Len() {
			bad("Nodes = %d but the latency matrix has %d sites (%s); one node per site", c.Nodes, m.Len(), strings.Join(m.Sites, ", "))
		}
		if n.UnitsPerMs < 1 {
			bad("Network.UnitsPerMs = %d; want >= 1 with a latency matrix (sim.WANUnitsPerMs is %d)", n.UnitsPerMs, WANUnitsPerMs)
		}
	} else if n.LatencyMinUnits < 1 || n.LatencyMaxUnits < n.LatencyMinUnits {
		bad("latency bounds [%d, %d] units; want 1 <= min <= max", n.LatencyMinUnits, n.LatencyMaxUnits)
	}
	if n.JitterUnits < 0 || n.ReorderDelayUnits < 0 {
		bad("JitterUnits and ReorderDelayUnits must be >= 0")
	}
	rates := []struct {
		name string
		p    float64
	}{{"Loss", n.Loss}, {"Duplicate", n.Duplicate}, {"Reorder", n.Reorder},
		{"Crash", c.Faults.Crash}, {"CrashLeader", c.Faults.CrashLeader}, {"Partition", c.Faults.Partition},
		{"AsymmetricPartition", c.Faults.AsymmetricPartition}, {"Clog", c.Faults.Clog},
		{"Pause", c.Faults.Pause}, {"HotKey", c.Workload.HotKey}}
	for _, r := range rates {
		if r.p < 0 || r.p > 1 {
			bad("%s = %v; want a probability in [0, 1]", r.name, r.p)
		}
	}
	if n.Loss >= 0.9 {
		bad("Loss = %v; want < 0.9 so that the network can deliver anything", n.Loss)
	}
	f := &c.Faults
	if f.CrashDowntimeMaxTicks < 1 || f.PartitionMaxTicks < 1 || f.ClogMaxTicks < 1 || f.PauseMaxTicks < 1 {
		bad("fault durations must be >= 1 tick")
	}
	if f.ClockDrift < 0 || f.ClockDrift > 0.2 {
		bad("ClockDrift = %v; want 0..0.2", f.ClockDrift)
	}
	d := &c.Disk
	if d.Enabled {
		if c.Protocol.Codec == nil {
			bad("Disk.Enabled but protocol %q has no record codec", c.Protocol.Name)
		}
		if d.SegmentBytes < 4<<10 || d.SegmentBytes > 64<<20 {
			bad("Disk.SegmentBytes = %d; want 4 KiB..64 MiB", d.SegmentBytes)
		}
		if d.Faulty < 0 || d.Faulty > (c.Nodes-1)/2 {
			bad("Disk.Faulty = %d; want 0..%d (a minority of %d nodes)", d.Faulty, (c.Nodes-1)/2, c.Nodes)
		}
		for _, r := range []struct {
			name string
			p    float64
		}{{"SyncFail", d.SyncFail}, {"SlowSync", d.SlowSync}, {"ReadBitFlip", d.ReadBitFlip}, {"Corrupt", d.Corrupt}, {"CrashMidPersist", d.CrashMidPersist}, {"CrashAtDiskOp", d.CrashAtDiskOp}} {
			if r.p < 0 || r.p > 1 {
				bad("Disk.%s = %v; want a probability in [0, 1]", r.name, r.p)
			}
		}
		if d.SyncFail >= 0.5 {
			bad("Disk.SyncFail = %v; want < 0.5 so nodes can make progress", d.SyncFail)
		}
		if d.SnapshotEntries < 0 || d.SnapshotChunkBytes < 0 {
			bad("Disk.SnapshotEntries and Disk.SnapshotChunkBytes must be >= 0")
		}
		if d.SlowSync > 0 && d.SlowSyncMaxUnits < 1 {
			bad("Disk.SlowSyncMaxUnits must be >= 1 when SlowSync is on")
		}
	}
	w := &c.Workload
	if w.Clients < 0 || w.Clients > 10000 {
		bad("Clients = %d; want 0..10000", w.Clients)
	}
	if w.Keys < 1 {
		bad("Keys = %d; want >= 1", w.Keys)
	}
	if w.PutWeight < 0 || w.GetWeight < 0 || w.DeleteWeight < 0 || w.CASWeight < 0 ||
		w.PutWeight+w.GetWeight+w.DeleteWeight+w.CASWeight == 0 {
		bad("operation weights must be >= 0 and not all zero")
	}
	if w.TimeoutTicks < 1 || w.AttemptsMax < 1 || w.ThinkTicksMax < 0 || w.ClientLatencyUnits < 1 {
		bad("TimeoutTicks, AttemptsMax and ClientLatencyUnits must be >= 1, ThinkTicksMax >= 0")
	}
	if c.TraceTail < 0 {
		bad("TraceTail = %d; want >= 0", c.TraceTail)
	}
	return errors.Join(errs...)
}

package sim_test

import (
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/sim"
)

var (
	swarmSeeds = flag.Int("sim.seeds", 300, "seeds the swarm test runs (-short: a tenth)")
	swarmFirst = flag.Int64("sim.first", 1, "first seed of the swarm test")
)

// replayHint says how to rerun one failing swarm seed of a protocol.
func replayHint(test, protocol string, seed int64) string {
	return fmt.Sprintf("replay: go test ./sim -run '%s/seed=%d$' -v   or   go run ./cmd/synod sim --protocol %s --seed %d --verbose", test, seed, protocol, seed)
}

// testReplayHint says how to rerun a failing seed of a test with its own
// configuration (the test runs its seeds in order, deterministically).
func testReplayHint(t *testing.T, seed int64) string {
	return fmt.Sprintf("replay: go test ./sim -run '^%s$' -v   (seed %d)", t.Name(), seed)
}

// swarm runs a protocol over many seeds, each drawing its own cluster
// size (3, 5 or 7), fault mix (disk faults included) and workload, and
// requires zero violations and a checked history.
func swarm(t *testing.T, protocol func() sim.Protocol) {
	n := *swarmSeeds
	if testing.Short() {
		n = max(1, n/10)
	}
	for seed := *swarmFirst; seed < *swarmFirst+int64(n); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			p := protocol()
			res, err := sim.Run(sim.Swarm(seed, p))
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() {
				t.Fatalf("%s%s", res.Report(), replayHint(strings.Split(t.Name(), "/")[0], p.Name, seed))
			}
			if res.Linearizability == "" {
				t.Fatalf("seed %d: linearizability was not checked", seed)
			}
		})
	}
}

// TestSwarm runs Raft through the swarm.
func TestSwarm(t *testing.T) { swarm(t, func() sim.Protocol { return sim.Raft() }) }

// TestSwarmMultiPaxos runs Multi-Paxos through the same swarm.
func TestSwarmMultiPaxos(t *testing.T) { swarm(t, func() sim.Protocol { return sim.MultiPaxos() }) }

// TestSwarmEPaxos runs EPaxos through the same swarm. Agreement is
// checked per conflict key (check.KeyOrder), and reads go through the
// log.
func TestSwarmEPaxos(t *testing.T) { swarm(t, func() sim.Protocol { return sim.EPaxos() }) }

// TestDeterminism runs the same seed twice and requires the same trace.
func TestDeterminism(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		cfg := sim.Swarm(seed, sim.Raft())
		a, err := sim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := sim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if a.TraceHash != b.TraceHash {
			t.Fatalf("seed %d: trace hashes differ: %016x vs %016x", seed, a.TraceHash, b.TraceHash)
		}
		if a.OpsOK != b.OpsOK || a.MessagesDelivered != b.MessagesDelivered || a.Committed != b.Committed || a.Faults != b.Faults {
			t.Fatalf("seed %d: runs differ: %+v vs %+v", seed, a, b)
		}
		if a.MessagesDelivered == 0 || a.OpsOK == 0 {
			t.Fatalf("seed %d: nothing happened (%d messages, %d ops)", seed, a.MessagesDelivered, a.OpsOK)
		}
	}
	a, _ := sim.Run(sim.Swarm(10, sim.Raft()))
	b, _ := sim.Run(sim.Swarm(11, sim.Raft()))
	if a.TraceHash == b.TraceHash {
		t.Fatal("different seeds gave the same trace hash")
	}
}

// TestFaultFreeRunMakesProgress checks the happy path: without faults,
// every operation completes.
func TestFaultFreeRunMakesProgress(t *testing.T) {
	cfg := sim.DefaultConfig(7, sim.Raft())
	cfg.Network.Loss, cfg.Network.Duplicate, cfg.Network.Reorder = 0, 0, 0
	cfg.Faults = sim.FaultConfig{CrashDowntimeMaxTicks: 1, PartitionMaxTicks: 1, ClogMaxTicks: 1, PauseMaxTicks: 1}
	cfg.Disk = sim.DiskConfig{Enabled: true, SegmentBytes: 64 << 10}
	cfg.FaultTicks = 500
	res, err := sim.Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatal(res.Report())
	}
	if res.OpsFailed != 0 || res.OpsUnknown != 0 || res.OpsOK < 100 {
		t.Fatalf("fault-free run: %d ok, %d failed, %d unknown", res.OpsOK, res.OpsFailed, res.OpsUnknown)
	}
	if res.LeaderChanges != 1 {
		t.Fatalf("fault-free run had %d leaders, want 1", res.LeaderChanges)
	}
}

// mute is a replica that never leads and never commits.
type mute struct{ id consensus.NodeID }

func (m *mute) Tick()                           {}
func (m *mute) Step(consensus.Message) error    { return nil }
func (m *mute) Propose(consensus.Command) error { return &consensus.NotLeaderError{} }
func (m *mute) ReadIndex([]byte) error          { return &consensus.NotLeaderError{} }
func (m *mute) Ready() consensus.Ready          { return consensus.Ready{} }
func (m *mute) Advance(consensus.Ready)         {}
func (m *mute) Status() consensus.Status        { return consensus.Status{ID: m.id} }

// TestLivenessCheckerHasTeeth: a cluster that never commits is reported.
func TestLivenessCheckerHasTeeth(t *testing.T) {
	p := sim.Protocol{Name: "mute", New: func(nc sim.NodeConfig) (consensus.Replica, error) {
		return &mute{id: nc.ID}, nil
	}}
	cfg := sim.DefaultConfig(1, p)
	cfg.FaultTicks = 100
	res, err := sim.Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || res.Violations[0].Checker != "liveness" {
		t.Fatalf("want a liveness violation, got %v", res.Violations)
	}
}

func TestConfigValidation(t *testing.T) {
	cfg := sim.DefaultConfig(1, sim.Raft())
	cfg.Nodes = 0
	cfg.Network.Loss = 1.5
	_, err := sim.Run(cfg)
	if err == nil || !strings.Contains(err.Error(), "Nodes = 0") || !strings.Contains(err.Error(), "Loss = 1.5") {
		t.Fatalf("want errors naming Nodes and Loss, got %v", err)
	}
	if _, err := sim.ProtocolByName("zab"); err == nil || !strings.Contains(err.Error(), "raft") {
		t.Fatalf("unknown protocol: want an error listing the known ones, got %v", err)
	}
}

// BenchmarkSimulator measures the simulator's speed on a five-node Raft
// cluster with ten closed-loop clients and no faults: messages delivered
// and simulated ticks per wall-clock second.
func BenchmarkSimulator(b *testing.B) {
	cfg := sim.DefaultConfig(1, sim.Raft())
	cfg.Network.Loss, cfg.Network.Duplicate, cfg.Network.Reorder = 0, 0, 0
	cfg.Faults = sim.FaultConfig{CrashDowntimeMaxTicks: 1, PartitionMaxTicks: 1, ClogMaxTicks: 1, PauseMaxTicks: 1}
	cfg.Disk = sim.DiskConfig{Enabled: true, SegmentBytes: 256 << 10}
	cfg.Workload.ThinkTicksMax = 0
	cfg.FaultTicks = 2000
	cfg.CheckTimeoutSec = 1
	var msgs int
	var ticks, simWall float64
	for b.Loop() {
		res, err := sim.Run(cfg)
		if err != nil {
			b.Fatal(err)
		}
		msgs += res.MessagesDelivered
		ticks += res.Ticks
		simWall += res.SimWall.Seconds()
	}
	// Rates over the simulation alone; the final linearizability check is
	// reported by ns/op.
	b.ReportMetric(float64(msgs)/simWall, "msgs/s")
	b.ReportMetric(ticks/simWall, "ticks/s")
}

// TestCorruptLogsAreRefused: on nodes with failing media, flipped bits in
// stored logs are found when the node next reads its log, and the node
// refuses to start rather than run on a log it cannot trust; the cluster
// stays safe and live with the rest.
func TestCorruptLogsAreRefused(t *testing.T) {
	refused, corrupted, unnoticed := 0, 0, 0
	for seed := int64(1); seed <= 6; seed++ {
		cfg := sim.DefaultConfig(seed, sim.Raft())
		cfg.FaultTicks = 1500
		cfg.Disk.SegmentBytes = 16 << 10
		cfg.Disk.Faulty = 2
		cfg.Disk.Corrupt = 0.02
		res, err := sim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			t.Fatalf("%s%s", res.Report(), testReplayHint(t, seed))
		}
		refused += res.Faults.RefusedStart
		corrupted += res.Faults.Corruption
		unnoticed += res.Faults.CorruptionUnnoticed
	}
	if corrupted == 0 || refused == 0 {
		t.Fatalf("corrupted %d logs, %d starts refused: the fault did not happen", corrupted, refused)
	}
	if unnoticed > corrupted/4 {
		t.Fatalf("%d of %d corrupted logs went unnoticed at restart", unnoticed, corrupted)
	}
	t.Logf("%d logs corrupted, %d starts refused, %d unnoticed", corrupted, refused, unnoticed)
}

// TestDisksOffStillWorks: the simulator runs protocols without a codec
// (and --disk=false) with records kept in memory.
func TestDisksOffStillWorks(t *testing.T) {
	cfg := sim.DefaultConfig(3, sim.Raft())
	cfg.Disk.Enabled = false
	cfg.FaultTicks = 500
	res, err := sim.Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.OpsOK == 0 {
		t.Fatalf("disks off: %d ops\n%s", res.OpsOK, res.Report())
	}
}

// TestPowerCutsAtDiskBoundaries crashes nodes just before an exact disk
// operation — inside WAL appends and fsyncs, segment roll-overs, snapshot
// saves and installs, and log compactions — with small segments and
// frequent snapshots so that every kind of boundary is hit, and requires
// that nothing acknowledged is lost and replicas agree.
func TestPowerCutsAtDiskBoundaries(t *testing.T) {
	cuts, snaps, installs := 0, 0, 0
	for seed := int64(1); seed <= 12; seed++ {
		cfg := sim.DefaultConfig(seed, sim.Raft())
		cfg.Nodes = 3 + 2*int(seed%2)
		cfg.FaultTicks = 1500
		cfg.Faults.Crash = 0.03
		cfg.Faults.CrashLeader = 0.01
		cfg.Faults.Partition = 0.01
		cfg.Disk.SegmentBytes = 8 << 10
		cfg.Disk.CrashAtDiskOp = 0.8
		cfg.Disk.SnapshotEntries = 40
		cfg.Disk.SnapshotChunkBytes = 1 << 10
		res, err := sim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			t.Fatalf("%s%s", res.Report(), testReplayHint(t, seed))
		}
		cuts += res.Faults.CrashAtDiskOp
		snaps += res.Snapshots
		installs += res.SnapshotsInstalled
	}
	if cuts < 50 || snaps < 50 || installs == 0 {
		t.Fatalf("too little exercised: %d power cuts, %d snapshots, %d installs", cuts, snaps, installs)
	}
	t.Logf("%d power cuts at disk operations, %d snapshots taken, %d installed", cuts, snaps, installs)
}

// TestRegressionSeeds replays swarm seeds that once found a bug.
func TestRegressionSeeds(t *testing.T) {
	const stalledRecovery = "EPaxos recovery counted an acceptor that had changed the leader's attributes as a second fast-commit candidate and waited forever"
	const lostCommits = "EPaxos learned commits it had missed only by full recovery, one instance per recovery timeout, too slowly to catch up"
	seeds := []struct {
		protocol func() sim.Protocol
		seed     int64
		why      string
	}{
		{func() sim.Protocol { return sim.Raft() }, 20334, "an fsync failing while a node first opened its snapshot directory made it refuse to start for good, leaving too few nodes to elect"},
		{func() sim.Protocol { return sim.EPaxos() }, 80, stalledRecovery},
		{func() sim.Protocol { return sim.EPaxos() }, 122, stalledRecovery + " (N = 3)"},
		{func() sim.Protocol { return sim.EPaxos() }, 196, stalledRecovery + " (N = 7)"},
		{func() sim.Protocol { return sim.EPaxos() }, 78, lostCommits},
	}
	for _, s := range seeds {
		p := s.protocol()
		res, err := sim.Run(sim.Swarm(s.seed, p))
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			t.Errorf("%s seed %d (%s):\n%s%s", p.Name, s.seed, s.why, res.Report(), replayHint("TestRegressionSeeds", p.Name, s.seed))
		}
	}
}

// TestEPaxosLaggingNodesInstallSnapshots: EPaxos nodes stay down for long
// stretches (and lose power at exact disk operations, snapshot saves and
// installs included) while the others execute and compact, with small
// chunks and frequent snapshots; a node that comes back behind installs a
// peer's snapshot. Every run must keep per-key agreement (including the
// snapshots' own check: two with the same protocol state hold the same
// keys) and linearizability.
func TestEPaxosLaggingNodesInstallSnapshots(t *testing.T) {
	snaps, installs, cuts := 0, 0, 0
	for seed := int64(1); seed <= 8; seed++ {
		cfg := sim.DefaultConfig(seed, sim.EPaxos())
		cfg.Nodes = 3 + 2*int(seed%2)
		cfg.FaultTicks = 2500
		cfg.Faults.Crash = 0.006
		cfg.Faults.CrashDowntimeMaxTicks = 600
		cfg.Disk.SegmentBytes = 8 << 10
		cfg.Disk.CrashAtDiskOp = 0.5
		cfg.Disk.SnapshotEntries = 25
		cfg.Disk.SnapshotChunkBytes = 512
		res, err := sim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			t.Fatalf("%s%s", res.Report(), testReplayHint(t, seed))
		}
		snaps += res.Snapshots
		installs += res.SnapshotsInstalled
		cuts += res.Faults.CrashAtDiskOp
	}
	if snaps < 100 || installs < 8 {
		t.Fatalf("too little exercised: %d snapshots taken, %d installed", snaps, installs)
	}
	t.Logf("%d snapshots taken, %d installed, %d power cuts at disk operations", snaps, installs, cuts)
}

package paxos_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synod-io/synod/paxos"
	"github.com/synod-io/synod/sim"
)

// The simulator's checkers must catch known-wrong variants of Multi-Paxos.
// Each case swaps one in through paxos.SetBug (an unexported hook, set only
// from tests), runs seeds of a fault mix aimed at the bug until a checker
// reports a violation, replays that seed to show the report reproduces, and
// runs correct Multi-Paxos over the same seeds as a control.
func TestSimulatorCatchesKnownBugs(t *testing.T) {
	cases := []struct {
		bug      string
		seedsMax int
		checkers map[string]bool
		config   func(seed int64, p sim.Protocol) sim.Config
	}{
		{
			bug:      paxos.BugPhase2AnyAccepted,
			seedsMax: 300,
			checkers: map[string]bool{"agreement": true, "leader-completeness": true, "linearizability": true},
			config:   leaderCrashConfig,
		},
		{
			bug:      paxos.BugReadWithoutBarrier,
			seedsMax: 200,
			checkers: map[string]bool{"linearizability": true},
			config:   staleReadConfig,
		},
	}
	for _, tc := range cases {
		t.Run(tc.bug, func(t *testing.T) {
			t.Parallel()
			proto := sim.MultiPaxos(func(c *paxos.Config) { paxos.SetBug(c, tc.bug) })
			for seed := int64(1); seed <= int64(tc.seedsMax); seed++ {
				cfg := tc.config(seed, proto)
				res, err := sim.Run(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if res.OK() {
					continue
				}
				v := res.Violations[0]
				if !tc.checkers[v.Checker] {
					t.Fatalf("seed %d: bug %s reported by unexpected checker: %s", seed, tc.bug, res.Report())
				}
				again, err := sim.Run(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if again.OK() || again.Violations[0].Checker != v.Checker || again.TraceHash != res.TraceHash {
					t.Fatalf("seed %d does not replay: first %v (trace %016x), then %v (trace %016x)",
						seed, res.Violations, res.TraceHash, again.Violations, again.TraceHash)
				}
				t.Logf("bug %s caught at seed %d by %s: %s", tc.bug, seed, v.Checker, v.Detail)
				report := res.Report()
				if !strings.Contains(report, fmt.Sprintf("seed %d ", seed)) || len(res.TraceTail) == 0 {
					t.Fatalf("the report must name the seed and show the last events:\n%s", report)
				}
				if v.Checker == "linearizability" {
					path := filepath.Join(t.TempDir(), "history.html")
					if err := res.WriteVisualization(path); err != nil {
						t.Fatalf("writing the visualization: %v", err)
					}
					if fi, err := os.Stat(path); err != nil || fi.Size() < 1000 {
						t.Fatalf("visualization missing or empty: %v", err)
					}
				}
				// Control: correct Multi-Paxos passes the same seeds.
				for s := int64(1); s <= seed; s++ {
					res, err := sim.Run(tc.config(s, sim.MultiPaxos()))
					if err != nil {
						t.Fatal(err)
					}
					if !res.OK() {
						t.Fatalf("correct Multi-Paxos fails seed %d of the %s configuration:\n%s", s, tc.bug, res.Report())
					}
				}
				return
			}
			t.Fatalf("bug %s not caught in %d seeds", tc.bug, tc.seedsMax)
		})
	}
}

// leaderCrashConfig: three nodes whose leaders crash often (often in the
// middle of handling a Ready) on a lossy network, so that ballots pass
// while slots are accepted by a minority only: a later leader then finds
// different values accepted at different ballots for the same slot.
func leaderCrashConfig(seed int64, p sim.Protocol) sim.Config {
	cfg := sim.DefaultConfig(seed, p)
	cfg.Nodes = 3
	cfg.FaultTicks = 1000
	cfg.Network.Loss = 0.35
	cfg.Faults.Crash = 0.01
	cfg.Faults.CrashLeader = 0.25
	cfg.Faults.CrashDowntimeMaxTicks = 25
	cfg.Faults.Partition, cfg.Faults.AsymmetricPartition, cfg.Faults.Clog, cfg.Faults.Pause = 0, 0, 0, 0
	cfg.Workload.Clients = 6
	cfg.Workload.Keys = 3
	cfg.Workload.GetWeight = 1
	cfg.CheckTimeoutSec = 5
	return cfg
}

// staleReadConfig: partitions that isolate the leader from a majority while
// clients keep reading and writing; no crashes.
func staleReadConfig(seed int64, p sim.Protocol) sim.Config {
	cfg := sim.DefaultConfig(seed, p)
	cfg.Nodes = 5
	cfg.FaultTicks = 1500
	cfg.Network.Loss = 0
	cfg.Faults.Crash = 0
	cfg.Faults.Partition = 0.03
	cfg.Faults.PartitionMaxTicks = 60
	cfg.Faults.Clog = 0
	cfg.Faults.Pause = 0
	cfg.Workload.Clients = 6
	cfg.Workload.Keys = 2
	cfg.Workload.TimeoutTicks = 10
	cfg.Workload.GetWeight = 6
	cfg.CheckTimeoutSec = 5
	return cfg
}

// Package simtest helps protocol packages show that the simulator's
// checkers have teeth: a known-wrong variant of a protocol, swapped in
// through a test-only hook, must be caught within a bounded number of
// seeds, the failing seed must replay, and the correct protocol must pass
// the same seeds.
package simtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synod-io/synod/sim"
)

// Bug is one known-wrong variant to catch.
type Bug struct {
	// Name names the variant in messages.
	Name string
	// Buggy runs the wrong variant; Correct the same protocol, tuned the
	// same way, without the bug.
	Buggy, Correct sim.Protocol
	// Config builds the run for a seed: a fault mix aimed at the bug.
	Config func(seed int64, p sim.Protocol) sim.Config
	// SeedsMax bounds the search.
	SeedsMax int
	// Checkers are those that may legitimately report the bug.
	Checkers []string
}

// Catch runs seeds 1, 2, … of b until a checker reports a violation, and
// fails t unless: the checker is one of b.Checkers; the seed replays with the
// same violation and trace hash; the report names the seed and shows the last
// events; a linearizability violation writes its HTML visualization; and the
// correct protocol passes every seed up to the one that caught the bug. It
// returns the catching seed.
func Catch(t *testing.T, b Bug) int64 {
	t.Helper()
	for seed := int64(1); seed <= int64(b.SeedsMax); seed++ {
		cfg := b.Config(seed, b.Buggy)
		res, err := sim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() {
			continue
		}
		v := res.Violations[0]
		if !contains(b.Checkers, v.Checker) {
			t.Fatalf("seed %d: bug %s reported by unexpected checker: %s", seed, b.Name, res.Report())
		}
		again, err := sim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if again.OK() || again.Violations[0].Checker != v.Checker || again.TraceHash != res.TraceHash {
			t.Fatalf("seed %d does not replay: first %v (trace %016x), then %v (trace %016x)",
				seed, res.Violations, res.TraceHash, again.Violations, again.TraceHash)
		}
		t.Logf("bug %s caught at seed %d by %s: %s", b.Name, seed, v.Checker, v.Detail)
		if report := res.Report(); !strings.Contains(report, fmt.Sprintf("seed %d ", seed)) || len(res.TraceTail) == 0 {
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
		// Control: the correct protocol passes the same seeds, so the bug
		// is what failed.
		for s := int64(1); s <= seed; s++ {
			res, err := sim.Run(b.Config(s, b.Correct))
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() {
				t.Fatalf("the correct protocol fails seed %d of the %s configuration:\n%s", s, b.Name, res.Report())
			}
		}
		return seed
	}
	t.Fatalf("bug %s not caught in %d seeds", b.Name, b.SeedsMax)
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// LeaderCrashConfig is three nodes whose leaders crash often (often in the
// middle of handling a Ready) on a lossy network, so that terms or ballots
// pass while entries are only partly replicated: the setting of Figure 8 in
// the Raft paper, and of conflicting accepted values in Paxos.
func LeaderCrashConfig(seed int64, p sim.Protocol) sim.Config {
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

// StaleReadConfig is partitions that isolate the leader from a majority
// while clients keep reading and writing; no crashes.
func StaleReadConfig(seed int64, p sim.Protocol) sim.Config {
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

package raft_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synod-io/synod/raft"
	"github.com/synod-io/synod/sim"
)

// The simulator's checkers must catch known-wrong variants of Raft. Each
// case swaps one in through raft.SetBug (an unexported hook, set only from
// tests), runs seeds of a fault mix aimed at the bug until a checker
// reports a violation, and then replays that seed to show the report is
// reproducible.
func TestSimulatorCatchesKnownBugs(t *testing.T) {
	cases := []struct {
		bug string
		// adjust tunes the configuration so the bug can show.
		adjust func(*raft.Config)
		// seedsMax bounds the search.
		seedsMax int
		// checkers that may legitimately report this bug.
		checkers map[string]bool
		config   func(seed int64, p sim.Protocol) sim.Config
	}{
		{
			bug:      raft.BugVoteWithoutLogCheck,
			seedsMax: 200,
			checkers: map[string]bool{"agreement": true, "leader-completeness": true, "linearizability": true},
			config:   churnConfig,
		},
		{
			bug: raft.BugCommitOldTerm,
			// A new leader's no-op usually travels with the old-term
			// entries before it, which hides the bug; one entry per
			// message and one message in flight let an old-term entry
			// reach a majority alone, long enough for a crash to follow.
			adjust: func(c *raft.Config) {
				c.EntriesPerMsgMax = 1
				c.InflightMsgsMax = 1
			},
			// About 3% of seeds of this mix catch it; runs are short.
			seedsMax: 2000,
			checkers: map[string]bool{"agreement": true, "leader-completeness": true, "linearizability": true},
			config:   leaderCrashConfig,
		},
		{
			bug:      raft.BugReadWithoutQuorum,
			seedsMax: 200,
			checkers: map[string]bool{"linearizability": true},
			config:   staleReadConfig,
		},
	}
	for _, tc := range cases {
		t.Run(tc.bug, func(t *testing.T) {
			t.Parallel()
			proto := sim.Raft(func(c *raft.Config) {
				raft.SetBug(c, tc.bug)
				if tc.adjust != nil {
					tc.adjust(c)
				}
			})
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
				// Control: correct Raft, tuned the same way, passes the
				// seeds that caught the bug, so the bug is what failed.
				correct := sim.Raft(func(c *raft.Config) {
					if tc.adjust != nil {
						tc.adjust(c)
					}
				})
				for s := int64(1); s <= seed; s++ {
					res, err := sim.Run(tc.config(s, correct))
					if err != nil {
						t.Fatal(err)
					}
					if !res.OK() {
						t.Fatalf("correct Raft fails seed %d of the %s configuration:\n%s", s, tc.bug, res.Report())
					}
				}
				return
			}
			t.Fatalf("bug %s not caught in %d seeds", tc.bug, tc.seedsMax)
		})
	}
}

// churnConfig: frequent crashes and partitions in a small cluster, so that
// leadership changes often while entries are in flight.
func churnConfig(seed int64, p sim.Protocol) sim.Config {
	cfg := sim.DefaultConfig(seed, p)
	cfg.Nodes = []int{3, 5}[seed%2]
	cfg.FaultTicks = 1500
	cfg.Network.Loss = 0.05
	cfg.Faults.Crash = 0.03
	cfg.Faults.CrashDowntimeMaxTicks = 30
	cfg.Faults.Partition = 0.03
	cfg.Faults.PartitionMaxTicks = 40
	cfg.Workload.Clients = 6
	cfg.Workload.Keys = 3
	cfg.CheckTimeoutSec = 5
	return cfg
}

// leaderCrashConfig: three nodes whose leaders crash often (often in the
// middle of handling a Ready) on a lossy network, so that terms pass while
// entries are only partly replicated: the setting of Figure 8 in the Raft
// paper.
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

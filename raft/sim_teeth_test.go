package raft_test

import (
	"testing"

	"github.com/synod-io/synod/raft"
	"github.com/synod-io/synod/sim"
	"github.com/synod-io/synod/sim/simtest"
)

// The simulator's checkers must catch known-wrong variants of Raft. Each
// case swaps one in through raft.SetBug (an unexported hook, set only from
// tests) and lets simtest.Catch search a fault mix aimed at the bug, replay
// the failing seed, and run correct Raft over the same seeds as a control.
func TestSimulatorCatchesKnownBugs(t *testing.T) {
	safety := []string{"agreement", "leader-completeness", "linearizability"}
	cases := []struct {
		bug string
		// adjust tunes the configuration so the bug can show.
		adjust   func(*raft.Config)
		seedsMax int
		checkers []string
		config   func(seed int64, p sim.Protocol) sim.Config
	}{
		{bug: raft.BugVoteWithoutLogCheck, seedsMax: 200, checkers: safety, config: churnConfig},
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
			checkers: safety,
			config:   simtest.LeaderCrashConfig,
		},
		{bug: raft.BugReadWithoutQuorum, seedsMax: 200, checkers: []string{"linearizability"}, config: simtest.StaleReadConfig},
	}
	for _, tc := range cases {
		t.Run(tc.bug, func(t *testing.T) {
			t.Parallel()
			tune := func(bug string) sim.Protocol {
				return sim.Raft(func(c *raft.Config) {
					raft.SetBug(c, bug)
					if tc.adjust != nil {
						tc.adjust(c)
					}
				})
			}
			simtest.Catch(t, simtest.Bug{Name: tc.bug, Buggy: tune(tc.bug), Correct: tune(""),
				Config: tc.config, SeedsMax: tc.seedsMax, Checkers: tc.checkers})
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

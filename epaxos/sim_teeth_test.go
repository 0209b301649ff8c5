package epaxos_test

import (
	"testing"

	"github.com/synod-io/synod/epaxos"
	"github.com/synod-io/synod/sim"
	"github.com/synod-io/synod/sim/simtest"
)

// The simulator's checkers must catch known-wrong variants of EPaxos. Each
// case swaps one in through epaxos.SetBug (a hook compiled only into this
// package's tests) and lets simtest.Catch search a fault mix aimed at the
// bug, replay the failing seed, and run correct EPaxos over the same seeds
// as a control.
func TestSimulatorCatchesKnownBugs(t *testing.T) {
	safety := []string{"agreement", "linearizability"}
	cases := []struct {
		bug      string
		seedsMax int
		config   func(seed int64, p sim.Protocol) sim.Config
	}{
		// A simple majority is the fast quorum for N = 3 and 5; only a
		// larger cluster shows the bug.
		{epaxos.BugMajorityFastQuorum, 300, crashConfig(7)},
		{epaxos.BugRecoveryReportsPromised, 600, crashConfig(5)},
		{epaxos.BugPreAcceptIgnoresConflicts, 100, crashConfig(3)},
		{epaxos.BugSCCUnordered, 100, crashConfig(5)},
	}
	for _, tc := range cases {
		t.Run(tc.bug, func(t *testing.T) {
			t.Parallel()
			tune := func(bug string) sim.Protocol {
				return sim.EPaxos(func(c *epaxos.Config) {
					epaxos.SetBug(c, bug)
					// Suspect leaders early, so recoveries are many and
					// race each other.
					c.RecoveryTimeoutTicks = 3 * c.RetryTicks
				})
			}
			seed := simtest.Catch(t, simtest.Bug{Name: tc.bug, Buggy: tune(tc.bug), Correct: tune(""),
				Config: tc.config, SeedsMax: tc.seedsMax, Checkers: safety})
			t.Logf("caught by seed %d", seed)
		})
	}
}

// crashConfig: n replicas on a lossy network whose members crash often
// (in the middle of Readys too) and get partitioned, with a few hot keys,
// so that instances are often left half-way and recovered, sometimes by
// two replicas at once.
func crashConfig(n int) func(seed int64, p sim.Protocol) sim.Config {
	return func(seed int64, p sim.Protocol) sim.Config {
		cfg := sim.DefaultConfig(seed, p)
		cfg.Nodes = n
		cfg.FaultTicks = 1000
		cfg.Network.Loss = 0.15
		cfg.Faults.Crash = 0.03
		cfg.Faults.CrashDowntimeMaxTicks = 30
		cfg.Faults.Partition = 0.02
		cfg.Faults.PartitionMaxTicks = 40
		cfg.Workload.Clients = 6
		cfg.Workload.Keys = 2
		cfg.CheckTimeoutSec = 5
		return cfg
	}
}

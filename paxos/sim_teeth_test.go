package paxos_test

import (
	"testing"

	"github.com/synod-io/synod/paxos"
	"github.com/synod-io/synod/sim"
	"github.com/synod-io/synod/sim/simtest"
)

// The simulator's checkers must catch known-wrong variants of Multi-Paxos.
// Each case swaps one in through paxos.SetBug (an unexported hook, set only
// from tests) and lets simtest.Catch search a fault mix aimed at the bug,
// replay the failing seed, and run correct Multi-Paxos over the same seeds
// as a control. The leader-crash mix makes ballots pass while slots are
// accepted by a minority only, so a later leader finds different values
// accepted at different ballots for the same slot.
func TestSimulatorCatchesKnownBugs(t *testing.T) {
	cases := []struct {
		bug      string
		seedsMax int
		checkers []string
		config   func(seed int64, p sim.Protocol) sim.Config
	}{
		{bug: paxos.BugPhase2AnyAccepted, seedsMax: 300,
			checkers: []string{"agreement", "leader-completeness", "linearizability"}, config: simtest.LeaderCrashConfig},
		{bug: paxos.BugReadWithoutBarrier, seedsMax: 200,
			checkers: []string{"linearizability"}, config: simtest.StaleReadConfig},
	}
	for _, tc := range cases {
		t.Run(tc.bug, func(t *testing.T) {
			t.Parallel()
			simtest.Catch(t, simtest.Bug{Name: tc.bug,
				Buggy:   sim.MultiPaxos(func(c *paxos.Config) { paxos.SetBug(c, tc.bug) }),
				Correct: sim.MultiPaxos(),
				Config:  tc.config, SeedsMax: tc.seedsMax, Checkers: tc.checkers})
		})
	}
}

package gossipsim_test

import (
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/sim/gossipsim"
)

var (
	swarmSeeds = flag.Int("gossipsim.seeds", 300, "seeds TestSwarmGossip runs (-short: a tenth)")
	swarmFirst = flag.Int64("gossipsim.first", 1, "first seed of TestSwarmGossip")
)

// replayHint says how to rerun one failing swarm seed.
func replayHint(seed int64) string {
	return fmt.Sprintf("replay: go test ./sim/gossipsim -run 'TestSwarmGossip/seed=%d$' -v   or   go run ./cmd/synod sim --protocol gossip --seed %d --verbose", seed, seed)
}

// TestSwarmGossip runs the gossip simulator over many seeds, each drawing
// its own group size (5 to 50), fault mix and timing, and requires zero
// violations: accurate membership and converged replicas within their
// bounds after the faults stop, and store safety throughout.
func TestSwarmGossip(t *testing.T) {
	n := *swarmSeeds
	if testing.Short() {
		n = max(1, n/10)
	}
	for seed := *swarmFirst; seed < *swarmFirst+int64(n); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			res, err := gossipsim.Run(gossipsim.Swarm(seed))
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() {
				t.Fatalf("%s%s", res.Report(), replayHint(seed))
			}
			if res.MembershipTicks < 0 || res.StoreTicks < 0 {
				t.Fatalf("seed %d: a run without violations must report convergence times, got %v and %v", seed, res.MembershipTicks, res.StoreTicks)
			}
		})
	}
}

// TestDeterminism: the same seed gives the same run, and another seed
// another run.
func TestDeterminism(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		cfg := gossipsim.Swarm(seed)
		a, err := gossipsim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := gossipsim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if a.TraceHash != b.TraceHash || a.Ticks != b.Ticks || a.Writes != b.Writes {
			t.Fatalf("seed %d: two runs differ: trace %016x/%016x, %v/%v ticks, %d/%d writes", seed, a.TraceHash, b.TraceHash, a.Ticks, b.Ticks, a.Writes, b.Writes)
		}
		c, err := gossipsim.Run(gossipsim.Swarm(seed + 100))
		if err != nil {
			t.Fatal(err)
		}
		if c.TraceHash == a.TraceHash {
			t.Fatalf("seeds %d and %d gave the same trace: the hash checks nothing", seed, seed+100)
		}
	}
}

// TestFaultFreeRunConverges: without faults the membership is accurate and
// the replicas agree right after the clients stop, and no member is ever
// declared dead.
func TestFaultFreeRunConverges(t *testing.T) {
	cfg := gossipsim.DefaultConfig(5)
	cfg.Network.Loss, cfg.Network.Duplicate, cfg.Network.Reorder = 0, 0, 0
	cfg.Faults.Crash, cfg.Faults.Partition, cfg.Faults.Pause = 0, 0, 0
	res, err := gossipsim.Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatal(res.Report())
	}
	if d := res.Deaths; d.True+d.Partition+d.FalsePositives != 0 {
		t.Fatalf("deaths declared without faults: %+v", d)
	}
	if res.Writes == 0 || res.RYWChecked == 0 || res.Ops.Gets == 0 {
		t.Fatalf("the workload did nothing: %d writes, %d reads, %d checked for read-your-writes", res.Writes, res.Ops.Gets, res.RYWChecked)
	}
	if res.Keys == 0 || res.Live != cfg.Nodes {
		t.Fatalf("%d keys on %d live nodes at the end", res.Keys, res.Live)
	}
}

// TestCheckersHaveTeeth: runs that must fail do, and say so with the
// checker's name.
func TestCheckersHaveTeeth(t *testing.T) {
	t.Run("membership bound", func(t *testing.T) {
		// A node crashed for good at the end of the fault phase cannot be
		// declared dead within one tick.
		cfg := gossipsim.DefaultConfig(1)
		cfg.Faults.Crash, cfg.Faults.Permanent, cfg.Faults.PermanentMax = 0.02, 1, 2
		cfg.MembershipBoundTicks = 1
		wantViolation(t, cfg, "membership-accuracy")
	})
	t.Run("no anti-entropy", func(t *testing.T) {
		// Without gossip rounds or anti-entropy nothing spreads: writes
		// stay where they were made.
		cfg := gossipsim.DefaultConfig(1)
		cfg.AdjustStore = func(c *store.Config) { c.AntiEntropyIntervalMs, c.GossipIntervalMs = 0, 0 }
		cfg.StoreBoundTicks = 600
		wantViolation(t, cfg, "store-convergence")
	})
	t.Run("no refutation", func(t *testing.T) {
		// A suspicion timeout of one period declares members dead before
		// they can refute; with long pauses the group never settles on
		// the paused nodes in time.
		cfg := gossipsim.DefaultConfig(3)
		cfg.AdjustGossip = func(c *gossip.Config) { c.SuspicionAlpha, c.SuspicionBeta = 1, 1 }
		cfg.Faults.Pause, cfg.Faults.PauseMaxTicks = 0.05, 100
		res, err := gossipsim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Deaths.FalsePositives == 0 {
			t.Fatalf("a one-period suspicion timeout with long pauses declared no live member dead: %+v", res.Deaths)
		}
	})
}

func wantViolation(t *testing.T, cfg gossipsim.Config, checker string) {
	t.Helper()
	res, err := gossipsim.Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() {
		t.Fatalf("seed %d: the run passed; want a %s violation", cfg.Seed, checker)
	}
	if res.Violations[0].Checker != checker {
		t.Fatalf("seed %d: got %v; want a %s violation", cfg.Seed, res.Violations[0], checker)
	}
	if r := res.Report(); !strings.Contains(r, fmt.Sprintf("seed %d", cfg.Seed)) {
		t.Fatalf("the report does not name the seed:\n%s", r)
	}
}

// TestChainSeedsMerge: when each node joins through a random earlier
// node (not a shared seed list) under 10% loss, the group still ends up
// whole. A joiner keeps asking its seed until the seed itself answers, so
// knowing only another joiner (which once let one lost join message leave
// two groups that never learn of each other) does not end the join.
func TestChainSeedsMerge(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		cfg := gossipsim.DefaultConfig(seed)
		cfg.Nodes, cfg.Seeds, cfg.ChainSeeds = 16, 1, true
		cfg.Network.Loss = 0.1
		cfg.Faults = gossipsim.FaultConfig{CrashDowntimeMaxTicks: 1, PartitionMaxTicks: 1, PauseMaxTicks: 1,
			SlowDelayMaxTicks: 1, SlowPauseEveryTicks: 1}
		cfg.FaultTicks, cfg.Workload.Clients = 200, 0
		cfg.MembershipBoundTicks = 2000
		res, err := gossipsim.Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			t.Fatalf("seed %d: chained seeds under loss: %s", seed, res.Report())
		}
	}
}

// TestCAPGossip: in the CAP scenario both sides of the partition accept
// every read and write, and after healing every replica converges to the
// last write of each key, which the model checks.
func TestCAPGossip(t *testing.T) {
	res, err := gossipsim.RunCAP(gossipsim.DefaultCAPConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) > 0 {
		t.Fatalf("violations: %v", res.Violations)
	}
	for name, s := range map[string]gossipsim.CAPSide{"majority": res.Majority, "minority": res.Minority} {
		if s.Writes == 0 || s.WritesAccepted != s.Writes || s.Reads == 0 || s.ReadsServed != s.Reads || s.Refused != 0 {
			t.Errorf("%s side: %+v; want every operation accepted", name, s)
		}
	}
	if !res.Converged {
		t.Fatalf("replicas not converged after healing: %+v", res)
	}
	won := map[string]int{}
	for _, w := range res.Winner {
		won[w]++
	}
	if won["majority"]+won["minority"] != len(res.Final) {
		t.Fatalf("some keys hold no side's write: %v", res.Final)
	}
}

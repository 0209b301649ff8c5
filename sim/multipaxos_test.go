package sim_test

import (
	"fmt"
	"testing"

	"github.com/synod-io/synod/sim"
)

// multiPaxosReplayHint says how to rerun one failing Multi-Paxos swarm seed.
func multiPaxosReplayHint(seed int64) string {
	return fmt.Sprintf("replay: go test ./sim -run 'TestSwarmMultiPaxos/seed=%d$' -v   or   go run ./cmd/synod sim --protocol multipaxos --seed %d --verbose", seed, seed)
}

// TestSwarmMultiPaxos runs Multi-Paxos through the same swarm as Raft:
// many seeds, each drawing its own cluster size, fault mix (disk faults
// included) and workload, with zero violations required.
func TestSwarmMultiPaxos(t *testing.T) {
	n := *swarmSeeds
	if testing.Short() {
		n = max(1, n/10)
	}
	for seed := *swarmFirst; seed < *swarmFirst+int64(n); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			res, err := sim.Run(sim.Swarm(seed, sim.MultiPaxos()))
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() {
				t.Fatalf("%s%s", res.Report(), multiPaxosReplayHint(seed))
			}
			if res.Linearizability == "" {
				t.Fatalf("seed %d: linearizability was not checked", seed)
			}
		})
	}
}

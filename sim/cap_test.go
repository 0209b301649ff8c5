package sim_test

import (
	"testing"

	"github.com/synod-io/synod/sim"
)

// TestCAPConsensus: in the CAP scenario a consensus protocol's minority
// side completes nothing while cut off (every operation is refused, times
// out, or waits for the partition to heal), its majority side keeps
// committing, and the history stays linearizable with every replica in
// the same state at the end.
func TestCAPConsensus(t *testing.T) {
	for _, p := range []sim.Protocol{sim.Raft(), sim.MultiPaxos()} {
		t.Run(p.Name, func(t *testing.T) {
			c := sim.DefaultCAPConfig(2)
			c.Protocol = p
			r, err := sim.RunCAP(c)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Violations) > 0 {
				t.Fatalf("violations: %v", r.Violations)
			}
			m := r.Minority
			if m.Writes+m.Reads == 0 || m.WritesAccepted+m.ReadsServed != 0 || m.Refused+m.TimedOut+m.AfterHeal != m.Writes+m.Reads {
				t.Errorf("minority side %v: %+v; want every operation refused, timed out or delayed until healing", m.Nodes, m)
			}
			if r.Majority.WritesAccepted == 0 || r.Majority.Refused+r.Majority.TimedOut != 0 {
				t.Errorf("majority side %v: %+v; want every operation to succeed", r.Majority.Nodes, r.Majority)
			}
			if r.Linearizability != "Ok" || !r.Agree {
				t.Errorf("linearizability %q, replicas agree %v", r.Linearizability, r.Agree)
			}
		})
	}
}

package sim_test
import ("testing";"github.com/synod-io/synod/sim")
func TestDebugLin(t *testing.T){ c:=sim.Swarm(16, sim.Raft()); c.FaultTicks=200; r,_:=sim.Run(c); t.Log(r.OpsOK, r.Linearizability, r.Wall, r.SimWall) }

package gossipsim

import (
	"math"
	"testing"
)

// TestThousandNodes: a thousand nodes join through a shared seed list
// over a network that loses 1% of messages, while clients write; then
// three members crash for good and two crash and restart. After the
// faults stop, the membership must become accurate (the three dead
// everywhere, everyone else alive) and the replicas converge to the
// model's last writes, within the bounds, as in every swarm run. (A
// partition takes minutes to heal at this size, as every member cut off
// must refute its death or suspicion and the refutations share the
// piggyback budget: PartitionHeal and synod sim gossip-bench measure it.)
func TestThousandNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 nodes: skipped with -short")
	}
	const n = 1000
	cfg := experimentConfig(1, n, 0.01, true)
	cfg.Workload = WorkloadConfig{Clients: 8, Keys: 100, PutWeight: 4, GetWeight: 4, DeleteWeight: 1, ThinkTicksMax: 20, Home: 0.5}
	cfg.StableTicks = 20
	s, err := newScenario(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := s.w
	if err := s.warmUp(); err != nil {
		t.Fatal(err)
	}
	warm := s.ticks()
	for i, victim := range w.rng.Perm(n)[:5] {
		w.crash(w.nodes[victim], i < 3)
		if i >= 3 {
			w.schedule(w.now+100*UnitsPerTick, event{kind: evRestart, node: int32(victim)})
		}
	}
	if err := s.runFor(150); err != nil {
		t.Fatal(err)
	}
	w.beginQuiet()
	w.loop(math.MaxInt64)
	w.finish()
	res := w.res
	if !res.OK() {
		t.Fatal(res.Report())
	}
	if res.Faults.Permanent != 3 || res.Live != n-3 {
		t.Fatalf("%d nodes crashed for good, %d running; want 3 and %d", res.Faults.Permanent, res.Live, n-3)
	}
	if res.Deaths.True < 3 || res.Deaths.FalsePositives > 2 {
		t.Fatalf("deaths %+v: want the crashes detected, and (almost) no live member declared dead", res.Deaths)
	}
	t.Logf("%d nodes: all knew each other %d ticks after starting; after the faults stopped the membership was accurate in %.0f ticks and the replicas converged in %.0f (bounds %d, %d); %d writes, deaths %+v",
		n, warm, res.MembershipTicks, res.StoreTicks, res.MembershipBoundTicks, res.StoreBoundTicks, res.Writes, res.Deaths)
}

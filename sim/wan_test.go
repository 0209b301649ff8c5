package sim_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/sim"
)

// wanMatrix3 is the first three sites of the shipped AWS matrix:
// us-east-1, us-west-2 (88 ms from it) and eu-west-1 (81 ms from it, 137
// ms from us-west-2).
func wanMatrix3(t *testing.T) *sim.LatencyMatrix {
	t.Helper()
	m, err := sim.LoadLatencyMatrix("aws5")
	if err != nil {
		t.Fatal(err)
	}
	m3, err := m.Select(m.Sites[:3])
	if err != nil {
		t.Fatal(err)
	}
	return m3
}

func runWAN(t *testing.T, spec sim.WANSpec) *sim.Result {
	t.Helper()
	cfg, err := sim.WANConfig(spec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sim.Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Linearizability != "Ok" {
		t.Fatalf("%s: linearizability %q\n%s", spec.Protocol, res.Linearizability, res.Report())
	}
	if res.OpsFailed+res.OpsUnknown > 0 {
		t.Fatalf("%s: %d operations failed, %d unknown, in a run without faults", spec.Protocol, res.OpsFailed, res.OpsUnknown)
	}
	return res
}

func median(s []float64) float64 { return sim.Quantile(s, 0.5) }

// near reports whether a measured latency is at or a little above its
// prediction: jitter (up to 1 ms per message) only adds.
func near(measured, predicted, toleranceMs float64) bool {
	return measured >= predicted-0.01 && measured <= predicted+toleranceMs
}

// TestWANLatencyMatchesQuorums runs three AWS regions without conflicts.
// EPaxos commits on the fast path at each site, within a few ms of the
// RTT to the site's nearest other replica; Raft and Multi-Paxos, led
// from us-east-1, pay the trip to the leader as well, so EPaxos commits
// and answers sooner at the two sites away from the leader, and as fast
// at the leader's.
func TestWANLatencyMatchesQuorums(t *testing.T) {
	m := wanMatrix3(t)
	const tolerance = 3 // ms
	spec := sim.WANSpec{Matrix: m, LeaderSite: "us-east-1", ClientsPerSite: 5, Measure: 10 * time.Second, Seed: 7}
	results := map[string]*sim.Result{}
	for _, p := range []string{"raft", "multipaxos", "epaxos"} {
		spec.Protocol = p
		results[p] = runWAN(t, spec)
	}
	for _, p := range []string{"raft", "multipaxos"} {
		if r := results[p]; r.LastLeader != 1 || r.LeaderChanges != 1 {
			t.Errorf("%s: %d leaders, the last node %d; want node 1 (us-east-1) alone", p, r.LeaderChanges, r.LastLeader)
		}
	}
	for site, name := range m.Sites {
		fast := sim.PredictWAN(m, true, site, 0)
		ep := results["epaxos"].Sites[site]
		if len(ep.CommitMs) < 100 || len(ep.CommitMs) != len(ep.ExecuteMs) {
			t.Fatalf("%s: %d commits timed for %d operations", name, len(ep.CommitMs), len(ep.ExecuteMs))
		}
		if got := median(ep.CommitMs); !near(got, fast.CommitMs, tolerance) {
			t.Errorf("%s: EPaxos median commit %.1f ms; the fast path predicts %.1f", name, got, fast.CommitMs)
		}
		if got := median(ep.ExecuteMs); !near(got, fast.ExecuteMs, tolerance) {
			t.Errorf("%s: EPaxos median execution %.1f ms; predicted %.1f", name, got, fast.ExecuteMs)
		}
		led := sim.PredictWAN(m, false, site, 0)
		for _, p := range []string{"raft", "multipaxos"} {
			s := results[p].Sites[site]
			if got := median(s.CommitMs); !near(got, led.CommitMs, tolerance) {
				t.Errorf("%s at %s: median commit %.1f ms; predicted %.1f", p, name, got, led.CommitMs)
			}
			if got := median(s.ExecuteMs); !near(got, led.ExecuteMs, tolerance) {
				t.Errorf("%s at %s: median execution %.1f ms; predicted %.1f", p, name, got, led.ExecuteMs)
			}
			if site == 0 {
				continue // the leader's site: both are one majority round
			}
			if median(ep.CommitMs) >= median(s.CommitMs) || median(ep.ExecuteMs) >= median(s.ExecuteMs) {
				t.Errorf("%s, away from the leader: EPaxos commit %.1f / execute %.1f ms is not below %s's %.1f / %.1f",
					name, median(ep.CommitMs), median(ep.ExecuteMs), p, median(s.CommitMs), median(s.ExecuteMs))
			}
		}
	}
}

// TestWANConflictsTakeTheSlowPath: when every command writes one key,
// concurrent commands change each other's attributes and EPaxos commits
// through PreAccept and Accept, two majority rounds.
func TestWANConflictsTakeTheSlowPath(t *testing.T) {
	m := wanMatrix3(t)
	res := runWAN(t, sim.WANSpec{Matrix: m, Protocol: "epaxos", Conflict: 1, ClientsPerSite: 5, Measure: 10 * time.Second, Seed: 3})
	for site, name := range m.Sites {
		p := sim.PredictWAN(m, true, site, 0)
		s := res.Sites[site]
		if got := median(s.CommitMs); !near(got, p.SlowCommitMs, 5) {
			t.Errorf("%s: median commit %.1f ms at 100%% conflicts; the slow path predicts %.1f", name, got, p.SlowCommitMs)
		}
		if median(s.ExecuteMs) < median(s.CommitMs) {
			t.Errorf("%s: executed (%.1f ms) before committing (%.1f ms)", name, median(s.ExecuteMs), median(s.CommitMs))
		}
	}
}

// TestWANLeaderSite: the chosen site's node leads.
func TestWANLeaderSite(t *testing.T) {
	m := wanMatrix3(t)
	for _, p := range []string{"raft", "multipaxos"} {
		res := runWAN(t, sim.WANSpec{Matrix: m, Protocol: p, LeaderSite: "eu-west-1", ClientsPerSite: 2, Measure: 2 * time.Second, Seed: 1})
		if res.LastLeader != consensus.NodeID(3) || res.LeaderChanges != 1 {
			t.Errorf("%s: %d leaders, the last node %d; want node 3 (eu-west-1) alone", p, res.LeaderChanges, res.LastLeader)
		}
	}
}

// TestWANDeterminism: a seed replays the same run, latencies included.
func TestWANDeterminism(t *testing.T) {
	m := wanMatrix3(t)
	spec := sim.WANSpec{Matrix: m, Protocol: "epaxos", Conflict: 0.02, ClientsPerSite: 3, Measure: 5 * time.Second, Seed: 11}
	a, b := runWAN(t, spec), runWAN(t, spec)
	if a.TraceHash != b.TraceHash || !reflect.DeepEqual(a.Sites, b.Sites) {
		t.Fatalf("seed %d ran twice differently: trace %016x vs %016x", spec.Seed, a.TraceHash, b.TraceHash)
	}
	spec.Seed++
	if c := runWAN(t, spec); c.TraceHash == a.TraceHash {
		t.Fatalf("seeds %d and %d gave the same trace", spec.Seed-1, spec.Seed)
	}
}

func TestWANConfigErrors(t *testing.T) {
	m := wanMatrix3(t)
	ok := sim.WANSpec{Matrix: m, Protocol: "raft", ClientsPerSite: 1, Measure: time.Second}
	tests := []struct {
		change func(*sim.WANSpec)
		want   string
	}{
		{func(s *sim.WANSpec) { s.Matrix = nil }, "Matrix is nil"},
		{func(s *sim.WANSpec) { s.Protocol = "zab" }, `unknown protocol "zab"`},
		{func(s *sim.WANSpec) { s.LeaderSite = "mars-1" }, `leader site "mars-1"`},
		{func(s *sim.WANSpec) { s.Conflict = 1.5 }, "conflict rate"},
		{func(s *sim.WANSpec) { s.ClientsPerSite = 0 }, "clients per site"},
		{func(s *sim.WANSpec) { s.Measure = 0 }, "simulated time"},
	}
	for _, tt := range tests {
		s := ok
		tt.change(&s)
		if _, err := sim.WANConfig(s); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("want an error containing %q, got %v", tt.want, err)
		}
	}
	cfg, err := sim.WANConfig(ok)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Nodes = 5
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "one node per site") {
		t.Errorf("5 nodes on 3 sites: %v", err)
	}
}

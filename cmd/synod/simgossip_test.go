package main

import (
	"strings"
	"testing"
)

func TestSimGossipSummary(t *testing.T) {
	out, errOut, err := run(t, "sim", "--protocol", "gossip", "--seeds", "1-4", "--no-progress", "--ticks", "400")
	if err != nil {
		t.Fatalf("sim failed: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"gossip (SWIM + Lifeguard", "4 run(s)", "groups", "operations", "writes", "faults",
		"deaths", "false positives", "converged", "membership accurate", "replicas agree", "speed", "no violations"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestSimGossipVerboseIsReproducible(t *testing.T) {
	args := []string{"sim", "--protocol", "gossip", "--seed", "7", "--verbose", "--ticks", "300", "--nodes", "12", "--lifeguard=false"}
	a, _, err := run(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := run(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	line := func(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }
	if line(a) != line(b) || !strings.HasPrefix(line(a), "seed 7 ") || !strings.Contains(line(a), "  12 nodes") {
		t.Fatalf("the same seed printed different runs:\n%s\n%s", line(a), line(b))
	}
}

func TestSimGossipFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"sim", "--protocol", "gossip", "--clog", "0.1"}, "--clog applies only to a consensus protocol"},
		{[]string{"sim", "--protocol", "gossip", "--liveness-ticks", "9"}, "--liveness-ticks applies only"},
		{[]string{"sim", "--lifeguard=false"}, "--lifeguard applies only to --protocol gossip"},
		{[]string{"sim", "--protocol", "gossip", "--mix", "1:1:1:1"}, "no compare-and-swap"},
		{[]string{"sim", "--protocol", "gossip", "--nodes", "1001"}, "Nodes = 1001"},
		{[]string{"sim", "--protocol", "gossip", "--loss", "0.7"}, "Loss = 0.7"},
		{[]string{"sim", "gossip-bench", "--sizes", "1"}, "not a group size"},
		{[]string{"sim", "cap", "--minority", "3"}, "minority"},
	}
	for _, tt := range tests {
		_, _, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: want an error containing %q, got %v", tt.args, tt.want, err)
		}
	}
}

func TestGossipReplayCommand(t *testing.T) {
	cmd := newSimCommand()
	if err := cmd.ParseFlags([]string{"--protocol", "gossip", "--seeds", "1-9", "--nodes", "40", "--lifeguard=false", "--parallel", "2"}); err != nil {
		t.Fatal(err)
	}
	got := replayCommand(cmd, 5)
	for _, want := range []string{"--seed 5", "--protocol=gossip", "--nodes=40", "--lifeguard=false", "--verbose"} {
		if !strings.Contains(got, want) {
			t.Errorf("replay command %q lacks %q", got, want)
		}
	}
}

// TestSimCAP asserts the outcomes of the partition scenario: Raft's
// minority side completes nothing while cut off and its majority commits;
// the gossip store accepts everything on both sides and converges to the
// last writes.
func TestSimCAP(t *testing.T) {
	f := &capFlags{seed: 3, nodes: 5, minority: 2, clientsPerSide: 2, keys: 4, partitionTicks: 500, afterTicks: 500}
	o, err := runCAP(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.problems) > 0 {
		t.Fatalf("unexpected outcomes: %v", o.problems)
	}
	r, g := o.raft, o.gossip
	if r.Minority.Writes == 0 || r.Minority.WritesAccepted != 0 || r.Minority.ReadsServed != 0 ||
		r.Minority.Refused+r.Minority.TimedOut+r.Minority.AfterHeal != r.Minority.Writes+r.Minority.Reads {
		t.Errorf("raft minority side: %+v; want every operation refused, timed out or delayed until healing", r.Minority)
	}
	if r.Majority.WritesAccepted == 0 || r.Majority.Refused+r.Majority.TimedOut != 0 {
		t.Errorf("raft majority side: %+v; want every operation to succeed", r.Majority)
	}
	if r.Linearizability != "Ok" || !r.Agree {
		t.Errorf("raft: linearizability %q, replicas agree %v", r.Linearizability, r.Agree)
	}
	for name, s := range map[string]struct{ w, wa, r, rs int }{
		"majority": {g.Majority.Writes, g.Majority.WritesAccepted, g.Majority.Reads, g.Majority.ReadsServed},
		"minority": {g.Minority.Writes, g.Minority.WritesAccepted, g.Minority.Reads, g.Minority.ReadsServed},
	} {
		if s.w == 0 || s.w != s.wa || s.r != s.rs {
			t.Errorf("gossip %s side: %+v; want every operation accepted", name, s)
		}
	}
	if !g.Converged || len(g.Violations) > 0 {
		t.Errorf("gossip: converged %v, violations %v", g.Converged, g.Violations)
	}
	out, _, err := run(t, "sim", "cap", "--seed", "3", "--partition-ticks", "500", "--after-ticks", "500")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"raft (CP)", "gossip store (AP)", "majority side [1 2 3]", "minority side [4 5]",
		"linearizable: Ok", "last write wins: ok", "verdict: as expected"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestSimGossipBenchTable runs the figures on small groups and checks
// them loosely against what SWIM and Lifeguard predict.
func TestSimGossipBenchTable(t *testing.T) {
	if testing.Short() {
		t.Skip("gossip-bench: skipped with -short")
	}
	out, _, err := run(t, "sim", "gossip-bench", "--sizes", "10,40", "--trials", "4", "--fp-minutes", "20", "--partition-seconds", "30")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"N=10", "N=40", "first probe of the crashed member", "first suspicion", "every member knows",
		"messages per member per period", "Lifeguard off, α = 2", "store replicas converged"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

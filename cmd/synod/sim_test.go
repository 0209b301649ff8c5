package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// run executes the CLI with args and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func TestSimSummary(t *testing.T) {
	out, errOut, err := run(t, "sim", "--seeds", "1-4", "--no-progress", "--ticks", "300")
	if err != nil {
		t.Fatalf("sim failed: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"4 run(s)", "operations", "latency", "leader changes", "faults", "speed", "linearizable   4 ok", "no violations"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestSimVerboseIsReproducible(t *testing.T) {
	a, _, err := run(t, "sim", "--seed", "9", "--verbose", "--ticks", "300")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := run(t, "sim", "--seed", "9", "--verbose", "--ticks", "300")
	if err != nil {
		t.Fatal(err)
	}
	line := func(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }
	if line(a) != line(b) || !strings.HasPrefix(line(a), "seed 9 ") {
		t.Fatalf("the same seed printed different runs:\n%s\n%s", line(a), line(b))
	}
}

func TestSimFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"sim", "--seeds", "9-3"}, "FIRST <= LAST"},
		{[]string{"sim", "--seeds", "x"}, "want FIRST-LAST"},
		{[]string{"sim", "--protocol", "zab"}, `unknown protocol "zab"`},
		{[]string{"sim", "--mix", "1:2"}, "four weights"},
		{[]string{"sim", "--loss", "2"}, "Loss = 2"},
		{[]string{"sim", "--nodes", "0"}, "Nodes = 0"},
		{[]string{"sim", "--parallel", "0"}, "--parallel 0"},
	}
	for _, tt := range tests {
		_, _, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: want an error containing %q, got %v", tt.args, tt.want, err)
		}
	}
}

func TestReplayCommandCarriesFlags(t *testing.T) {
	cmd := newSimCommand()
	if err := cmd.ParseFlags([]string{"--seeds", "1-9", "--loss", "0.2", "--nodes", "7", "--parallel", "2"}); err != nil {
		t.Fatal(err)
	}
	got := replayCommand(cmd, 5)
	for _, want := range []string{"--seed 5", "--loss=0.2", "--nodes=7"} {
		if !strings.Contains(got, want) {
			t.Errorf("replay command %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "--seeds") || strings.Contains(got, "--parallel") {
		t.Errorf("replay command %q carries run-only flags", got)
	}
}

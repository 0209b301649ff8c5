package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSimWANTable(t *testing.T) {
	out, errOut, err := run(t, "sim", "wan", "--sizes", "3", "--conflicts", "0,100", "--duration", "3s", "--clients-per-site", "3")
	if err != nil {
		t.Fatalf("sim wan failed: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{
		"matrix aws5", "1 ms = 10 units", "leader-based protocols lead from us-east-1",
		"== 3 sites (us-east-1, us-west-2, eu-west-1), 0% conflicts",
		"== 3 sites (us-east-1, us-west-2, eu-west-1), 100% conflicts",
		"commit (ms)", "execute (ms)", "pred",
		"6 runs in", "no violations",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "note:") {
		t.Errorf("a run needed a note:\n%s", out)
	}
	// One row per site and protocol in each of the two tables; EPaxos's
	// prediction gives the fast and the slow path.
	for _, site := range []string{"us-east-1", "us-west-2", "eu-west-1"} {
		for _, p := range []string{"raft", "multipaxos", "epaxos"} {
			rows := 0
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) == 9 && f[0] == site && f[1] == p {
					rows++
					if p == "epaxos" && !strings.Contains(f[5], "|") {
						t.Errorf("EPaxos row without fast|slow prediction: %q", line)
					}
				}
			}
			if rows != 2 {
				t.Errorf("%d rows for %s at %s; want 2:\n%s", rows, p, site, out)
			}
		}
	}
}

func TestSimWANFlagErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte("sites a b\na 0 1\nb 2 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--matrix", bad}, "bad.txt:3: RTT b→a is 2 ms but a→b (line 2) is 1 ms"},
		{[]string{"--matrix", "nowhere"}, "no such file, and no built-in matrix"},
		{[]string{"--sites", "us-east-1,mars-1"}, `unknown site "mars-1"`},
		{[]string{"--sizes", "7"}, `"7" is not a cluster size from 1 to 5`},
		{[]string{"--conflicts", "150"}, `"150" is not a percentage`},
		{[]string{"--protocols", "zab"}, `unknown protocol "zab"`},
		{[]string{"--leader-site", "mars-1"}, `--leader-site "mars-1" is not one of the sites`},
		{[]string{"--leader-site", "sa-east-1"}, "the leader must be at one of the first 3 sites"},
		{[]string{"--clients-per-site", "0"}, "--clients-per-site 0"},
		{[]string{"--duration", "10ms"}, "--duration 10ms"},
	}
	for _, tt := range tests {
		_, _, err := run(t, append([]string{"sim", "wan"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: want an error containing %q, got %v", tt.args, tt.want, err)
		}
	}
}

func TestSimLatencyMatrixFlag(t *testing.T) {
	out, errOut, err := run(t, "sim", "--seeds", "1-2", "--no-progress", "--ticks", "300",
		"--latency-matrix", "aws5", "--sites", "us-east-1, eu-west-1, ap-northeast-1")
	if err != nil {
		t.Fatalf("sim failed: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"3 nodes ×2", "per site (ms)", "us-east-1", "ap-northeast-1", "no violations"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"sim", "--latency-matrix", "aws5", "--nodes", "3"}, "one node at each of its 5 sites"},
		{[]string{"sim", "--sites", "us-east-1"}, "--sites needs --latency-matrix"},
		{[]string{"sim", "--latency-matrix", "aws5", "--sites", "us-east-1,us-east-1"}, "selected twice"},
	} {
		if _, _, err := run(t, tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: want an error containing %q, got %v", tt.args, tt.want, err)
		}
	}
}

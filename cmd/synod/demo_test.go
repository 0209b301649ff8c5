package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/synod-io/synod/node"
)

// TestDemo builds the synod binary and runs "synod demo" end to end for
// each protocol: three real member processes, a workload through etcd's
// client, the leader (under EPaxos, which has none, a member) killed and
// restarted, and the history checked.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3-process clusters; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "synod")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, protocol := range node.Protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "demo", "--protocol", protocol, "--duration", "3s", "--no-progress")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("synod demo --protocol %s: %v\n%s", protocol, err, out)
			}
			s := string(out)
			wants := []string{"members (" + protocol + ")", "kill -9", "new leader:", "is back: follows", "throughput", "latency",
				"protocol        " + protocol, "linearizable    ok", "cluster stopped; removed"}
			if node.Leaderless(protocol) {
				wants = []string{"members (" + protocol + ")", "is leaderless", "kill -9", "writes go on", "is back: executed",
					"throughput", "latency", "protocol        " + protocol, "leader changes  none", "from kill -9 of a member",
					"linearizable    ok", "cluster stopped; removed"}
			}
			if !node.Leaderless(protocol) && !leaderChanges.MatchString(s) {
				// At least the kill's; a loaded machine may add one at start.
				t.Errorf("demo output lacks a count of leader changes >= 1:\n%s", s)
			}
			for _, want := range wants {
				if !strings.Contains(s, want) {
					t.Errorf("demo output lacks %q:\n%s", want, s)
				}
			}
		})
	}
}

func TestDemoFlagErrors(t *testing.T) {
	usage := newDemoCommand().Flags().Lookup("protocol").Usage
	for _, p := range node.Protocols {
		if !strings.Contains(usage, p) {
			t.Errorf("--protocol help %q does not list %s", usage, p)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--nodes", "2"}, "at least 3 members"},
		{[]string{"demo", "--protocol", "gossip"}, "synod sim cap"},
		{[]string{"demo", "--protocol", "paxos"}, `--protocol "paxos" is not supported; choose one of epaxos, multipaxos, raft`},
		{[]string{"demo", "--clients", "0"}, "--clients 0"},
		{[]string{"demo", "--duration", "10ms"}, "--duration 10ms"},
	} {
		_, _, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// leaderChanges matches the demo summary's count of leader changes when
// there was at least one.
var leaderChanges = regexp.MustCompile(`leader changes  [1-9][0-9]*:`)

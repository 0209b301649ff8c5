package node

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
)

// swimStates returns the SWIM state of every member as node i sees it.
func swimStates(c *cluster, i int) map[consensus.NodeID]string {
	out := map[consensus.NodeID]string{}
	for _, m := range c.nodes[i].Status().Membership.Members {
		out[m.ID] = m.State
	}
	return out
}

// waitSWIM waits until every running node in on sees member id in state
// want, or fails after limit.
func waitSWIM(t *testing.T, c *cluster, on []int, id consensus.NodeID, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok := true
		for _, i := range on {
			if got := swimStates(c, i)[id]; got != want {
				ok = false
				if time.Now().After(deadline) {
					t.Fatalf("node %d sees member %d as %q after %v; want %q (view %v)", i+1, id, got, limit, want, swimStates(c, i))
				}
			}
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMembershipDetectsCrashAndRestart runs SWIM beside Raft: every member
// sees the others alive; a stopped member is suspected and then declared
// dead by the rest; restarted, it comes back alive at a higher
// incarnation, which it keeps in its data directory.
func TestMembershipDetectsCrashAndRestart(t *testing.T) {
	defer func(d time.Duration) { swimTickInterval = d }(swimTickInterval)
	swimTickInterval = 10 * time.Millisecond // one node tick: a 100 ms protocol period
	c := newCluster(t, 3, nil)
	for id := consensus.NodeID(1); id <= 3; id++ {
		waitSWIM(t, c, []int{0, 1, 2}, id, "alive", 10*time.Second)
	}
	st := c.nodes[0].Status().Membership
	if st.HealthMax == 0 || st.Health < 0 || st.Health > st.HealthMax {
		t.Fatalf("health %d of %d", st.Health, st.HealthMax)
	}
	if st.Incarnation != 1 {
		t.Fatalf("first run's incarnation = %d, want 1", st.Incarnation)
	}
	for _, m := range st.Members {
		if m.Name == "" {
			t.Fatalf("member %d has no name in %+v", m.ID, st.Members)
		}
	}

	c.stop(2)
	waitSWIM(t, c, []int{0, 1}, 3, "dead", 20*time.Second)

	c.start(2)
	waitSWIM(t, c, []int{0, 1, 2}, 3, "alive", 20*time.Second)
	inc := c.nodes[2].Status().Membership.Incarnation
	if inc < 2 {
		t.Fatalf("restarted member's incarnation = %d, want >= 2", inc)
	}
	data, err := os.ReadFile(filepath.Join(c.dirs[2], incarnationName))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err != nil || got < inc {
		t.Fatalf("incarnation file holds %q (%v), want >= %d", data, err, inc)
	}
	for _, m := range c.nodes[0].Status().Membership.Members {
		if m.ID == 3 && m.Incarnation < 2 {
			t.Fatalf("node 1 sees member 3 at incarnation %d, want >= 2", m.Incarnation)
		}
	}
}

// TestMembershipDamagedIncarnationFile refuses to start with a clear error.
func TestMembershipDamagedIncarnationFile(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.stop(0)
	if err := os.WriteFile(filepath.Join(c.dirs[0], incarnationName), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(c.config(0))
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Start with a damaged incarnation file: %v", err)
	}
}

// TestMembershipGracefulLeave: with LeaveTimeout set, a stopped member
// announces that it leaves, and the others record it as left, not dead.
func TestMembershipGracefulLeave(t *testing.T) {
	defer func(d time.Duration) { swimTickInterval = d }(swimTickInterval)
	swimTickInterval = 10 * time.Millisecond
	c := newCluster(t, 3, func(cfg *Config) { cfg.LeaveTimeout = time.Second })
	for id := consensus.NodeID(1); id <= 3; id++ {
		waitSWIM(t, c, []int{0, 1, 2}, id, "alive", 10*time.Second)
	}
	c.stop(2)
	waitSWIM(t, c, []int{0, 1}, 3, "left", 5*time.Second)
	c.start(2)
	waitSWIM(t, c, []int{0, 1, 2}, 3, "alive", 10*time.Second)
}

package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// TestMetrics runs for every protocol. Those with a leader have a
// heartbeat and answer pair whose round trip is measured; a leaderless one
// has neither leader changes nor round trips.
func TestMetrics(t *testing.T) {
	forEachProtocol(t, testMetrics)
}

func testMetrics(t *testing.T, protocol string) {
	c := newCluster(t, 3, withProtocol(protocol, nil))
	l := c.leader()
	for _, k := range []string{"a", "b", "c"} {
		c.put(k, "v")
	}
	ld := c.nodes[l]
	// A proposal whose caller has already given up fails.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ld.Propose(ctx, kv.Put("d", "v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("propose with a canceled context: %v", err)
	}
	leaderless := Leaderless(protocol)
	f := (l + 1) % 3
	peers := 2 // round trips measured to each follower
	if leaderless {
		peers = 0
	} else if _, err := c.nodes[f].Propose(ctxT(t), kv.Put("e", "v")); !errors.Is(err, consensus.ErrNotLeader) {
		// A follower's refusal is not a failure: the server forwards it.
		t.Fatalf("propose on a follower: %v", err)
	}
	// Wait for a heartbeat round trip to each follower.
	deadline := time.Now().Add(5 * time.Second)
	m := ld.Metrics()
	for !leaderless && time.Now().Before(deadline) {
		m = ld.Metrics()
		if len(m.PeerRoundTrip) == peers {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m.ProposalsCommitted < 3 || m.ProposalsFailed != 1 {
		t.Errorf("proposals committed %d (want >= 3), failed %d (want 1)", m.ProposalsCommitted, m.ProposalsFailed)
	}
	if fm := c.nodes[f].Metrics(); fm.ProposalsFailed != 0 {
		t.Errorf("follower counts %d failed proposals; not-leader refusals must not count", fm.ProposalsFailed)
	}
	if leaderless && m.LeaderChanges != 0 || !leaderless && m.LeaderChanges < 1 {
		t.Errorf("leader changes %d (leaderless protocol: %v)", m.LeaderChanges, leaderless)
	}
	if m.WALSyncLatency.Count == 0 || m.ApplyLatency.Count == 0 || m.ApplyLatency.Sum <= 0 {
		t.Errorf("latency histograms are empty: wal %+v apply %+v", m.WALSyncLatency, m.ApplyLatency)
	}
	if len(m.PeerRoundTrip) != peers {
		t.Errorf("round trips measured to %d peers, want %d", len(m.PeerRoundTrip), peers)
	}
	if m.Transport != nil {
		t.Errorf("the in-memory transport has no stats, got %+v", m.Transport)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for _, d := range []time.Duration{50 * time.Microsecond, 100 * time.Microsecond, 150 * time.Microsecond, time.Hour} {
		h.observe(d)
	}
	s := h.snapshot()
	if s.Count != 4 || s.Sum != time.Hour+300*time.Microsecond {
		t.Fatalf("count %d sum %v", s.Count, s.Sum)
	}
	if b := s.Buckets[0]; b.UpperBound != 100*time.Microsecond || b.Count != 2 {
		t.Errorf("first bucket %+v, want 2 at most 100µs", b)
	}
	if b := s.Buckets[1]; b.Count != 3 {
		t.Errorf("second bucket %+v, want 3 (cumulative)", b)
	}
	if b := s.Buckets[len(s.Buckets)-1]; b.Count != 3 {
		t.Errorf("last finite bucket %+v; the hour belongs only in Count", b)
	}
}

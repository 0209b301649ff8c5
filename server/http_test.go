package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/server"
	"github.com/synod-io/synod/transport"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestHTTPHealth(t *testing.T) {
	b := newFakeBackend(1, &fakeCluster{})
	h, err := server.NewHTTPHandler(server.HTTPConfig{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	var got server.Health
	code, body := get(t, h, "/health")
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 || got != (server.Health{Health: "true"}) {
		t.Fatalf("healthy member: %d %s (%v)", code, body, err)
	}
	if !strings.Contains(body, `"reason": ""`) {
		t.Errorf("etcd's /health always has a reason field: %s", body)
	}
	b.setLeader(consensus.None)
	code, body = get(t, h, "/health")
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 503 || got != (server.Health{Health: "false", Reason: "RAFT NO LEADER"}) {
		t.Fatalf("member without a leader: %d %s (%v)", code, body, err)
	}
}

func TestHTTPStatusAndMetrics(t *testing.T) {
	cluster := &fakeCluster{}
	b := newFakeBackend(1, cluster)
	startMember(t, b, server.Config{})
	startMember(t, newFakeBackend(2, cluster), server.Config{})
	rtt := node.Histogram{Count: 2, Sum: 3 * time.Millisecond, Buckets: []node.Bucket{{UpperBound: time.Millisecond, Count: 1}, {UpperBound: 4 * time.Millisecond, Count: 2}}}
	metrics := func() node.Metrics {
		return node.Metrics{
			ProposalsCommitted: 7, ProposalsFailed: 2, LeaderChanges: 1,
			ApplyLatency:  rtt,
			PeerRoundTrip: map[consensus.NodeID]node.Histogram{2: rtt},
			Transport: &transport.Stats{Peers: map[consensus.NodeID]transport.PeerStats{
				2: {Addr: "127.0.0.1:12", Connected: true, BytesSent: 1000, BytesReceived: 900, MessagesSent: 10},
			}},
		}
	}
	h, err := server.NewHTTPHandler(server.HTTPConfig{Backend: b, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, h, "/status")
	if strings.Contains(body, "swim") {
		t.Errorf("/status of a member without SWIM mentions it: %s", body)
	}
	b.setSWIM(&server.Membership{Health: 2, HealthMax: 8, Incarnation: 3, Members: []server.MemberHealth{
		{ID: 1, Name: "n1", State: server.SWIMAlive, Incarnation: 3},
		{ID: 2, Name: "n2", State: server.SWIMSuspect, Incarnation: 5},
	}})
	code, body = get(t, h, "/status")
	var st server.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
		t.Fatalf("/status: %d %s (%v)", code, body, err)
	}
	if st.Role != "leader" || st.Leader != "1" || st.Term != 3 || len(st.Members) != 2 || st.Transport == nil {
		t.Fatalf("/status: %s", body)
	}
	for _, want := range []string{`"swim": {
    "health": 2,
    "health_max": 8,
    "incarnation": 3
  }`, `"swim_state": "alive",
      "swim_incarnation": 3`, `"swim_state": "suspect",
      "swim_incarnation": 5`} {
		if !strings.Contains(body, want) {
			t.Errorf("/status lacks %s:\n%s", want, body)
		}
	}
	m2 := st.Members[1]
	if m2.Role != "follower" || m2.Peer == nil || m2.Peer.BytesSent != 1000 || m2.RoundTripMeanSeconds == nil || *m2.RoundTripMeanSeconds != 0.0015 {
		t.Errorf("member 2 in /status: %+v", m2)
	}

	code, body = get(t, h, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	for _, want := range []string{
		`synod_server_info{cluster_id="c1",member_id="1",name="n1",protocol="fake",version="` + server.Version + `"} 1`,
		"synod_server_is_leader 1", "synod_server_has_leader 1", "synod_server_term 3",
		"synod_server_proposals_committed_total 7", "synod_server_proposals_failed_total 2",
		"synod_server_leader_changes_seen_total 1",
		`synod_server_apply_duration_seconds_bucket{le="0.001"} 1`, "synod_server_apply_duration_seconds_count 2",
		"synod_disk_wal_fsync_duration_seconds_count 0",
		`synod_network_peer_round_trip_time_seconds_bucket{to="2",le="0.004"} 2`,
		`synod_network_peer_sent_bytes_total{to="2"} 1000`, `synod_network_peer_received_bytes_total{from="2"} 900`,
		`synod_network_peer_connected{to="2"} 1`, "synod_disk_db_size_bytes 4096", "synod_disk_wal_size_bytes 0",
		"synod_swim_health_score 2", `synod_swim_members{state="alive"} 1`, `synod_swim_members{state="suspect"} 1`,
		`synod_swim_members{state="dead"} 0`, `synod_swim_members{state="left"} 0`, `synod_swim_members{state="unknown"} 0`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/transport"
)

// The HTTP endpoints, served on their own port (etcd's
// --listen-metrics-urls), apart from the gRPC client API:
//
//	/metrics  Prometheus metrics (names below, all prefixed synod_)
//	/health   {"health":"true","reason":""} as etcd's /health; 503 with a
//	          reason when the member knows no leader or cannot serve a read
//	/status   JSON: this member, the members and their roles, term,
//	          commit and applied index, leader, each follower's lag (on the
//	          leader), the peer transport's counters, and the SWIM view:
//	          "swim" holds this member's own health score, its maximum
//	          and its incarnation ({"health": 0, "health_max": 8,
//	          "incarnation": 3}); each member carries "swim_state" (alive,
//	          suspect, dead, left or unknown) and "swim_incarnation" as
//	          this member sees it. All three are absent without SWIM.
//
// Member IDs appear in hex, as etcdctl prints them (64-bit numbers do not
// survive JSON's floats).

// healthTimeout bounds the read /health makes.
const healthTimeout = time.Second

// HTTPConfig configures the HTTP handler.
type HTTPConfig struct {
	// Backend is the node to report on. Required.
	Backend Backend
	// Metrics, if set, returns the node's counters: proposals, latency
	// histograms, leader changes, peer round trips and transport stats.
	// Without it /metrics has only the status gauges (and Go's), and
	// /status no transport section.
	Metrics func() node.Metrics
	// Registry, if set, is where the metrics are registered (and what
	// /metrics serves); nil makes a fresh registry with Go's runtime and
	// process collectors.
	Registry *prometheus.Registry
}

// NewHTTPHandler returns the handler for /metrics, /health and /status.
func NewHTTPHandler(cfg HTTPConfig) (http.Handler, error) {
	if cfg.Backend == nil {
		return nil, errors.New("server: HTTPConfig.Backend is required")
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if err := reg.Register(newCollector(cfg)); err != nil {
		return nil, fmt.Errorf("server: registering metrics: %w", err)
	}
	h := &httpHandler{cfg: cfg}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", h.health)
	mux.HandleFunc("GET /status", h.status)
	return mux, nil
}

type httpHandler struct{ cfg HTTPConfig }

// Health is /health's answer, as etcd's.
type Health struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// health answers as etcd does: healthy when the member knows a leader and
// serves a serializable read. Reasons: "RAFT NO LEADER", "STOPPED",
// "RANGE ERROR: ...".
func (h *httpHandler) health(w http.ResponseWriter, r *http.Request) {
	reason := ""
	if st := h.cfg.Backend.Status().Replica; st.Role != consensus.RolePeer && st.Leader == consensus.None {
		reason = "RAFT NO LEADER"
	}
	if reason == "" {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		_, err := h.cfg.Backend.Read(ctx, kv.Get("health"), false)
		cancel()
		switch {
		case errors.Is(err, ErrStopped):
			reason = "STOPPED"
		case err != nil:
			reason = "RANGE ERROR: " + err.Error()
		}
	}
	code, out := http.StatusOK, Health{Health: "true"}
	if reason != "" {
		code, out = http.StatusServiceUnavailable, Health{Health: "false", Reason: reason}
	}
	writeJSON(w, code, out)
}

// Status is /status's answer.
type Status struct {
	ClusterID string `json:"cluster_id"`
	MemberID  string `json:"member_id"`
	Name      string `json:"name"`
	Protocol  string `json:"protocol"`
	Role      string `json:"role"`
	Term      uint64 `json:"term"`
	// Leader is the leader's ID as this member knows it ("" for none).
	Leader    string `json:"leader"`
	Commit    uint64 `json:"commit_index"`
	Applied   uint64 `json:"applied_index"`
	LastIndex uint64 `json:"last_index"`
	Revision  int64  `json:"revision"`
	DBBytes   int64  `json:"db_size_bytes"`
	WALBytes  int64  `json:"wal_size_bytes"`
	// Members lists every member with its role as this member sees it.
	Members []MemberStatus `json:"members"`
	// Transport holds the peer transport's totals, when known.
	Transport *TransportStatus `json:"transport,omitempty"`
	// SWIM is this member's own SWIM health, if it runs SWIM.
	SWIM *SWIMStatus `json:"swim,omitempty"`
}

// SWIMStatus is this member's own SWIM health in /status (Membership).
type SWIMStatus struct {
	// Health is the local health score, 0 (healthy) to HealthMax.
	Health      int    `json:"health"`
	HealthMax   int    `json:"health_max"`
	Incarnation uint64 `json:"incarnation"`
}

// MemberStatus is one member in /status.
type MemberStatus struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	// Role is as this member sees it: its own role for itself; "leader"
	// for the leader it knows; "follower" for the others when a leader is
	// known, "unknown" when none is.
	Role string `json:"role"`
	// Match, Next, State and Lag are the leader's view of the member's log
	// (set only when this member leads): Lag is how many entries of the
	// leader's log the member has not yet acknowledged.
	Match *uint64 `json:"match_index,omitempty"`
	Next  *uint64 `json:"next_index,omitempty"`
	State string  `json:"replication_state,omitempty"`
	Lag   *uint64 `json:"lag_entries,omitempty"`
	// RoundTripMeanSeconds is the mean heartbeat round trip to the member
	// measured while this member led, if any.
	RoundTripMeanSeconds *float64 `json:"round_trip_mean_seconds,omitempty"`
	// Peer holds the transport's counters for the member (absent for
	// this member itself).
	Peer *PeerStatus `json:"transport,omitempty"`
	// SWIMState and SWIMIncarnation are the member's SWIM state (alive,
	// suspect, dead, left, unknown) and incarnation as this member sees
	// it; absent if this member runs no SWIM.
	SWIMState       string  `json:"swim_state,omitempty"`
	SWIMIncarnation *uint64 `json:"swim_incarnation,omitempty"`
}

// PeerStatus is the transport's view of one peer.
type PeerStatus struct {
	Addr             string `json:"addr"`
	Connected        bool   `json:"connected"`
	QueueLen         int    `json:"queue_len"`
	QueueBytes       int    `json:"queue_bytes"`
	MessagesSent     uint64 `json:"messages_sent"`
	BytesSent        uint64 `json:"bytes_sent"`
	MessagesReceived uint64 `json:"messages_received"`
	BytesReceived    uint64 `json:"bytes_received"`
	Dropped          uint64 `json:"messages_dropped"`
	StreamsOpened    uint64 `json:"streams_opened"`
	Reconnects       uint64 `json:"reconnects"`
	DialFailures     uint64 `json:"dial_failures"`
}

// TransportStatus holds the transport's totals not tied to one peer.
type TransportStatus struct {
	StreamsAccepted      uint64 `json:"streams_accepted"`
	StreamsRejected      uint64 `json:"streams_rejected"`
	FramesMalformed      uint64 `json:"frames_malformed"`
	MessagesMisaddressed uint64 `json:"messages_misaddressed"`
	DroppedUnknownPeer   uint64 `json:"dropped_unknown_peer"`
}

func (h *httpHandler) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.statusOf())
}

func (h *httpHandler) statusOf() Status {
	st := h.cfg.Backend.Status()
	rs := st.Replica
	out := Status{
		ClusterID: hexID(st.ClusterID), MemberID: hexID(uint64(st.MemberID)), Name: st.Name, Protocol: st.Protocol,
		Role: rs.Role.String(), Term: rs.Term, Commit: rs.Commit, Applied: rs.Applied, LastIndex: rs.LastIndex,
		Revision: st.Revision, DBBytes: st.DBSizeBytes, WALBytes: st.WALSizeBytes,
	}
	if rs.Leader != consensus.None {
		out.Leader = hexID(uint64(rs.Leader))
	}
	var m node.Metrics
	if h.cfg.Metrics != nil {
		m = h.cfg.Metrics()
	}
	if t := m.Transport; t != nil {
		out.Transport = &TransportStatus{
			StreamsAccepted: t.StreamsAccepted, StreamsRejected: t.StreamsRejected, FramesMalformed: t.FramesMalformed,
			MessagesMisaddressed: t.MessagesMisaddressed, DroppedUnknownPeer: t.DroppedUnknownPeer,
		}
	}
	var swim map[consensus.NodeID]MemberHealth
	if sw := st.Membership; sw != nil {
		out.SWIM = &SWIMStatus{Health: sw.Health, HealthMax: sw.HealthMax, Incarnation: sw.Incarnation}
		swim = make(map[consensus.NodeID]MemberHealth, len(sw.Members))
		for _, mh := range sw.Members {
			swim[mh.ID] = mh
		}
	}
	for _, mb := range h.cfg.Backend.Members() {
		ms := MemberStatus{ID: hexID(uint64(mb.ID)), Name: mb.Name, PeerURLs: mb.PeerURLs, ClientURLs: mb.ClientURLs}
		if mh, ok := swim[mb.ID]; ok {
			ms.SWIMState, ms.SWIMIncarnation = mh.State, &mh.Incarnation
		}
		switch {
		case mb.ID == st.MemberID:
			ms.Role = rs.Role.String()
		case mb.ID == rs.Leader:
			ms.Role = consensus.RoleLeader.String()
		case rs.Role == consensus.RolePeer:
			ms.Role = consensus.RolePeer.String()
		case rs.Leader != consensus.None:
			ms.Role = consensus.RoleFollower.String()
		default:
			ms.Role = "unknown"
		}
		if p, ok := rs.Progress[mb.ID]; ok && rs.Role == consensus.RoleLeader {
			lag := rs.LastIndex - min(p.Match, rs.LastIndex)
			ms.Match, ms.Next, ms.State, ms.Lag = &p.Match, &p.Next, p.State, &lag
		}
		if rtt, ok := m.PeerRoundTrip[mb.ID]; ok && rtt.Count > 0 {
			mean := rtt.Sum.Seconds() / float64(rtt.Count)
			ms.RoundTripMeanSeconds = &mean
		}
		if m.Transport != nil {
			if ps, ok := m.Transport.Peers[mb.ID]; ok {
				ms.Peer = peerStatus(ps)
			}
		}
		out.Members = append(out.Members, ms)
	}
	return out
}

func peerStatus(ps transport.PeerStats) *PeerStatus {
	return &PeerStatus{
		Addr: ps.Addr, Connected: ps.Connected, QueueLen: ps.QueueLen, QueueBytes: ps.QueueBytes,
		MessagesSent: ps.MessagesSent, BytesSent: ps.BytesSent,
		MessagesReceived: ps.MessagesReceived, BytesReceived: ps.BytesReceived,
		Dropped:       ps.DroppedQueueFull + ps.DroppedTooLarge + ps.DroppedInvalid + ps.DroppedUnreachable,
		StreamsOpened: ps.StreamsOpened, Reconnects: ps.Reconnects, DialFailures: ps.DialFailures,
	}
}

func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away
}

// Metric names. Counters end in _total, durations are in seconds and sizes
// in bytes. Peer metrics are labelled with the peer's member ID in hex:
// "to" for what this member sends, "from" for what it receives, as etcd
// labels them.
var (
	descInfo = prometheus.NewDesc("synod_server_info",
		"This member: always 1, with its identity in labels.",
		[]string{"name", "member_id", "cluster_id", "protocol", "version"}, nil)
	descHasLeader = prometheus.NewDesc("synod_server_has_leader",
		"1 if this member knows a leader (or the protocol has none), else 0.", nil, nil)
	descIsLeader = prometheus.NewDesc("synod_server_is_leader",
		"1 if this member is the leader, else 0.", nil, nil)
	descTerm = prometheus.NewDesc("synod_server_term",
		"The replica's current term (ballot).", nil, nil)
	descCommit = prometheus.NewDesc("synod_server_commit_index",
		"The highest log index known committed.", nil, nil)
	descApplied = prometheus.NewDesc("synod_server_applied_index",
		"The highest log index applied to the state machine.", nil, nil)
	descRevision = prometheus.NewDesc("synod_server_revision",
		"The key-value store's current revision.", nil, nil)
	descWALSize = prometheus.NewDesc("synod_disk_wal_size_bytes",
		"Size of the write-ahead log on disk (preallocated segments count in full).", nil, nil)
	descDBSize = prometheus.NewDesc("synod_disk_db_size_bytes",
		"Size of the key-value store on disk.", nil, nil)
	descProposalsCommitted = prometheus.NewDesc("synod_server_proposals_committed_total",
		"Proposals made on this member that committed and were applied.", nil, nil)
	descProposalsFailed = prometheus.NewDesc("synod_server_proposals_failed_total",
		"Proposals made on this member that failed (timeout, queue full, dropped, lost leadership, stopped).", nil, nil)
	descLeaderChanges = prometheus.NewDesc("synod_server_leader_changes_seen_total",
		"Times this member saw a new leader.", nil, nil)
	descWALSync = prometheus.NewDesc("synod_disk_wal_fsync_duration_seconds",
		"Time to append and fsync one batch of records to the write-ahead log.", nil, nil)
	descApply = prometheus.NewDesc("synod_server_apply_duration_seconds",
		"Time to apply one batch of committed entries to the key-value store.", nil, nil)
	descPeerRTT = prometheus.NewDesc("synod_network_peer_round_trip_time_seconds",
		"Heartbeat to heartbeat-response time per peer, measured by the leader's loop (an upper bound on the network round trip).",
		[]string{"to"}, nil)
	descPeerSentBytes = prometheus.NewDesc("synod_network_peer_sent_bytes_total",
		"Bytes sent to a peer.", []string{"to"}, nil)
	descPeerReceivedBytes = prometheus.NewDesc("synod_network_peer_received_bytes_total",
		"Bytes received from a peer.", []string{"from"}, nil)
	descPeerSentMessages = prometheus.NewDesc("synod_network_peer_sent_messages_total",
		"Messages sent to a peer.", []string{"to"}, nil)
	descPeerReceivedMessages = prometheus.NewDesc("synod_network_peer_received_messages_total",
		"Messages received from a peer.", []string{"from"}, nil)
	descPeerSentFailures = prometheus.NewDesc("synod_network_peer_sent_failures_total",
		"Messages to a peer dropped before sending (queue full, too large, unreachable).", []string{"to"}, nil)
	descPeerConnected = prometheus.NewDesc("synod_network_peer_connected",
		"1 if the outbound stream to a peer is open, else 0.", []string{"to"}, nil)
	descStreamsRejected = prometheus.NewDesc("synod_network_peer_streams_rejected_total",
		"Inbound peer streams refused (wrong cluster, unknown node, bad hello).", nil, nil)
	descSWIMHealth = prometheus.NewDesc("synod_swim_health_score",
		"This member's SWIM local health score (Lifeguard): 0 while it answers probes in time, up to its maximum as it misses them.",
		nil, nil)
	descSWIMMembers = prometheus.NewDesc("synod_swim_members",
		"Members in each SWIM state as this member sees them, itself included.", []string{"state"}, nil)
)

// collector turns the backend's status and the node's metrics into
// Prometheus metrics at each scrape.
type collector struct{ cfg HTTPConfig }

func newCollector(cfg HTTPConfig) *collector { return &collector{cfg: cfg} }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descHasLeader, descIsLeader, descTerm, descCommit, descApplied,
		descRevision, descWALSize, descDBSize, descSWIMHealth, descSWIMMembers} {
		ch <- d
	}
	if c.cfg.Metrics == nil {
		return
	}
	for _, d := range []*prometheus.Desc{descProposalsCommitted, descProposalsFailed, descLeaderChanges, descWALSync,
		descApply, descPeerRTT, descPeerSentBytes, descPeerReceivedBytes, descPeerSentMessages,
		descPeerReceivedMessages, descPeerSentFailures, descPeerConnected, descStreamsRejected} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	st := c.cfg.Backend.Status()
	rs := st.Replica
	gauge(descInfo, 1, st.Name, hexID(uint64(st.MemberID)), hexID(st.ClusterID), st.Protocol, Version)
	gauge(descHasLeader, b2f(rs.Leader != consensus.None || rs.Role == consensus.RolePeer))
	gauge(descIsLeader, b2f(rs.Role == consensus.RoleLeader))
	gauge(descTerm, float64(rs.Term))
	gauge(descCommit, float64(rs.Commit))
	gauge(descApplied, float64(rs.Applied))
	gauge(descRevision, float64(st.Revision))
	gauge(descWALSize, float64(st.WALSizeBytes))
	gauge(descDBSize, float64(st.DBSizeBytes))
	if sw := st.Membership; sw != nil {
		gauge(descSWIMHealth, float64(sw.Health))
		// Every known state, counted or not, so that a state's series
		// drops to 0 instead of vanishing; and any state a newer node adds.
		counts := make(map[string]int, len(swimStates))
		for _, s := range swimStates {
			counts[s] = 0
		}
		for _, mh := range sw.Members {
			counts[mh.State]++
		}
		for _, s := range slices.Sorted(maps.Keys(counts)) {
			gauge(descSWIMMembers, float64(counts[s]), s)
		}
	}
	if c.cfg.Metrics == nil {
		return
	}
	m := c.cfg.Metrics()
	counter(descProposalsCommitted, m.ProposalsCommitted)
	counter(descProposalsFailed, m.ProposalsFailed)
	counter(descLeaderChanges, m.LeaderChanges)
	ch <- constHistogram(descWALSync, m.WALSyncLatency)
	ch <- constHistogram(descApply, m.ApplyLatency)
	for _, id := range slices.Sorted(maps.Keys(m.PeerRoundTrip)) {
		ch <- constHistogram(descPeerRTT, m.PeerRoundTrip[id], hexID(uint64(id)))
	}
	if t := m.Transport; t != nil {
		counter(descStreamsRejected, t.StreamsRejected)
		for id, ps := range t.Peers {
			peer := hexID(uint64(id))
			counter(descPeerSentBytes, ps.BytesSent, peer)
			counter(descPeerReceivedBytes, ps.BytesReceived, peer)
			counter(descPeerSentMessages, ps.MessagesSent, peer)
			counter(descPeerReceivedMessages, ps.MessagesReceived, peer)
			counter(descPeerSentFailures, ps.DroppedQueueFull+ps.DroppedTooLarge+ps.DroppedUnreachable+ps.DroppedInvalid, peer)
			gauge(descPeerConnected, b2f(ps.Connected), peer)
		}
	}
}

func constHistogram(d *prometheus.Desc, h node.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Buckets))
	for _, b := range h.Buckets {
		buckets[b.UpperBound.Seconds()] = b.Count
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

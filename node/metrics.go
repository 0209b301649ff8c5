package node

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/transport"
)

// Instrumentation. The loop calls a few hooks here (around the WAL sync
// and the state machine's batch apply, on sending and receiving messages,
// after each status change), and Propose reports how it ended. Metrics
// returns plain numbers; the node depends on no metrics library, and the
// server translates the snapshot into Prometheus collectors.

// latencyBuckets is the number of finite histogram buckets; their upper
// bounds are latencyBucketMin × 2^i: 100µs, 200µs, ... about 6.5s.
const (
	latencyBuckets   = 17
	latencyBucketMin = 100 * time.Microsecond
)

// rttPendingMax is how long a heartbeat waits for its response before it
// no longer counts (the heartbeat or its response was lost).
const rttPendingMax = 5 * time.Second

// Metrics is a snapshot of the node's counters since Start.
type Metrics struct {
	// ProposalsCommitted counts Propose calls that committed and were
	// applied (including requests the state machine then rejected, such
	// as a put with ignore_value on a missing key).
	ProposalsCommitted uint64
	// ProposalsFailed counts Propose calls that ended in any other error
	// except "not the leader" (which the server forwards) and an invalid
	// request: a timeout or a caller that gave up, a full queue, the
	// replica dropping the proposal, a lost leadership, the node stopping.
	ProposalsFailed uint64
	// LeaderChanges counts the times this member saw a new leader (itself
	// included), from no leader or from another one.
	LeaderChanges uint64
	// WALSyncLatency is the time to append and fsync one Ready's records
	// to the write-ahead log; ApplyLatency the time to apply one batch of
	// committed entries to the key-value store (one synced Pebble batch).
	WALSyncLatency Histogram
	ApplyLatency   Histogram
	// PeerRoundTrip is, per peer, the time from sending it a heartbeat to
	// receiving its response, as the node's loop sees them: it includes
	// the transport's queueing and the loop's, so it is an upper bound on
	// the network round trip. Only a leader sends heartbeats; a follower's
	// histograms stay as they were when it last led. It stays empty for a
	// protocol without a heartbeat and answer pair (see protocol.go).
	PeerRoundTrip map[consensus.NodeID]Histogram
	// Transport holds the peer transport's counters (bytes and messages
	// sent and received per peer, drops, connections) when the node runs
	// the gRPC transport, or one that has Stats; nil otherwise.
	Transport *transport.Stats
}

// Histogram is a snapshot of a latency histogram.
type Histogram struct {
	// Count is the number of observations; Sum their total.
	Count uint64
	Sum   time.Duration
	// Buckets are cumulative, in increasing order of UpperBound:
	// Buckets[i].Count observations took at most Buckets[i].UpperBound.
	// Observations above the last bound are counted only in Count.
	Buckets []Bucket
}

// Bucket is one cumulative histogram bucket.
type Bucket struct {
	UpperBound time.Duration
	Count      uint64
}

// Metrics returns a snapshot of the node's counters. It is safe to call
// concurrently, and cheap enough for every metrics scrape.
func (n *Node) Metrics() Metrics { return n.metrics.snapshot(n.tr) }

// snapshot returns the counters, with tr's statistics if it keeps any.
func (m *metrics) snapshot(tr transport.Transport) Metrics {
	out := Metrics{
		ProposalsCommitted: m.proposalsCommitted.Load(),
		ProposalsFailed:    m.proposalsFailed.Load(),
		LeaderChanges:      m.leaderChanges.Load(),
		WALSyncLatency:     m.walSync.snapshot(),
		ApplyLatency:       m.apply.snapshot(),
		PeerRoundTrip:      map[consensus.NodeID]Histogram{},
	}
	m.rttMu.Lock()
	for id, h := range m.rtt {
		out.PeerRoundTrip[id] = h.snapshot()
	}
	m.rttMu.Unlock()
	if s, ok := tr.(interface{ Stats() transport.Stats }); ok {
		st := s.Stats()
		out.Transport = &st
	}
	return out
}

// metrics holds the node's counters. Its zero value is ready; its methods
// are safe for concurrent use.
type metrics struct {
	proposalsCommitted atomic.Uint64
	proposalsFailed    atomic.Uint64
	leaderChanges      atomic.Uint64
	walSync, apply     histogram

	// heartbeat and heartbeatResp are the protocol's message types whose
	// round trip approximates a peer's round-trip time; empty: none. Set
	// before the loop starts.
	heartbeat, heartbeatResp string

	rttMu sync.Mutex
	// rtt holds a histogram per peer heartbeated; rttSent the send time
	// of the oldest heartbeat to each peer not yet answered.
	rtt     map[consensus.NodeID]*histogram
	rttSent map[consensus.NodeID]time.Time
}

// persist appends and syncs a Ready's records, timing it.
func (n *Node) persist(recs []consensus.Record, syncOptional bool) error {
	if len(recs) == 0 {
		return nil
	}
	start := time.Now()
	err := n.wal.Persist(recs, syncOptional)
	n.metrics.walSync.observe(time.Since(start))
	return err
}

// applyBatch applies committed entries to the key-value store, timing it.
func (n *Node) applyBatch(ents []consensus.Entry) ([]kv.Result, error) {
	start := time.Now()
	results, err := n.kv.ApplyBatch(ents)
	n.metrics.apply.observe(time.Since(start))
	return results, err
}

// proposed records how a Propose call ended, given its results. A call
// refused as invalid returns before it is counted.
func (m *metrics) proposed(res *kv.Result, err *error) {
	switch {
	case *err == nil || res.Err != nil:
		m.proposalsCommitted.Add(1)
	case errors.Is(*err, consensus.ErrNotLeader):
	default:
		m.proposalsFailed.Add(1)
	}
}

// statusChanged counts leader changes.
func (m *metrics) statusChanged(prev, st consensus.Status) {
	if st.Leader != consensus.None && (st.Leader != prev.Leader || st.Term != prev.Term && st.Role == consensus.RoleLeader) {
		m.leaderChanges.Add(1)
	}
}

// sent notes the heartbeats among msgs, about to be sent.
func (m *metrics) sent(msgs []consensus.Message) {
	if m.heartbeat == "" {
		return
	}
	var now time.Time
	for i := range msgs {
		if msgs[i].Payload == nil || msgs[i].Payload.MessageType() != m.heartbeat {
			continue
		}
		if now.IsZero() {
			now = time.Now()
			m.rttMu.Lock()
			defer m.rttMu.Unlock()
			if m.rttSent == nil {
				m.rttSent = map[consensus.NodeID]time.Time{}
				m.rtt = map[consensus.NodeID]*histogram{}
			}
		}
		if at, ok := m.rttSent[msgs[i].To]; !ok || now.Sub(at) > rttPendingMax {
			m.rttSent[msgs[i].To] = now
		}
	}
}

// received observes a peer's round trip when msg answers a heartbeat.
func (m *metrics) received(msg consensus.Message) {
	if m.heartbeatResp == "" || msg.Payload == nil || msg.Payload.MessageType() != m.heartbeatResp {
		return
	}
	m.rttMu.Lock()
	defer m.rttMu.Unlock()
	at, ok := m.rttSent[msg.From]
	if !ok {
		return
	}
	delete(m.rttSent, msg.From)
	if d := time.Since(at); d <= rttPendingMax {
		h := m.rtt[msg.From]
		if h == nil {
			h = &histogram{}
			m.rtt[msg.From] = h
		}
		h.observe(d)
	}
}

// histogram counts latencies in exponential buckets. Its zero value is
// ready; observe and snapshot are safe for concurrent use (a snapshot
// taken during an observation may count it in some fields only).
type histogram struct {
	// counts[i] counts observations in (bound(i-1), bound(i)];
	// counts[latencyBuckets] those above the last bound.
	counts [latencyBuckets + 1]atomic.Uint64
	sumNs  atomic.Int64
}

func bucketBound(i int) time.Duration { return latencyBucketMin << i }

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < latencyBuckets && d > bucketBound(i) {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Sum: time.Duration(h.sumNs.Load()), Buckets: make([]Bucket, latencyBuckets)}
	var cum uint64
	for i := range latencyBuckets {
		cum += h.counts[i].Load()
		out.Buckets[i] = Bucket{UpperBound: bucketBound(i), Count: cum}
	}
	out.Count = cum + h.counts[latencyBuckets].Load()
	return out
}

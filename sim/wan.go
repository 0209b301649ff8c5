package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/epaxos"
	"github.com/synod-io/synod/paxos"
	"github.com/synod-io/synod/raft"
)

// Wide-area runs: a latency matrix (NetworkConfig.Matrix) places one node
// at each site, and the constants below fix the time scale.
//
// One millisecond is WANUnitsPerMs = 10 units, so a unit is 0.1 ms and a
// tick (UnitsPerTick) is 100 ms. At that scale the protocols' default
// timers already read as wide-area settings: Raft's and Multi-Paxos's
// heartbeat is 100 ms and their election timeout 1–2 s (four to eight
// times the largest RTT of the shipped matrix, 257 ms), and a client waits
// 4 s before retrying elsewhere. Only timers that must outlast a round
// trip to the farthest site are raised, per run, by WANProtocol. The
// commit path of every protocol waits for messages, never for a tick, so
// the coarse tick does not blur the latencies measured.
const (
	WANUnitsPerMs = 10
	// WANClientLatencyUnits is the one-way latency between a client and
	// the node at its own site: 0.5 ms, a round trip within a region.
	WANClientLatencyUnits = 5
	// WANJitterUnits is the most added to a message's latency: 1 ms.
	WANJitterUnits = 10
)

// tickMs is a tick in milliseconds at the wide-area scale.
const tickMs = float64(UnitsPerTick) / WANUnitsPerMs

// maxRTTTicks is the largest RTT of m, in ticks, rounded up.
func maxRTTTicks(m *LatencyMatrix) int {
	var hi float64
	for _, row := range m.RTTMs {
		for _, v := range row {
			hi = max(hi, v)
		}
	}
	return int(math.Ceil(hi / tickMs))
}

// wanElectionTicks is the base election timeout of leader-based protocols
// on m: the default (10 ticks, 1 s), or four of the largest RTTs if that
// is longer, so that a pre-vote and a vote round fit with room to spare.
func wanElectionTicks(m *LatencyMatrix) int {
	return max(10, 4*maxRTTTicks(m))
}

// WANProtocol returns the protocol called name (see ProtocolNames) with
// its timers set for the sites of m at the WANUnitsPerMs scale; the
// protocols' defaults are not changed.
//
//   - Raft, Multi-Paxos: election timeout wanElectionTicks (at least 1 s).
//     With leader set, every other node's election timeout is three times
//     as long, so that leader campaigns first and, with no faults, wins
//     the first election and keeps leading: that places the leader at a
//     chosen site without any hook into the core. Multi-Paxos resends an
//     unchosen slot after two of the largest RTTs rather than 300 ms.
//   - EPaxos: a command leader resends and stops waiting for a fast
//     quorum after two of the largest RTTs (not 400 ms), and suspects a
//     leader after 25 of those.
func WANProtocol(name string, m *LatencyMatrix, leader consensus.NodeID) (Protocol, error) {
	retry := max(2*maxRTTTicks(m), 1)
	election := wanElectionTicks(m)
	electionOf := func(id consensus.NodeID) int {
		if leader != consensus.None && id != leader {
			return 3 * election
		}
		return election
	}
	switch name {
	case "raft":
		return Raft(func(c *raft.Config) {
			c.ElectionTimeoutTicks = electionOf(c.ID)
		}), nil
	case "multipaxos":
		return MultiPaxos(func(c *paxos.Config) {
			c.ElectionTimeoutTicks = electionOf(c.ID)
			c.AcceptRetryTicks = max(c.AcceptRetryTicks, retry)
		}), nil
	case "epaxos":
		return EPaxos(func(c *epaxos.Config) {
			c.RetryTicks = max(c.RetryTicks, retry)
			c.RecoveryTimeoutTicks = max(c.RecoveryTimeoutTicks, 25*c.RetryTicks)
		}), nil
	}
	_, err := ProtocolByName(name)
	return Protocol{}, err
}

// UseLatencyMatrix makes cfg a wide-area run on m: one node per site, the
// WANUnitsPerMs scale, WANJitterUnits and WANClientLatencyUnits. It
// changes nothing else (faults, workload and protocol stay as they are).
func UseLatencyMatrix(cfg *Config, m *LatencyMatrix) {
	cfg.Nodes = m.Len()
	cfg.Network.Matrix = m
	cfg.Network.UnitsPerMs = WANUnitsPerMs
	cfg.Network.JitterUnits = WANJitterUnits
	cfg.Workload.ClientLatencyUnits = WANClientLatencyUnits
}

// WANSpec is one run of the wide-area experiment: one node at each site of
// Matrix, clients at every site, no faults.
type WANSpec struct {
	Matrix *LatencyMatrix
	// Protocol is "raft", "multipaxos" or "epaxos".
	Protocol string
	// LeaderSite is where a leader-based protocol's leader should be (see
	// WANProtocol); empty: the first site.
	LeaderSite string
	// Conflict is the share of commands on the one hot key, in [0, 1];
	// every other command goes to a key private to its client.
	Conflict float64
	// ClientsPerSite closed-loop clients at each site, all writing.
	ClientsPerSite int
	// Measure is the simulated time measured, after a warm-up in which the
	// leader is elected.
	Measure time.Duration
	Seed    int64
}

// WANConfig builds the Config of one wide-area run. Clients issue puts
// back to back (no think time), each at its own site's node first; under
// a leader-based protocol the first refusal redirects a client to the
// leader, where it stays. Operations issued in the warm-up (three base
// election timeouts, time for the chosen node to be elected) are left out
// of the latencies. Disks are off (no fsync latency is modelled) and so
// are all faults; the run is still checked (linearizability, agreement).
func WANConfig(s WANSpec) (Config, error) {
	m := s.Matrix
	if m == nil {
		return Config{}, fmt.Errorf("sim: WANSpec.Matrix is nil")
	}
	if err := m.Validate(); err != nil {
		return Config{}, err
	}
	leaderSite := 0
	if s.LeaderSite != "" {
		i, ok := m.Site(s.LeaderSite)
		if !ok {
			return Config{}, fmt.Errorf("sim: leader site %q is not one of the sites (%v)", s.LeaderSite, m.Sites)
		}
		leaderSite = i
	}
	if s.Conflict < 0 || s.Conflict > 1 {
		return Config{}, fmt.Errorf("sim: conflict rate %v; want 0..1", s.Conflict)
	}
	if s.ClientsPerSite < 1 {
		return Config{}, fmt.Errorf("sim: %d clients per site; want at least 1", s.ClientsPerSite)
	}
	if s.Measure < 100*time.Millisecond {
		return Config{}, fmt.Errorf("sim: measuring %v of simulated time; want at least 100ms", s.Measure)
	}
	p, err := WANProtocol(s.Protocol, m, consensus.NodeID(leaderSite+1))
	if err != nil {
		return Config{}, err
	}
	cfg := DefaultConfig(s.Seed, p)
	cfg.Network = NetworkConfig{}
	UseLatencyMatrix(&cfg, m)
	cfg.Faults = FaultConfig{CrashDowntimeMaxTicks: 1, PartitionMaxTicks: 1, ClogMaxTicks: 1, PauseMaxTicks: 1}
	cfg.Disk = DiskConfig{}
	cfg.Workload = WorkloadConfig{
		Clients:     s.ClientsPerSite * m.Len(),
		Keys:        1,
		HotKey:      s.Conflict,
		PrivateKeys: true,
		PutWeight:   1,
		// Long enough that no attempt times out (which would send the
		// client to another site's node).
		TimeoutTicks:       100,
		AttemptsMax:        8,
		ClientLatencyUnits: WANClientLatencyUnits,
	}
	measure := int64(math.Ceil(float64(s.Measure.Milliseconds()) / tickMs))
	cfg.WarmupTicks = int64(3 * wanElectionTicks(m))
	cfg.FaultTicks = 0
	cfg.LivenessTicks = cfg.WarmupTicks + measure
	return cfg, cfg.Validate()
}

// WANPrediction is the latency, in milliseconds, that a protocol's quorum
// structure predicts for the clients of one site from the matrix alone,
// measured as SiteLatency measures (from the request reaching the site's
// node). It ignores jitter, queueing and execution waits.
type WANPrediction struct {
	// CommitMs: until the command's leader knows it committed.
	// Leader-based: half the RTT to the leader's site (the request's way
	// there) plus the leader's RTT to the nearest majority, its
	// (Majority(N)-1)-th closest other replica. EPaxos, fast path: the
	// RTT to the (FastQuorum(N)-1)-th closest other replica.
	CommitMs float64
	// ExecuteMs: until the client has the result. Leader-based: the full
	// RTT to the leader's site plus the leader's majority RTT (the usual
	// "client to leader, leader to majority" figure), plus the local hop
	// back to the client. EPaxos: the commit plus that local hop
	// (execution waits for nothing when nothing conflicts).
	ExecuteMs float64
	// SlowCommitMs and SlowExecuteMs are EPaxos's slow path, taken when a
	// conflict changed the attributes: a PreAccept round and an Accept
	// round, each to the nearest majority. Equal to CommitMs and ExecuteMs
	// for leader-based protocols.
	SlowCommitMs, SlowExecuteMs float64
}

// PredictWAN returns the prediction for the clients at site (an index of
// m's sites) under a leaderless protocol (EPaxos) or a leader-based one
// led from leaderSite.
func PredictWAN(m *LatencyMatrix, leaderless bool, site, leaderSite int) WANPrediction {
	n := m.Len()
	local := float64(WANClientLatencyUnits) / WANUnitsPerMs
	if leaderless {
		fast := m.kthClosestRTT(site, epaxos.FastQuorum(n)-1)
		slow := 2 * m.kthClosestRTT(site, consensus.Majority(n)-1)
		return WANPrediction{CommitMs: fast, ExecuteMs: fast + local, SlowCommitMs: slow, SlowExecuteMs: slow + local}
	}
	toLeader := m.RTT(site, leaderSite)
	majority := m.kthClosestRTT(leaderSite, consensus.Majority(n)-1)
	p := WANPrediction{CommitMs: toLeader/2 + majority, ExecuteMs: toLeader + majority + local}
	p.SlowCommitMs, p.SlowExecuteMs = p.CommitMs, p.ExecuteMs
	return p
}

package sim

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/sim/check"
)

// CAPConfig is the partition scenario of synod sim cap, run here against
// a consensus protocol (package gossipsim runs the same scenario against
// the gossip store): Nodes replicas, of which the last Minority are cut
// off from the others from tick PartitionAtTicks for PartitionTicks
// ticks; ClientsPerSide clients on each side put and get Keys keys, and
// while the partition lasts they reach only the replicas of their own
// side (a request to the other side is lost, and the client times out
// and tries another replica). After healing the run goes on for
// AfterTicks ticks; clients stop issuing operations halfway through, so
// that the replicas settle.
type CAPConfig struct {
	Seed                                         int64
	Protocol                                     Protocol
	Nodes, Minority                              int
	ClientsPerSide, Keys                         int
	PartitionAtTicks, PartitionTicks, AfterTicks int64
}

// DefaultCAPConfig is Raft on five replicas, two of them cut off for 600
// ticks, two clients on each side over four keys.
func DefaultCAPConfig(seed int64) CAPConfig {
	return CAPConfig{Seed: seed, Protocol: Raft(), Nodes: 5, Minority: 2, ClientsPerSide: 2, Keys: 4,
		PartitionAtTicks: 100, PartitionTicks: 600, AfterTicks: 600}
}

// CAPSide is what the clients of one side did with the operations they
// started while the partition lasted.
type CAPSide struct {
	Nodes         []consensus.NodeID
	Writes, Reads int
	// WritesAccepted and ReadsServed completed before the partition
	// healed; Refused gave up without effect (refused by every replica
	// they reached); TimedOut gave up with an unknown outcome (a write that
	// timed out may yet apply); AfterHeal completed only once the
	// partition had healed.
	WritesAccepted, ReadsServed  int
	Refused, TimedOut, AfterHeal int
}

// CAPResult is a consensus protocol's outcome of the CAP scenario.
type CAPResult struct {
	Protocol           string
	Majority, Minority CAPSide
	// Leader is the last replica seen becoming leader.
	Leader consensus.NodeID
	// Agree reports whether every replica's state machine holds the same
	// state at the end.
	Agree bool
	// Final is each key's value at the end ("" if never written), Winner
	// which side's client wrote it ("majority", "minority" or "").
	Final, Winner map[string]string
	// Linearizability is porcupine's verdict on the whole history.
	Linearizability string
	Violations      []*check.Violation
	Wall            time.Duration
}

// RunCAP runs the CAP scenario: the majority side elects a leader (or
// keeps it) and commits; the minority side can neither commit a write nor
// serve a linearizable read, so its clients' operations are refused or
// time out until the partition heals.
func RunCAP(c CAPConfig) (*CAPResult, error) {
	if c.Nodes < 3 || c.Nodes > 64 || c.Minority < 1 || 2*c.Minority >= c.Nodes {
		return nil, fmt.Errorf("sim: CAP scenario with %d nodes and a minority of %d; want 3..64 nodes and 1 <= minority < nodes/2", c.Nodes, c.Minority)
	}
	if c.ClientsPerSide < 1 || c.ClientsPerSide > 100 || c.Keys < 1 || c.PartitionAtTicks < 1 || c.PartitionTicks < 1 || c.AfterTicks < 2 {
		return nil, fmt.Errorf("sim: CAP scenario: want 1..100 clients per side, keys >= 1, and positive tick counts")
	}
	start := time.Now()
	cfg := DefaultConfig(c.Seed, c.Protocol)
	cfg.Nodes = c.Nodes
	heal := c.PartitionAtTicks + c.PartitionTicks
	cfg.FaultTicks = heal // the quiet phase heals the partition
	cfg.LivenessTicks = c.AfterTicks
	cfg.Network.Loss, cfg.Network.Duplicate, cfg.Network.Reorder = 0, 0, 0
	cfg.Faults = FaultConfig{CrashDowntimeMaxTicks: 1, PartitionMaxTicks: 1, ClogMaxTicks: 1, PauseMaxTicks: 1}
	d := &cfg.Disk
	d.SyncFail, d.SlowSync, d.Faulty, d.ReadBitFlip, d.Corrupt, d.CrashMidPersist, d.CrashAtDiskOp = 0, 0, 0, 0, 0, 0, 0
	cfg.Workload = WorkloadConfig{Clients: 2 * c.ClientsPerSide, Keys: c.Keys, PutWeight: 1, GetWeight: 1,
		ThinkTicksMax: 10, TimeoutTicks: 40, AttemptsMax: 4, ClientLatencyUnits: 100}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := newWorld(cfg)
	if err := w.boot(); err != nil {
		return nil, err
	}
	res := &CAPResult{Protocol: c.Protocol.Name, Final: map[string]string{}, Winner: map[string]string{}}
	nodeMinority := func(i int) bool { return i >= c.Nodes-c.Minority }
	clientMinority := func(ci int) bool { return ci >= c.ClientsPerSide }
	var links [][2]int
	for i := range c.Nodes {
		if nodeMinority(i) {
			res.Minority.Nodes = append(res.Minority.Nodes, consensus.NodeID(i+1))
		} else {
			res.Majority.Nodes = append(res.Majority.Nodes, consensus.NodeID(i+1))
		}
		for j := range c.Nodes {
			if nodeMinority(i) != nodeMinority(j) {
				links = append(links, [2]int{i, j})
			}
		}
	}
	startU, healU := c.PartitionAtTicks*UnitsPerTick, heal*UnitsPerTick
	stopU := healU + c.AfterTicks/2*UnitsPerTick
	endU := (heal + c.AfterTicks) * UnitsPerTick
	started := map[*clientOp]int64{}
	partitioned := false
	for w.queue.len() > 0 && len(w.violations) == 0 {
		ev := w.queue.pop()
		if ev.at > endU {
			break
		}
		w.now = ev.at
		if !partitioned && w.now >= startU && w.now < healU {
			partitioned = true
			w.block(links, heal-w.now/UnitsPerTick, fmt.Sprintf("CAP partition %v | %v", res.Majority.Nodes, res.Minority.Nodes))
		}
		ci := int32(-1)
		switch ev.kind {
		case evClientRequest:
			ci = ev.req.client
			if w.now >= startU && w.now < healU && clientMinority(int(ci)) != nodeMinority(int(ev.node)) {
				continue // the client cannot reach that side: it times out
			}
		case evClientNext:
			ci = ev.client
			if w.now >= stopU {
				continue
			}
		case evClientReply, evClientTimeout:
			ci = ev.client
		}
		var prev *clientOp
		hist := len(w.history)
		if ci >= 0 {
			prev = w.clients[ci].op
		}
		w.handle(ev)
		if ci < 0 {
			continue
		}
		cur := w.clients[ci].op
		if cur != nil && cur != prev {
			started[cur] = w.now
		}
		if prev == nil || cur == prev {
			continue
		}
		at, ok := started[prev]
		delete(started, prev)
		if !ok || at < startU || at >= healU {
			continue
		}
		side := &res.Majority
		if clientMinority(int(ci)) {
			side = &res.Minority
		}
		write := prev.input.Kind != check.KVGet
		if write {
			side.Writes++
		} else {
			side.Reads++
		}
		switch {
		case len(w.history) > hist && w.history[len(w.history)-1].Output.Unknown:
			side.TimedOut++
		case len(w.history) == hist:
			side.Refused++
		case w.now >= healU:
			side.AfterHeal++
		case write:
			side.WritesAccepted++
		default:
			side.ReadsServed++
		}
	}
	w.now = endU
	w.finish()
	w.res.Wall = time.Since(start)
	res.Wall = w.res.Wall
	res.Leader = w.res.LastLeader
	res.Linearizability = w.res.Linearizability
	res.Violations = w.res.Violations
	res.Agree = true
	var first *node
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		if first == nil {
			first = n
		} else if n.store.Hash() != first.store.Hash() {
			res.Agree = false
		}
	}
	if first != nil {
		for i := range c.Keys {
			key := "k" + strconv.Itoa(i)
			v := ""
			if r := first.store.Read(kv.Get(key)); len(r.KVs) > 0 {
				v = string(r.KVs[0].Value)
			}
			res.Final[key], res.Winner[key] = v, ""
			// Values are "c<client ID>.<seq>", client IDs from 1.
			if id, _, ok := strings.Cut(strings.TrimPrefix(v, "c"), "."); ok {
				if n, err := strconv.Atoi(id); err == nil {
					res.Winner[key] = map[bool]string{false: "majority", true: "minority"}[clientMinority(n-1)]
				}
			}
		}
	}
	return res, nil
}

package gossipsim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/sim/check"
)

// CAPConfig is the partition scenario of synod sim cap, as run against
// the gossip store (sim.RunCAP runs it against Raft): Nodes nodes, of
// which the last Minority are cut off from the others (both directions)
// from tick PartitionAtTicks for PartitionTicks ticks; ClientsPerSide
// clients on each side read and write Keys keys at the nodes of their
// own side only, from the start until the partition heals; then the run
// goes on for AfterTicks ticks.
type CAPConfig struct {
	Seed                                         int64
	Nodes, Minority                              int
	ClientsPerSide, Keys                         int
	PartitionAtTicks, PartitionTicks, AfterTicks int64
}

// DefaultCAPConfig is five nodes, two of them cut off for a minute of
// simulated time, two clients on each side over four keys.
func DefaultCAPConfig(seed int64) CAPConfig {
	return CAPConfig{Seed: seed, Nodes: 5, Minority: 2, ClientsPerSide: 2, Keys: 4,
		PartitionAtTicks: 100, PartitionTicks: 600, AfterTicks: 600}
}

func (c *CAPConfig) validate() error {
	if c.Nodes < 2 || c.Nodes > 64 || c.Minority < 1 || 2*c.Minority >= c.Nodes {
		return fmt.Errorf("CAP scenario: %d nodes with %d on the minority side; want 2..64 nodes and a minority of at least 1", c.Nodes, c.Minority)
	}
	if c.ClientsPerSide < 1 || c.ClientsPerSide > 100 || c.Keys < 1 || c.Keys > 1000 {
		return fmt.Errorf("CAP scenario: %d clients per side over %d keys; want 1..100 clients and 1..1000 keys", c.ClientsPerSide, c.Keys)
	}
	if c.PartitionAtTicks < 1 || c.PartitionTicks < 1 || c.AfterTicks < 1 {
		return fmt.Errorf("CAP scenario: tick counts must be >= 1")
	}
	return nil
}

// CAPSide is what the clients of one side saw while the partition
// lasted: the operations they issued, and those the store accepted and
// answered (a write made, a read served) or refused.
type CAPSide struct {
	Nodes                  []consensus.NodeID
	Writes, WritesAccepted int
	Reads, ReadsServed     int
	Refused                int
	// StaleReads counts reads that returned a value other than the
	// latest written anywhere (the other side's writes were not visible).
	StaleReads int
}

// CAPResult is the gossip store's outcome of the CAP scenario.
type CAPResult struct {
	Majority, Minority CAPSide
	// ConvergedAfterTicks is how long after healing every replica held the
	// same entries; Converged says whether they did within AfterTicks.
	ConvergedAfterTicks float64
	Converged           bool
	// Final is each key's value on every replica after convergence ("" if
	// deleted or never written), and Winner which side wrote it
	// ("majority", "minority" or "").
	Final, Winner map[string]string
	// Violations are what the checkers found (the model of all writes,
	// read-your-writes, monotonic versions); none is expected.
	Violations []*check.Violation
}

// RunCAP runs the CAP scenario against the gossip store: both sides keep
// accepting reads and writes while cut off, and after healing every
// replica converges to the last write of each key by (HLC timestamp,
// origin), which the model checks.
func RunCAP(c CAPConfig) (*CAPResult, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	cfg := experimentConfig(c.Seed, c.Nodes, 0, true)
	cfg.AntiEntropyIntervalMs = 2000
	cfg.Workload = WorkloadConfig{Keys: c.Keys, PutWeight: 1, GetWeight: 1, ThinkTicksMax: 10, Home: 0.5}
	cfg.TraceTail = 40
	s, err := newScenario(cfg)
	if err != nil {
		return nil, err
	}
	w := s.w
	res := &CAPResult{Final: map[string]string{}, Winner: map[string]string{}}
	minority := func(i int) bool { return i >= c.Nodes-c.Minority }
	side := make([]bool, c.Nodes)
	var nodes [2][]int
	for i := range c.Nodes {
		side[i] = minority(i)
		if side[i] {
			nodes[1] = append(nodes[1], i)
			res.Minority.Nodes = append(res.Minority.Nodes, consensus.NodeID(i+1))
		} else {
			nodes[0] = append(nodes[0], i)
			res.Majority.Nodes = append(res.Majority.Nodes, consensus.NodeID(i+1))
		}
	}
	start, end := c.PartitionAtTicks*UnitsPerTick, (c.PartitionAtTicks+c.PartitionTicks)*UnitsPerTick
	// latest is the newest write of each key anywhere, to spot stale reads.
	latest := map[string]store.Entry{}
	clientSide := map[int]bool{}
	for k := range 2 * c.ClientsPerSide {
		onMinority := k >= c.ClientsPerSide
		cl := w.addClient(nodes[btoi(onMinority)])
		clientSide[cl.index] = onMinority
		cl.record = func(op Op) {
			for _, e := range op.Entries {
				if cur, ok := latest[e.Key]; !ok || cur.Compare(&e) < 0 {
					latest[e.Key] = e
				}
			}
			if w.now < start || w.now >= end {
				return
			}
			sd := &res.Majority
			if onMinority {
				sd = &res.Minority
			}
			switch op.Kind {
			case OpGet:
				sd.Reads++
				if !op.OK {
					sd.Refused++
					return
				}
				sd.ReadsServed++
				cur, ok := latest[op.Key]
				switch {
				case len(op.Entries) == 0 && ok && !cur.Tombstone:
					sd.StaleReads++
				case len(op.Entries) == 1 && (!ok || cur.Compare(&op.Entries[0]) != 0):
					sd.StaleReads++
				}
			default:
				sd.Writes++
				if op.OK {
					sd.WritesAccepted++
				} else {
					sd.Refused++
				}
			}
		}
	}
	if err := s.runFor(c.PartitionAtTicks); err != nil {
		return nil, err
	}
	w.partitionNow(side, c.PartitionTicks)
	if err := s.runFor(c.PartitionTicks); err != nil {
		return nil, err
	}
	w.stopClients = true
	took, ok, err := s.runUntil(c.AfterTicks, w.storeConverged)
	if err != nil {
		return nil, err
	}
	res.Converged, res.ConvergedAfterTicks = ok, float64(took)
	if ok {
		if err := s.checkStore(); err != nil {
			res.Violations = append(res.Violations, &check.Violation{Checker: "store-lww", Tick: w.tick(), Detail: err.Error()})
		}
	}
	res.Violations = append(res.Violations, w.violations...)
	for _, n := range w.nodes {
		if !n.up {
			continue
		}
		for i := range c.Keys {
			key := "k" + strconv.Itoa(i)
			v := ""
			if kv, found := n.st.Get(key); found {
				v = string(kv.Value)
			}
			res.Final[key] = v
			res.Winner[key] = ""
			if v != "" {
				// Values are "c<client>.<seq>", clients numbered from 1.
				id, _, _ := strings.Cut(strings.TrimPrefix(v, "c"), ".")
				if ci, err := strconv.Atoi(id); err == nil {
					res.Winner[key] = map[bool]string{false: "majority", true: "minority"}[clientSide[ci-1]]
				}
			}
		}
		break
	}
	return res, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Keys returns the keys of Final, sorted.
func (r *CAPResult) Keys() []string {
	keys := make([]string, 0, len(r.Final))
	for k := range r.Final {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	return keys
}

package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/synod-io/synod/sim/gossipsim"
)

// gossipProtocol is the --protocol value that runs the gossip simulator
// (package sim/gossipsim) instead of a consensus protocol.
const gossipProtocol = "gossip"

// addGossipSimFlags registers the flags that only --protocol gossip
// reads.
func addGossipSimFlags(fl *pflag.FlagSet) {
	fl.Bool("lifeguard", true, "gossip: run SWIM with the Lifeguard extensions (off: plain SWIM with suspicion)")
	fl.Int("slow-members", 0, "gossip: members that are slow but alive during the faults (messages late, short pauses)")
	fl.Float64("permanent", 0.25, "gossip: chance a crash is for good (the node never restarts)")
}

// gossipOnlyFlags are read only with --protocol gossip; consensusOnlyFlags
// never with it.
var (
	gossipOnlyFlags    = []string{"lifeguard", "slow-members", "permanent"}
	consensusOnlyFlags = []string{"liveness-ticks", "crash-leader", "asymmetric-partition", "clog", "disk", "torn-writes",
		"sync-fail", "corrupt", "faulty-disks", "hot-key", "client-timeout-ticks", "latency-matrix", "sites", "out"}
)

// checkProtocolFlags refuses flags that the chosen protocol ignores.
func checkProtocolFlags(cmd *cobra.Command, gossip bool) error {
	bad, other := consensusOnlyFlags, "a consensus protocol"
	if !gossip {
		bad, other = gossipOnlyFlags, "--protocol gossip"
	}
	for _, name := range bad {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s applies only to %s", name, other)
		}
	}
	return nil
}

// gossipConfigFor builds the configuration of one seed: drawn (swarm) or
// default, then overridden by every flag the user set.
func gossipConfigFor(cmd *cobra.Command, f *simFlags, seed int64) (gossipsim.Config, error) {
	cfg := gossipsim.DefaultConfig(seed)
	if f.swarm {
		cfg = gossipsim.Swarm(seed)
	}
	fl := cmd.Flags()
	set := fl.Changed
	if set("nodes") {
		cfg.Nodes = f.nodes
		cfg.Faults.PermanentMax = min(cfg.Faults.PermanentMax, (cfg.Nodes-1)/2)
		cfg.Faults.SlowNodes = min(cfg.Faults.SlowNodes, cfg.Nodes/2)
	}
	if set("ticks") {
		cfg.FaultTicks = f.ticks
	}
	rates := []struct {
		flag string
		dst  *float64
		val  float64
	}{
		{"loss", &cfg.Network.Loss, f.loss},
		{"duplicate", &cfg.Network.Duplicate, f.duplicate},
		{"reorder", &cfg.Network.Reorder, f.reorder},
		{"crash", &cfg.Faults.Crash, f.crash},
		{"partition", &cfg.Faults.Partition, f.partition},
		{"pause", &cfg.Faults.Pause, f.pause},
		{"clock-drift", &cfg.Faults.TickDrift, f.drift},
	}
	for _, r := range rates {
		if set(r.flag) {
			*r.dst = r.val
		}
	}
	if set("permanent") {
		cfg.Faults.Permanent, _ = fl.GetFloat64("permanent")
		if cfg.Faults.Permanent > 0 && cfg.Faults.PermanentMax == 0 {
			cfg.Faults.PermanentMax = (cfg.Nodes - 1) / 2
		}
	}
	if set("lifeguard") {
		cfg.Lifeguard, _ = fl.GetBool("lifeguard")
	}
	if set("slow-members") {
		cfg.Faults.SlowNodes, _ = fl.GetInt("slow-members")
	}
	if set("clients") {
		cfg.Workload.Clients = f.clients
	}
	if set("keys") {
		cfg.Workload.Keys = f.keys
	}
	if set("mix") {
		parts := strings.Split(f.mix, ":")
		if len(parts) < 3 || len(parts) > 4 {
			return cfg, fmt.Errorf("--mix %q: with --protocol gossip want PUT:GET:DELETE weights (the store has no compare-and-swap)", f.mix)
		}
		var w [4]int
		for i, s := range parts {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				return cfg, fmt.Errorf("--mix %q: weight %q is not a non-negative integer", f.mix, s)
			}
			w[i] = v
		}
		if w[3] != 0 {
			return cfg, fmt.Errorf("--mix %q: the gossip store has no compare-and-swap; give PUT:GET:DELETE", f.mix)
		}
		cfg.Workload.PutWeight, cfg.Workload.GetWeight, cfg.Workload.DeleteWeight = w[0], w[1], w[2]
		cfg.Workload.DeleteRangeWeight = 0
	}
	return cfg, cfg.Validate()
}

// gossipSummary aggregates the results of many gossip seeds.
type gossipSummary struct {
	runs, failed        int
	sizes               map[int]int
	ops                 gossipsim.ClientStats
	writes, lost        int
	ryw, resurrections  int
	faults              gossipsim.FaultCounts
	deadTrue, deadPart  int
	fp, fpPaused, fpSlo int
	membership, store   []float64
	memBound, storeBnd  float64 // worst ratio of time taken to bound
	ticks               float64
	messages            int
	runWall             time.Duration
	violationsByChecker map[string]int
	failedSeeds         []int64
}

func (s *gossipSummary) add(r *gossipsim.Result) {
	s.runs++
	s.sizes[r.Nodes]++
	s.ops.Puts += r.Ops.Puts
	s.ops.Deletes += r.Ops.Deletes
	s.ops.DeleteRanges += r.Ops.DeleteRanges
	s.ops.Gets += r.Ops.Gets
	s.ops.Unavailable += r.Ops.Unavailable
	s.writes += r.Writes
	s.lost += r.WritesLost
	s.ryw += r.RYWChecked
	s.resurrections += r.Resurrections
	f := &s.faults
	f.Crash += r.Faults.Crash
	f.Permanent += r.Faults.Permanent
	f.Restart += r.Faults.Restart
	f.Wiped += r.Faults.Wiped
	f.Partition += r.Faults.Partition
	f.Pause += r.Faults.Pause
	s.deadTrue += r.Deaths.True
	s.deadPart += r.Deaths.Partition
	s.fp += r.Deaths.FalsePositives
	s.fpPaused += r.Deaths.Paused
	s.fpSlo += r.Deaths.Slow
	s.ticks += r.Ticks
	s.messages += r.MessagesDelivered
	s.runWall += r.SimWall
	if r.MembershipTicks >= 0 && r.StoreTicks >= 0 {
		s.membership = append(s.membership, r.MembershipTicks)
		s.store = append(s.store, r.StoreTicks)
		s.memBound = max(s.memBound, r.MembershipTicks/float64(r.MembershipBoundTicks))
		s.storeBnd = max(s.storeBnd, r.StoreTicks/float64(r.StoreBoundTicks))
	}
	if !r.OK() {
		s.failed++
		s.failedSeeds = append(s.failedSeeds, r.Seed)
		for _, v := range r.Violations {
			s.violationsByChecker[v.Checker]++
		}
	}
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

func (s *gossipSummary) print(w io.Writer, wall time.Duration) {
	fmt.Fprintf(w, "\nsynod sim: gossip (SWIM + Lifeguard, eventually consistent store), %d run(s) in %v\n", s.runs, wall.Round(time.Millisecond))
	var sizes []int
	for n := range s.sizes {
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	var groups []string
	for _, n := range sizes {
		groups = append(groups, fmt.Sprintf("%d nodes ×%d", n, s.sizes[n]))
	}
	fmt.Fprintf(w, "  groups         %s\n", strings.Join(groups, ", "))
	o := s.ops
	fmt.Fprintf(w, "  operations     %d puts, %d deletes, %d delete-ranges, %d gets; %d at a node that was down\n",
		o.Puts, o.Deletes, o.DeleteRanges, o.Gets, o.Unavailable)
	fmt.Fprintf(w, "  writes         %d accepted, %d lost with replicas crashed for good or wiped; %d reads checked for read-your-writes\n",
		s.writes, s.lost, s.ryw)
	f := s.faults
	fmt.Fprintf(w, "  faults         %d crashes (%d for good), %d restarts (%d with the store wiped), %d partitions, %d pauses\n",
		f.Crash, f.Permanent, f.Restart, f.Wiped, f.Partition, f.Pause)
	fmt.Fprintf(w, "  deaths         %d of crashed members, %d across partitions, %d false positives (%d involving a paused member, %d a slow one)\n",
		s.deadTrue, s.deadPart, s.fp, s.fpPaused, s.fpSlo)
	slices.Sort(s.membership)
	slices.Sort(s.store)
	fmt.Fprintf(w, "  converged      after the faults stopped: membership accurate in p50 %.0f  p99 %.0f  max %.0f ticks; replicas agree in p50 %.0f  p99 %.0f  max %.0f ticks\n",
		quantile(s.membership, 0.5), quantile(s.membership, 0.99), quantile(s.membership, 1),
		quantile(s.store, 0.5), quantile(s.store, 0.99), quantile(s.store, 1))
	fmt.Fprintf(w, "  bounds         worst run used %.0f%% of its membership bound and %.0f%% of its store bound\n", 100*s.memBound, 100*s.storeBnd)
	fmt.Fprintf(w, "  resurrections  %d deleted keys came back after their tombstone expired (the store's documented caveat)\n", s.resurrections)
	if secs := s.runWall.Seconds(); secs > 0 {
		fmt.Fprintf(w, "  speed          %.0f simulated ticks and %.0f messages per wall second per run\n", s.ticks/secs, float64(s.messages)/secs)
	}
	if s.failed == 0 {
		fmt.Fprintf(w, "  verdict        no violations\n")
		return
	}
	var kinds []string
	for k, n := range s.violationsByChecker {
		kinds = append(kinds, fmt.Sprintf("%s ×%d", k, n))
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "  verdict        VIOLATIONS in %d run(s): %s\n", s.failed, strings.Join(kinds, ", "))
	fmt.Fprintf(w, "  failed seeds   %v\n", s.failedSeeds)
}

// runGossipSim is synod sim --protocol gossip: the gossip simulator over
// a range of seeds, with the same reporting as the consensus simulator.
func runGossipSim(cmd *cobra.Command, f *simFlags) error {
	if err := checkProtocolFlags(cmd, true); err != nil {
		return err
	}
	first, last := f.seed, f.seed
	var err error
	if f.seeds != "" {
		if first, last, err = parseSeeds(f.seeds); err != nil {
			return err
		}
	}
	if f.parallel < 1 {
		return fmt.Errorf("--parallel %d: want at least 1", f.parallel)
	}
	if _, err := gossipConfigFor(cmd, f, first); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	start := time.Now()
	sum := &gossipSummary{sizes: map[int]int{}, violationsByChecker: map[string]int{}}
	err = driveSeeds(cmd, f.parallel, first, last, f.noProgress || f.verbose,
		func(seed int64) (*gossipsim.Result, error) {
			cfg, err := gossipConfigFor(cmd, f, seed)
			if err != nil {
				return nil, err
			}
			return gossipsim.Run(cfg)
		},
		func(r *gossipsim.Result) int64 {
			sum.add(r)
			if f.verbose {
				fmt.Fprintf(out, "seed %-8d %4d nodes  %6d writes  %3d faults  %3d false positives  membership %5.0f  store %5.0f ticks  %8.0f ticks  %s\n",
					r.Seed, r.Nodes, r.Writes, r.Faults.Total(), r.Deaths.FalsePositives, r.MembershipTicks, r.StoreTicks, r.Ticks, runVerdict(r.OK()))
			}
			return r.Seed
		}, nil)
	if err != nil {
		return err
	}
	sum.print(out, time.Since(start))
	if sum.failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}

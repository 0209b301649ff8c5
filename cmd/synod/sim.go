package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/sim"
)

// simFlags are the sim command's flags. A flag the user sets overrides the
// value the seed draws (swarm mode) or the default.
type simFlags struct {
	protocol   string
	seed       int64
	seeds      string
	swarm      bool
	nodes      int
	ticks      int64
	liveness   int64
	loss       float64
	duplicate  float64
	reorder    float64
	crash      float64
	crashLdr   float64
	partition  float64
	asym       float64
	clog       float64
	pause      float64
	drift      float64
	disk       bool
	syncFail   float64
	corrupt    float64
	faulty     int
	torn       bool
	clients    int
	keys       int
	hotKey     float64
	mix        string
	timeout    int64
	parallel   int
	outDir     string
	verbose    bool
	noProgress bool
	// matrixPath and sites place the nodes at sites of a latency matrix;
	// matrix is the loaded (and selected) matrix, or nil.
	matrixPath string
	sites      string
	matrix     *sim.LatencyMatrix
}

func newSimCommand() *cobra.Command {
	f := &simFlags{}
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the deterministic simulator and check every run",
		Long: `Run real protocol code in the deterministic simulator under seeded network
faults, crashes and pauses, with clients driving a key-value workload, and
check each run for linearizability, election safety, state-machine safety,
leader completeness and liveness.

Each seed is one reproducible run. In swarm mode (the default) every seed also
draws its own cluster size, fault mix and rates; flags you set override what
the seed draws. A run with a violation prints its seed, the command that
replays it, the last events before the violation, and writes porcupine's HTML
visualization of the history. The exit code is 1 if any run has a violation.

With --protocol gossip it simulates SWIM membership with Lifeguard and the
eventually consistent store instead, up to 1,000 nodes, and checks
membership accuracy, convergence and the store's safety (see package
sim/gossipsim); 'synod sim gossip-bench' prints its figures, and 'synod sim
cap' runs one partition against Raft and against the gossip store.`,
		Example: `  synod sim --seeds 1-100
  synod sim --protocol raft --seed 42 --verbose
  synod sim --seeds 1-1000 --nodes 5 --loss 0.1 --crash 0.01
  synod sim --seeds 1-50 --latency-matrix aws5 --sites us-east-1,eu-west-1,ap-northeast-1
  synod sim wan`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSim(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.protocol, "protocol", "raft", "protocol to simulate: "+strings.Join(sim.ProtocolNames(), ", ")+", "+gossipProtocol)
	fl.Int64Var(&f.seed, "seed", 1, "run this one seed")
	fl.StringVar(&f.seeds, "seeds", "", "run a range of seeds, as FIRST-LAST (overrides --seed)")
	fl.BoolVar(&f.swarm, "swarm", true, "let each seed draw its cluster size, fault mix and rates")
	fl.IntVar(&f.nodes, "nodes", 5, "cluster size")
	fl.Int64Var(&f.ticks, "ticks", 2000, "length of the fault phase, in ticks")
	fl.Int64Var(&f.liveness, "liveness-ticks", 300, "after faults stop, a write must complete within this many ticks")
	fl.Float64Var(&f.loss, "loss", 0, "chance a message is lost")
	fl.Float64Var(&f.duplicate, "duplicate", 0, "chance a message is delivered twice")
	fl.Float64Var(&f.reorder, "reorder", 0, "chance a message is held back so later ones overtake it")
	fl.Float64Var(&f.crash, "crash", 0, "chance per tick that a node crashes (it restarts from its disk)")
	fl.Float64Var(&f.crashLdr, "crash-leader", 0, "chance per tick that a node that believes it leads crashes")
	fl.Float64Var(&f.partition, "partition", 0, "chance per tick that the cluster splits in two")
	fl.Float64Var(&f.asym, "asymmetric-partition", 0, "chance per tick that one node can only send or only receive")
	fl.Float64Var(&f.clog, "clog", 0, "chance per tick that one link holds its messages for a while")
	fl.Float64Var(&f.pause, "pause", 0, "chance per tick that a node pauses")
	fl.Float64Var(&f.drift, "clock-drift", 0.01, "most a node's tick length differs from nominal (0.01 = 1%)")
	fl.BoolVar(&f.disk, "disk", true, "persist through a write-ahead log on simulated crashable disks")
	fl.BoolVar(&f.torn, "torn-writes", true, "a crash keeps a random prefix of unsynced writes")
	fl.Float64Var(&f.syncFail, "sync-fail", 0, "chance an fsync fails (the node stops and restarts)")
	fl.Float64Var(&f.corrupt, "corrupt", 0, "chance per tick that a bit of a faulty node's stored log flips")
	fl.IntVar(&f.faulty, "faulty-disks", 1, "nodes (at most a minority) whose media may corrupt data")
	fl.IntVar(&f.clients, "clients", 10, "closed-loop clients")
	fl.IntVar(&f.keys, "keys", 8, "size of the key space")
	fl.Float64Var(&f.hotKey, "hot-key", 0.2, "chance an operation goes to one hot key (raises the conflict rate)")
	fl.StringVar(&f.mix, "mix", "3:4:1:2", "operation weights as PUT:GET:DELETE:CAS")
	fl.Int64Var(&f.timeout, "client-timeout-ticks", 40, "ticks a client waits before retrying elsewhere")
	fl.IntVar(&f.parallel, "parallel", runtime.GOMAXPROCS(0), "seeds run at once (each run is single-threaded)")
	fl.StringVar(&f.outDir, "out", "sim-failures", "directory for the HTML visualizations of failed runs")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print a line per seed")
	fl.BoolVar(&f.noProgress, "no-progress", false, "do not draw a progress bar")
	fl.StringVar(&f.matrixPath, "latency-matrix", "", "place one node at each site of this RTT matrix file, or built-in matrix ("+
		strings.Join(sim.BuiltinLatencyMatrices(), ", ")+"), instead of random link latencies; see 'synod sim wan --help' for the format")
	fl.StringVar(&f.sites, "sites", "", "with --latency-matrix: the sites to use, comma-separated (default: all)")
	addGossipSimFlags(fl)
	cmd.AddCommand(newSimWANCommand(), newSimGossipBenchCommand(), newSimCAPCommand())
	return cmd
}

// parseSeeds reads "A-B" or a single number.
func parseSeeds(s string) (first, last int64, err error) {
	a, b, found := strings.Cut(s, "-")
	first, err = strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("--seeds %q: want FIRST-LAST, for example 1-300", s)
	}
	last = first
	if found {
		last, err = strconv.ParseInt(strings.TrimSpace(b), 10, 64)
		if err != nil || last < first {
			return 0, 0, fmt.Errorf("--seeds %q: want FIRST-LAST with FIRST <= LAST", s)
		}
	}
	if last-first >= 10_000_000 {
		return 0, 0, fmt.Errorf("--seeds %q: at most 10,000,000 seeds per run", s)
	}
	return first, last, nil
}

// configFor builds the configuration of one seed: drawn (swarm) or
// default, then overridden by every flag the user set.
func configFor(cmd *cobra.Command, f *simFlags, p sim.Protocol, seed int64) (sim.Config, error) {
	cfg := sim.DefaultConfig(seed, p)
	if f.swarm {
		cfg = sim.Swarm(seed, p)
	}
	set := cmd.Flags().Changed
	if set("nodes") || !f.swarm {
		cfg.Nodes = f.nodes
	}
	if set("ticks") || !f.swarm {
		cfg.FaultTicks = f.ticks
	}
	if set("liveness-ticks") || !f.swarm {
		cfg.LivenessTicks = f.liveness
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
		{"crash-leader", &cfg.Faults.CrashLeader, f.crashLdr},
		{"partition", &cfg.Faults.Partition, f.partition},
		{"asymmetric-partition", &cfg.Faults.AsymmetricPartition, f.asym},
		{"clog", &cfg.Faults.Clog, f.clog},
		{"pause", &cfg.Faults.Pause, f.pause},
		{"clock-drift", &cfg.Faults.ClockDrift, f.drift},
		{"sync-fail", &cfg.Disk.SyncFail, f.syncFail},
		{"corrupt", &cfg.Disk.Corrupt, f.corrupt},
		{"hot-key", &cfg.Workload.HotKey, f.hotKey},
	}
	for _, r := range rates {
		if set(r.flag) {
			*r.dst = r.val
		}
	}
	if set("disk") {
		cfg.Disk.Enabled = f.disk && p.Codec != nil
	}
	if set("torn-writes") {
		cfg.Disk.TornWrites = f.torn
	}
	if set("faulty-disks") {
		cfg.Disk.Faulty = f.faulty
	}
	if set("clients") || !f.swarm {
		cfg.Workload.Clients = f.clients
	}
	if set("keys") || !f.swarm {
		cfg.Workload.Keys = f.keys
	}
	if set("client-timeout-ticks") {
		cfg.Workload.TimeoutTicks = f.timeout
	}
	if m := f.matrix; m != nil {
		if set("nodes") && f.nodes != m.Len() {
			return cfg, fmt.Errorf("--nodes %d: the latency matrix places one node at each of its %d sites (%s); use --sites to choose them",
				f.nodes, m.Len(), strings.Join(m.Sites, ", "))
		}
		sim.UseLatencyMatrix(&cfg, m)
		if !set("faulty-disks") {
			cfg.Disk.Faulty = min(cfg.Disk.Faulty, (cfg.Nodes-1)/2)
		}
	}
	if set("mix") || !f.swarm {
		parts := strings.Split(f.mix, ":")
		if len(parts) != 4 {
			return cfg, fmt.Errorf("--mix %q: want four weights PUT:GET:DELETE:CAS, for example 3:4:1:2", f.mix)
		}
		var w [4]int
		for i, s := range parts {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				return cfg, fmt.Errorf("--mix %q: weight %q is not a non-negative integer", f.mix, s)
			}
			w[i] = v
		}
		cfg.Workload.PutWeight, cfg.Workload.GetWeight, cfg.Workload.DeleteWeight, cfg.Workload.CASWeight = w[0], w[1], w[2], w[3]
	}
	return cfg, cfg.Validate()
}

// replayCommand is the command line that reruns one seed exactly.
func replayCommand(cmd *cobra.Command, seed int64) string {
	args := []string{"synod", "sim", "--seed", strconv.FormatInt(seed, 10)}
	skip := map[string]bool{"seed": true, "seeds": true, "parallel": true, "verbose": true, "no-progress": true, "out": true}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if !skip[fl.Name] {
			args = append(args, "--"+fl.Name+"="+fl.Value.String())
		}
	})
	return strings.Join(args, " ") + " --verbose"
}

// summary aggregates the results of many seeds.
type summary struct {
	runs, failed                 int
	opsOK, opsFailed, opsUnknown int
	leaderChanges                int
	faults                       sim.FaultCounts
	delivered                    int
	ticks                        float64
	runWall                      time.Duration
	linOK, linUnknown            int
	latencies                    []float64
	throughput                   float64
	violationsByChecker          map[string]int
	failedSeeds                  []int64
	nodesSeen                    map[int]int
	snapshots, installed         int
	// sites merges Result.Sites over the runs (latency-matrix runs).
	sites []sim.SiteLatency
}

func (s *summary) add(r *sim.Result) {
	s.runs++
	s.opsOK += r.OpsOK
	s.opsFailed += r.OpsFailed
	s.opsUnknown += r.OpsUnknown
	s.leaderChanges += r.LeaderChanges
	s.faults.Crash += r.Faults.Crash
	s.faults.CrashLeader += r.Faults.CrashLeader
	s.faults.CrashMidReady += r.Faults.CrashMidReady
	s.faults.Restart += r.Faults.Restart
	s.faults.Partition += r.Faults.Partition
	s.faults.AsymmetricPartition += r.Faults.AsymmetricPartition
	s.faults.Clog += r.Faults.Clog
	s.faults.Pause += r.Faults.Pause
	s.faults.CrashMidPersist += r.Faults.CrashMidPersist
	s.faults.DiskFailure += r.Faults.DiskFailure
	s.faults.Corruption += r.Faults.Corruption
	s.faults.RefusedStart += r.Faults.RefusedStart
	s.faults.CorruptionUnnoticed += r.Faults.CorruptionUnnoticed
	s.faults.CrashAtDiskOp += r.Faults.CrashAtDiskOp
	s.snapshots += r.Snapshots
	s.installed += r.SnapshotsInstalled
	s.delivered += r.MessagesDelivered
	s.ticks += r.Ticks
	s.runWall += r.SimWall
	s.throughput += r.Throughput()
	s.nodesSeen[r.Nodes]++
	switch r.Linearizability {
	case "Ok":
		s.linOK++
	case "Unknown":
		s.linUnknown++
	}
	s.latencies = append(s.latencies, r.LatencySamplesTicks()...)
	if s.sites == nil && len(r.Sites) > 0 {
		s.sites = make([]sim.SiteLatency, len(r.Sites))
	}
	for i, site := range r.Sites {
		s.sites[i].Site = site.Site
		s.sites[i].CommitMs = append(s.sites[i].CommitMs, site.CommitMs...)
		s.sites[i].ExecuteMs = append(s.sites[i].ExecuteMs, site.ExecuteMs...)
	}
	if !r.OK() {
		s.failed++
		s.failedSeeds = append(s.failedSeeds, r.Seed)
		for _, v := range r.Violations {
			s.violationsByChecker[v.Checker]++
		}
	}
}

func (s *summary) print(w io.Writer, protocol string, wall time.Duration) {
	pct := func(q float64) float64 {
		if len(s.latencies) == 0 {
			return 0
		}
		return s.latencies[int(q*float64(len(s.latencies)-1))]
	}
	slices.Sort(s.latencies)
	fmt.Fprintf(w, "\nsynod sim: %s, %d run(s) in %v\n", protocol, s.runs, wall.Round(time.Millisecond))
	var sizes []string
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9} {
		if c := s.nodesSeen[n]; c > 0 {
			sizes = append(sizes, fmt.Sprintf("%d nodes ×%d", n, c))
		}
	}
	fmt.Fprintf(w, "  clusters       %s\n", strings.Join(sizes, ", "))
	fmt.Fprintf(w, "  operations     %d completed, %d failed, %d unknown outcome\n", s.opsOK, s.opsFailed, s.opsUnknown)
	fmt.Fprintf(w, "  throughput     %.1f ops per 1000 simulated ticks (mean per run)\n", s.throughput/float64(max(1, s.runs)))
	fmt.Fprintf(w, "  latency        p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ticks\n", pct(0.5), pct(0.9), pct(0.99), pct(1))
	for i, site := range s.sites {
		slices.Sort(site.CommitMs)
		slices.Sort(site.ExecuteMs)
		label := ""
		if i == 0 {
			label = "per site (ms)"
		}
		fmt.Fprintf(w, "  %-14s %-15s commit p50 %6.1f  p99 %6.1f   execute p50 %6.1f  p99 %6.1f  (%d ops)\n", label, site.Site,
			sim.Quantile(site.CommitMs, 0.5), sim.Quantile(site.CommitMs, 0.99),
			sim.Quantile(site.ExecuteMs, 0.5), sim.Quantile(site.ExecuteMs, 0.99), len(site.ExecuteMs))
	}
	fmt.Fprintf(w, "  leader changes %d\n", s.leaderChanges)
	f := s.faults
	fmt.Fprintf(w, "  faults         %d crashes (%d of leaders, %d mid-Ready), %d restarts, %d partitions, %d asymmetric, %d clogs, %d pauses\n",
		f.Crash, f.CrashLeader, f.CrashMidReady, f.Restart, f.Partition, f.AsymmetricPartition, f.Clog, f.Pause)
	fmt.Fprintf(w, "  disk faults    %d power cuts at an exact disk operation, %d crashes between write and fsync, %d failed fsyncs, %d corrupted logs (%d refused to start, %d unnoticed)\n",
		f.CrashAtDiskOp, f.CrashMidPersist, f.DiskFailure, f.Corruption, f.RefusedStart, f.CorruptionUnnoticed)
	fmt.Fprintf(w, "  snapshots      %d taken, %d installed from a peer\n", s.snapshots, s.installed)
	if secs := s.runWall.Seconds(); secs > 0 {
		fmt.Fprintf(w, "  speed          %.0f simulated ticks and %.0f messages per wall second per run\n",
			s.ticks/secs, float64(s.delivered)/secs)
	}
	fmt.Fprintf(w, "  linearizable   %d ok, %d inconclusive (check timed out)\n", s.linOK, s.linUnknown)
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

// loadMatrix reads --latency-matrix and applies --sites.
func loadMatrix(path, sites string) (*sim.LatencyMatrix, error) {
	m, err := sim.LoadLatencyMatrix(path)
	if err != nil {
		return nil, err
	}
	if sites == "" {
		return m, nil
	}
	var names []string
	for _, s := range strings.Split(sites, ",") {
		names = append(names, strings.TrimSpace(s))
	}
	return m.Select(names)
}

func runSim(cmd *cobra.Command, f *simFlags) error {
	if f.protocol == gossipProtocol {
		return runGossipSim(cmd, f)
	}
	if err := checkProtocolFlags(cmd, false); err != nil {
		return err
	}
	p, err := sim.ProtocolByName(f.protocol)
	if err != nil {
		return err
	}
	if f.matrixPath != "" {
		if f.matrix, err = loadMatrix(f.matrixPath, f.sites); err != nil {
			return err
		}
		// Timers that must outlast the longest round trip.
		if p, err = sim.WANProtocol(f.protocol, f.matrix, consensus.None); err != nil {
			return err
		}
	} else if f.sites != "" {
		return fmt.Errorf("--sites needs --latency-matrix")
	}
	first, last := f.seed, f.seed
	if f.seeds != "" {
		if first, last, err = parseSeeds(f.seeds); err != nil {
			return err
		}
	}
	if f.parallel < 1 {
		return fmt.Errorf("--parallel %d: want at least 1", f.parallel)
	}
	// Validate the flags once before starting workers.
	if _, err := configFor(cmd, f, p, first); err != nil {
		return err
	}
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	start := time.Now()
	sum := &summary{violationsByChecker: map[string]int{}, nodesSeen: map[int]int{}}
	err = driveSeeds(cmd, f.parallel, first, last, f.noProgress || f.verbose,
		func(seed int64) (*sim.Result, error) {
			cfg, err := configFor(cmd, f, p, seed)
			if err != nil {
				return nil, err
			}
			return sim.Run(cfg)
		},
		func(r *sim.Result) int64 {
			sum.add(r)
			if f.verbose {
				fmt.Fprintf(out, "seed %-8d %d nodes  %6d ops  %4d leaders  %3d faults  %8.0f ticks  lin=%-7s %s\n",
					r.Seed, r.Nodes, r.OpsOK, r.LeaderChanges, r.Faults.Total(), r.Ticks, r.Linearizability, runVerdict(r.OK()))
			}
			return r.Seed
		},
		func(r *sim.Result) {
			if r.Linearizability != "Illegal" {
				return
			}
			path := filepath.Join(f.outDir, fmt.Sprintf("%s-seed-%d.html", r.Protocol, r.Seed))
			if err := os.MkdirAll(f.outDir, 0o755); err == nil {
				if err := r.WriteVisualization(path); err == nil {
					fmt.Fprintf(errw, "  visualization: %s\n", path)
				}
			}
		})
	if err != nil {
		return err
	}
	sum.print(out, p.Name, time.Since(start))
	if sum.failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// seedOutcome is what driveSeeds needs of a simulated run's result.
type seedOutcome interface {
	OK() bool
	Report() string
}

// driveSeeds runs run for every seed in first..last on up to parallel
// goroutines (runSeeds), with a progress bar on a terminal unless quiet.
// It hands each result to each, which returns the result's seed; for a
// run that found a violation it prints the report and the command that
// replays the seed, then calls onViolation (nil: nothing more). It returns
// the first run's error, if one failed to run.
func driveSeeds[R seedOutcome](cmd *cobra.Command, parallel int, first, last int64, quiet bool,
	run func(seed int64) (R, error), each func(R) int64, onViolation func(R)) error {
	errw := cmd.ErrOrStderr()
	var bar *progressbar.ProgressBar
	if count := int(last - first + 1); count > 1 && !quiet && term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions(count, progressbar.OptionSetWriter(errw),
			progressbar.OptionSetDescription("seeds"), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
	}
	results, errs := runSeeds(cmd.Context(), parallel, first, last, run)
	for r := range results {
		seed := each(r)
		if bar != nil {
			_ = bar.Add(1)
		}
		if !r.OK() {
			if bar != nil {
				_ = bar.Clear()
			}
			fmt.Fprint(errw, r.Report())
			fmt.Fprintf(errw, "  replay: %s\n", replayCommand(cmd, seed))
			if onViolation != nil {
				onViolation(r)
			}
		}
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	if bar != nil {
		_ = bar.Finish()
	}
	return nil
}

// runVerdict names a run's outcome in verbose lines.
func runVerdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "VIOLATION"
}

// runSeeds runs run for every seed in first..last on up to parallel
// goroutines and passes each result to the returned channel, which closes
// when every run is done or one failed; errs holds the first failure (a
// run that returned an error, such as an invalid configuration). Runs stop
// being started once ctx is done.
func runSeeds[R any](ctx context.Context, parallel int, first, last int64, run func(seed int64) (R, error)) (results <-chan R, errs <-chan error) {
	seeds := make(chan int64)
	out := make(chan R)
	errc := make(chan error, parallel)
	var wg sync.WaitGroup
	for range min(parallel, int(last-first+1)) {
		wg.Go(func() {
			for seed := range seeds {
				r, err := run(seed)
				if err != nil {
					errc <- fmt.Errorf("seed %d: %w", seed, err)
					return
				}
				out <- r
			}
		})
	}
	go func() {
		defer close(seeds)
		for s := first; s <= last; s++ {
			select {
			case seeds <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(out) }()
	return out, errc
}

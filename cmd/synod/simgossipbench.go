package main

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/synod-io/synod/sim/gossipsim"
)

// gossipBenchFlags are the flags of synod sim gossip-bench.
type gossipBenchFlags struct {
	sizes            string
	loss             float64
	seed             int64
	trials           int
	fpMinutes        float64
	partitionSeconds float64
	parallel         int
}

func newSimGossipBenchCommand() *cobra.Command {
	f := &gossipBenchFlags{}
	cmd := &cobra.Command{
		Use:   "gossip-bench",
		Short: "Measure SWIM failure detection, Lifeguard and store convergence in the simulator",
		Long: `Measure, in the deterministic simulator, for each group size:

  detection   how long after a member crashes the first member suspects it
              and declares it dead, and until every member holds it dead,
              in protocol periods (SWIM's analysis expects the first
              detection after e/(e-1) ≈ 1.58 periods on average), with
              Lifeguard on and off;
  messages    membership messages each member sends per protocol period;
  false pos.  live members declared dead per simulated hour while one member
              is slow but alive (30% of its messages late by up to 3 s, a 1 s
              pause about every 30 s), with Lifeguard on and off, with the
              default suspicion multiplier α = 5 and a faster α = 2 (a
              member's death at one incarnation counts once);
  store       how long after a partition in halves heals (60 s apart, clients
              writing on both sides) the membership is whole again and every
              store replica holds the same entries, checked against the model
              of all writes.

The network loses --loss of all messages throughout; links take 5 to 50 ms
with up to 20 ms of jitter. A tick is 100 ms and the protocol period 1 s
(gossip's default configuration: probe timeout 400 ms, 3 indirect probes,
α = 5, β = 6, K = 3); the store runs its default configuration (anti-entropy
every 10 s, gossip every 200 ms). The false-positive runs last --fp-minutes of
simulated time (by default 60, and 6000/N minutes beyond 100 members).`,
		Example: `  synod sim gossip-bench
  synod sim gossip-bench --sizes 10,100 --trials 20 --loss 0.05`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGossipBench(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.sizes, "sizes", "10,100,1000", "group sizes, comma-separated (2..1000)")
	fl.Float64Var(&f.loss, "loss", 0.01, "chance a message is lost")
	fl.Int64Var(&f.seed, "seed", 1, "first seed of every experiment")
	fl.IntVar(&f.trials, "trials", 10, "crashes measured per group size and mode")
	fl.Float64Var(&f.fpMinutes, "fp-minutes", 0, "simulated minutes of each false-positive run (0: 60, or 6000/N beyond 100 members)")
	fl.Float64Var(&f.partitionSeconds, "partition-seconds", 60, "how long the halves stay apart in the store experiment")
	fl.IntVar(&f.parallel, "parallel", runtime.GOMAXPROCS(0), "experiments at once (each is single-threaded)")
	return cmd
}

// fastAlpha is the suspicion multiplier of the second false-positive
// experiment: a detector faster than the default (α = 5), which errs
// often enough without Lifeguard to show what Lifeguard buys.
const fastAlpha = 2

// benchCell is one experiment of the table.
type benchCell struct {
	size      int
	kind      string // "detect", "fp", "partition"
	lifeguard bool
	alpha     int // fp: the suspicion multiplier (0: gossip's default)
	det       gossipsim.DetectionResult
	fp        gossipsim.FalsePositiveResult
	part      gossipsim.PartitionResult
	err       error
	wall      time.Duration
}

func (f *gossipBenchFlags) plan() ([]int, error) {
	var sizes []int
	for _, s := range splitList(f.sizes) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 || n > gossipsim.NodesMax {
			return nil, fmt.Errorf("--sizes %q: %q is not a group size in 2..%d", f.sizes, s, gossipsim.NodesMax)
		}
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("--sizes %q: name at least one group size", f.sizes)
	}
	switch {
	case f.loss < 0 || f.loss >= 0.5:
		return nil, fmt.Errorf("--loss %v: want 0 <= loss < 0.5", f.loss)
	case f.trials < 1 || f.trials > 1000:
		return nil, fmt.Errorf("--trials %d: want 1..1000", f.trials)
	case f.fpMinutes < 0 || f.fpMinutes > 24*60:
		return nil, fmt.Errorf("--fp-minutes %v: want 0..1440", f.fpMinutes)
	case f.partitionSeconds < 1 || f.partitionSeconds > 3600:
		return nil, fmt.Errorf("--partition-seconds %v: want 1..3600", f.partitionSeconds)
	case f.parallel < 1:
		return nil, fmt.Errorf("--parallel %d: want at least 1", f.parallel)
	}
	return sizes, nil
}

func (f *gossipBenchFlags) minutes(n int) float64 {
	if f.fpMinutes > 0 {
		return f.fpMinutes
	}
	return min(60, 6000/float64(n))
}

func runGossipBench(cmd *cobra.Command, f *gossipBenchFlags) error {
	sizes, err := f.plan()
	if err != nil {
		return err
	}
	var cells []*benchCell
	// The largest groups first, so that they do not finish last alone.
	for i := len(sizes) - 1; i >= 0; i-- {
		n := sizes[i]
		for _, lg := range []bool{true, false} {
			cells = append(cells, &benchCell{size: n, kind: "fp", lifeguard: lg}, &benchCell{size: n, kind: "fp", lifeguard: lg, alpha: fastAlpha},
				&benchCell{size: n, kind: "detect", lifeguard: lg})
		}
		cells = append(cells, &benchCell{size: n, kind: "partition", lifeguard: true})
	}
	start := time.Now()
	work := make(chan *benchCell)
	var wg sync.WaitGroup
	for range min(f.parallel, len(cells)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				t0 := time.Now()
				switch c.kind {
				case "detect":
					c.det, c.err = gossipsim.Detection(c.size, f.loss, c.lifeguard, f.trials, f.seed)
				case "fp":
					c.fp, c.err = gossipsim.FalsePositives(c.size, f.loss, c.lifeguard, c.alpha, f.minutes(c.size), f.seed)
				case "partition":
					c.part, c.err = gossipsim.PartitionHeal(c.size, f.loss, f.partitionSeconds, f.seed)
				}
				c.wall = time.Since(t0)
			}
		}()
	}
	for _, c := range cells {
		work <- c
	}
	close(work)
	wg.Wait()
	for _, c := range cells {
		if c.err != nil {
			return fmt.Errorf("%s experiment with %d members: %w", c.kind, c.size, c.err)
		}
	}
	printGossipBench(cmd.OutOrStdout(), f, sizes, cells, time.Since(start))
	return nil
}

func printGossipBench(w io.Writer, f *gossipBenchFlags, sizes []int, cells []*benchCell, wall time.Duration) {
	find := func(n int, kind string, lg bool, alpha ...int) *benchCell {
		for _, c := range cells {
			if c.size == n && c.kind == kind && c.lifeguard == lg && (len(alpha) == 0 || c.alpha == alpha[0]) {
				return c
			}
		}
		return nil
	}
	fmt.Fprintf(w, "synod sim gossip-bench: %.0f%% message loss, protocol period 1 s, seed %d, %v\n\n", 100*f.loss, f.seed, wall.Round(time.Second))
	head := fmt.Sprintf("%-44s", "")
	for _, n := range sizes {
		head += fmt.Sprintf("  %12s", fmt.Sprintf("N=%d", n))
	}
	row := func(label string, cell func(n int) string) {
		line := fmt.Sprintf("%-44s", label)
		for _, n := range sizes {
			line += fmt.Sprintf("  %12s", cell(n))
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	num := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	fmt.Fprintln(w, head)
	for _, lg := range []bool{true, false} {
		mode := "Lifeguard on"
		if !lg {
			mode = "Lifeguard off"
		}
		fmt.Fprintf(w, "crash detection, %s (periods, mean of %d crashes)\n", mode, f.trials)
		row("  first probe of the crashed member", func(n int) string { return num(find(n, "detect", lg).det.FirstProbe, 2) })
		row("  first suspicion", func(n int) string { return num(find(n, "detect", lg).det.FirstSuspect, 2) })
		row("  first declared dead", func(n int) string { return num(find(n, "detect", lg).det.FirstDead, 1) })
		row("  every member knows (mean / worst)", func(n int) string {
			d := find(n, "detect", lg).det
			return num(d.AllKnow, 1) + " / " + num(d.AllKnowMax, 0)
		})
		row("  messages per member per period", func(n int) string { return num(find(n, "detect", lg).det.MessagesPerMemberPeriod, 2) })
	}
	fmt.Fprintln(w, "false positives per simulated hour, one slow member (live members declared dead)")
	for _, alpha := range []int{0, fastAlpha} {
		for _, lg := range []bool{true, false} {
			label := "  Lifeguard on"
			if !lg {
				label = "  Lifeguard off"
			}
			if alpha == 0 {
				label += ", α = 5 (default)"
			} else {
				label += fmt.Sprintf(", α = %d (faster)", alpha)
			}
			row(label, func(n int) string { return num(find(n, "fp", lg, alpha).fp.PerHour, 1) })
		}
	}
	row("  (simulated minutes per run)", func(n int) string { return num(f.minutes(n), 0) })
	fmt.Fprintf(w, "partition in halves for %.0f s, then healed (Lifeguard on)\n", f.partitionSeconds)
	row("  writes during the partition", func(n int) string { return strconv.Itoa(find(n, "partition", true).part.Writes) })
	row("  membership whole again (s)", func(n int) string { return num(find(n, "partition", true).part.MembershipSeconds, 1) })
	row("  store replicas converged (s)", func(n int) string { return num(find(n, "partition", true).part.StoreSeconds, 1) })
	row("  ... in anti-entropy intervals (10 s)", func(n int) string {
		return num(find(n, "partition", true).part.AntiEntropyIntervals, 1)
	})
	fmt.Fprintln(w, "\nTimes run from the crash. SWIM's analysis (Das et al., 2002) expects the first detection e/(e-1) ≈ 1.58")
	fmt.Fprintln(w, "periods after a crash, counting whole periods up to the end of the one whose probe finds it; here a probe")
	fmt.Fprintln(w, "suspects at the end of its period, one period after its ping. Dead: after the suspicion timeout, at least")
	fmt.Fprintln(w, "α·max(1, log10 N) periods (5, 10, 15 at N = 10, 100, 1000). Messages: ping, ack, ping-req, nack and push-pull.")
}

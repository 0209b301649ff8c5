// Command corebench measures committed proposals per second for a 3-node
// Raft cluster in one process (no disk, messages in memory) over synod's raft
// package, etcd-io/raft and hashicorp/raft, interleaving the systems across
// rounds, and prints the medians and synod's ratios to the peers.
//
//	cd bench && go run ./cmd/corebench -rounds 7
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synod-io/synod/bench"
)

func main() {
	def := bench.DefaultOptions()
	var (
		n       = flag.Int("n", def.N, "proposals to commit per run")
		window  = flag.Int("window", def.Window, "proposals kept outstanding on the leader")
		size    = flag.Int("size", def.Size, "command size in bytes (>= 8)")
		rounds  = flag.Int("rounds", 7, "rounds; each runs every system once and the median is reported")
		timeout = flag.Duration("timeout", def.Timeout, "bound on one run")
		systems = flag.String("systems", "", "comma-separated systems to run (default all: "+names()+")")
		warmup  = flag.Bool("warmup", true, "run each system once, untimed, on N/10 proposals before the rounds")
	)
	flag.Parse()
	if err := run(bench.Options{N: *n, Window: *window, Size: *size, Timeout: *timeout}, *rounds, *systems, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "corebench:", err)
		os.Exit(1)
	}
}

// maxRetries bounds the re-runs of a system whose leader changed mid-run.
const maxRetries = 2

func names() string {
	var s []string
	for _, sys := range bench.Systems {
		s = append(s, sys.Name)
	}
	return strings.Join(s, ",")
}

func run(o bench.Options, rounds int, only string, warmup bool) error {
	if rounds <= 0 {
		return fmt.Errorf("rounds must be positive, got %d", rounds)
	}
	systems := bench.Systems
	if only != "" {
		systems = nil
		for _, name := range strings.Split(only, ",") {
			s, ok := bench.Lookup(strings.TrimSpace(name))
			if !ok {
				return fmt.Errorf("unknown system %q (have %s)", name, names())
			}
			systems = append(systems, s)
		}
	}
	fmt.Printf("3-node cluster in one process, no disk; N=%d proposals of %d bytes, window %d, %d rounds\n\n",
		o.N, o.Size, o.Window, rounds)

	if warmup {
		// The first run in a process pays for growing the heap and warming
		// caches; do that untimed, for every system.
		w := o
		w.N = max(o.N/10, 1)
		for _, s := range systems {
			if _, err := s.Run(w, bench.Hooks{}); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}

	results := make(map[string][]bench.Result)
	for r := range rounds {
		// Rotate the order each round so that no system always runs first
		// (on a cold heap) or right after the same neighbour.
		for i := range systems {
			s := systems[(i+r)%len(systems)]
			res, err := s.Run(o, bench.Hooks{})
			for try := 1; errors.Is(err, bench.ErrLeaderLost) && try <= maxRetries; try++ {
				// A stall on a loaded machine, not a wrong result: run
				// again. Sanity-check failures are never retried.
				fmt.Fprintf(os.Stderr, "round %d  %-20s retrying (%d/%d): %v\n", r+1, s.Name, try, maxRetries, err)
				res, err = s.Run(o, bench.Hooks{})
			}
			if err != nil {
				return fmt.Errorf("round %d: %w", r+1, err)
			}
			results[s.Name] = append(results[s.Name], res)
			fmt.Fprintf(os.Stderr, "round %d  %-20s %12.0f proposals/s  (%v)\n", r+1, s.Name, res.PerSecond(), res.Elapsed.Round(time.Millisecond))
		}
	}
	fmt.Fprintln(os.Stderr)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tmedian proposals/s\tmin\tmax\tns/proposal\tallocs/proposal\tB/proposal\t")
	median := make(map[string]float64)
	for _, s := range systems {
		rs := results[s.Name]
		tput := make([]float64, len(rs))
		for i, r := range rs {
			tput[i] = r.PerSecond()
		}
		mid := medianOf(tput)
		median[s.Name] = mid
		// Allocation figures from the run whose throughput is closest to
		// the median (they barely vary between runs).
		mr := rs[0]
		for _, r := range rs {
			if abs(r.PerSecond()-mid) < abs(mr.PerSecond()-mid) {
				mr = r
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.0f\t\n", s.Name, mid, slices.Min(tput), slices.Max(tput),
			1e9/mid, float64(mr.Mallocs)/float64(mr.N), float64(mr.Bytes)/float64(mr.N))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if _, ok := median["synod"]; ok {
		fmt.Println()
		for _, peer := range []string{"etcd-raft", "etcd-raft-unbatched", "hashicorp-raft"} {
			if _, ok := median[peer]; !ok {
				continue
			}
			// Ratio of the medians, and the median of the per-round ratios
			// (each from runs seconds apart, so less exposed to drift in
			// the machine's load).
			perRound := make([]float64, rounds)
			for i := range rounds {
				perRound[i] = results["synod"][i].PerSecond() / results[peer][i].PerSecond()
			}
			fmt.Printf("synod ÷ %-20s %.2fx  (median of per-round ratios %.2fx, range %.2f–%.2f)\n", peer,
				median["synod"]/median[peer], medianOf(perRound), slices.Min(perRound), slices.Max(perRound))
		}
	}
	return nil
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// Command protobench compares synod's protocols with each other in one
// process (no disk, messages in memory): Raft, Multi-Paxos and EPaxos at
// several conflict rates, interleaved across rounds, and prints the median
// throughput and EPaxos's ratios to the two leader-based protocols.
//
//	cd bench && go run ./cmd/protobench -rounds 5
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/synod-io/synod/bench"
)

func main() {
	def := bench.DefaultOptions()
	var (
		n         = flag.Int("n", 50_000, "commands to execute per run")
		window    = flag.Int("window", def.Window, "commands kept outstanding (split over the proposing replicas)")
		size      = flag.Int("size", def.Size, "command size in bytes (>= 8)")
		nodes     = flag.Int("nodes", 3, "cluster size")
		rounds    = flag.Int("rounds", 5, "rounds; each runs every protocol at every conflict rate once")
		conflicts = flag.String("conflicts", "0,2,100", "comma-separated conflict rates in percent")
		timeout   = flag.Duration("timeout", def.Timeout, "bound on one run")
	)
	flag.Parse()
	rates, err := parseRates(*conflicts)
	if err == nil {
		o := bench.ProtocolOptions{Options: bench.Options{N: *n, Window: *window, Size: *size, Timeout: *timeout}, Nodes: *nodes}
		err = run(o, rates, *rounds)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "protobench:", err)
		os.Exit(1)
	}
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 100 {
			return nil, fmt.Errorf("-conflicts: %q is not a percentage in 0..100", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(o bench.ProtocolOptions, rates []float64, rounds int) error {
	if rounds <= 0 {
		return fmt.Errorf("rounds must be positive, got %d", rounds)
	}
	fmt.Printf("%d-node clusters in one process, no disk; N=%d commands of %d bytes, window %d, %d rounds\n\n",
		o.Nodes, o.N, o.Size, o.Window, rounds)
	type key struct {
		protocol string
		rate     float64
	}
	results := map[key][]float64{}
	for r := range rounds {
		for _, rate := range rates {
			for i := range bench.ProtocolNames {
				p := bench.ProtocolNames[(i+r)%len(bench.ProtocolNames)]
				ro := o
				ro.ConflictPercent = rate
				res, err := bench.ProtocolRun(p, ro)
				for try := 1; errors.Is(err, bench.ErrLeaderLost) && try <= 2; try++ {
					res, err = bench.ProtocolRun(p, ro)
				}
				if err != nil {
					return fmt.Errorf("round %d: %w", r+1, err)
				}
				results[key{p, rate}] = append(results[key{p, rate}], res.PerSecond())
				fmt.Fprintf(os.Stderr, "round %d  %-11s %5.1f%% conflicts  %10.0f commands/s\n", r+1, p, rate, res.PerSecond())
			}
		}
	}
	fmt.Fprintln(os.Stderr)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conflicts\traft\tmultipaxos\tepaxos\tepaxos ÷ multipaxos\tepaxos ÷ raft\t")
	for _, rate := range rates {
		med := map[string]float64{}
		for _, p := range bench.ProtocolNames {
			med[p] = median(results[key{p, rate}])
		}
		// Ratios per round (runs seconds apart), then their median.
		perRound := func(peer string) float64 {
			rs := make([]float64, rounds)
			for i := range rounds {
				rs[i] = results[key{"epaxos", rate}][i] / results[key{peer, rate}][i]
			}
			return median(rs)
		}
		fmt.Fprintf(tw, "%.0f%%\t%.0f/s\t%.0f/s\t%.0f/s\t%.2fx\t%.2fx\t\n", rate, med["raft"], med["multipaxos"], med["epaxos"],
			perRound("multipaxos"), perRound("raft"))
	}
	return tw.Flush()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

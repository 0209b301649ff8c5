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

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/sim"
)

// wanFlags are the flags of synod sim wan.
type wanFlags struct {
	matrix         string
	sites          string
	sizes          string
	leaderSite     string
	conflicts      string
	protocols      string
	duration       time.Duration
	seed           int64
	clientsPerSite int
	parallel       int
}

func newSimWANCommand() *cobra.Command {
	f := &wanFlags{}
	cmd := &cobra.Command{
		Use:   "wan",
		Short: "Compare commit and execution latency per site across regions (the EPaxos wide-area experiment)",
		Long: `Run Raft, Multi-Paxos and EPaxos over a wide-area network given by a matrix of
round-trip times between sites, with one replica and a group of clients at
each site, and print per site and per protocol the median and p99 of

  commit   from the request reaching the client's own site's replica until
           the command's leader knows it is committed (Raft, Multi-Paxos:
           the leader; EPaxos: the replica the client sent it to), and
  execute  from the same moment until the client has the result,

next to what the protocol's quorums predict from the matrix alone.

Each cluster size in --sizes uses the first that many sites of --sites. The
leader-based protocols are made to elect the replica at --leader-site (it
gets the shortest election timeout). A client sends to its own site's
replica; under a leader-based protocol the first refusal redirects it to the
leader, and reaching the leader costs half the RTT between the sites, as if
the local replica forwarded the request. Clients write back to back; a
--conflicts share of their commands goes to one hot key, the rest to keys
private to each client. There are no faults and no disk latency; every run
is still checked for linearizability and agreement.

Time: 1 ms of the matrix is 10 simulator units, so a tick is 100 ms; links
add up to 1 ms of jitter per message and deliver in order; a client is
0.5 ms from its own site's replica.

Matrix file format (see sim/wan/aws5.txt, the built-in "aws5"):

  # comments run from '#' to the end of the line
  sites      us-east-1  eu-west-1
  us-east-1          0         81
  eu-west-1         81          0

a "sites" line naming every site, then one row per site: its name and its
RTT in milliseconds to each site in the order of the sites line. The matrix
must be complete, symmetric, zero on the diagonal and non-negative.`,
		Example: `  synod sim wan
  synod sim wan --sizes 5 --conflicts 0,100 --leader-site us-west-2
  synod sim wan --matrix my-regions.txt --sites a,b,c --sizes 3 --duration 60s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSimWAN(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.matrix, "matrix", "aws5", "RTT matrix: a file, or a built-in matrix ("+strings.Join(sim.BuiltinLatencyMatrices(), ", ")+")")
	fl.StringVar(&f.sites, "sites", "", "sites in order, comma-separated; a cluster of N uses the first N (default: the matrix's order)")
	fl.StringVar(&f.sizes, "sizes", "3,5", "cluster sizes to run, comma-separated")
	fl.StringVar(&f.leaderSite, "leader-site", "", "site of the Raft and Multi-Paxos leader (default: the first site)")
	fl.StringVar(&f.conflicts, "conflicts", "0,2,100", "conflict rates in percent: the share of commands on one shared hot key")
	fl.StringVar(&f.protocols, "protocols", "raft,multipaxos,epaxos", "protocols to compare, comma-separated")
	fl.DurationVar(&f.duration, "duration", 20*time.Second, "simulated time measured per run, after the warm-up")
	fl.Int64Var(&f.seed, "seed", 1, "seed of every run")
	fl.IntVar(&f.clientsPerSite, "clients-per-site", 10, "closed-loop clients at each site")
	fl.IntVar(&f.parallel, "parallel", runtime.GOMAXPROCS(0), "runs at once (each run is single-threaded)")
	return cmd
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// wanRun is one cell of the experiment.
type wanRun struct {
	size       int
	conflict   float64 // percent
	protocol   string
	leaderless bool
	spec       sim.WANSpec
	res        *sim.Result
	err        error
}

// wanPlan is the validated experiment.
type wanPlan struct {
	matrix     *sim.LatencyMatrix // the --sites selection, in order
	sizes      []int
	conflicts  []float64 // percent
	protocols  []string
	leaderSite string
	runs       []*wanRun
}

func planWAN(f *wanFlags) (*wanPlan, error) {
	m, err := loadMatrix(f.matrix, f.sites)
	if err != nil {
		return nil, err
	}
	p := &wanPlan{matrix: m, protocols: splitList(f.protocols)}
	if len(p.protocols) == 0 {
		return nil, fmt.Errorf("--protocols %q: name at least one of %s", f.protocols, strings.Join(sim.ProtocolNames(), ", "))
	}
	leaderless := map[string]bool{}
	for _, name := range p.protocols {
		proto, err := sim.ProtocolByName(name)
		if err != nil {
			return nil, err
		}
		leaderless[name] = proto.Leaderless
	}
	minSize := m.Len()
	for _, s := range splitList(f.sizes) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > m.Len() {
			return nil, fmt.Errorf("--sizes %q: %q is not a cluster size from 1 to %d (the number of sites)", f.sizes, s, m.Len())
		}
		p.sizes = append(p.sizes, n)
		minSize = min(minSize, n)
	}
	if len(p.sizes) == 0 {
		return nil, fmt.Errorf("--sizes %q: give at least one cluster size", f.sizes)
	}
	for _, s := range splitList(f.conflicts) {
		c, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || c < 0 || c > 100 {
			return nil, fmt.Errorf("--conflicts %q: %q is not a percentage from 0 to 100", f.conflicts, s)
		}
		p.conflicts = append(p.conflicts, c)
	}
	if len(p.conflicts) == 0 {
		return nil, fmt.Errorf("--conflicts %q: give at least one conflict rate", f.conflicts)
	}
	p.leaderSite = m.Sites[0]
	if f.leaderSite != "" {
		i, ok := m.Site(f.leaderSite)
		if !ok {
			return nil, fmt.Errorf("--leader-site %q is not one of the sites (%s)", f.leaderSite, strings.Join(m.Sites, ", "))
		}
		if i >= minSize {
			return nil, fmt.Errorf("--leader-site %q: the leader must be at one of the first %d sites (%s), which every cluster size uses; reorder --sites",
				f.leaderSite, minSize, strings.Join(m.Sites[:minSize], ", "))
		}
		p.leaderSite = f.leaderSite
	}
	if f.clientsPerSite < 1 || f.clientsPerSite > 1000 {
		return nil, fmt.Errorf("--clients-per-site %d: want 1..1000", f.clientsPerSite)
	}
	if f.duration < time.Second || f.duration > time.Hour {
		return nil, fmt.Errorf("--duration %v: want 1s..1h of simulated time", f.duration)
	}
	if f.parallel < 1 {
		return nil, fmt.Errorf("--parallel %d: want at least 1", f.parallel)
	}
	for _, n := range p.sizes {
		sub, err := m.Select(m.Sites[:n])
		if err != nil {
			return nil, err
		}
		for _, c := range p.conflicts {
			for _, proto := range p.protocols {
				r := &wanRun{size: n, conflict: c, protocol: proto, leaderless: leaderless[proto], spec: sim.WANSpec{
					Matrix: sub, Protocol: proto, LeaderSite: p.leaderSite, Conflict: c / 100,
					ClientsPerSite: f.clientsPerSite, Measure: f.duration, Seed: f.seed,
				}}
				if _, err := sim.WANConfig(r.spec); err != nil {
					return nil, err
				}
				p.runs = append(p.runs, r)
			}
		}
	}
	return p, nil
}

func runSimWAN(cmd *cobra.Command, f *wanFlags) error {
	plan, err := planWAN(f)
	if err != nil {
		return err
	}
	start := time.Now()
	work := make(chan *wanRun)
	var wg sync.WaitGroup
	for range min(f.parallel, len(plan.runs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				cfg, err := sim.WANConfig(r.spec)
				if err == nil {
					r.res, err = sim.Run(cfg)
				}
				r.err = err
			}
		}()
	}
	for _, r := range plan.runs {
		select {
		case work <- r:
		case <-cmd.Context().Done():
		}
	}
	close(work)
	wg.Wait()
	if err := cmd.Context().Err(); err != nil {
		return err
	}
	failed := 0
	for _, r := range plan.runs {
		if r.err != nil {
			return fmt.Errorf("%s, %d sites, %g%% conflicts: %w", r.protocol, r.size, r.conflict, r.err)
		}
		if !r.res.OK() {
			failed++
			fmt.Fprintf(cmd.ErrOrStderr(), "%s, %d sites, %g%% conflicts:\n%s", r.protocol, r.size, r.conflict, r.res.Report())
		}
	}
	printWAN(cmd.OutOrStdout(), f, plan, failed, time.Since(start))
	if failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("synod sim wan: %d run(s) with violations", failed)}
	}
	return nil
}

func printWAN(w io.Writer, f *wanFlags, plan *wanPlan, failed int, wall time.Duration) {
	m := plan.matrix
	fmt.Fprintf(w, "synod sim wan: matrix %s, seed %d, %d clients per site writing back to back, %v measured per run after a warm-up\n",
		f.matrix, f.seed, f.clientsPerSite, f.duration)
	fmt.Fprintf(w, "time: 1 ms = %d units (a tick is 100 ms); links: RTT/2 + up to %.1f ms jitter, in order; client to its site's replica %.1f ms\n",
		sim.WANUnitsPerMs, float64(sim.WANJitterUnits)/sim.WANUnitsPerMs, float64(sim.WANClientLatencyUnits)/sim.WANUnitsPerMs)
	fmt.Fprintf(w, "leader-based protocols lead from %s\n\nround-trip times (ms):\n", plan.leaderSite)
	for _, line := range strings.Split(strings.TrimRight(m.String(), "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprint(w, `
commit: request at the client's site's replica -> the command's leader knows it committed
execute: same start -> the client has the result
pred: from the matrix alone. raft, multipaxos: commit = RTT(site, leader)/2 + the leader's RTT
  to its nearest majority; execute = RTT(site, leader) + that majority RTT + 0.5 ms back to the
  client. epaxos: fast|slow path; fast = RTT to the (fast quorum - 1)-th closest replica,
  slow = two rounds to the nearest majority (PreAccept, Accept); execute adds 0.5 ms.
`)
	siteWidth := len("site")
	for _, s := range m.Sites {
		siteWidth = max(siteWidth, len(s))
	}
	protoWidth := len("protocol")
	for _, p := range plan.protocols {
		protoWidth = max(protoWidth, len(p))
	}
	for _, n := range plan.sizes {
		for _, c := range plan.conflicts {
			var runs []*wanRun
			for _, r := range plan.runs {
				if r.size == n && r.conflict == c {
					runs = append(runs, r)
				}
			}
			warmup := time.Duration(runs[0].res.Config.WarmupTicks) * sim.UnitsPerTick / sim.WANUnitsPerMs * time.Millisecond
			fmt.Fprintf(w, "\n== %d sites (%s), %g%% conflicts; warm-up %v ==\n", n, strings.Join(m.Sites[:n], ", "), c, warmup)
			fmt.Fprintf(w, "%-*s  %-*s  %6s   %-26s   %s\n", siteWidth, "", protoWidth, "", "", "commit (ms)", "execute (ms)")
			fmt.Fprintf(w, "%-*s  %-*s  %6s   %6s %6s %12s   %6s %6s %12s\n", siteWidth, "site", protoWidth, "protocol", "ops",
				"p50", "p99", "pred", "p50", "p99", "pred")
			sub := runs[0].spec.Matrix
			leader, _ := sub.Site(plan.leaderSite)
			for site, name := range sub.Sites {
				for _, r := range runs {
					sl := r.res.Sites[site]
					pr := sim.PredictWAN(sub, r.leaderless, site, leader)
					pred := func(fast, slow float64) string {
						if r.leaderless {
							return fmt.Sprintf("%.1f|%.1f", fast, slow)
						}
						return fmt.Sprintf("%.1f", fast)
					}
					fmt.Fprintf(w, "%-*s  %-*s  %6d   %6.1f %6.1f %12s   %6.1f %6.1f %12s\n", siteWidth, name, protoWidth, r.protocol,
						len(sl.ExecuteMs),
						sim.Quantile(sl.CommitMs, 0.5), sim.Quantile(sl.CommitMs, 0.99), pred(pr.CommitMs, pr.SlowCommitMs),
						sim.Quantile(sl.ExecuteMs, 0.5), sim.Quantile(sl.ExecuteMs, 0.99), pred(pr.ExecuteMs, pr.SlowExecuteMs))
				}
			}
			var notes []string
			for _, r := range runs {
				if r.leaderless {
					continue
				}
				if want := consensus.NodeID(leader + 1); r.res.LastLeader != want || r.res.LeaderChanges != 1 {
					notes = append(notes, fmt.Sprintf("%s: %d leader(s), the last at node %d, not only node %d (%s)",
						r.protocol, r.res.LeaderChanges, r.res.LastLeader, want, plan.leaderSite))
				}
			}
			for _, r := range runs {
				if r.res.OpsFailed+r.res.OpsUnknown > 0 || r.res.Linearizability != "Ok" {
					notes = append(notes, fmt.Sprintf("%s: %d failed, %d unknown outcome, linearizability %q",
						r.protocol, r.res.OpsFailed, r.res.OpsUnknown, r.res.Linearizability))
				}
			}
			for _, note := range notes {
				fmt.Fprintf(w, "note: %s\n", note)
			}
		}
	}
	verdict := "no violations; histories linearizable unless noted"
	if failed > 0 {
		verdict = fmt.Sprintf("VIOLATIONS in %d run(s), reported above the table", failed)
	}
	fmt.Fprintf(w, "\n%d runs in %v; every run checked: %s\n", len(plan.runs), wall.Round(time.Millisecond), verdict)
}

// Command etcdbench measures synod against etcd end to end: a 3-member
// cluster of each, real processes on loopback with their logs synced to
// disk, driven by the same tool, etcd's own benchmark
// (go.etcd.io/etcd/v3/tools/benchmark), with the same workloads:
//
//   - put, 1 client over 1 connection (latency),
//   - put, 100 clients over 10 connections (throughput),
//   - linearizable range of one key, 100 clients over 10 connections,
//
// with 8-byte keys and 256-byte values. Requests go to the leader (as in
// etcd's published benchmarks, --target-leader; with -synod-protocol
// epaxos, which has no leader, to the first member), or with -target all
// to every member in turn. Each round runs every workload on both systems,
// alternating which goes first, and the table gives the medians and the
// ratios synod ÷ etcd.
//
//	cd bench && go run ./cmd/etcdbench
//	go run ./cmd/etcdbench -rounds 5 -put1-total 20000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/synod-io/synod/bench/etcd"
	"github.com/synod-io/synod/node"
)

type flags struct {
	rounds     int
	put1Total  int
	putTotal   int
	rangeTotal int
	clients    int
	conns      int
	keySize    int
	valSize    int
	target     string
	systems    string
	// synodProtocol is passed to synod serve through SYNOD_PROTOCOL.
	synodProtocol string
	workloads     string
	dir           string
	cache         string
	keep          bool
	runTimeout    time.Duration
}

func main() {
	f := flags{}
	cache, _ := os.UserCacheDir()
	flag.IntVar(&f.rounds, "rounds", 3, "rounds; each runs every workload on every system")
	flag.IntVar(&f.put1Total, "put1-total", 5000, "requests of the 1-client put workload")
	flag.IntVar(&f.putTotal, "put-total", 20000, "requests of the many-client put workload")
	flag.IntVar(&f.rangeTotal, "range-total", 20000, "requests of the range workload")
	flag.IntVar(&f.clients, "clients", 100, "clients of the put and range workloads")
	flag.IntVar(&f.conns, "conns", 10, "gRPC connections of the put and range workloads")
	flag.IntVar(&f.keySize, "key-size", 8, "key size in bytes")
	flag.IntVar(&f.valSize, "val-size", 256, "value size in bytes")
	flag.StringVar(&f.target, "target", "leader", "where requests go: leader (under -synod-protocol epaxos, which has none, the first member), or all (every member, connections spread round-robin)")
	flag.StringVar(&f.systems, "systems", "etcd,synod", "systems to run")
	flag.StringVar(&f.synodProtocol, "synod-protocol", "raft", "replication protocol of the synod cluster: "+strings.Join(node.Protocols, ", "))
	flag.StringVar(&f.workloads, "workloads", "put1,put,range", "workloads to run")
	flag.StringVar(&f.dir, "dir", "", "directory for data and logs (default: a new temporary directory, removed afterwards)")
	flag.StringVar(&f.cache, "cache", filepath.Join(cache, "synod-bench"), "where the etcd server and benchmark tool binaries are built")
	flag.BoolVar(&f.keep, "keep", false, "keep data and logs afterwards")
	flag.DurationVar(&f.runTimeout, "run-timeout", 5*time.Minute, "bound on one benchmark run")
	flag.Parse()
	if err := run(f, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "etcdbench:", err)
		os.Exit(1)
	}
}

type sample struct {
	round int
	res   etcd.Result
}

func run(f flags, w io.Writer) (err error) {
	if f.rounds < 1 || f.rounds > 100 || f.put1Total < 1 || f.putTotal < 1 || f.rangeTotal < 1 || f.clients < 1 || f.conns < 1 || f.conns > f.clients {
		return fmt.Errorf("bad flags: need 1 <= rounds <= 100, positive totals, 1 <= conns <= clients")
	}
	if f.target != "leader" && f.target != "all" {
		return fmt.Errorf("-target %q: want leader or all", f.target)
	}
	if !slices.Contains(node.Protocols, f.synodProtocol) {
		return fmt.Errorf("-synod-protocol %q: want one of %s", f.synodProtocol, strings.Join(node.Protocols, ", "))
	}
	benchDir, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(benchDir, "etcd", "etcdserver", "main.go")); err != nil {
		return fmt.Errorf("run me from the bench directory (cd bench && go run ./cmd/etcdbench): %v", err)
	}
	root := filepath.Dir(benchDir)

	dir := f.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "synod-etcdbench-"); err != nil {
			return err
		}
		if !f.keep {
			defer os.RemoveAll(dir)
		}
	}

	fmt.Fprintf(w, "building: etcd server (bench/etcd/etcdserver), etcd benchmark tool %s, synod (working tree)\n", etcd.BenchmarkVersion)
	etcdBin, etcdVersion, err := etcd.BuildEtcd(benchDir, f.cache)
	if err != nil {
		return err
	}
	tool, err := etcd.BuildBenchmark(f.cache)
	if err != nil {
		return err
	}
	synodBin := filepath.Join(dir, "bin", "synod")
	if err := etcd.BuildSynod(root, synodBin); err != nil {
		return err
	}
	bins := map[etcd.System]string{etcd.Etcd: etcdBin, etcd.Synod: synodBin}
	// synod serve reads every flag from a SYNOD_* variable too; the member
	// processes inherit it.
	if err := os.Setenv("SYNOD_PROTOCOL", f.synodProtocol); err != nil {
		return err
	}

	var systems []etcd.System
	for _, s := range strings.Split(f.systems, ",") {
		switch sys := etcd.System(strings.TrimSpace(s)); sys {
		case etcd.Etcd, etcd.Synod:
			systems = append(systems, sys)
		default:
			return fmt.Errorf("-systems: unknown %q", s)
		}
	}
	workloads, err := pickWorkloads(f)
	if err != nil {
		return err
	}

	// Every cluster is stopped on return, and on Ctrl-C.
	clusters := map[etcd.System]*etcd.Cluster{}
	stopAll := func() {
		for _, c := range clusters {
			c.Stop()
		}
	}
	defer stopAll()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "etcdbench: interrupted; stopping the clusters")
		stopAll()
		if !f.keep && f.dir == "" {
			os.RemoveAll(dir)
		}
		os.Exit(130)
	}()

	for _, sys := range systems {
		c, err := etcd.StartCluster(sys, bins[sys], filepath.Join(dir, string(sys)), 3)
		if err != nil {
			return err
		}
		clusters[sys] = c
		if err := seed(c, f); err != nil {
			return err
		}
	}
	load := func() string {
		b, _ := os.ReadFile("/proc/loadavg")
		return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
	}
	fmt.Fprintf(w, "etcd %s (go.etcd.io/etcd/server/v3), synod (this tree), 3 members each on loopback, %s, GOMAXPROCS %d, load average %s\n",
		etcdVersion, runtime.Version(), runtime.GOMAXPROCS(0), load())
	fmt.Fprintf(w, "target %s; keys %d B, values %d B; %d rounds\n\n", f.target, f.keySize, f.valSize, f.rounds)

	results := map[string]map[etcd.System][]sample{}
	for round := range f.rounds {
		order := slices.Clone(systems)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, wl := range workloads {
			if results[wl.Name] == nil {
				results[wl.Name] = map[etcd.System][]sample{}
			}
			for _, sys := range order {
				c := clusters[sys]
				eps, err := targets(c, f.target)
				if err != nil {
					return err
				}
				cpu0 := c.CPUTime()
				res, _, err := etcd.Run(tool, eps, wl, f.runTimeout)
				if err != nil {
					return fmt.Errorf("%s on %s: %w", wl.Name, sys, err)
				}
				res.ServerCPU = c.CPUTime() - cpu0
				if err := c.Alive(); err != nil {
					return err
				}
				results[wl.Name][sys] = append(results[wl.Name][sys], sample{round, res})
				fmt.Fprintf(w, "round %d  %-32s %-5s %9.0f req/s  avg %7.3f ms  p99 %7.3f ms  errors %d  server CPU %.2f ms/1k req\n",
					round+1, wl.Name, sys, res.Throughput, ms(res.Average), ms(res.P99), res.Errors, cpuPer1k(res))
			}
		}
	}
	fmt.Fprintf(w, "\nload average at the end: %s\n", load())
	report(w, workloads, systems, results)
	if f.keep {
		fmt.Fprintf(w, "data and logs kept in %s\n", dir)
	}
	return nil
}

func pickWorkloads(f flags) ([]etcd.Workload, error) {
	key := fmt.Sprint(f.keySize)
	val := fmt.Sprint(f.valSize)
	all := map[string]etcd.Workload{
		"put1": {Name: "put, 1 client", Conns: 1, Clients: 1,
			Args: []string{"put", "--key-size", key, "--val-size", val, "--total", fmt.Sprint(f.put1Total), "--sequential-keys", "--key-space-size", fmt.Sprint(f.put1Total)}},
		"put": {Name: fmt.Sprintf("put, %d clients/%d conns", f.clients, f.conns), Conns: f.conns, Clients: f.clients,
			Args: []string{"put", "--key-size", key, "--val-size", val, "--total", fmt.Sprint(f.putTotal), "--sequential-keys", "--key-space-size", fmt.Sprint(f.putTotal)}},
		"range": {Name: fmt.Sprintf("range (l), %d clients/%d conns", f.clients, f.conns), Conns: f.conns, Clients: f.clients,
			Args: []string{"range", rangeKey(f.keySize), "--consistency", "l", "--total", fmt.Sprint(f.rangeTotal)}},
	}
	var out []etcd.Workload
	for _, n := range strings.Split(f.workloads, ",") {
		wl, ok := all[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("-workloads: unknown %q (put1, put, range)", n)
		}
		out = append(out, wl)
	}
	return out, nil
}

// rangeKey is the key the range workload reads, keySize bytes long.
func rangeKey(keySize int) string {
	return strings.Repeat("r", max(keySize, 1))
}

// seed writes the range workload's key.
func seed(c *etcd.Cluster, f flags) error {
	cli, err := c.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = cli.Put(ctx, rangeKey(f.keySize), strings.Repeat("v", f.valSize))
	return err
}

// targets returns the endpoints requests go to.
func targets(c *etcd.Cluster, target string) ([]string, error) {
	if target == "all" {
		return c.Endpoints(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.WaitLeader(ctx)
	if err != nil {
		return nil, err
	}
	return []string{l.Endpoint()}, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func cpuPer1k(r etcd.Result) float64 {
	n := r.Throughput * r.Total.Seconds()
	if n == 0 {
		return 0
	}
	return ms(r.ServerCPU) / n * 1000
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report prints, per workload, the medians over the rounds for each
// system and the ratio synod ÷ etcd of the medians, with the range of
// the per-round ratios.
func report(w io.Writer, workloads []etcd.Workload, systems []etcd.System, results map[string]map[etcd.System][]sample) {
	metrics := []struct {
		name string
		get  func(etcd.Result) float64
	}{
		{"req/s", func(r etcd.Result) float64 { return r.Throughput }},
		{"avg ms", func(r etcd.Result) float64 { return ms(r.Average) }},
		{"p99 ms", func(r etcd.Result) float64 { return ms(r.P99) }},
		{"CPU ms/1k", cpuPer1k},
	}
	fmt.Fprintf(w, "\nmedians over the rounds; ratio = synod ÷ etcd of the medians [min–max of the per-round ratios]\n")
	fmt.Fprintf(w, "(req/s: higher is better, so a ratio > 1 favours synod; latency and CPU: lower is better, a ratio < 1 favours synod)\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\tmetric\t")
	for _, s := range systems {
		fmt.Fprintf(tw, "%s\t", s)
	}
	both := len(systems) == 2
	if both {
		fmt.Fprintf(tw, "synod ÷ etcd\tper round\t")
	}
	fmt.Fprintln(tw)
	for _, wl := range workloads {
		for i, m := range metrics {
			name := ""
			if i == 0 {
				name = wl.Name
			}
			fmt.Fprintf(tw, "%s\t%s\t", name, m.name)
			med := map[etcd.System]float64{}
			for _, s := range systems {
				var xs []float64
				for _, smp := range results[wl.Name][s] {
					xs = append(xs, m.get(smp.res))
				}
				med[s] = median(xs)
				fmt.Fprintf(tw, "%s\t", num(med[s]))
			}
			if both {
				es, ss := results[wl.Name][etcd.Etcd], results[wl.Name][etcd.Synod]
				var rs []float64
				for j := range min(len(es), len(ss)) {
					if e := m.get(es[j].res); e != 0 {
						rs = append(rs, m.get(ss[j].res)/e)
					}
				}
				ratio := 0.0
				if med[etcd.Etcd] != 0 {
					ratio = med[etcd.Synod] / med[etcd.Etcd]
				}
				lo, hi := 0.0, 0.0
				if len(rs) > 0 {
					lo, hi = slices.Min(rs), slices.Max(rs)
				}
				fmt.Fprintf(tw, "%.2f\t[%.2f–%.2f]\t", ratio, lo, hi)
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	var errs []string
	for _, wl := range workloads {
		for _, s := range systems {
			n := 0
			for _, smp := range results[wl.Name][s] {
				n += smp.res.Errors
			}
			if n > 0 {
				errs = append(errs, fmt.Sprintf("%s on %s: %d failed requests", wl.Name, s, n))
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nerrors: %s\n", strings.Join(errs, "; "))
	}
}

func num(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

// Command etcdbench measures synod against etcd end to end: a 3-member
// cluster of each system, real processes on loopback with their logs
// synced to disk, driven by the same tool, etcd's own benchmark
// (go.etcd.io/etcd/v3/tools/benchmark), with the same workloads:
//
//   - put, 1 client over 1 connection (latency),
//   - put, 100 clients over 10 connections (throughput), with sequential
//     keys or, with -conflicts, at chosen conflict rates (random keys from
//     a key space sized for each rate; see conflictKeys),
//   - linearizable range of one key, 100 clients over 10 connections,
//
// with 8-byte keys and 256-byte values. -synod-protocol takes a list:
// every protocol named gets its own synod cluster, so Raft, Multi-Paxos
// and EPaxos are measured in one run, next to etcd.
//
// Requests go to the leader (as in etcd's published benchmarks,
// --target-leader) for etcd and synod's leader-based protocols, and are
// spread over every member for a leaderless one (EPaxos), where every
// member orders its own clients' commands (-target auto, the default);
// -target leader or all picks one policy for every system, and a
// -synod-protocol entry protocol@target (epaxos@leader) overrides it for
// one cluster. Each round starts fresh clusters and runs every workload
// on every system, rotating the order of the systems from round to round,
// then checks that every cluster's members hold the same keys, versions
// and values; the tables give the medians and the ratios.
//
//	cd bench && go run ./cmd/etcdbench
//	go run ./cmd/etcdbench -rounds 5 -put1-total 20000
//	go run ./cmd/etcdbench -synod-protocol raft,multipaxos,epaxos -conflicts 0,2,100 -workloads put,range
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	// synodProtocols lists synod's protocols, one cluster each.
	synodProtocols string
	// conflicts lists the conflict rates (percent) of the put workload;
	// empty for sequential keys.
	conflicts  string
	workloads  string
	fresh      bool
	dir        string
	cache      string
	keep       bool
	runTimeout time.Duration
}

func main() {
	f := flags{}
	cache, _ := os.UserCacheDir()
	flag.IntVar(&f.rounds, "rounds", 3, "rounds; each runs every workload on every system")
	flag.IntVar(&f.put1Total, "put1-total", 5000, "requests of the 1-client put workload")
	flag.IntVar(&f.putTotal, "put-total", 20000, "requests of the many-client put workload (of each conflict rate)")
	flag.IntVar(&f.rangeTotal, "range-total", 20000, "requests of the range workload")
	flag.IntVar(&f.clients, "clients", 100, "clients of the put and range workloads")
	flag.IntVar(&f.conns, "conns", 10, "gRPC connections of the put and range workloads")
	flag.IntVar(&f.keySize, "key-size", 8, "key size in bytes")
	flag.IntVar(&f.valSize, "val-size", 256, "value size in bytes")
	flag.StringVar(&f.target, "target", "auto", "where requests go: auto (leader-based systems: the leader; leaderless ones: every member), leader (a leaderless cluster: its first member), or all (every member, connections spread round-robin; followers forward to the leader)")
	flag.StringVar(&f.systems, "systems", "etcd,synod", "systems to run (synod: one cluster per -synod-protocol)")
	flag.StringVar(&f.synodProtocols, "synod-protocol", "raft", "replication protocols of synod, comma-separated, one cluster each: "+strings.Join(node.Protocols, ", ")+"; protocol@target (e.g. epaxos@leader) overrides -target for that cluster")
	flag.StringVar(&f.conflicts, "conflicts", "", "conflict rates of the put workload in percent, comma-separated (e.g. 0,2,100): random keys from a key space sized so that a put shares its key with one of the other clients' in-flight puts with that probability; empty: sequential keys, as many as requests")
	flag.StringVar(&f.workloads, "workloads", "put1,put,range", "workloads to run")
	flag.BoolVar(&f.fresh, "fresh", true, "start new clusters (empty data directories) for every round, so that every round sees the same store sizes; false: one set of clusters for the whole run")
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

// system is one cluster of the run: etcd, or synod with one protocol.
type system struct {
	name     string // etcd, synod-raft, synod-multipaxos, synod-epaxos
	sys      etcd.System
	protocol string // synod's protocol; "" for etcd
	// targetFor overrides -target for this cluster ("" for none): a
	// -synod-protocol entry "epaxos@leader" or "raft@all".
	targetFor string
}

func (s system) leaderless() bool { return s.sys == etcd.Synod && node.Leaderless(s.protocol) }

// target resolves -target for s: "leader" or "all".
func (s system) target(flag string) string {
	if s.targetFor != "" {
		flag = s.targetFor
	}
	if flag == "auto" {
		if s.leaderless() {
			return "all"
		}
		return "leader"
	}
	return flag
}

// describeTarget says where s's requests go, for the header.
func (s system) describeTarget(flag string) string {
	switch t := s.target(flag); {
	case t == "all" && s.leaderless():
		return "every member (leaderless: each member orders its own clients' commands; connections round-robin over the members)"
	case t == "all" && s.sys == etcd.Etcd:
		return "every member (connections round-robin; followers forward over raft)"
	case t == "all":
		return "every member (connections round-robin; followers forward to the leader over its client API)"
	case s.leaderless():
		return "the first member only (leaderless: it orders every command)"
	default:
		return "the leader (like etcd's --target-leader)"
	}
}

func parseSystems(f flags) ([]system, error) {
	// An entry is a protocol, or protocol@target for a cluster whose
	// requests go elsewhere than -target says (epaxos@leader next to
	// epaxos compares the two in one run).
	var protocols []string
	for _, p := range strings.Split(f.synodProtocols, ",") {
		p = strings.TrimSpace(p)
		proto, target, _ := strings.Cut(p, "@")
		if !slices.Contains(node.Protocols, proto) {
			return nil, fmt.Errorf("-synod-protocol %q: want one or more of %s, each optionally with @leader, @all or @auto", p, strings.Join(node.Protocols, ", "))
		}
		if target != "" && !validTarget(target) {
			return nil, fmt.Errorf("-synod-protocol %q: target %q: want auto, leader or all", p, target)
		}
		if slices.Contains(protocols, p) {
			return nil, fmt.Errorf("-synod-protocol: %s twice", p)
		}
		protocols = append(protocols, p)
	}
	var out []system
	seen := map[string]bool{}
	for _, s := range strings.Split(f.systems, ",") {
		s = strings.TrimSpace(s)
		if seen[s] {
			return nil, fmt.Errorf("-systems: %s twice", s)
		}
		seen[s] = true
		switch etcd.System(s) {
		case etcd.Etcd:
			out = append(out, system{name: s, sys: etcd.Etcd})
		case etcd.Synod:
			for _, p := range protocols {
				proto, target, _ := strings.Cut(p, "@")
				out = append(out, system{name: "synod-" + p, sys: etcd.Synod, protocol: proto, targetFor: target})
			}
		default:
			return nil, fmt.Errorf("-systems: unknown %q (etcd, synod)", s)
		}
	}
	return out, nil
}

// workload is one invocation of the benchmark tool.
type workload struct {
	etcd.Workload
	kind string // put1, put or range
	// conflict is the conflict rate of a put workload with -conflicts, in
	// percent (-1 otherwise), and keys its key space.
	conflict float64
	keys     int64
}

type sample struct {
	round int
	res   etcd.Result
}

// clusters are the running clusters, stopped on return and on Ctrl-C.
type clusters struct {
	mu sync.Mutex
	m  map[string]*etcd.Cluster
}

func (cs *clusters) set(name string, c *etcd.Cluster) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.m[name] = c
}

func (cs *clusters) get(name string) *etcd.Cluster {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.m[name]
}

func (cs *clusters) stopAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for n, c := range cs.m {
		c.Stop()
		delete(cs.m, n)
	}
}

func run(f flags, w io.Writer) (err error) {
	if f.rounds < 1 || f.rounds > 100 || f.put1Total < 1 || f.putTotal < 1 || f.rangeTotal < 1 || f.clients < 1 || f.conns < 1 || f.conns > f.clients || f.keySize < 1 {
		return fmt.Errorf("bad flags: need 1 <= rounds <= 100, positive totals and key size, 1 <= conns <= clients")
	}
	if !validTarget(f.target) {
		return fmt.Errorf("-target %q: want auto, leader or all", f.target)
	}
	systems, err := parseSystems(f)
	if err != nil {
		return err
	}
	workloads, err := pickWorkloads(f)
	if err != nil {
		return err
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

	running := &clusters{m: map[string]*etcd.Cluster{}}
	defer running.stopAll()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "etcdbench: interrupted; stopping the clusters")
		running.stopAll()
		if !f.keep && f.dir == "" {
			os.RemoveAll(dir)
		}
		os.Exit(130)
	}()

	load := func() string {
		b, _ := os.ReadFile("/proc/loadavg")
		return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
	}
	fmt.Fprintf(w, "etcd %s (go.etcd.io/etcd/server/v3), synod (%s), 3 members each on loopback, %s, GOMAXPROCS %d, load average %s\n",
		etcdVersion, treeState(root), runtime.Version(), runtime.GOMAXPROCS(0), load())
	fresh := "one set of clusters for the whole run"
	if f.fresh {
		fresh = "new clusters every round"
	}
	fmt.Fprintf(w, "keys %d B, values %d B; %d rounds, %s; system order rotates every round\n", f.keySize, f.valSize, f.rounds, fresh)
	fmt.Fprintf(w, "targets (-target %s, or a -synod-protocol entry's @target):\n", f.target)
	for _, s := range systems {
		fmt.Fprintf(w, "  %-20s %s\n", s.name, s.describeTarget(f.target))
	}
	if hasConflicts(workloads) {
		c := f.clients
		fmt.Fprintf(w, "conflicts: put with random keys drawn from K keys (--key-space-size K); P(a put's key is also the key of one of the other %d clients' puts in flight) = 1-(1-1/K)^%d:\n", c-1, c-1)
		for _, wl := range workloads {
			if wl.kind == "put" && wl.conflict >= 0 {
				fmt.Fprintf(w, "  %-5s K = %-16s P = %s\n", pct(wl.conflict), keysString(wl.keys), pctP(conflictProbability(wl.keys, c)))
			}
		}
		fmt.Fprintf(w, "  (range: every request reads the same key, so all of them conflict)\n")
	}
	fmt.Fprintln(w)

	hotKey := strings.Repeat("\x00", f.keySize) // the one key of the 100% conflict workload
	type hot struct{ sent, ok, others int }
	hots := map[string]*hot{}
	start := func(round int) error {
		for _, s := range systems {
			d := filepath.Join(dir, s.name)
			if f.fresh {
				d = filepath.Join(dir, fmt.Sprintf("round%d", round+1), s.name)
			}
			c, err := etcd.StartCluster(s.sys, s.protocol, bins[s.sys], d, 3)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			running.set(s.name, c)
			if err := seed(c, f); err != nil {
				return fmt.Errorf("%s: seeding: %w", s.name, err)
			}
			hots[s.name] = &hot{}
		}
		return nil
	}
	// check compares the members of every cluster (and then, with -fresh,
	// stops them).
	var checkErrs []string
	check := func(round int) {
		for _, s := range systems {
			c := running.get(s.name)
			r, err := c.Check(30*time.Second, hotKey)
			h := hots[s.name]
			switch {
			case err != nil:
				checkErrs = append(checkErrs, fmt.Sprintf("round %d %s: %v", round+1, s.name, err))
				fmt.Fprintf(w, "check   %-20s FAILED: %v\n", s.name, err)
			case h.sent > 0 && (r.Versions[0] < int64(h.ok) || r.Versions[0] > int64(h.sent+h.others)):
				msg := fmt.Sprintf("the 100%%-conflict key has version %d on every member, but %d puts to it were acknowledged and %d sent", r.Versions[0], h.ok, h.sent)
				checkErrs = append(checkErrs, fmt.Sprintf("round %d %s: %s", round+1, s.name, msg))
				fmt.Fprintf(w, "check   %-20s FAILED: %s\n", s.name, msg)
			default:
				extra := ""
				if h.sent > 0 {
					extra = fmt.Sprintf("; the 100%%-conflict key has version %d (%d puts acknowledged)", r.Versions[0], h.ok)
				}
				fmt.Fprintf(w, "check   %-20s %d keys, same version and value on all %d members%s\n", s.name, r.Keys, len(c.Members), extra)
			}
		}
	}

	results := map[string]map[string][]sample{} // workload, system
	for round := range f.rounds {
		if f.fresh || round == 0 {
			if err := start(round); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "round %d, load average %s\n", round+1, load())
		order := make([]system, len(systems))
		for i := range systems {
			order[i] = systems[(i+round)%len(systems)]
		}
		for _, wl := range workloads {
			if results[wl.Name] == nil {
				results[wl.Name] = map[string][]sample{}
			}
			for _, s := range order {
				c := running.get(s.name)
				eps, err := targets(c, s.target(f.target))
				if err != nil {
					return err
				}
				cpu0 := c.CPUTime()
				res, _, err := etcd.Run(tool, eps, wl.Workload, f.runTimeout)
				if err != nil {
					return fmt.Errorf("%s on %s: %w", wl.Name, s.name, err)
				}
				res.ServerCPU = c.CPUTime() - cpu0
				if err := c.Alive(); err != nil {
					return err
				}
				if wl.kind == "put" && wl.keys == 1 {
					hots[s.name].sent += f.putTotal
					hots[s.name].ok += f.putTotal - res.Errors
				} else if wl.kind == "put" || wl.kind == "put1" {
					// Its first key may be the hot key (sequential keys
					// start with it; see conflictKeys for random ones).
					hots[s.name].others++
				}
				results[wl.Name][s.name] = append(results[wl.Name][s.name], sample{round, res})
				fmt.Fprintf(w, "round %d  %-48s %-20s %9.0f req/s  avg %7.3f ms  p99 %7.3f ms  errors %d  server CPU %.2f ms/1k req\n",
					round+1, wl.Name, s.name, res.Throughput, ms(res.Average), ms(res.P99), res.Errors, cpuPer1k(res))
			}
		}
		if f.fresh || round == f.rounds-1 {
			check(round)
		}
		if f.fresh {
			running.stopAll()
			if !f.keep {
				os.RemoveAll(filepath.Join(dir, fmt.Sprintf("round%d", round+1)))
			}
		}
	}
	fmt.Fprintf(w, "\nload average at the end: %s\n", load())
	report(w, workloads, systems, results)
	if hasConflicts(workloads) {
		conflictReport(w, f, workloads, systems, results)
	}
	if len(checkErrs) > 0 {
		fmt.Fprintf(w, "\nCONSISTENCY CHECK FAILED:\n  %s\n", strings.Join(checkErrs, "\n  "))
	}
	if f.keep {
		fmt.Fprintf(w, "data and logs kept in %s\n", dir)
	}
	return nil
}

// treeState names the commit synod was built from and whether tracked
// files outside bench/ differed from it (read-only git commands; "working
// tree" if git cannot tell).
func treeState(root string) string {
	git := func(args ...string) (string, error) {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		return strings.TrimSpace(string(out)), err
	}
	head, err := git("rev-parse", "--short=12", "HEAD")
	if err != nil {
		return "working tree"
	}
	dirty, err := git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench")
	switch {
	case err != nil:
		return "working tree at " + head
	case dirty != "":
		return fmt.Sprintf("working tree at %s, %d files changed outside bench/", head, len(strings.Split(dirty, "\n")))
	}
	return "commit " + head + ", no changes outside bench/"
}

func validTarget(t string) bool { return t == "auto" || t == "leader" || t == "all" }

func hasConflicts(wls []workload) bool {
	return slices.ContainsFunc(wls, func(wl workload) bool { return wl.conflict >= 0 })
}

func pickWorkloads(f flags) ([]workload, error) {
	key := fmt.Sprint(f.keySize)
	val := fmt.Sprint(f.valSize)
	put := func(conflict float64, keys int64, keyArgs ...string) workload {
		name := fmt.Sprintf("put, %d clients/%d conns", f.clients, f.conns)
		if conflict >= 0 {
			name += fmt.Sprintf(", %s conflicts", pct(conflict))
		}
		return workload{
			Workload: etcd.Workload{Name: name, Conns: f.conns, Clients: f.clients,
				Args: append([]string{"put", "--key-size", key, "--val-size", val, "--total", fmt.Sprint(f.putTotal)}, keyArgs...)},
			kind: "put", conflict: conflict, keys: keys,
		}
	}
	var out []workload
	for _, n := range strings.Split(f.workloads, ",") {
		switch n = strings.TrimSpace(n); n {
		case "put1":
			out = append(out, workload{
				Workload: etcd.Workload{Name: "put, 1 client", Conns: 1, Clients: 1,
					Args: []string{"put", "--key-size", key, "--val-size", val, "--total", fmt.Sprint(f.put1Total), "--sequential-keys", "--key-space-size", fmt.Sprint(f.put1Total)}},
				kind: "put1", conflict: -1, keys: int64(f.put1Total),
			})
		case "put":
			if f.conflicts == "" {
				out = append(out, put(-1, int64(f.putTotal), "--sequential-keys", "--key-space-size", fmt.Sprint(f.putTotal)))
				continue
			}
			for _, s := range strings.Split(f.conflicts, ",") {
				p, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
				if err != nil || p < 0 || p > 100 {
					return nil, fmt.Errorf("-conflicts: %q is not a percentage in 0..100", s)
				}
				k, err := conflictKeys(p, f.clients, f.keySize)
				if err != nil {
					return nil, err
				}
				out = append(out, put(p, k, "--key-space-size", fmt.Sprint(k)))
			}
		case "range":
			out = append(out, workload{
				Workload: etcd.Workload{Name: fmt.Sprintf("range (l), %d clients/%d conns", f.clients, f.conns), Conns: f.conns, Clients: f.clients,
					Args: []string{"range", rangeKey(f.keySize), "--consistency", "l", "--total", fmt.Sprint(f.rangeTotal)}},
				kind: "range", conflict: -1, keys: 1,
			})
		default:
			return nil, fmt.Errorf("-workloads: unknown %q (put1, put, range)", n)
		}
	}
	return out, nil
}

// conflictKeys is the key space K of the put workload at conflict rate p
// (percent) with c clients.
//
// The benchmark tool (without --sequential-keys) gives each put a key
// drawn uniformly from K keys. With c clients each keeping one put in
// flight, a put is in flight together with about c-1 others; it conflicts
// (for EPaxos: shares its key, so its dependencies can differ between
// replicas and it may need the slow path) with at least one of them with
// probability
//
//	P(K) = 1 - (1 - 1/K)^(c-1)  ≈  (c-1)/K  for K ≫ c,
//
// so the key space for a rate p is
//
//	K = 1 / (1 - (1-p)^(1/(c-1)))  ≈  (c-1)/p
//
// (c = 100, p = 2%: K = 4901; the approximation gives 4950). p = 100% is
// one key (every put conflicts with every other), and p = 0% is the
// largest key space the tool can encode in the key size, capped at 2^48
// (P ≈ 4·10^-13 at c = 100): concurrent puts practically never share a
// key. This is an approximation: clients are not always all in flight
// (each spends some time between its reply and its next request), a put
// can also conflict with one that has completed at the client but not yet
// executed on every replica, and a put whose key repeats that of an
// earlier, already committed put is not a conflict in the sense that
// matters (it depends on a command every replica already knows).
//
// The tool writes the key as binary.PutVarint(key, rand.Intn(K)) into a
// reused key-size buffer, so the bytes past a short varint are left over
// from the previous key: with K = 4901, the 64 values below 64 take one
// byte and are spread over more keys than one each (about 1.3% of the
// puts), which lowers the 2% rate to about 1.97%; K = 1 always writes the
// key of key-size zero bytes.
func conflictKeys(p float64, c, keySize int) (int64, error) {
	// PutVarint zigzag-encodes, 7 bits a byte: values below
	// 2^(7·keySize-1) fit in keySize bytes.
	maxKeys := int64(1) << 48
	if n := 7*keySize - 1; n < 48 {
		maxKeys = int64(1) << n
	}
	switch {
	case p == 100:
		return 1, nil
	case p == 0:
		return maxKeys, nil
	case c < 2:
		return 0, fmt.Errorf("-conflicts %s: with one client no two puts are in flight together; only 0 and 100 make sense", pct(p))
	}
	k := int64(math.Round(1 / -math.Expm1(math.Log1p(-p/100)/float64(c-1))))
	if k > maxKeys {
		return 0, fmt.Errorf("-conflicts %s needs %d keys, more than %d-byte keys can tell apart (%d)", pct(p), k, keySize, maxKeys)
	}
	return max(k, 1), nil
}

// conflictProbability is P(K) of conflictKeys for c clients.
func conflictProbability(k int64, c int) float64 {
	if c < 2 {
		return 0
	}
	return -math.Expm1(float64(c-1) * math.Log1p(-1/float64(k)))
}

func pct(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

func pctP(p float64) string {
	if p < 1e-4 {
		return fmt.Sprintf("%.0e", p)
	}
	return fmt.Sprintf("%.2f%%", 100*p)
}

func keysString(k int64) string {
	if k >= 1<<20 && k&(k-1) == 0 {
		return fmt.Sprintf("2^%d", bits.Len64(uint64(k))-1)
	}
	return fmt.Sprint(k)
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

// targets returns the endpoints requests go to: every member for "all",
// else the leader (a leaderless cluster's first member).
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

// ratio is a ÷ b of the medians of metric get over the rounds, with the
// range of the per-round ratios, as "1.23 [1.10–1.31]" ("" if b has no
// samples).
func ratio(as, bs []sample, get func(etcd.Result) float64) string {
	var xa, xb, rs []float64
	for _, s := range as {
		xa = append(xa, get(s.res))
	}
	for _, s := range bs {
		xb = append(xb, get(s.res))
	}
	for j := range min(len(as), len(bs)) {
		if b := get(bs[j].res); b != 0 {
			rs = append(rs, get(as[j].res)/b)
		}
	}
	mb := median(xb)
	if mb == 0 || len(rs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f [%.2f–%.2f]", median(xa)/mb, slices.Min(rs), slices.Max(rs))
}

// report prints, per workload, the medians over the rounds for each
// system and, if etcd ran, the ratio of each other system ÷ etcd of the
// medians, with the range of the per-round ratios.
func report(w io.Writer, workloads []workload, systems []system, results map[string]map[string][]sample) {
	metrics := []struct {
		name string
		get  func(etcd.Result) float64
	}{
		{"req/s", func(r etcd.Result) float64 { return r.Throughput }},
		{"avg ms", func(r etcd.Result) float64 { return ms(r.Average) }},
		{"p99 ms", func(r etcd.Result) float64 { return ms(r.P99) }},
		{"CPU ms/1k", cpuPer1k},
	}
	withEtcd := slices.ContainsFunc(systems, func(s system) bool { return s.sys == etcd.Etcd })
	fmt.Fprintf(w, "\nmedians over the rounds; ratio = system ÷ etcd of the medians [min–max of the per-round ratios]\n")
	fmt.Fprintf(w, "(req/s: higher is better, so a ratio > 1 favours synod; latency and CPU: lower is better, a ratio < 1 favours synod)\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\tmetric\t")
	for _, s := range systems {
		fmt.Fprintf(tw, "%s\t", s.name)
	}
	if withEtcd {
		for _, s := range systems {
			if s.sys != etcd.Etcd {
				fmt.Fprintf(tw, "%s ÷ etcd\t", s.name)
			}
		}
	}
	fmt.Fprintln(tw)
	for _, wl := range workloads {
		for i, m := range metrics {
			name := ""
			if i == 0 {
				name = wl.Name
			}
			fmt.Fprintf(tw, "%s\t%s\t", name, m.name)
			for _, s := range systems {
				var xs []float64
				for _, smp := range results[wl.Name][s.name] {
					xs = append(xs, m.get(smp.res))
				}
				fmt.Fprintf(tw, "%s\t", num(median(xs)))
			}
			if withEtcd {
				for _, s := range systems {
					if s.sys != etcd.Etcd {
						fmt.Fprintf(tw, "%s\t", ratio(results[wl.Name][s.name], results[wl.Name]["etcd"], m.get))
					}
				}
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	var errs []string
	for _, wl := range workloads {
		for _, s := range systems {
			n := 0
			for _, smp := range results[wl.Name][s.name] {
				n += smp.res.Errors
			}
			if n > 0 {
				errs = append(errs, fmt.Sprintf("%s on %s: %d failed requests", wl.Name, s.name, n))
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nerrors: %s\n", strings.Join(errs, "; "))
	}
}

// conflictReport prints the throughput per conflict rate (and of the
// range workload, whose requests all read one key): the medians of every
// system, the ratios of every leaderless synod protocol to every
// leader-based one, and of every system to etcd.
//
// The ratio of the medians is shown with the range of the per-round
// ratios (the systems of one round run seconds apart, so a per-round
// ratio sees the same machine conditions on both sides).
func conflictReport(w io.Writer, f flags, workloads []workload, systems []system, results map[string]map[string][]sample) {
	type pair struct{ a, b system }
	var pairs []pair
	for _, a := range systems {
		// Leader-based protocols in reverse order: with the default
		// raft,multipaxos,epaxos, epaxos ÷ multipaxos comes first.
		for _, b := range slices.Backward(systems) {
			if a.leaderless() && b.sys == etcd.Synod && !b.leaderless() {
				pairs = append(pairs, pair{a, b})
			}
		}
	}
	for _, b := range systems {
		if b.sys == etcd.Etcd {
			for _, a := range systems {
				if a.sys != etcd.Etcd {
					pairs = append(pairs, pair{a, b})
				}
			}
		}
	}
	short := func(s system) string { return strings.TrimPrefix(s.name, "synod-") }
	throughput := func(r etcd.Result) float64 { return r.Throughput }

	fmt.Fprintf(w, "\nthroughput (req/s) by conflict rate, %d clients/%d conns, medians over %d rounds; ratio of the medians [min–max of the per-round ratios]\n", f.clients, f.conns, f.rounds)
	fmt.Fprintf(w, "targets (-target %s): ", f.target)
	var ts []string
	for _, s := range systems {
		ts = append(ts, fmt.Sprintf("%s → %s", s.name, map[string]string{"leader": "leader", "all": "all members"}[s.target(f.target)]))
	}
	fmt.Fprintf(w, "%s\n\n", strings.Join(ts, ", "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\tconflicts\tkeys\t")
	for _, s := range systems {
		fmt.Fprintf(tw, "%s\t", s.name)
	}
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s ÷ %s\t", short(p.a), short(p.b))
	}
	fmt.Fprintln(tw)
	for _, wl := range workloads {
		if wl.conflict < 0 && wl.kind != "range" {
			continue
		}
		name, conflicts := "put", pct(wl.conflict)
		if wl.kind == "range" {
			name, conflicts = "range (l)", "100% (1 key)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t", name, conflicts, keysString(wl.keys))
		for _, s := range systems {
			var xs []float64
			for _, smp := range results[wl.Name][s.name] {
				xs = append(xs, smp.res.Throughput)
			}
			fmt.Fprintf(tw, "%s\t", num(median(xs)))
		}
		for _, p := range pairs {
			fmt.Fprintf(tw, "%s\t", ratio(results[wl.Name][p.a.name], results[wl.Name][p.b.name], throughput))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
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

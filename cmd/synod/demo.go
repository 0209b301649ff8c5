package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/sim/check"
)

// Bounds of the demo's flags.
const (
	demoNodesMax    = 9
	demoClientsMax  = 256
	demoKeysMax     = 1000
	demoDurationMax = time.Hour
	// demoOpTimeout bounds one client operation.
	demoOpTimeout = 2 * time.Second
	// demoWaitMax bounds each wait: for the first leader, a new leader
	// after the kill, the restarted member catching up.
	demoWaitMax = 30 * time.Second
	// demoCheckTimeout bounds the linearizability check.
	demoCheckTimeout = 60 * time.Second
	// demoStopTimeout is how long a member may take to stop on SIGTERM
	// before it is killed.
	demoStopTimeout = 5 * time.Second
)

type demoFlags struct {
	protocol   string
	nodes      int
	duration   time.Duration
	clients    int
	keys       int
	keep       bool
	noKill     bool
	noProgress bool
	logLevel   string
}

func newDemoCommand() *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local cluster, kill its leader under load, and check the history",
		Long: `Start a cluster of real "synod serve" processes on loopback ports in a
temporary directory, drive a mixed workload (gets, puts, compare-and-swaps)
through etcd's Go client from several clients, kill -9 the leader a third of
the way in, watch a new leader take over while the workload continues,
restart the killed member two thirds of the way in and wait for it to catch
up. Then print a summary (operations, throughput, latency percentiles,
leader changes, time to recover) and check the recorded history for
linearizability with porcupine.

The members replicate with --protocol: raft (the default), multipaxos or
epaxos. EPaxos has no leader: the demo kills -9 one of its members instead,
the others keep taking writes without an election (instances the killed
member was driving are recovered by the others), and the restarted member
rebuilds its state from its log and catches up.

The cluster and its directory are removed at the end, and on Ctrl-C. With
--keep the cluster keeps running after the workload, and the command prints
its endpoints and etcdctl commands to try.

The exit code is 1 if the history is not linearizable or the cluster did not
recover.`,
		Example: `  synod demo
  synod demo --nodes 5 --clients 16 --duration 30s
  synod demo --protocol multipaxos
  synod demo --protocol epaxos
  synod demo --keep`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.protocol, "protocol", "raft", "replication protocol the members run, one of "+strings.Join(node.Protocols, ", "))
	fl.IntVar(&f.nodes, "nodes", 3, "cluster size")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long the workload runs")
	fl.IntVar(&f.clients, "clients", 4, "concurrent clients")
	fl.IntVar(&f.keys, "keys", 8, "distinct keys the workload touches")
	fl.BoolVar(&f.keep, "keep", false, "leave the cluster running afterwards and print its endpoints")
	fl.BoolVar(&f.noKill, "no-kill", false, "do not kill and restart the leader")
	fl.BoolVar(&f.noProgress, "no-progress", false, "no progress bar")
	fl.StringVar(&f.logLevel, "log-level", "info", "members' log level (their logs are in the cluster directory)")
	return cmd
}

func (f *demoFlags) validate() error {
	switch {
	case f.protocol == node.Gossip:
		return fmt.Errorf("--protocol gossip: the demo checks its history for linearizability, which eventually consistent mode does not give; " +
			"run \"synod sim cap\" to watch gossip and Raft under one partition, or start members with \"synod serve --protocol gossip\"")
	case !slices.Contains(node.Protocols, f.protocol):
		return fmt.Errorf("--protocol %q is not supported; choose one of %s", f.protocol, strings.Join(node.Protocols, ", "))
	case f.nodes < 1 || f.nodes > demoNodesMax:
		return fmt.Errorf("--nodes %d: allowed 1..%d", f.nodes, demoNodesMax)
	case f.nodes < 3 && !f.noKill:
		return fmt.Errorf("--nodes %d: killing a member needs at least 3 members to keep a majority (or pass --no-kill)", f.nodes)
	case f.clients < 1 || f.clients > demoClientsMax:
		return fmt.Errorf("--clients %d: allowed 1..%d", f.clients, demoClientsMax)
	case f.keys < 1 || f.keys > demoKeysMax:
		return fmt.Errorf("--keys %d: allowed 1..%d", f.keys, demoKeysMax)
	case f.duration < time.Second || f.duration > demoDurationMax:
		return fmt.Errorf("--duration %v: allowed 1s..%v", f.duration, demoDurationMax)
	}
	return nil
}

// member is one "synod serve" child process.
type member struct {
	name      string
	id        uint64
	clientURL string
	peerURL   string
	// metricsURL serves /metrics, /health and /status.
	metricsURL string
	dataDir    string
	logPath    string
	args       []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	// status is a client used only for Maintenance.Status.
	status *clientv3.Client
}

func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// demo is one run of the demo.
type demo struct {
	f       *demoFlags
	out     io.Writer
	exe     string
	dir     string
	token   string
	members []*member
	start   time.Time
	workNs  atomic.Int64 // see workStart

	printMu sync.Mutex
	bar     *progressbar.ProgressBar

	// Workload results.
	ops       atomic.Int64
	history   [][]check.KVOperation // per client
	latencies [][]time.Duration     // per client, successful operations
	failed    atomic.Int64
	unknown   atomic.Int64
	// killNs is when the leader was killed and firstWriteNs when the first
	// write that called after it succeeded (nanoseconds since workStart).
	killNs       atomic.Int64
	firstWriteNs atomic.Int64

	// Leadership as observed by the monitor.
	leaderMu sync.Mutex
	leaders  []leaderChange
}

type leaderChange struct {
	at   time.Duration
	name string
	term uint64
}

func runDemo(cmd *cobra.Command, f *demoFlags) (err error) {
	if err := f.validate(); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the synod executable: %w", err)
	}
	dir, err := os.MkdirTemp("", "synod-demo-")
	if err != nil {
		return err
	}
	d := &demo{f: f, out: cmd.OutOrStdout(), exe: exe, dir: dir,
		token: fmt.Sprintf("demo-%d-%d", os.Getpid(), time.Now().UnixNano())}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer func() {
		if f.keep && err == nil && ctx.Err() == nil {
			d.printKeep()
			return
		}
		d.cleanup()
	}()
	if err := d.setup(); err != nil {
		return err
	}
	d.printf("synod demo: %d members (%s), %d clients, %d keys, %v\n", f.nodes, f.protocol, f.clients, f.keys, f.duration)
	for _, m := range d.members {
		d.printf("  %-4s client %s  peer %s\n", m.name, m.clientURL, m.peerURL)
	}
	d.printf("  logs and data in %s\n", d.dir)
	d.start = time.Now()
	d.workNs.Store(d.start.UnixNano())
	for _, m := range d.members {
		if err := d.startMember(m); err != nil {
			return err
		}
	}
	if node.Leaderless(f.protocol) {
		if err := d.waitAnswering(ctx); err != nil {
			return err
		}
		d.printf("no leader (%s is leaderless): all %d members answering after %v\n", f.protocol, len(d.members), time.Since(d.start).Round(time.Millisecond))
		return d.run(ctx)
	}
	leader, err := d.waitLeader(ctx, nil)
	if err != nil {
		return err
	}
	d.printf("leader: %s (term %d) after %v\n", leader.name, leader.term, time.Since(d.start).Round(time.Millisecond))
	return d.run(ctx)
}

func (d *demo) printf(format string, args ...any) {
	d.printMu.Lock()
	defer d.printMu.Unlock()
	if d.bar != nil {
		d.bar.Clear()
	}
	fmt.Fprintf(d.out, format, args...)
	if d.bar != nil {
		d.bar.RenderBlank()
	}
}

// event prints a timestamped line about the cluster.
func (d *demo) event(format string, args ...any) {
	d.printf("  t=%5.1fs  %s\n", time.Since(d.workStart()).Seconds(), fmt.Sprintf(format, args...))
}

// workStart is when the workload started (before that: when the cluster
// started); event times count from it.
func (d *demo) workStart() time.Time { return time.Unix(0, d.workNs.Load()) }

// setup picks free loopback ports and builds each member's command line.
func (d *demo) setup() error {
	ports, err := freePorts(3 * d.f.nodes)
	if err != nil {
		return err
	}
	var cluster, clients []string
	for i := range d.f.nodes {
		name := fmt.Sprintf("n%d", i+1)
		m := &member{
			name:       name,
			id:         uint64(memberID(d.token, name)),
			clientURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			metricsURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*d.f.nodes+i]),
			dataDir:    filepath.Join(d.dir, name),
			logPath:    filepath.Join(d.dir, name+".log"),
		}
		d.members = append(d.members, m)
		cluster = append(cluster, name+"="+m.peerURL)
		clients = append(clients, name+"="+m.clientURL)
	}
	for _, m := range d.members {
		m.args = []string{"serve",
			"--name", m.name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL,
			"--listen-metrics-urls", m.metricsURL,
			"--initial-cluster", strings.Join(cluster, ","),
			"--initial-cluster-clients", strings.Join(clients, ","),
			"--initial-cluster-token", d.token,
			"--protocol", d.f.protocol,
			"--log-format", "text",
			"--log-level", d.f.logLevel,
		}
	}
	return nil
}

// freePorts reserves n loopback ports by listening on port 0, and returns
// them once all are known (a small race with other processes remains).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func newClient(endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
}

// startMember starts (or restarts) a member's process.
func (d *demo) startMember(m *member) error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	c := exec.Command(d.exe, m.args...)
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", m.name, err)
	}
	exited := make(chan struct{})
	go func() {
		c.Wait()
		logf.Close()
		close(exited)
	}()
	cli, err := newClient(m.clientURL)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.status != nil {
		m.status.Close()
	}
	m.cmd, m.exited, m.status = c, exited, cli
	m.mu.Unlock()
	return nil
}

// kill kills a member's process with SIGKILL and waits for it to exit.
func (m *member) kill() {
	m.mu.Lock()
	c, exited := m.cmd, m.exited
	m.mu.Unlock()
	if c == nil {
		return
	}
	c.Process.Kill()
	<-exited
}

// stop stops a member gracefully (SIGTERM), killing it if it takes too long.
func (m *member) stop() {
	m.mu.Lock()
	c, exited, cli := m.cmd, m.exited, m.status
	m.status = nil
	m.mu.Unlock()
	if cli != nil {
		cli.Close()
	}
	if c == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		c.Process.Kill()
	}
	select {
	case <-exited:
	case <-time.After(demoStopTimeout):
		c.Process.Kill()
		<-exited
	}
}

// cleanup stops every member and removes the cluster's directory.
func (d *demo) cleanup() {
	var wg sync.WaitGroup
	for _, m := range d.members {
		wg.Add(1)
		go func() { defer wg.Done(); m.stop() }()
	}
	wg.Wait()
	if err := os.RemoveAll(d.dir); err != nil {
		fmt.Fprintf(os.Stderr, "removing %s: %v\n", d.dir, err)
		return
	}
	fmt.Fprintf(d.out, "cluster stopped; removed %s\n", d.dir)
}

// printKeep prints how to reach a cluster left running.
func (d *demo) printKeep() {
	for _, m := range d.members {
		m.mu.Lock()
		if m.status != nil {
			m.status.Close()
			m.status = nil
		}
		m.mu.Unlock()
	}
	var eps, pids []string
	for _, m := range d.members {
		eps = append(eps, m.clientURL)
		if m.running() {
			pids = append(pids, fmt.Sprint(m.cmd.Process.Pid))
		}
	}
	all := strings.Join(eps, ",")
	fmt.Fprintf(d.out, "\nThe cluster keeps running (--keep). Endpoints: %s\n", all)
	fmt.Fprintf(d.out, "Data and logs: %s\n\nTry:\n", d.dir)
	fmt.Fprintf(d.out, "  etcdctl --endpoints %s endpoint status -w table\n", all)
	fmt.Fprintf(d.out, "  etcdctl --endpoints %s member list -w table\n", all)
	fmt.Fprintf(d.out, "  etcdctl --endpoints %s put greeting hello\n", all)
	fmt.Fprintf(d.out, "  etcdctl --endpoints %s get greeting\n", all)
	fmt.Fprintf(d.out, "  etcdctl --endpoints %s get --prefix k\n", all)
	fmt.Fprintf(d.out, "  synod status --endpoints %s\n", all)
	fmt.Fprintf(d.out, "  synod bench put --endpoints %s --duration 10s\n", all)
	for _, m := range d.members {
		fmt.Fprintf(d.out, "  curl %s/health   # and /metrics, /status (%s)\n", m.metricsURL, m.name)
	}
	fmt.Fprintf(d.out, "\nStop it with:  kill %s && rm -rf %s\n", strings.Join(pids, " "), d.dir)
}

// statusOf asks one member for its status, over its status client's
// connection.
func (m *member) statusOf(ctx context.Context) (*pb.StatusResponse, error) {
	m.mu.Lock()
	cli := m.status
	m.mu.Unlock()
	if cli == nil {
		return nil, errors.New("not running")
	}
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	return pb.NewMaintenanceClient(cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
}

type leaderInfo struct {
	name string
	id   uint64
	term uint64
}

// observeLeader asks every running member for its status and returns the
// leader that the members of the highest term agree on, if any.
func (d *demo) observeLeader(ctx context.Context) (leaderInfo, map[string]*pb.StatusResponse) {
	sts := map[string]*pb.StatusResponse{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range d.members {
		if !m.running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := m.statusOf(ctx); err == nil {
				mu.Lock()
				sts[m.name] = st
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var best leaderInfo
	for _, st := range sts {
		if st.Leader != 0 && st.RaftTerm >= best.term {
			best = leaderInfo{id: st.Leader, term: st.RaftTerm}
		}
	}
	if best.id == 0 {
		return leaderInfo{}, sts
	}
	for _, m := range d.members {
		if m.id == best.id {
			best.name = m.name
		}
	}
	// The leader itself must say so.
	if st, ok := sts[best.name]; !ok || st.Leader != best.id || st.RaftTerm != best.term {
		return leaderInfo{}, sts
	}
	return best, sts
}

// waitLeader waits for a leader other than not (if set).
func (d *demo) waitLeader(ctx context.Context, not *member) (leaderInfo, error) {
	deadline := time.Now().Add(demoWaitMax)
	for time.Now().Before(deadline) {
		if err := d.checkAlive(not); err != nil {
			return leaderInfo{}, err
		}
		l, _ := d.observeLeader(ctx)
		if l.id != 0 && (not == nil || l.id != not.id) {
			d.noteLeader(l)
			return l, nil
		}
		select {
		case <-ctx.Done():
			return leaderInfo{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return leaderInfo{}, fmt.Errorf("no leader elected within %v; see the members' logs in %s", demoWaitMax, d.dir)
}

// waitAnswering waits until every member answers its status, which is
// all a leaderless cluster needs before it takes writes.
func (d *demo) waitAnswering(ctx context.Context) error {
	deadline := time.Now().Add(demoWaitMax)
	for time.Now().Before(deadline) {
		if err := d.checkAlive(nil); err != nil {
			return err
		}
		_, sts := d.observeLeader(ctx)
		if len(sts) == len(d.members) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not every member answered within %v; see the members' logs in %s", demoWaitMax, d.dir)
}

// checkAlive reports a member (other than except) that exited on its own.
func (d *demo) checkAlive(except *member) error {
	for _, m := range d.members {
		m.mu.Lock()
		started := m.cmd != nil
		m.mu.Unlock()
		if m == except || !started {
			continue
		}
		if !m.running() {
			return fmt.Errorf("member %s exited unexpectedly; its log:\n%s", m.name, tail(m.logPath, 20))
		}
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (d *demo) noteLeader(l leaderInfo) {
	d.leaderMu.Lock()
	defer d.leaderMu.Unlock()
	if n := len(d.leaders); n > 0 && d.leaders[n-1].name == l.name && d.leaders[n-1].term == l.term {
		return
	}
	d.leaders = append(d.leaders, leaderChange{at: time.Since(d.workStart()), name: l.name, term: l.term})
}

// monitor records leadership every 100 ms until ctx ends.
func (d *demo) monitor(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if l, _ := d.observeLeader(ctx); l.id != 0 {
				d.noteLeader(l)
			}
		}
	}
}

// run drives the workload and the failover, then reports.
func (d *demo) run(ctx context.Context) error {
	f := d.f
	d.workNs.Store(time.Now().UnixNano())
	if !f.noProgress && term.IsTerminal(int(os.Stderr.Fd())) {
		d.bar = progressbar.NewOptions64(int64(f.duration/time.Millisecond), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("workload"), progressbar.OptionSetPredictTime(false),
			progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
	}
	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	mctx, stopMonitor := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); d.monitor(mctx) }()

	var eps []string
	for _, m := range d.members {
		eps = append(eps, m.clientURL)
	}
	d.history = make([][]check.KVOperation, f.clients)
	d.latencies = make([][]time.Duration, f.clients)
	var workers sync.WaitGroup
	var clientErr error
	var clientErrOnce sync.Once
	for i := range f.clients {
		cli, err := newClient(eps...)
		if err != nil {
			stopWork()
			clientErrOnce.Do(func() { clientErr = err })
			break
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			defer cli.Close()
			d.client(wctx, i, cli)
		}()
	}

	// The failover script, beside the workload.
	type outcome struct {
		killed      *member
		killAt      time.Duration
		newLeader   leaderInfo
		electedIn   time.Duration
		recoveredIn time.Duration
		caughtUpIn  time.Duration
		err         error
	}
	var fo outcome
	failoverDone := make(chan struct{})
	go func() {
		defer close(failoverDone)
		if f.noKill {
			return
		}
		if !sleepCtx(wctx, f.duration*3/10) {
			return
		}
		if node.Leaderless(f.protocol) {
			fo.killed, fo.killAt, fo.caughtUpIn, fo.err = d.failoverLeaderless(ctx)
			return
		}
		l, _ := d.observeLeader(wctx)
		if l.id == 0 {
			if l, fo.err = d.waitLeader(wctx, nil); fo.err != nil {
				return
			}
		}
		var victim *member
		for _, m := range d.members {
			if m.id == l.id {
				victim = m
			}
		}
		fo.killed, fo.killAt = victim, time.Since(d.workStart())
		killNs := time.Since(d.workStart()).Nanoseconds()
		d.killNs.Store(killNs)
		victim.kill()
		d.event("kill -9 %s (the leader, term %d)", victim.name, l.term)
		nl, err := d.waitLeader(ctx, victim)
		if err != nil {
			fo.err = err
			return
		}
		fo.newLeader, fo.electedIn = nl, time.Since(d.workStart())-fo.killAt
		d.event("new leader: %s (term %d), elected %v after the kill", nl.name, nl.term, fo.electedIn.Round(time.Millisecond))
		// Recovery: the first write that completes after the kill.
		deadline := time.Now().Add(demoWaitMax)
		for d.firstWriteNs.Load() == 0 && ctx.Err() == nil {
			if time.Now().After(deadline) {
				fo.err = fmt.Errorf("no write succeeded within %v after the leader was killed; see the logs in %s", demoWaitMax, d.dir)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		fo.recoveredIn = time.Duration(d.firstWriteNs.Load()-killNs) * time.Nanosecond
		d.event("writes succeed again, %v after the kill", fo.recoveredIn.Round(time.Millisecond))
		if !sleepCtx(ctx, f.duration*6/10-time.Since(d.workStart())) {
			return
		}
		restartAt := time.Since(d.workStart())
		if fo.err = d.startMember(victim); fo.err != nil {
			return
		}
		d.event("restart %s", victim.name)
		// Caught up: applied at least the leader's commit index as of the restart.
		var target uint64
		if _, sts := d.observeLeader(ctx); sts[nl.name] != nil {
			target = sts[nl.name].RaftIndex
		}
		deadline = time.Now().Add(demoWaitMax)
		for ctx.Err() == nil {
			if err := d.checkAlive(nil); err != nil {
				fo.err = err
				return
			}
			if st, err := victim.statusOf(ctx); err == nil && st.Leader != 0 && st.RaftAppliedIndex >= target {
				fo.caughtUpIn = time.Since(d.workStart()) - restartAt
				leader := "?"
				for _, m := range d.members {
					if m.id == st.Leader {
						leader = m.name
					}
				}
				d.event("%s is back: follows %s, applied index %d (caught up in %v)", victim.name, leader, st.RaftAppliedIndex, fo.caughtUpIn.Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				fo.err = fmt.Errorf("%s did not catch up within %v after its restart; see %s", victim.name, demoWaitMax, victim.logPath)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// Progress until the workload's time is up.
	tick := time.NewTicker(100 * time.Millisecond)
	end := d.workStart().Add(f.duration)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			if d.bar != nil {
				d.printMu.Lock()
				d.bar.Describe(fmt.Sprintf("workload: %d ops", d.ops.Load()))
				d.bar.Set64(int64(min(time.Since(d.workStart()), f.duration) / time.Millisecond))
				d.printMu.Unlock()
			}
			if time.Now().After(end) {
				break loop
			}
		}
	}
	tick.Stop()
	// Let the failover script finish (it bounds its own waits) before the
	// workload stops, so the restarted member catches up under load.
	<-failoverDone
	stopWork()
	workers.Wait()
	stopMonitor()
	bg.Wait()
	if d.bar != nil {
		d.printMu.Lock()
		d.bar.Finish()
		d.bar = nil
		d.printMu.Unlock()
	}
	if ctx.Err() != nil {
		return &exitError{code: 130, msg: "interrupted"}
	}
	if clientErr != nil {
		return clientErr
	}
	if fo.err != nil {
		return fo.err
	}
	elapsed := time.Since(d.workStart())
	if fo.killed != nil && fo.recoveredIn == 0 && d.firstWriteNs.Load() > 0 {
		fo.recoveredIn = time.Duration(d.firstWriteNs.Load()-d.killNs.Load()) * time.Nanosecond
	}
	return d.report(elapsed, fo.killed != nil, fo.recoveredIn)
}

// failoverLeaderless is the failover script for a protocol without a
// leader: kill -9 one member, see writes go on (no election), restart it
// two thirds of the way in and wait until it has executed as many commands
// as the most any other member had at its restart.
func (d *demo) failoverLeaderless(ctx context.Context) (victim *member, killAt, caughtUpIn time.Duration, err error) {
	victim = d.members[len(d.members)-1]
	killAt = time.Since(d.workStart())
	killNs := killAt.Nanoseconds()
	d.killNs.Store(killNs)
	victim.kill()
	d.event("kill -9 %s (a peer: %s has no leader, so there is no election)", victim.name, d.f.protocol)
	deadline := time.Now().Add(demoWaitMax)
	for d.firstWriteNs.Load() == 0 && ctx.Err() == nil {
		if time.Now().After(deadline) {
			return victim, killAt, 0, fmt.Errorf("no write succeeded within %v after %s was killed; see the logs in %s", demoWaitMax, victim.name, d.dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.event("writes go on: the first issued after the kill succeeded %v after it",
		(time.Duration(d.firstWriteNs.Load()-killNs) * time.Nanosecond).Round(time.Millisecond))
	if !sleepCtx(ctx, d.f.duration*6/10-time.Since(d.workStart())) {
		return victim, killAt, 0, nil
	}
	restartAt := time.Since(d.workStart())
	var target uint64
	_, sts := d.observeLeader(ctx)
	for _, st := range sts {
		target = max(target, st.RaftAppliedIndex)
	}
	if err := d.startMember(victim); err != nil {
		return victim, killAt, 0, err
	}
	d.event("restart %s: it re-executes its log, then catches up from the others", victim.name)
	deadline = time.Now().Add(demoWaitMax)
	for ctx.Err() == nil {
		if err := d.checkAlive(nil); err != nil {
			return victim, killAt, 0, err
		}
		if st, err := victim.statusOf(ctx); err == nil && st.RaftAppliedIndex >= target {
			caughtUpIn = time.Since(d.workStart()) - restartAt
			d.event("%s is back: executed %d commands, as many as any member had at its restart (caught up in %v)",
				victim.name, st.RaftAppliedIndex, caughtUpIn.Round(time.Millisecond))
			return victim, killAt, caughtUpIn, nil
		}
		if time.Now().After(deadline) {
			return victim, killAt, 0, fmt.Errorf("%s did not catch up within %v after its restart; see %s", victim.name, demoWaitMax, victim.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return victim, killAt, 0, nil
}

// sleepCtx sleeps for d (if positive) unless ctx ends first; it reports
// whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// client runs one client's operations until ctx ends, recording each.
func (d *demo) client(ctx context.Context, idx int, cli *clientv3.Client) {
	rng := rand.New(rand.NewPCG(uint64(idx)+1, uint64(time.Now().UnixNano())))
	lastSeen := map[string]string{}
	for seq := 1; ctx.Err() == nil; seq++ {
		key := fmt.Sprintf("k%d", rng.IntN(d.f.keys))
		in := check.KVInput{Key: key}
		switch p := rng.IntN(100); {
		case p < 50:
			in.Kind = check.KVGet
		case p < 80:
			in.Kind = check.KVPut
			in.Value = fmt.Sprintf("c%d.%d", idx, seq)
		default:
			in.Kind = check.KVCompareAndSwap
			in.Expected = lastSeen[key]
			in.Value = fmt.Sprintf("c%d.%d", idx, seq)
		}
		octx, cancel := context.WithTimeout(context.Background(), demoOpTimeout)
		call := time.Since(d.workStart())
		out, err := doOp(octx, cli, in)
		ret := time.Since(d.workStart())
		cancel()
		if err != nil {
			d.failed.Add(1)
			if in.Kind == check.KVGet {
				continue // a failed read constrains nothing
			}
			// The write may or may not have taken effect.
			d.unknown.Add(1)
			out = check.KVOutput{Unknown: true}
		} else {
			d.ops.Add(1)
			d.latencies[idx] = append(d.latencies[idx], ret-call)
			if k := d.killNs.Load(); in.Kind != check.KVGet && k != 0 && call.Nanoseconds() > k {
				for r := ret.Nanoseconds(); ; {
					old := d.firstWriteNs.Load()
					if old != 0 && old <= r || d.firstWriteNs.CompareAndSwap(old, r) {
						break
					}
				}
			}
			switch {
			case in.Kind == check.KVGet && out.Exists:
				lastSeen[key] = out.Value
			case in.Kind == check.KVPut, in.Kind == check.KVCompareAndSwap && out.OK:
				lastSeen[key] = in.Value
			}
		}
		d.history[idx] = append(d.history[idx], check.KVOperation{
			Client: idx, Input: in, Output: out, Call: call.Nanoseconds(), Return: ret.Nanoseconds()})
		if err != nil {
			// Back off a little while the cluster fails over.
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}
}

// doOp performs one operation through etcd's client.
func doOp(ctx context.Context, cli *clientv3.Client, in check.KVInput) (check.KVOutput, error) {
	switch in.Kind {
	case check.KVGet:
		resp, err := cli.Get(ctx, in.Key)
		if err != nil {
			return check.KVOutput{}, err
		}
		if len(resp.Kvs) == 0 {
			return check.KVOutput{}, nil
		}
		return check.KVOutput{Exists: true, Value: string(resp.Kvs[0].Value)}, nil
	case check.KVPut:
		_, err := cli.Put(ctx, in.Key, in.Value)
		return check.KVOutput{}, err
	case check.KVCompareAndSwap:
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(in.Key), "=", in.Expected)).
			Then(clientv3.OpPut(in.Key, in.Value)).
			Commit()
		if err != nil {
			return check.KVOutput{}, err
		}
		return check.KVOutput{OK: resp.Succeeded}, nil
	}
	return check.KVOutput{}, fmt.Errorf("unknown operation %v", in.Kind)
}

// report prints the summary and checks the history.
func (d *demo) report(elapsed time.Duration, killed bool, recovered time.Duration) error {
	var hist []check.KVOperation
	var lats []time.Duration
	kinds := map[check.KVOpKind]int{}
	swapped := 0
	for i := range d.history {
		hist = append(hist, d.history[i]...)
		lats = append(lats, d.latencies[i]...)
	}
	for _, op := range hist {
		if !op.Output.Unknown {
			kinds[op.Input.Kind]++
			if op.Input.Kind == check.KVCompareAndSwap && op.Output.OK {
				swapped++
			}
		}
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))]
	}
	ok := d.ops.Load()
	w := d.out
	fmt.Fprintf(w, "\nsummary\n")
	fmt.Fprintf(w, "  protocol        %s, %d members\n", d.f.protocol, len(d.members))
	fmt.Fprintf(w, "  operations      %d ok (%d gets, %d puts, %d cas of which %d swapped)\n",
		ok, kinds[check.KVGet], kinds[check.KVPut], kinds[check.KVCompareAndSwap], swapped)
	if failed := d.failed.Load(); failed > 0 {
		// Errors during the failover. A write that errs may still have been
		// applied, so the history records it with an unknown outcome, which
		// the linearizability check allows either way.
		fmt.Fprintf(w, "                  %d not acknowledged (errors and timeouts, mostly around the failover; %d of them writes whose outcome is unknown)\n",
			failed, d.unknown.Load())
	}
	fmt.Fprintf(w, "  throughput      %.0f ops/s over %v\n", float64(ok)/elapsed.Seconds(), elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  latency         p50 %v  p90 %v  p99 %v  max %v\n",
		pct(0.50).Round(10*time.Microsecond), pct(0.90).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
	d.leaderMu.Lock()
	var seq []string
	for _, l := range d.leaders {
		seq = append(seq, fmt.Sprintf("%s (term %d, t=%.1fs)", l.name, l.term, max(l.at, 0).Seconds()))
	}
	changes := max(len(d.leaders)-1, 0)
	d.leaderMu.Unlock()
	leaderless := node.Leaderless(d.f.protocol)
	if leaderless {
		fmt.Fprintf(w, "  leader changes  none: %s has no leader\n", d.f.protocol)
	} else {
		fmt.Fprintf(w, "  leader changes  %d: %s\n", changes, strings.Join(seq, " → "))
	}
	if killed {
		victim := "the leader"
		if leaderless {
			victim = "a member"
		}
		fmt.Fprintf(w, "  recovery        %v from kill -9 of %s to the first write (issued after it) that succeeded\n", recovered.Round(time.Millisecond), victim)
	}
	start := time.Now()
	res := check.CheckLinearizable(hist, demoCheckTimeout)
	took := time.Since(start).Round(time.Millisecond)
	switch res.Result {
	case porcupine.Ok:
		fmt.Fprintf(w, "  linearizable    ok (%d operations checked in %v)\n", res.Operations, took)
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("synod-demo-%d.html", time.Now().Unix()))
		if err := res.WriteVisualization(path, demoCheckTimeout); err != nil {
			path = "(visualization failed: " + err.Error() + ")"
		}
		fmt.Fprintf(w, "  linearizable    NO: the history of %d operations is not linearizable; visualization: %s\n", res.Operations, path)
		return &exitError{code: 1, msg: "synod demo: the history is not linearizable"}
	default:
		fmt.Fprintf(w, "  linearizable    unknown (the check gave up after %v)\n", demoCheckTimeout)
	}
	if ok == 0 {
		return &exitError{code: 1, msg: "synod demo: no operation succeeded"}
	}
	return nil
}

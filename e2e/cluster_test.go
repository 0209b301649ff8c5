package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/synod-io/synod/node"
)

// Bounds of the cluster helpers.
const (
	// waitMax bounds each wait for a leader or for a member to answer.
	waitMax = 30 * time.Second
	// stopTimeout is how long a member may take to stop on SIGTERM at
	// clean-up before it is killed.
	stopTimeout = 5 * time.Second
	// statusTimeout bounds one Maintenance.Status call.
	statusTimeout = 500 * time.Millisecond
)

// member is one "synod serve" child process.
type member struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	args      []string

	mu       sync.Mutex
	id       uint64 // learned from its first Status answer
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has exited
	expected bool          // the current process is being killed or stopped by the test
	crashed  string        // set when a process exited that the test did not stop
	starts   int
	// status is a client for this member alone, used for Maintenance.Status.
	status *clientv3.Client
}

// cluster is a set of members started by one test.
type cluster struct {
	t       *testing.T
	exe     string
	dir     string
	members []*member
	// leaderless is set when the members run a protocol without a leader
	// (node.Leaderless): then no member ever names a leader.
	leaderless bool
}

// newCluster starts n members on free loopback ports, with their data
// and logs in a temporary directory, and waits for a leader (for every
// member to answer, under a leaderless protocol). extraArgs are added to
// each member's command line; a "--protocol" among them selects the
// protocol. Every process is stopped when the test ends; on failure the
// members' last log lines are printed.
func newCluster(t *testing.T, n int, extraArgs ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, exe: synodBinary(t), dir: t.TempDir()}
	for i, a := range extraArgs {
		if a == "--protocol" && i+1 < len(extraArgs) {
			c.leaderless = node.Leaderless(extraArgs[i+1])
		}
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	token := fmt.Sprintf("e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
	var peers, clients []string
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		m := &member{
			name:      name,
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			dataDir:   filepath.Join(c.dir, name),
			logPath:   filepath.Join(c.dir, name+".log"),
		}
		c.members = append(c.members, m)
		peers = append(peers, name+"="+m.peerURL)
		clients = append(clients, name+"="+m.clientURL)
	}
	for _, m := range c.members {
		m.args = append([]string{"serve",
			"--name", m.name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(peers, ","),
			"--initial-cluster-clients", strings.Join(clients, ","),
			"--initial-cluster-token", token,
			"--log-format", "text",
		}, extraArgs...)
	}
	t.Cleanup(c.stopAll)
	for _, m := range c.members {
		if err := c.start(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.waitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// endpoints lists the members' client URLs.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// freePorts reserves n loopback ports by listening on port 0 and returns
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

// newClient returns an etcd client that fails fast and reconnects quickly,
// so that a killed member costs little.
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

// start starts (or restarts, from its data directory) a member's process.
func (c *cluster) start(m *member) error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== e2e: start %s at %s\n", m.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.exe, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", m.name, err)
	}
	exited := make(chan struct{})
	m.mu.Lock()
	m.cmd, m.exited, m.expected = cmd, exited, false
	m.starts++
	m.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		m.mu.Lock()
		if !m.expected && m.cmd == cmd {
			m.crashed = fmt.Sprintf("%s exited on its own (%v)", m.name, err)
		}
		m.mu.Unlock()
		close(exited)
	}()
	if m.status == nil {
		cli, err := newClient(m.clientURL)
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.status = cli
		m.mu.Unlock()
	}
	return nil
}

// running reports whether the member's process is up.
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

// kill sends SIGKILL to the member's process and waits for it to exit.
func (m *member) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.expected = true
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// stop stops the member gracefully (SIGTERM), killing it after
// stopTimeout.
func (m *member) stop() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.expected = true
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		cmd.Process.Kill()
	}
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-exited
	}
}

// stopAll stops every member, and on failure prints their logs' tails.
func (c *cluster) stopAll() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Add(1)
		go func() { defer wg.Done(); m.stop() }()
	}
	wg.Wait()
	for _, m := range c.members {
		m.mu.Lock()
		if m.status != nil {
			m.status.Close()
			m.status = nil
		}
		m.mu.Unlock()
	}
	if c.t.Failed() {
		for _, m := range c.members {
			c.t.Logf("last lines of %s's log:\n%s", m.name, tail(m.logPath, 25))
		}
	}
}

// crashed reports members whose process exited without the test asking.
func (c *cluster) crashed() error {
	var errs []error
	for _, m := range c.members {
		m.mu.Lock()
		if m.crashed != "" {
			errs = append(errs, fmt.Errorf("%s; its log:\n%s", m.crashed, tail(m.logPath, 25)))
		}
		m.mu.Unlock()
	}
	return errors.Join(errs...)
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

// statusOf asks one member for its status.
func (m *member) statusOf(ctx context.Context) (*pb.StatusResponse, error) {
	m.mu.Lock()
	cli := m.status
	m.mu.Unlock()
	if cli == nil {
		return nil, errors.New("no status client")
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
	if err == nil && st.Header != nil {
		m.mu.Lock()
		m.id = st.Header.MemberId
		m.mu.Unlock()
	}
	return st, err
}

// memberByID finds a member by the ID it reported.
func (c *cluster) memberByID(id uint64) *member {
	for _, m := range c.members {
		m.mu.Lock()
		mid := m.id
		m.mu.Unlock()
		if mid == id {
			return m
		}
	}
	return nil
}

// leader asks every running member for its status and returns the leader
// of the highest term that the leader itself confirms, or nil.
func (c *cluster) leader(ctx context.Context) (*member, uint64) {
	type answer struct {
		m  *member
		st *pb.StatusResponse
	}
	ch := make(chan answer, len(c.members))
	n := 0
	for _, m := range c.members {
		if !m.running() {
			continue
		}
		n++
		go func() {
			st, err := m.statusOf(ctx)
			if err != nil {
				st = nil
			}
			ch <- answer{m, st}
		}()
	}
	var sts []answer
	for range n {
		if a := <-ch; a.st != nil {
			sts = append(sts, a)
		}
	}
	var id, term uint64
	for _, a := range sts {
		if a.st.Leader != 0 && a.st.RaftTerm >= term {
			id, term = a.st.Leader, a.st.RaftTerm
		}
	}
	for _, a := range sts {
		if a.st.Header != nil && a.st.Header.MemberId == id && a.st.Leader == id && a.st.RaftTerm == term {
			return a.m, term
		}
	}
	return nil, 0
}

// waitReady waits up to waitMax until the cluster can take requests: a
// leader is known or, under a leaderless protocol, every member answers.
func (c *cluster) waitReady(ctx context.Context) error {
	if !c.leaderless {
		_, err := c.waitLeader(ctx, nil)
		return err
	}
	deadline := time.Now().Add(waitMax)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err := c.crashed(); err != nil {
			return err
		}
		answering := 0
		for _, m := range c.members {
			if st, err := m.statusOf(ctx); err == nil && st.Leader == 0 {
				answering++
			}
		}
		if answering == len(c.members) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not every member answered within %v; logs in %s", waitMax, c.dir)
}

// waitLeader waits up to waitMax for a leader other than not (if set).
func (c *cluster) waitLeader(ctx context.Context, not *member) (*member, error) {
	deadline := time.Now().Add(waitMax)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err := c.crashed(); err != nil {
			return nil, err
		}
		if l, _ := c.leader(ctx); l != nil && l != not {
			return l, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("no leader within %v; logs in %s", waitMax, c.dir)
}

package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/server"
)

// System is what a cluster runs.
type System string

const (
	Etcd  System = "etcd"
	Synod System = "synod"
)

// Bounds of cluster operations.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
	rpcTimeout   = 2 * time.Second
)

// Member is one server process.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:port
	PeerURL   string
	DataDir   string
	LogPath   string

	cmd    *exec.Cmd
	exited chan struct{}
}

// Endpoint is the member's client address as host:port.
func (m *Member) Endpoint() string { return strings.TrimPrefix(m.ClientURL, "http://") }

// Pid is the process ID (0 if not running).
func (m *Member) Pid() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Cluster is three (or n) members of one system on loopback.
type Cluster struct {
	System System
	// Protocol is synod's replication protocol (synod serve --protocol;
	// empty for etcd, or for synod's default).
	Protocol string
	Dir      string
	Members  []*Member
}

// Leaderless reports whether the cluster runs a protocol without a leader
// (synod with EPaxos), whose every member orders its own clients'
// commands.
func (c *Cluster) Leaderless() bool {
	return c.System == Synod && node.Leaderless(c.Protocol)
}

// StartCluster starts n members of sys, running binary, with data and logs
// under dir, and waits until they have a leader (or, if leaderless, until
// every member answers). Both systems sync their logs to disk (etcd's
// default; synod always does). protocol is synod's replication protocol
// (passed as --protocol; "" leaves synod's default, or SYNOD_PROTOCOL) and
// must be "" for etcd. On error every started process is killed.
func StartCluster(sys System, protocol, binary, dir string, n int) (*Cluster, error) {
	if sys != Synod && protocol != "" {
		return nil, fmt.Errorf("%s has no protocol choice (got %q)", sys, protocol)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{System: sys, Protocol: protocol, Dir: dir}
	token := fmt.Sprintf("bench-%s-%d-%d", sys, os.Getpid(), time.Now().UnixNano())
	var peers, clients []string
	for i := range n {
		name := fmt.Sprintf("%s%d", sys, i+1)
		m := &Member{
			Name:      name,
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			DataDir:   filepath.Join(dir, name),
			LogPath:   filepath.Join(dir, name+".log"),
		}
		c.Members = append(c.Members, m)
		peers = append(peers, name+"="+m.PeerURL)
		clients = append(clients, name+"="+m.ClientURL)
	}
	for _, m := range c.Members {
		var args []string
		switch sys {
		case Etcd:
			args = []string{
				"--name", m.Name,
				"--data-dir", m.DataDir,
				"--listen-client-urls", m.ClientURL,
				"--advertise-client-urls", m.ClientURL,
				"--listen-peer-urls", m.PeerURL,
				"--initial-advertise-peer-urls", m.PeerURL,
				"--initial-cluster", strings.Join(peers, ","),
				"--initial-cluster-token", token,
				"--initial-cluster-state", "new",
				"--log-level", "warn",
			}
		case Synod:
			args = []string{"serve",
				"--name", m.Name,
				"--data-dir", m.DataDir,
				"--listen-client-urls", m.ClientURL,
				"--listen-peer-urls", m.PeerURL,
				"--initial-cluster", strings.Join(peers, ","),
				"--initial-cluster-clients", strings.Join(clients, ","),
				"--initial-cluster-token", token,
				"--log-level", "warn",
			}
			if protocol != "" {
				args = append(args, "--protocol", protocol)
			}
		default:
			return nil, fmt.Errorf("unknown system %q", sys)
		}
		if err := m.start(binary, args); err != nil {
			c.Stop()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (m *Member) start(binary string, args []string) error {
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", m.Name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(m.exited)
	}()
	return nil
}

// Stop stops every member (SIGTERM, then SIGKILL after stopTimeout) and
// waits for them to exit.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for _, m := range c.Members {
		if m.cmd == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				m.cmd.Process.Kill()
			}
			select {
			case <-m.exited:
			case <-time.After(stopTimeout):
				m.cmd.Process.Kill()
				<-m.exited
			}
		}()
	}
	wg.Wait()
}

// Alive reports an error naming any member that has exited.
func (c *Cluster) Alive() error {
	var errs []error
	for _, m := range c.Members {
		select {
		case <-m.exited:
			errs = append(errs, fmt.Errorf("%s exited; see %s", m.Name, m.LogPath))
		default:
		}
	}
	return errors.Join(errs...)
}

// Endpoints lists the members' client addresses (host:port).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.Endpoint())
	}
	return eps
}

// Client returns an etcd client for all members.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: rpcTimeout, Logger: zap.NewNop()})
}

// Leader asks each member for its status and returns the member that
// says it is the leader. Under a leaderless protocol (synod with
// -synod-protocol epaxos), where every member orders requests itself and
// none names a leader, it returns the first member once every member
// answers.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	cli, err := c.Client()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	var lastErr error
	leaderless := 0
	for _, m := range c.Members {
		sctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		st, err := cli.Status(sctx, m.Endpoint())
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		if st.Leader != 0 && st.Header.MemberId == st.Leader {
			return m, nil
		}
		if node.Leaderless(server.ProtocolOfVersion(st.Version)) {
			leaderless++
		}
	}
	if leaderless == len(c.Members) {
		return c.Members[0], nil
	}
	if lastErr == nil {
		lastErr = errors.New("no member says it is the leader")
	}
	return nil, lastErr
}

// WaitLeader polls Leader until it succeeds or ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) (*Member, error) {
	for {
		if err := c.Alive(); err != nil {
			return nil, err
		}
		l, err := c.Leader(ctx)
		if err == nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s cluster: no leader: %v (logs in %s)", c.System, err, c.Dir)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CPUTime is the user+system CPU time the members have used so far, read
// from /proc (0 where unavailable).
func (c *Cluster) CPUTime() time.Duration {
	var total time.Duration
	for _, m := range c.Members {
		total += procCPU(m.Pid())
	}
	return total
}

// procCPU reads utime+stime of a process from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clockTicks
}

// freePorts reserves n loopback ports by listening on port 0, and returns
// them once all are known.
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

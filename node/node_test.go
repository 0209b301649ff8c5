package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/storage/wal"
	"github.com/synod-io/synod/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memNet is an in-process network: Send hands each message straight to
// the addressee's handler (which only queues it), unless either end is
// cut off.
type memNet struct {
	mu       sync.Mutex
	handlers map[consensus.NodeID]transport.Handler
	cut      map[consensus.NodeID]bool
}

func newMemNet() *memNet {
	return &memNet{handlers: map[consensus.NodeID]transport.Handler{}, cut: map[consensus.NodeID]bool{}}
}

type memTransport struct {
	net *memNet
	id  consensus.NodeID
}

func (n *memNet) factory(id consensus.NodeID) TransportFactory {
	return func(h transport.Handler) (transport.Transport, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.handlers[id] = h
		return &memTransport{net: n, id: id}, nil
	}
}

func (t *memTransport) Send(msgs []consensus.Message) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if t.net.cut[t.id] {
		return
	}
	for _, m := range msgs {
		if h := t.net.handlers[m.To]; h != nil && !t.net.cut[m.To] {
			h(m)
		}
	}
}

func (t *memTransport) Close() error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	delete(t.net.handlers, t.id)
	return nil
}

func (n *memNet) setCut(id consensus.NodeID, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[id] = cut
}

// cluster is an in-process cluster of nodes over a memNet.
type cluster struct {
	t     *testing.T
	net   *memNet
	dirs  []string
	peers []Peer
	nodes []*Node // nil while stopped
	tune  func(*Config)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("NODE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newCluster(t *testing.T, size int, tune func(*Config)) *cluster {
	c := &cluster{t: t, net: newMemNet(), tune: tune}
	root := t.TempDir()
	for i := range size {
		id := consensus.NodeID(i + 1)
		c.peers = append(c.peers, Peer{ID: id, Name: fmt.Sprintf("n%d", id)})
		c.dirs = append(c.dirs, filepath.Join(root, fmt.Sprintf("n%d", id)))
	}
	c.nodes = make([]*Node, size)
	for i := range size {
		c.start(i)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) config(i int) Config {
	cfg := Config{
		Name: c.peers[i].Name, ID: c.peers[i].ID, ClusterID: 0xc1, DataDir: c.dirs[i],
		Peers: c.peers, TickInterval: 10 * time.Millisecond,
		Transport: c.net.factory(c.peers[i].ID), Logger: testLogger(c.t),
		RequestTimeout: 5 * time.Second,
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

func (c *cluster) start(i int) {
	c.t.Helper()
	n, err := Start(c.config(i))
	if err != nil {
		c.t.Fatalf("starting node %d: %v", i+1, err)
	}
	c.nodes[i] = n
}

func (c *cluster) stop(i int) {
	c.t.Helper()
	if err := c.nodes[i].Stop(); err != nil {
		c.t.Errorf("stopping node %d: %v", i+1, err)
	}
	c.nodes[i] = nil
}

func (c *cluster) stopAll() {
	for i, n := range c.nodes {
		if n != nil {
			c.stop(i)
		}
	}
}

// leaderless reports whether the cluster runs a protocol without a leader.
func (c *cluster) leaderless() bool {
	return Leaderless(c.config(0).withDefaults().Protocol)
}

// leader waits for a running node that leads and that every other running
// node follows, and returns its position. Under a leaderless protocol,
// where every node orders commands, it returns the first running node.
func (c *cluster) leader() int {
	c.t.Helper()
	if c.leaderless() {
		for i, n := range c.nodes {
			if n != nil {
				return i
			}
		}
		c.t.Fatal("no node is running")
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		lead := -1
		agreed := true
		for i, n := range c.nodes {
			if n == nil {
				continue
			}
			st := n.Status().Replica
			if st.Role == consensus.RoleLeader {
				lead = i
			}
		}
		if lead >= 0 {
			id := c.nodes[lead].ID()
			for _, n := range c.nodes {
				if n != nil && n.Status().Replica.Leader != id {
					agreed = false
				}
			}
			if agreed {
				return lead
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected within 10s")
	return -1
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// put proposes through whichever node leads, retrying across leader changes.
func (c *cluster) put(key, value string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l := c.leader()
		_, err := c.nodes[l].Propose(ctxT(c.t), kv.Put(key, value))
		if err == nil {
			return
		}
		if !errors.Is(err, consensus.ErrNotLeader) {
			c.t.Fatalf("put %s: %v", key, err)
		}
	}
	c.t.Fatalf("put %s: no leader accepted it", key)
}

// waitValue waits until node i's local state holds key=value.
func (c *cluster) waitValue(i int, key, value string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		res, err := c.nodes[i].Read(ctxT(c.t), kv.Get(key), false)
		if err == nil && len(res.KVs) == 1 && string(res.KVs[0].Value) == value {
			return
		}
		last = fmt.Sprint(res.KVs, err)
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("node %d never read %s=%q (last: %s)", i+1, key, value, last)
}

// forEachProtocol runs f as a subtest for each protocol the node runs.
func forEachProtocol(t *testing.T, f func(t *testing.T, protocol string)) {
	for _, p := range Protocols {
		t.Run(p, func(t *testing.T) { f(t, p) })
	}
}

// withProtocol returns a tune function that selects protocol, then applies
// tune (if set).
func withProtocol(protocol string, tune func(*Config)) func(*Config) {
	return func(cfg *Config) {
		cfg.Protocol = protocol
		if tune != nil {
			tune(cfg)
		}
	}
}

// compacts reports whether protocol's replica can compact its log behind a
// snapshot (implements consensus.Compactor).
func compacts(t *testing.T, protocol string) bool {
	cfg := Config{ID: 1, Peers: []Peer{{ID: 1}}}.withDefaults()
	s := cfg.replicaSettings(rand.New(rand.NewPCG(1, 1)), consensus.DiscardLogger, nil)
	r, err := protocols[protocol].config(&s).newReplica(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, ok := r.(consensus.Compactor)
	return ok
}

// TestCluster runs the cluster suite for every protocol: elect a leader,
// propose, read linearizably (leader) and serializably (follower), stop the
// leader and see another elected, restart the old one and see it catch up.
func TestCluster(t *testing.T) {
	forEachProtocol(t, testClusterProposeReadFailover)
}

func testClusterProposeReadFailover(t *testing.T, protocol string) {
	if Leaderless(protocol) {
		testClusterLeaderless(t, protocol)
		return
	}
	c := newCluster(t, 3, withProtocol(protocol, nil))
	l := c.leader()
	if st := c.nodes[l].Status(); st.Protocol != protocol {
		t.Errorf("status names protocol %q, want %q", st.Protocol, protocol)
	}
	ctx := ctxT(t)
	res, err := c.nodes[l].Propose(ctx, kv.Put("a", "1"))
	if err != nil {
		t.Fatalf("propose: %v", err)
	}
	if res.Revision != 2 {
		t.Errorf("revision after first put = %d, want 2", res.Revision)
	}
	cas, err := c.nodes[l].Propose(ctx, kv.CompareAndSwap("a", "1", "2"))
	if err != nil || !cas.Succeeded {
		t.Fatalf("cas: %+v, %v", cas, err)
	}

	follower := (l + 1) % 3
	_, err = c.nodes[follower].Propose(ctx, kv.Put("b", "1"))
	var nle *consensus.NotLeaderError
	if !errors.As(err, &nle) || nle.Leader != c.nodes[l].ID() {
		t.Fatalf("propose on a follower: %v, want a NotLeaderError naming %d", err, c.nodes[l].ID())
	}
	if _, err := c.nodes[follower].Read(ctx, kv.Get("a"), true); !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("linearizable read on a follower: %v, want ErrNotLeader", err)
	}
	got, err := c.nodes[l].Read(ctx, kv.Get("a"), true)
	if err != nil || len(got.KVs) != 1 || string(got.KVs[0].Value) != "2" {
		t.Fatalf("linearizable read: %+v, %v", got, err)
	}
	c.waitValue(follower, "a", "2")
	if _, err := c.nodes[l].Read(ctx, kv.Put("x", "y"), false); !errors.Is(err, kv.ErrNotReadOnly) {
		t.Fatalf("read of a write: %v", err)
	}

	// The leader stops; another is elected and the cluster goes on.
	old := l
	c.stop(old)
	l = c.leader()
	if l == old {
		t.Fatal("stopped node still leads")
	}
	c.put("a", "3")
	// The old leader restarts from its data directory and catches up.
	c.start(old)
	c.waitValue(old, "a", "3")
	st := c.nodes[old].Status()
	// Three writes were applied (raft also applies a no-op per leader).
	if st.Name != c.peers[old].Name || st.Revision < 4 || st.Replica.Applied < 3 {
		t.Errorf("restarted node status: %+v", st)
	}
	if m := c.nodes[old].Members(); len(m) != 3 {
		t.Errorf("members: %+v", m)
	}
}

// TestGRPCTransport runs a cluster of each protocol over the default
// transport (gRPC on loopback, with the protocol's message codec), which
// the node builds itself from the peer URLs.
func TestGRPCTransport(t *testing.T) {
	forEachProtocol(t, testGRPCTransport)
}

func testGRPCTransport(t *testing.T, protocol string) {
	var lis []net.Listener
	var peers []Peer
	for i := range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis = append(lis, l)
		peers = append(peers, Peer{ID: consensus.NodeID(i + 1), Name: fmt.Sprintf("n%d", i+1),
			PeerURLs: []string{"http://" + l.Addr().String()}})
	}
	root := t.TempDir()
	c := &cluster{t: t, net: newMemNet(), peers: peers, nodes: make([]*Node, 3), tune: withProtocol(protocol, nil)}
	t.Cleanup(c.stopAll)
	for i := range 3 {
		c.dirs = append(c.dirs, filepath.Join(root, peers[i].Name))
		cfg := c.config(i)
		cfg.Transport, cfg.PeerListener = nil, lis[i]
		n, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[i] = n
	}
	c.put("over", "grpc")
	for i := range 3 {
		c.waitValue(i, "over", "grpc")
	}
}

func TestConcurrentProposals(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				if _, err := c.nodes[l].Propose(ctxT(t), kv.Put(fmt.Sprintf("k%d", w), fmt.Sprint(i))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res, err := c.nodes[l].Read(ctxT(t), kv.RangePrefix("k"), true)
	if err != nil || res.Count != 8 {
		t.Fatalf("range: %+v, %v", res, err)
	}
	for _, e := range res.KVs {
		if string(e.Value) != "24" {
			t.Errorf("%s = %s, want 24", e.Key, e.Value)
		}
	}
	if res.Revision != 1+8*25 {
		t.Errorf("revision %d, want %d", res.Revision, 1+8*25)
	}
}

// TestSnapshotCatchUp runs for every protocol whose replica compacts its
// log (the others never ask for a snapshot).
func TestSnapshotCatchUp(t *testing.T) {
	forEachProtocol(t, testSnapshotCatchUp)
}

func testSnapshotCatchUp(t *testing.T, protocol string) {
	if !compacts(t, protocol) {
		t.Skipf("%s does not compact its log (no consensus.Compactor)", protocol)
	}
	c := newCluster(t, 3, withProtocol(protocol, func(cfg *Config) {
		cfg.SnapshotEntries = 20
		cfg.SnapshotRetainEntries = 5
		cfg.SnapshotChunkBytes = 512
		cfg.WALSegmentBytes = 64 << 10
	}))
	l := c.leader()
	lagging := (l + 1) % 3
	c.stop(lagging)
	for i := range 120 {
		c.put(fmt.Sprintf("key%03d", i%40), strings.Repeat("v", 50)+fmt.Sprint(i))
	}
	snaps, _ := filepath.Glob(filepath.Join(c.dirs[l], "snap", "*.snap"))
	if len(snaps) == 0 {
		t.Fatal("the leader took no snapshot")
	}
	c.start(lagging)
	c.waitValue(lagging, "key039", strings.Repeat("v", 50)+"119")
	got, _ := filepath.Glob(filepath.Join(c.dirs[lagging], "snap", "*.snap"))
	if len(got) == 0 {
		t.Fatal("the lagging node caught up without a snapshot")
	}
	// Restart every node: each rebuilds from its checkpoint, snapshot and
	// store. One loses its key-value store (as if it crashed after a
	// snapshot was installed, before the store was restored from it): it
	// must restore the store from the checkpoint's snapshot.
	for i := range 3 {
		c.stop(i)
	}
	if err := os.RemoveAll(filepath.Join(c.dirs[lagging], kvDirName)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c.start(i)
	}
	c.put("after", "restart")
	for i := range 3 {
		c.waitValue(i, "key000", strings.Repeat("v", 50)+"80")
		c.waitValue(i, "after", "restart")
	}
}

func TestRefuseForeignDataDir(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	c.put("a", "1")
	c.stop(0)

	cfg := c.config(0)
	cfg.ClusterID = 0xc2
	if _, err := Start(cfg); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("start with another cluster ID: %v", err)
	}
	cfg = c.config(0)
	cfg.ID, cfg.Peers = 7, []Peer{{ID: 7, Name: cfg.Name}}
	if _, err := Start(cfg); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("start as another member: %v", err)
	}
	// A directory with state but no identity file.
	if err := os.Remove(filepath.Join(c.dirs[0], identityName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(c.config(0)); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("start without identity file: %v", err)
	}
}

// TestRefuseProtocolChange: a data directory records its protocol, and a
// restart with another is refused, naming both.
func TestRefuseProtocolChange(t *testing.T) {
	c := newCluster(t, 1, withProtocol("multipaxos", nil))
	c.leader()
	c.put("a", "1")
	c.stop(0)
	cfg := c.config(0)
	cfg.Protocol = "raft"
	_, err := Start(cfg)
	if !errors.Is(err, ErrIdentityMismatch) || !strings.Contains(err.Error(), "multipaxos member") ||
		!strings.Contains(err.Error(), "started with protocol raft") {
		t.Fatalf("restart of a multipaxos member as raft: %v", err)
	}
	t.Logf("refused as expected: %v", err)
	c.start(0) // the right protocol still starts
	c.waitValue(0, "a", "1")
}

func TestCorruptWALRefused(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.WALSegmentBytes = wal.SegmentBytesMin })
	c.leader()
	for i := range 60 {
		c.put(fmt.Sprintf("k%d", i), strings.Repeat("x", 100))
	}
	c.stop(0)
	segs, _ := filepath.Glob(filepath.Join(c.dirs[0], "wal", "*.wal"))
	if len(segs) < 2 {
		t.Fatalf("want several WAL segments, have %d", len(segs))
	}
	f, err := os.OpenFile(segs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xee}, 100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Start(c.config(0))
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(segs[0])) {
		t.Fatalf("start on a corrupt WAL: %v", err)
	}
	t.Logf("refused as expected: %v", err)
}

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "a", ID: 1, ClusterID: 1, DataDir: "/tmp/x", Peers: []Peer{{ID: 1, Name: "a"}},
		Transport: newMemNet().factory(1)}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range Protocols {
		cfg := good
		cfg.Protocol = p
		if err := cfg.Validate(); err != nil {
			t.Errorf("protocol %s: %v", p, err)
		}
	}
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Transport, c.Peers[0].PeerURLs = nil, []string{"https://h:1"} }, "with peer TLS off the URLs must be http://"},
		{func(c *Config) { c.Protocol = "paxos" }, `Protocol "paxos" is not supported; this build runs epaxos, multipaxos, raft`},
		{func(c *Config) { c.SnapshotChunkBytes = MessageBytesMax }, "SnapshotChunkBytes"},
		{func(c *Config) { c.ID = 0 }, "ID must not be 0"},
		{func(c *Config) { c.Peers = []Peer{{ID: 2, Name: "b"}} }, "does not include this member"},
		{func(c *Config) { c.Peers = append(c.Peers, Peer{ID: 1, Name: "b"}) }, "twice"},
		{func(c *Config) { c.Transport = nil }, "no peer URL"},
		{func(c *Config) { c.ElectionTicks = 1 }, "ElectionTicks"},
		{func(c *Config) { c.DataDir = "" }, "DataDir"},
	} {
		cfg := good
		cfg.Peers = slices.Clone(good.Peers)
		tc.mut(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
}

func TestProposeContextAndStop(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	// Cut the leader off: a proposal cannot commit, and the caller's
	// context ends the wait (or the leader notices it lost its quorum).
	c.net.setCut(c.nodes[l].ID(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.nodes[l].Propose(ctx, kv.Put("a", "1"))
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("propose on an isolated leader: %v", err)
	}
	c.net.setCut(c.nodes[l].ID(), false)
	c.put("b", "2")
	n := c.nodes[l]
	c.stop(l)
	if _, err := n.Propose(ctxT(t), kv.Put("c", "3")); !errors.Is(err, ErrStopped) {
		t.Fatalf("propose on a stopped node: %v", err)
	}
	if _, err := n.Read(ctxT(t), kv.Get("c"), true); !errors.Is(err, ErrStopped) {
		t.Fatalf("read on a stopped node: %v", err)
	}
	if err := n.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestCorruptSnapshotRefused(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.SnapshotEntries, cfg.SnapshotRetainEntries = 10, 2 })
	c.leader()
	for i := range 30 {
		c.put(fmt.Sprintf("k%d", i), "v")
	}
	c.stop(0)
	snaps, _ := filepath.Glob(filepath.Join(c.dirs[0], "snap", "*.snap"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot taken")
	}
	newest := snaps[len(snaps)-1]
	data, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(newest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Start(c.config(0))
	if err == nil || !strings.Contains(err.Error(), filepath.Base(newest)) || !strings.Contains(err.Error(), "remove its data directory") {
		t.Fatalf("start with a corrupt snapshot: %v", err)
	}
	t.Logf("refused as expected: %v", err)
}

package server_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/server"
)

// fakeBackend is a server.Backend over an in-memory kv.Store: each
// proposal is applied at once as the next log entry. It leads when leader
// equals its id; otherwise Propose and linearizable reads return a
// *consensus.NotLeaderError naming leader (None: no leader known).
type fakeBackend struct {
	id      consensus.NodeID
	cluster *fakeCluster

	mu     sync.Mutex
	store  *kv.Store
	index  uint64
	leader consensus.NodeID
	// protocol is what Status reports ("fake" unless setProtocol).
	protocol string
	// peer makes Status report a leaderless member: role peer, no leader.
	peer bool
	// proposals counts the requests proposed here (applied locally);
	// reads the calls of Read.
	proposals, reads int
	// watch is the history of changes Watch reads (see watch_test.go).
	watch *node.WatchHub
	// swim is the SWIM view Status reports (nil: none; setSWIM).
	swim *server.Membership
}

func newFakeBackend(id consensus.NodeID, cluster *fakeCluster) *fakeBackend {
	return &fakeBackend{id: id, cluster: cluster, store: kv.New(), leader: id, protocol: "fake", watch: node.NewWatchHub(1, 0, 0)}
}

// setProtocol sets the protocol Status reports; peer makes the member
// leaderless (consensus.RolePeer).
func (b *fakeBackend) setProtocol(protocol string, peer bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.protocol, b.peer = protocol, peer
}

// setSWIM sets the SWIM view Status reports.
func (b *fakeBackend) setSWIM(m *server.Membership) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.swim = m
}

// calls returns how many requests reached Propose or Read.
func (b *fakeBackend) calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.proposals + b.reads
}

func (b *fakeBackend) setLeader(id consensus.NodeID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leader = id
}

// proposed returns how many requests were proposed here.
func (b *fakeBackend) proposed() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.proposals
}

// apply applies req directly, bypassing gRPC (for test setup).
func (b *fakeBackend) apply(req kv.Request) kv.Result {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.index++
	res := b.store.Apply(consensus.Entry{Index: b.index, Term: 3, Command: req.Command(consensus.Session{})})
	b.watch.Publish([]kv.Result{res})
	return res
}

func (b *fakeBackend) Propose(ctx context.Context, req kv.Request) (kv.Result, error) {
	if err := ctx.Err(); err != nil {
		return kv.Result{}, err
	}
	b.mu.Lock()
	if b.leader != b.id {
		defer b.mu.Unlock()
		return kv.Result{}, &consensus.NotLeaderError{Leader: b.leader}
	}
	b.proposals++
	b.mu.Unlock()
	return b.apply(req), nil
}

func (b *fakeBackend) Read(ctx context.Context, req kv.Request, linearizable bool) (kv.Result, error) {
	if err := ctx.Err(); err != nil {
		return kv.Result{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reads++
	if linearizable && b.leader != b.id {
		return kv.Result{}, &consensus.NotLeaderError{Leader: b.leader}
	}
	return b.store.Read(req), nil
}

func (b *fakeBackend) Status() server.NodeStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	role, leader := consensus.RoleFollower, b.leader
	switch {
	case b.peer:
		role, leader = consensus.RolePeer, consensus.None
	case b.leader == b.id:
		role = consensus.RoleLeader
	}
	return server.NodeStatus{
		ClusterID: 0xc1,
		MemberID:  b.id,
		Name:      "n" + b.id.String(),
		Protocol:  b.protocol,
		Replica: consensus.Status{
			ID: b.id, Role: role, Term: 3, Leader: leader,
			Commit: b.index, Applied: b.index, LastIndex: b.index,
		},
		Revision:    b.store.Revision(),
		DBSizeBytes: 4096,
		Membership:  b.swim,
	}
}

func (b *fakeBackend) Members() []server.Member { return b.cluster.list() }

// fakeCluster is the membership every fake backend of a test shares.
type fakeCluster struct {
	mu      sync.Mutex
	members []server.Member
}

func (c *fakeCluster) add(m server.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = append(c.members, m)
}

func (c *fakeCluster) list() []server.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]server.Member(nil), c.members...)
}

// startMember serves b (or cfg.Backend, wrapping b) on a fresh loopback port, registers it in its
// cluster, and stops it when the test ends. It returns its client URL.
func startMember(t *testing.T, b *fakeBackend, cfg server.Config) string {
	t.Helper()
	if cfg.Backend == nil {
		cfg.Backend = b
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	url := "http://" + l.Addr().String()
	b.cluster.add(server.Member{
		ID:         b.id,
		Name:       "n" + b.id.String(),
		PeerURLs:   []string{"http://127.0.0.1:1" + b.id.String()},
		ClientURLs: []string{url},
	})
	return url
}

// newClient connects etcd's client to url and closes it when the test ends.
func newClient(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:        []string{url},
		DialTimeout:      5 * time.Second,
		Logger:           zap.NewNop(),
		RejectOldCluster: true, // checks Status().Version is acceptable
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// single starts one leading member and returns it with a client.
func single(t *testing.T, cfg server.Config) (*fakeBackend, *clientv3.Client) {
	t.Helper()
	b := newFakeBackend(1, &fakeCluster{})
	return b, newClient(t, startMember(t, b, cfg))
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

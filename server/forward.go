package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/synod-io/synod/consensus"
)

// Forwarding.
//
// A member that cannot serve a request itself (Backend.Propose or a
// linearizable Backend.Read returns a *consensus.NotLeaderError naming the
// leader) sends the original etcd request to the leader's first client URL,
// as an ordinary etcd client would, and relays the answer. Connections to
// leaders are cached by URL (at most forwardConnsMax, pruned to current
// members when full) and closed on Stop.
//
// Each forwarded call carries, in gRPC metadata, how many times it has been
// forwarded. A member that would forward a request already forwarded
// forwardHopsMax times answers "no leader" instead, so members that
// disagree about the leader cannot bounce a request between them forever;
// clientv3 retries reads on that error.

// forwardHopsKey is the gRPC metadata key carrying the hop count.
const forwardHopsKey = "synod-forward-hops"

type forwarder struct {
	cfg *Config

	mu sync.Mutex
	// conns holds the open connections by client URL. Invariant:
	// len(conns) <= forwardConnsMax; empty once closed.
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newForwarder(cfg *Config) *forwarder {
	return &forwarder{cfg: cfg, conns: make(map[string]*grpc.ClientConn)}
}

// target is where one request is forwarded.
type target struct {
	ctx     context.Context // the outgoing context, carrying the hop count
	kv      pb.KVClient
	leader  consensus.NodeID
	url     string
	release func() // closes an uncached connection; safe to call once
}

// to prepares forwarding a request that arrived with context in (for its
// metadata) to leader, under ctx (bounded by the request timeout).
func (f *forwarder) to(ctx, in context.Context, leader consensus.NodeID) (*target, error) {
	hops := hopsFrom(in)
	if hops >= forwardHopsMax {
		f.cfg.Logger.Warn("not forwarding: hop limit reached (members disagree about the leader)",
			"leader", leader, "hops", hops)
		return nil, rpctypes.ErrGRPCNoLeader
	}
	if leader == f.cfg.Backend.Status().MemberID {
		f.cfg.Logger.Warn("not forwarding: the backend names this member as the leader but refused the request", "leader", leader)
		return nil, rpctypes.ErrGRPCNoLeader
	}
	members := f.cfg.Backend.Members()
	var u string
	for _, m := range members {
		if m.ID == leader && len(m.ClientURLs) > 0 {
			u = m.ClientURLs[0]
		}
	}
	if u == "" {
		f.cfg.Logger.Warn("not forwarding: the leader has no known client URL", "leader", leader)
		return nil, rpctypes.ErrGRPCNoLeader
	}
	conn, release, err := f.conn(ctx, u, members)
	if err != nil {
		f.cfg.Logger.Warn("forwarding: cannot connect to the leader", "leader", leader, "url", u, "err", err)
		return nil, status.Errorf(codes.Unavailable, "etcdserver: cannot reach leader %d at %s: %v", leader, u, err)
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardHopsKey, strconv.Itoa(hops+1))
	return &target{ctx: out, kv: pb.NewKVClient(conn), leader: leader, url: u, release: release}, nil
}

// hopsFrom reads the hop count of an incoming request (0 if absent).
func hopsFrom(ctx context.Context) int {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return 0
	}
	v := md.Get(forwardHopsKey)
	if len(v) == 0 {
		return 0
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < 0 {
		return forwardHopsMax // malformed: don't forward further
	}
	return n
}

// conn returns a connection to clientURL, cached if there is room.
func (f *forwarder) conn(ctx context.Context, clientURL string, members []Member) (*grpc.ClientConn, func(), error) {
	noop := func() {}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, nil, rpctypes.ErrGRPCStopped
	}
	if c, ok := f.conns[clientURL]; ok {
		f.mu.Unlock()
		return c, noop, nil
	}
	f.mu.Unlock()

	c, err := f.dial(ctx, clientURL)
	if err != nil {
		return nil, nil, err
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return nil, nil, rpctypes.ErrGRPCStopped
	}
	if old, ok := f.conns[clientURL]; ok { // lost a race; keep the first
		c.Close()
		return old, noop, nil
	}
	if len(f.conns) >= forwardConnsMax {
		f.pruneLocked(members)
	}
	if len(f.conns) >= forwardConnsMax {
		// Still full of current members' URLs: use this one once.
		return c, func() { c.Close() }, nil
	}
	f.conns[clientURL] = c
	return c, noop, nil
}

// pruneLocked closes cached connections to URLs no current member has.
func (f *forwarder) pruneLocked(members []Member) {
	live := make(map[string]bool)
	for _, m := range members {
		for _, u := range m.ClientURLs {
			live[u] = true
		}
	}
	for u, c := range f.conns {
		if !live[u] {
			c.Close()
			delete(f.conns, u)
		}
	}
}

func (f *forwarder) dial(ctx context.Context, clientURL string) (*grpc.ClientConn, error) {
	if f.cfg.ForwardDial != nil {
		return f.cfg.ForwardDial(ctx, clientURL)
	}
	var creds credentials.TransportCredentials
	host := clientURL
	if strings.Contains(clientURL, "://") {
		u, err := url.Parse(clientURL)
		if err != nil {
			return nil, fmt.Errorf("bad client URL %q: %w", clientURL, err)
		}
		host = u.Host
		switch u.Scheme {
		case "http":
		case "https":
			tc := f.cfg.ForwardTLS
			if tc == nil {
				tc = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			creds = credentials.NewTLS(tc.Clone())
		default:
			return nil, fmt.Errorf("client URL %q: scheme %q not supported (want http or https)", clientURL, u.Scheme)
		}
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	return grpc.NewClient(host,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallSendMsgSize(f.cfg.MaxRequestBytes+grpcOverheadBytes),
			grpc.MaxCallRecvMsgSize(math.MaxInt32),
		),
	)
}

// remoteError maps the error of a forwarded call. Errors the leader
// answered with (etcd's own, "etcdserver: …") pass through unchanged, so the
// client sees what the leader said; the caller's cancellation and our
// timeout map as for a local request; a failure to reach the leader becomes
// codes.Unavailable, which clientv3 retries for reads.
func (f *forwarder) remoteError(parent, ctx context.Context, t *target, err error) error {
	if parent.Err() != nil || ctx.Err() != nil {
		return toGRPCError(parent, ctx, context.DeadlineExceeded)
	}
	st, ok := status.FromError(err)
	if !ok {
		return status.Error(codes.Unknown, err.Error())
	}
	if strings.HasPrefix(st.Message(), "etcdserver: ") || st.Code() != codes.Unavailable {
		return err
	}
	f.cfg.Logger.Warn("forwarding: leader unreachable", "leader", t.leader, "url", t.url, "err", err)
	return status.Errorf(codes.Unavailable, "etcdserver: cannot reach leader %d at %s: %s", t.leader, t.url, st.Message())
}

// close closes every cached connection; later forwarding fails with
// "server stopped".
func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for u, c := range f.conns {
		c.Close()
		delete(f.conns, u)
	}
}

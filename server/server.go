package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/synod-io/synod/consensus"
)

// Limits and defaults. Each configurable one is checked in New.
const (
	// MaxRequestBytesDefault is etcd's default --max-request-bytes.
	MaxRequestBytesDefault = 1536 * 1024
	// MaxRequestBytesMax bounds Config.MaxRequestBytes (etcd warns above
	// 10 MiB; we refuse above 64 MiB, the most a consensus entry may carry).
	MaxRequestBytesMax = consensus.EncodedBytesMax
	// grpcOverheadBytes is the slack, beyond MaxRequestBytes, that gRPC
	// accepts on receipt, so that a request a little too large gets etcd's
	// "request is too large" error instead of gRPC's (as etcd does).
	grpcOverheadBytes = 512 * 1024

	// RequestTimeoutDefault bounds how long one request may wait for the
	// backend (and for a forwarded call to the leader) when the client set
	// no shorter deadline. It matches etcd's 5s + 2 × 1s election timeout.
	RequestTimeoutDefault = 7 * time.Second
	// RequestTimeoutMax bounds Config.RequestTimeout.
	RequestTimeoutMax = 5 * time.Minute

	// StreamsPerConnMaxDefault bounds concurrent RPCs on one client
	// connection.
	StreamsPerConnMaxDefault = 1024

	// forwardHopsMax is the most times one request may be forwarded
	// between members before the server gives up with "no leader". One hop
	// is normal; a second covers a leader change while forwarding; more
	// means members disagree about the leader (a loop).
	forwardHopsMax = 2
	// forwardConnsMax bounds the cached connections to leaders.
	forwardConnsMax = 32

	// rangeStreamChunkKVsMax is the most keys one RangeStream message
	// carries.
	rangeStreamChunkKVsMax = 1000

	// Version is the etcd server version Maintenance.Status reports. etcd
	// clients accept servers no older than their previous minor release,
	// and reject pre-release versions as older, so this is a release
	// version with build metadata.
	Version = "3.6.0+synod"
)

// StatusVersion is the version Maintenance.Status reports for a member
// running protocol: Version with the protocol appended to its build
// metadata ("3.6.0+synod.epaxos"; Version itself for an empty protocol).
// etcd's clients ignore build metadata, etcdctl endpoint status shows it,
// and synod's tools read it back with ProtocolOfVersion, to tell a member
// of a leaderless protocol (which never names a leader) from one that has
// lost its leader.
func StatusVersion(protocol string) string {
	if protocol == "" {
		return Version
	}
	return Version + "." + protocol
}

// ProtocolOfVersion returns the protocol named by a version that
// StatusVersion made, or "" if v names none (another server, or an older
// synod).
func ProtocolOfVersion(v string) string {
	p, ok := strings.CutPrefix(v, Version+".")
	if !ok {
		return ""
	}
	return p
}

// Config configures a Server.
type Config struct {
	// Backend is the node the server fronts. Required. It must be safe for
	// concurrent use: every RPC calls it from its own goroutine, and every
	// response calls Status (keep it cheap).
	Backend Backend
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
	// MaxRequestBytes is the largest request accepted (etcd's
	// --max-request-bytes); 0 means MaxRequestBytesDefault.
	MaxRequestBytes int
	// RequestTimeout bounds each request's wait for the backend; 0 means
	// RequestTimeoutDefault. When it expires the client gets etcd's
	// "request timed out".
	RequestTimeout time.Duration
	// StreamsPerConnMax bounds concurrent RPCs per client connection; 0
	// means StreamsPerConnMaxDefault.
	StreamsPerConnMax int
	// TLS, when set, serves TLS with this configuration; nil serves
	// plaintext.
	TLS *tls.Config
	// ForwardDial, when set, opens the connection used to forward requests
	// to the leader at clientURL (one of the leader's Member.ClientURLs).
	// The server caches the connection and closes it on Stop. When nil, the
	// server dials http:// URLs in plaintext and https:// URLs with
	// ForwardTLS.
	ForwardDial func(ctx context.Context, clientURL string) (*grpc.ClientConn, error)
	// ForwardTLS is the client TLS configuration for forwarding to https://
	// client URLs when ForwardDial is nil; nil uses the system roots.
	ForwardTLS *tls.Config
	// WatchProgressNotifyInterval is how often a watcher created with
	// progress_notify gets a progress response when idle; 0 means
	// WatchProgressNotifyIntervalDefault.
	WatchProgressNotifyInterval time.Duration
}

func (c *Config) validate() error {
	if c.Backend == nil {
		return errors.New("server: Config.Backend is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = MaxRequestBytesDefault
	}
	if c.MaxRequestBytes < 0 || c.MaxRequestBytes > MaxRequestBytesMax {
		return fmt.Errorf("server: MaxRequestBytes %d out of range (1..%d)", c.MaxRequestBytes, MaxRequestBytesMax)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = RequestTimeoutDefault
	}
	if c.RequestTimeout < 0 || c.RequestTimeout > RequestTimeoutMax {
		return fmt.Errorf("server: RequestTimeout %v out of range (0..%v)", c.RequestTimeout, RequestTimeoutMax)
	}
	if c.StreamsPerConnMax == 0 {
		c.StreamsPerConnMax = StreamsPerConnMaxDefault
	}
	if c.StreamsPerConnMax < 0 || c.StreamsPerConnMax > math.MaxInt32 {
		return fmt.Errorf("server: StreamsPerConnMax %d out of range", c.StreamsPerConnMax)
	}
	if c.WatchProgressNotifyInterval == 0 {
		c.WatchProgressNotifyInterval = WatchProgressNotifyIntervalDefault
	}
	if c.WatchProgressNotifyInterval < WatchProgressNotifyIntervalMin || c.WatchProgressNotifyInterval > WatchProgressNotifyIntervalMax {
		return fmt.Errorf("server: WatchProgressNotifyInterval %v out of range (%v..%v)",
			c.WatchProgressNotifyInterval, WatchProgressNotifyIntervalMin, WatchProgressNotifyIntervalMax)
	}
	return nil
}

// Server serves etcd's v3 gRPC API (KV, Watch, Maintenance.Status,
// Cluster.MemberList) over a Backend. Requests a follower cannot serve are
// forwarded to the leader. Create one with New, run it with Serve, end it
// with GracefulStop or Stop.
type Server struct {
	cfg  Config
	log  *slog.Logger
	grpc *grpc.Server
	fwd  *forwarder
	// stopping is closed when a stop begins: watch streams, which never
	// end on their own, end then (see watch.go).
	stopping     chan struct{}
	stoppingOnce sync.Once
}

// New validates cfg and returns a server with etcd's KV, Maintenance,
// Cluster and Watch services registered. Services and methods synod does
// not implement answer codes.Unimplemented with a message that says so.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, stopping: make(chan struct{})}
	s.fwd = newForwarder(&s.cfg)
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(uint32(cfg.StreamsPerConnMax)),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.UnknownServiceHandler(unknownService),
		// As etcd: let clients ping every 5s, and drop dead connections.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: false}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterKVServer(s.grpc, &kvService{s: s})
	pb.RegisterMaintenanceServer(s.grpc, &maintenanceService{s: s})
	pb.RegisterClusterServer(s.grpc, &clusterService{s: s})
	pb.RegisterWatchServer(s.grpc, &watchService{s: s})
	pb.RegisterLeaseServer(s.grpc, leaseService{})
	return s, nil
}

// Serve accepts connections on l until GracefulStop or Stop, and returns
// what grpc.Server.Serve returns (nil after a stop).
func (s *Server) Serve(l net.Listener) error {
	s.log.Info("serving etcd v3 API", "addr", l.Addr().String(), "tls", s.cfg.TLS != nil)
	return s.grpc.Serve(l)
}

// GracefulStop stops accepting connections and waits for in-flight RPCs to
// finish (watch streams end at once with etcd's "server stopped", so that
// clients move to another member), then closes the connections used for
// forwarding.
func (s *Server) GracefulStop() {
	s.stoppingOnce.Do(func() { close(s.stopping) })
	s.grpc.GracefulStop()
	s.fwd.close()
}

// Stop closes every connection and cancels in-flight RPCs at once, then
// closes the connections used for forwarding.
func (s *Server) Stop() {
	s.stoppingOnce.Do(func() { close(s.stopping) })
	s.grpc.Stop()
	s.fwd.close()
}

// header returns a response header as etcd fills it: this member, the
// cluster, the given store revision and the current term.
func (s *Server) header(rev int64) *pb.ResponseHeader {
	st := s.cfg.Backend.Status()
	return &pb.ResponseHeader{
		ClusterId: st.ClusterID,
		MemberId:  uint64(st.MemberID),
		Revision:  rev,
		RaftTerm:  st.Replica.Term,
	}
}

// unaryInterceptor enforces the request size limit with etcd's error and
// etcd's require-leader metadata.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok && proto.Size(m) > s.cfg.MaxRequestBytes {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	if err := s.checkRequireLeader(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.checkRequireLeader(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

// checkRequireLeader implements clientv3.WithRequireLeader: a request
// carrying the "hasleader" metadata fails with "no leader" when this member
// knows of no leader. Leaderless protocols (role peer) always pass.
func (s *Server) checkRequireLeader(ctx context.Context) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil
	}
	v := md.Get(rpctypes.MetadataRequireLeaderKey)
	if len(v) == 0 || v[0] != rpctypes.MetadataHasLeader {
		return nil
	}
	st := s.cfg.Backend.Status().Replica
	if st.Role != consensus.RolePeer && st.Leader == consensus.None {
		return rpctypes.ErrGRPCNoLeader
	}
	return nil
}

// unknownService answers RPCs for services synod does not register (Lease
// is registered with its own messages; Auth, Lock, Election are not).
func unknownService(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	return status.Errorf(codes.Unimplemented, "synod: %s is not supported", method)
}

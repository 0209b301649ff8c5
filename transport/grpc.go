package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/synod-io/synod/consensus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// The peer service, defined by hand (there is no .proto): one
// bidirectional stream whose messages are frames (see frame.go), carried by
// rawCodec.
const (
	serviceName = "synod.transport.Peer"
	streamName  = "Stream"
	// streamMethod is the full gRPC method name of the peer stream.
	streamMethod = "/" + serviceName + "/" + streamName
)

// peerService is the handler type of serviceDesc.
type peerService interface {
	serveStream(grpc.ServerStream) error
}

var streamDesc = grpc.StreamDesc{
	StreamName:    streamName,
	ServerStreams: true,
	ClientStreams: true,
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*peerService)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    streamName,
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			return srv.(peerService).serveStream(ss)
		},
	}},
	Metadata: "synod/transport/peer",
}

// GRPC is a Transport over gRPC. Each peer gets one long-lived outbound
// stream, opened when there is first something to send and re-opened with
// jittered exponential back-off after it fails, and a goroutine that drains
// the peer's bounded queue and batches messages into frames. Inbound
// streams are accepted only from the configured peers of the same cluster.
type GRPC struct {
	cfg    Config
	log    *slog.Logger
	lis    net.Listener
	server *grpc.Server
	peers  map[consensus.NodeID]*peer // fixed after New

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu sync.Mutex
	// closed is set by Close; once set, no goroutine is added to wg.
	closed bool
	wg     sync.WaitGroup

	droppedUnknownPeer   atomic.Uint64
	streamsAccepted      atomic.Uint64
	streamsRejected      atomic.Uint64
	framesMalformed      atomic.Uint64
	messagesMisaddressed atomic.Uint64
}

var _ Transport = (*GRPC)(nil)

// New makes a transport and starts serving inbound streams. Outbound
// streams are opened lazily by Send.
func New(cfg Config) (*GRPC, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	lis := cfg.Listener
	if lis == nil {
		lis, err = net.Listen("tcp", cfg.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("transport: %w", err)
		}
	}
	t := &GRPC{
		cfg:   cfg,
		log:   cfg.Logger.With("node", uint64(cfg.ID)),
		lis:   lis,
		peers: make(map[consensus.NodeID]*peer, len(cfg.Peers)),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())

	serverCreds := insecure.NewCredentials()
	if cfg.ServerTLS != nil {
		serverCreds = credentials.NewTLS(cfg.ServerTLS)
	}
	t.server = grpc.NewServer(
		grpc.Creds(serverCreds),
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(cfg.MessageBytesMax),
		grpc.MaxSendMsgSize(cfg.MessageBytesMax),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             min(cfg.KeepaliveInterval/2, KeepaliveIntervalDefault/6),
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    cfg.KeepaliveInterval,
			Timeout: cfg.HandshakeTimeout,
		}),
	)
	t.server.RegisterService(&serviceDesc, t)

	clientCreds := insecure.NewCredentials()
	if cfg.ClientTLS != nil {
		clientCreds = credentials.NewTLS(cfg.ClientTLS)
	}
	for id, addr := range cfg.Peers {
		if id == cfg.ID {
			continue
		}
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(clientCreds),
			grpc.WithDefaultCallOptions(
				grpc.ForceCodecV2(rawCodec{}),
				grpc.MaxCallRecvMsgSize(cfg.MessageBytesMax),
				grpc.MaxCallSendMsgSize(cfg.MessageBytesMax),
			),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  cfg.DialBackoffBase,
					Multiplier: 2,
					Jitter:     0.2,
					MaxDelay:   cfg.DialBackoffMax,
				},
				MinConnectTimeout: cfg.HandshakeTimeout,
			}),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{
				Time:    cfg.KeepaliveInterval,
				Timeout: cfg.HandshakeTimeout,
			}),
		)
		if err != nil {
			for _, p := range t.peers {
				p.conn.Close()
			}
			if cfg.Listener == nil {
				lis.Close()
			}
			t.cancel()
			return nil, fmt.Errorf("transport: client for peer %d at %q: %w", id, addr, err)
		}
		t.peers[id] = newPeer(t, id, addr, conn)
	}

	t.wg.Add(1 + len(t.peers))
	go func() {
		defer t.wg.Done()
		if err := t.server.Serve(lis); err != nil {
			t.log.Error("transport: serving peer streams stopped", "err", err)
		}
	}()
	for _, p := range t.peers {
		go func() {
			defer t.wg.Done()
			p.run()
		}()
	}
	t.log.Info("transport: listening", "addr", lis.Addr().String(), "cluster", cfg.ClusterID, "peers", len(t.peers))
	return t, nil
}

// Addr is the address the transport listens on.
func (t *GRPC) Addr() net.Addr { return t.lis.Addr() }

// Send queues each message for its To peer and returns at once. A message
// is dropped, and counted in Stats, if its peer is unknown, its queue is
// full, its stream is failing (back-off), it does not encode, or its
// encoding with envelope exceeds Config.MessageBytesMax. Payloads are
// encoded before Send returns.
func (t *GRPC) Send(msgs []consensus.Message) {
	for i := range msgs {
		m := &msgs[i]
		p := t.peers[m.To]
		if p == nil {
			n := t.droppedUnknownPeer.Add(1)
			if n == 1 || n%1024 == 0 {
				t.log.Warn("transport: dropping message to an unknown peer", "to", uint64(m.To), "type", payloadType(m.Payload), "dropped_total", n)
			}
			continue
		}
		p.send(m)
	}
}

// Close stops serving, closes every stream and the listener, and waits
// for the transport's goroutines, including Handler calls in progress.
// Messages still queued are dropped. Close is idempotent.
func (t *GRPC) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	// Peers learn of the close before their streams are cancelled, so that
	// a cancelled stream is not logged as a failure.
	for _, p := range t.peers {
		p.close()
	}
	t.cancel()
	t.server.Stop()
	t.wg.Wait()
	var firstErr error
	for _, p := range t.peers {
		if err := p.conn.Close(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	t.log.Info("transport: closed")
	return firstErr
}

// goTracked runs f on a new goroutine that Close waits for. It returns
// false, and runs nothing, once the transport is closed.
func (t *GRPC) goTracked(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// enter registers a call that Close must wait for (an inbound stream
// handler); it returns false once the transport is closed. The caller
// calls t.wg.Done when finished.
func (t *GRPC) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func payloadType(p consensus.Payload) string {
	if p == nil {
		return "<nil>"
	}
	return p.MessageType()
}

// Stats are the transport's counters since New. All counts are totals.
type Stats struct {
	// Peers holds each configured peer's counters.
	Peers map[consensus.NodeID]PeerStats
	// DroppedUnknownPeer counts messages Send dropped because their To is
	// not a configured peer (or is this node).
	DroppedUnknownPeer uint64
	// StreamsAccepted and StreamsRejected count inbound streams whose hello
	// was accepted, and those refused (wrong cluster, unknown or
	// misdirected node, bad or missing hello).
	StreamsAccepted uint64
	StreamsRejected uint64
	// FramesMalformed counts inbound frames that did not decode (each
	// closed its stream).
	FramesMalformed uint64
	// MessagesMisaddressed counts inbound messages dropped because their
	// From is not the stream's peer or their To is not this node.
	MessagesMisaddressed uint64
}

// PeerStats are the counters of one peer.
type PeerStats struct {
	Addr string
	// Connected reports whether an outbound stream is open now.
	Connected bool
	// QueueLen and QueueBytes are the messages and encoded bytes queued now.
	QueueLen   int
	QueueBytes int

	MessagesSent uint64
	BytesSent    uint64 // frame bytes
	FramesSent   uint64

	MessagesReceived uint64
	BytesReceived    uint64 // frame bytes
	FramesReceived   uint64

	// DroppedQueueFull counts messages Send dropped because the queue was
	// at SendQueueMax or SendQueueBytesMax.
	DroppedQueueFull uint64
	// DroppedTooLarge counts messages larger than MessageBytesMax allows.
	DroppedTooLarge uint64
	// DroppedInvalid counts messages that did not encode or whose From is
	// not this node.
	DroppedInvalid uint64
	// DroppedUnreachable counts messages dropped because the stream
	// failed, or was in back-off, before they were sent.
	DroppedUnreachable uint64

	// StreamsOpened counts outbound streams that completed the hello
	// exchange; Reconnects those after the first. DialFailures counts
	// attempts that did not.
	StreamsOpened uint64
	Reconnects    uint64
	DialFailures  uint64
}

// Stats returns a snapshot of the counters. It is cheap enough to call for
// every metrics scrape.
func (t *GRPC) Stats() Stats {
	s := Stats{
		Peers:                make(map[consensus.NodeID]PeerStats, len(t.peers)),
		DroppedUnknownPeer:   t.droppedUnknownPeer.Load(),
		StreamsAccepted:      t.streamsAccepted.Load(),
		StreamsRejected:      t.streamsRejected.Load(),
		FramesMalformed:      t.framesMalformed.Load(),
		MessagesMisaddressed: t.messagesMisaddressed.Load(),
	}
	for id, p := range t.peers {
		s.Peers[id] = p.stats()
	}
	return s
}

package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/synod-io/synod/consensus"
)

// Bounds and defaults of Config, checked when a GRPC transport is made.
const (
	// PeersMax bounds Config.Peers.
	PeersMax = 1 << 10

	// SendQueueMaxDefault and SendQueueMaxLimit: messages queued per peer.
	SendQueueMaxDefault = 1024
	SendQueueMaxLimit   = 1 << 20
	// SendQueueBytesMaxDefault: encoded bytes queued per peer.
	SendQueueBytesMaxDefault = 64 << 20
	// MessageBytesMaxDefault, MessageBytesMaxMin and MessageBytesMaxLimit:
	// the largest frame (and so the largest single message) on a stream.
	MessageBytesMaxDefault = 16 << 20
	MessageBytesMaxMin     = 4 << 10
	MessageBytesMaxLimit   = consensus.EncodedBytesMax + 1<<20
	// BatchBytesMaxDefault: the bytes of messages batched into one frame.
	BatchBytesMaxDefault = 1 << 20

	DialBackoffBaseDefault  = 100 * time.Millisecond
	DialBackoffMaxDefault   = 5 * time.Second
	HandshakeTimeoutDefault = 5 * time.Second
	// KeepaliveIntervalDefault: how often an idle connection is pinged to
	// find a dead peer.
	KeepaliveIntervalDefault = 30 * time.Second
)

// Config configures a GRPC transport. Zero numeric fields take the
// defaults above.
type Config struct {
	// ClusterID names the cluster; it is sent on every stream, and streams
	// from another cluster are refused. It must not be zero.
	ClusterID uint64
	// ID is this node. It must not be zero.
	ID consensus.NodeID
	// Peers are the cluster's nodes and their host:port addresses. Only
	// these may open streams to this node, and only these are sent to. An
	// entry for ID itself is allowed (it is the listen address if neither
	// Listener nor ListenAddr is set).
	Peers map[consensus.NodeID]string

	// Listener, if set, is served (and closed by Close); otherwise the
	// transport listens on ListenAddr, or failing that on Peers[ID].
	Listener   net.Listener
	ListenAddr string

	// Codec encodes and decodes message payloads.
	Codec consensus.MessageCodec
	// Handler receives every message addressed to this node.
	Handler Handler

	// SendQueueMax bounds the messages queued for one peer, and
	// SendQueueBytesMax their encoded bytes. When either is reached,
	// Send drops the new message (and counts it): a slow peer never makes
	// the queue grow.
	SendQueueMax      int
	SendQueueBytesMax int
	// BatchBytesMax bounds the messages one frame batches (a single larger
	// message goes alone). At most MessageBytesMax.
	BatchBytesMax int
	// MessageBytesMax bounds a frame, and so one encoded message with its
	// envelope; larger messages are dropped at Send with an error log.
	// gRPC's send and receive limits are set to it.
	MessageBytesMax int

	// DialBackoffBase is the wait after a first failure to open a stream;
	// it doubles (with jitter) on each failure in a row, up to
	// DialBackoffMax.
	DialBackoffBase time.Duration
	DialBackoffMax  time.Duration
	// HandshakeTimeout bounds opening a stream and exchanging hellos.
	HandshakeTimeout time.Duration
	// KeepaliveInterval is how often an idle connection is pinged.
	KeepaliveInterval time.Duration

	// Logger receives the transport's log lines (nil: discard).
	Logger *slog.Logger

	// ServerTLS and ClientTLS secure inbound and outbound connections
	// (for mutual TLS, set ClientCAs and ClientAuth on ServerTLS and
	// Certificates on ClientTLS). Nil means plaintext.
	ServerTLS *tls.Config
	ClientTLS *tls.Config
}

// withDefaults returns a copy of c with defaults filled in, or an error
// naming the first bad field.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("transport: bad Config: "+format, args...)
	}
	switch {
	case c.ClusterID == 0:
		return bad("ClusterID is zero")
	case c.ID == consensus.None:
		return bad("ID is zero")
	case len(c.Peers) > PeersMax:
		return bad("%d peers, at most %d", len(c.Peers), PeersMax)
	case c.Codec == nil:
		return bad("Codec is nil")
	case c.Handler == nil:
		return bad("Handler is nil")
	}
	peers := make(map[consensus.NodeID]string, len(c.Peers))
	for id, addr := range c.Peers {
		if id == consensus.None {
			return bad("Peers holds node ID zero")
		}
		if id != c.ID {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return bad("address %q of peer %d: %v", addr, id, err)
			}
		}
		peers[id] = addr
	}
	c.Peers = peers
	if c.Listener == nil && c.ListenAddr == "" {
		c.ListenAddr = c.Peers[c.ID]
		if c.ListenAddr == "" {
			return bad("none of Listener, ListenAddr and Peers[ID] is set")
		}
	}
	setDefault(&c.SendQueueMax, SendQueueMaxDefault)
	setDefault(&c.SendQueueBytesMax, SendQueueBytesMaxDefault)
	setDefault(&c.MessageBytesMax, MessageBytesMaxDefault)
	setDefault(&c.BatchBytesMax, min(BatchBytesMaxDefault, c.MessageBytesMax))
	setDefault(&c.DialBackoffBase, DialBackoffBaseDefault)
	setDefault(&c.DialBackoffMax, max(DialBackoffMaxDefault, c.DialBackoffBase))
	setDefault(&c.HandshakeTimeout, HandshakeTimeoutDefault)
	setDefault(&c.KeepaliveInterval, KeepaliveIntervalDefault)
	switch {
	case c.SendQueueMax < 1 || c.SendQueueMax > SendQueueMaxLimit:
		return bad("SendQueueMax %d, allowed 1..%d", c.SendQueueMax, SendQueueMaxLimit)
	case c.MessageBytesMax < MessageBytesMaxMin || c.MessageBytesMax > MessageBytesMaxLimit:
		return bad("MessageBytesMax %d, allowed %d..%d", c.MessageBytesMax, MessageBytesMaxMin, MessageBytesMaxLimit)
	case c.SendQueueBytesMax < c.MessageBytesMax:
		return bad("SendQueueBytesMax %d is below MessageBytesMax %d", c.SendQueueBytesMax, c.MessageBytesMax)
	case c.BatchBytesMax < 1 || c.BatchBytesMax > c.MessageBytesMax:
		return bad("BatchBytesMax %d, allowed 1..MessageBytesMax (%d)", c.BatchBytesMax, c.MessageBytesMax)
	case c.DialBackoffBase < 0 || c.DialBackoffMax < c.DialBackoffBase:
		return bad("DialBackoffBase %v and DialBackoffMax %v: want 0 < base <= max", c.DialBackoffBase, c.DialBackoffMax)
	case c.HandshakeTimeout < 0 || c.KeepaliveInterval < 0:
		return bad("negative HandshakeTimeout or KeepaliveInterval")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// ErrClosed is returned by operations on a closed transport.
var ErrClosed = errors.New("transport: closed")

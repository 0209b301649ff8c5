package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip/wire"
	"github.com/synod-io/synod/storage/wal"
	"github.com/synod-io/synod/transport"
)

// Defaults applied by Start to zero Config fields.
const (
	// TickIntervalDefault is the length of one logical tick. With the
	// default ElectionTicks (10) a follower that stops hearing from its
	// leader starts an election after 500 ms to 1 s, and a leader
	// heartbeats every HeartbeatTicks (1) tick: 50 ms.
	TickIntervalDefault = 50 * time.Millisecond
	// ElectionTicksDefault and HeartbeatTicksDefault are the protocols'
	// defaults.
	ElectionTicksDefault  = 10
	HeartbeatTicksDefault = 1
	// SnapshotEntriesDefault asks for a snapshot every that many applied
	// entries; SnapshotRetainEntriesDefault of them stay in the log behind
	// it, so that a follower lagging by fewer still gets appends.
	SnapshotEntriesDefault       = 10000
	SnapshotRetainEntriesDefault = 1000
	// SnapshotChunkBytesDefault bounds the snapshot data in one message.
	SnapshotChunkBytesDefault = 256 << 10
	// WALSegmentBytesDefault is the WAL's preallocated segment size. One
	// Ready's records are written as one WAL record, which must fit in a
	// segment, so the segment also bounds the largest Ready (a checkpoint
	// holds the whole retained log).
	WALSegmentBytesDefault int64 = 64 << 20
	// InboundQueueMaxDefault bounds the peer messages waiting for the
	// loop; more are dropped (the protocol tolerates loss).
	InboundQueueMaxDefault = 4096
	// ProposalQueueMaxDefault and ReadQueueMaxDefault bound the client
	// requests waiting for the loop; more are refused with ErrBusy.
	ProposalQueueMaxDefault = 4096
	ReadQueueMaxDefault     = 4096
	// ProposalBatchMaxDefault is how many queued proposals (and reads) one
	// loop iteration takes before handling a Ready; ProposalBatchBytesMax
	// bounds their command bytes.
	ProposalBatchMaxDefault = 512
	ProposalBatchBytesMax   = 8 << 20
	// InboundBatchMax is how many peer messages one loop iteration steps
	// before handling a Ready; it bounds one Ready's records (each message
	// carries at most about MessageBytesMax).
	InboundBatchMax = 16
	// RequestTimeoutDefault bounds a Propose or Read whose context has no
	// deadline.
	RequestTimeoutDefault = 10 * time.Second
)

// Limits checked by Validate.
const (
	TickIntervalMin   = time.Millisecond
	TickIntervalMax   = 10 * time.Second
	QueueMaxLimit     = 1 << 20
	ElectionTicksMax  = 1000
	RequestTimeoutMax = 10 * time.Minute
	LeaveTimeoutMax   = time.Minute
	// SnapshotEntriesMax bounds Config.SnapshotEntries and
	// SnapshotRetainEntriesMax Config.SnapshotRetainEntries.
	SnapshotEntriesMax       = 1 << 30
	SnapshotRetainEntriesMax = 1 << 24
	// SnapshotChunkBytesMax bounds Config.SnapshotChunkBytes: one chunk
	// travels in one message.
	SnapshotChunkBytesMax = payloadBytesMax
)

// Peer is one member of the cluster, as the node's configuration names it.
type Peer struct {
	ID   consensus.NodeID
	Name string
	// PeerURLs are where the member's transport listens; ClientURLs where
	// its client API listens. Informational for the node (the transport
	// and the server use them).
	PeerURLs   []string
	ClientURLs []string
}

// TransportFactory builds the node's transport once the node exists:
// inbound messages must go to h. It is called once, from Start.
type TransportFactory func(h transport.Handler) (transport.Transport, error)

// Config configures a Node. Zero numeric fields take the defaults above.
type Config struct {
	// Name is this member's human-readable name; ID its node ID (non-zero,
	// listed in Peers); ClusterID the cluster's (non-zero). All three are
	// recorded in the data directory on first start and checked after.
	Name      string
	ID        consensus.NodeID
	ClusterID uint64
	// DataDir holds the node's durable state: wal/, snap/, kv/ and the
	// identity file "cluster".
	DataDir string
	// Peers lists every member, this one included.
	Peers []Peer
	// Protocol names the replication protocol: one of Protocols ("raft",
	// the default, or "multipaxos"). It is recorded in the data directory,
	// and a directory holding one protocol's state is refused to another.
	Protocol string

	// TickInterval is the length of one tick; ElectionTicks and
	// HeartbeatTicks are the protocol's timeouts in ticks.
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int

	// Transport builds the peer transport. If nil, the node runs the gRPC
	// transport (transport.GRPC) itself: it serves PeerListener (or
	// listens on its own first peer URL) and reaches each peer at its
	// first peer URL.
	Transport    TransportFactory
	PeerListener net.Listener
	// PeerServerTLS and PeerClientTLS secure that gRPC transport's inbound
	// and outbound connections (transport.Config's ServerTLS and
	// ClientTLS). Set both, and every peer URL must be https://; set
	// neither, and every peer URL must be http://.
	PeerServerTLS *tls.Config
	PeerClientTLS *tls.Config
	// GossipKeyring, if set, seals the member's SWIM (and, in gossip
	// mode, store) messages with AES-GCM under its keys and accepts only
	// messages it opens (see peerCodec). Every member needs the same keys;
	// rotate them by changing the keyring while the member runs (package
	// gossip/wire). Nil sends them as they are (peer TLS, if on, still
	// protects them).
	GossipKeyring *wire.Keyring
	// Logger receives the node's log lines; nil discards them.
	Logger *slog.Logger

	// SnapshotEntries asks for a snapshot of the state machine every that
	// many applied entries; SnapshotRetainEntries stay in the log behind
	// it; SnapshotChunkBytes bounds one snapshot message.
	SnapshotEntries       int
	SnapshotRetainEntries int
	SnapshotChunkBytes    int
	// WALSegmentBytes is the WAL segment size.
	WALSegmentBytes int64

	// InboundQueueMax, ProposalQueueMax and ReadQueueMax bound the queues
	// into the loop; ProposalBatchMax is how many queued requests one
	// iteration takes.
	InboundQueueMax  int
	ProposalQueueMax int
	ReadQueueMax     int
	ProposalBatchMax int
	// RequestTimeout bounds a request whose context has no deadline.
	RequestTimeout time.Duration
	// LeaveTimeout, if positive, makes Stop leave the SWIM group
	// gracefully: the member announces that it leaves, and Stop waits up
	// to LeaveTimeout for the transport to send the announcement before
	// closing it, so the others record the member as left at once
	// instead of suspecting it and declaring it dead seconds later. Zero
	// stops without announcing. At most LeaveTimeoutMax.
	LeaveTimeout time.Duration
	// WatchHistoryEvents and WatchHistoryBytes bound the recent changes
	// kept for watchers (see WatchHub); 0 means WatchHistoryEventsDefault
	// and WatchHistoryBytesDefault.
	WatchHistoryEvents int
	WatchHistoryBytes  int64
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	setDur(&c.TickInterval, TickIntervalDefault)
	setDur(&c.RequestTimeout, RequestTimeoutDefault)
	setInt(&c.ElectionTicks, ElectionTicksDefault)
	setInt(&c.HeartbeatTicks, HeartbeatTicksDefault)
	setInt(&c.SnapshotEntries, SnapshotEntriesDefault)
	if c.SnapshotRetainEntries == 0 {
		c.SnapshotRetainEntries = min(SnapshotRetainEntriesDefault, c.SnapshotEntries/4)
	}
	setInt(&c.SnapshotChunkBytes, SnapshotChunkBytesDefault)
	setInt(&c.InboundQueueMax, InboundQueueMaxDefault)
	setInt(&c.ProposalQueueMax, ProposalQueueMaxDefault)
	setInt(&c.ReadQueueMax, ReadQueueMaxDefault)
	setInt(&c.ProposalBatchMax, ProposalBatchMaxDefault)
	if c.WALSegmentBytes == 0 {
		c.WALSegmentBytes = WALSegmentBytesDefault
	}
	setInt(&c.WatchHistoryEvents, WatchHistoryEventsDefault)
	if c.WatchHistoryBytes == 0 {
		c.WatchHistoryBytes = WatchHistoryBytesDefault
	}
	if c.Protocol == "" {
		c.Protocol = "raft"
	}
	return c
}

// Validate reports the first problem with c (after defaults), naming the
// field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Name == "" {
		return errors.New("node: Config.Name is empty; every member needs a name")
	}
	if c.ID == consensus.None {
		return errors.New("node: Config.ID must not be 0 (0 means no node)")
	}
	if c.ClusterID == 0 {
		return errors.New("node: Config.ClusterID must not be 0")
	}
	if c.DataDir == "" {
		return errors.New("node: Config.DataDir is empty")
	}
	var proto protocol
	peersMax := gossipPeersMax
	if c.Protocol != Gossip {
		var err error
		if proto, err = lookupProtocol(c.Protocol); err != nil {
			return err
		}
		peersMax = proto.peersMax
	}
	if len(c.Peers) == 0 || len(c.Peers) > peersMax {
		return fmt.Errorf("node: Config.Peers lists %d members; %s allows 1..%d", len(c.Peers), c.Protocol, peersMax)
	}
	self := false
	ids := map[consensus.NodeID]string{}
	names := map[string]bool{}
	for i, p := range c.Peers {
		if p.ID == consensus.None {
			return fmt.Errorf("node: Config.Peers[%d] (%q) has ID 0", i, p.Name)
		}
		if other, dup := ids[p.ID]; dup {
			return fmt.Errorf("node: Config.Peers lists ID %d twice (%q and %q)", p.ID, other, p.Name)
		}
		if p.Name != "" && names[p.Name] {
			return fmt.Errorf("node: Config.Peers lists the name %q twice", p.Name)
		}
		ids[p.ID], names[p.Name] = p.Name, true
		if p.ID == c.ID {
			self = true
			if p.Name != "" && p.Name != c.Name {
				return fmt.Errorf("node: Config.Peers names member %d %q, but Config.Name is %q", p.ID, p.Name, c.Name)
			}
		}
	}
	if !self {
		return fmt.Errorf("node: Config.Peers does not include this member (ID %d, name %q)", c.ID, c.Name)
	}
	if c.TickInterval < TickIntervalMin || c.TickInterval > TickIntervalMax {
		return fmt.Errorf("node: Config.TickInterval is %v; allowed %v..%v", c.TickInterval, TickIntervalMin, TickIntervalMax)
	}
	if c.HeartbeatTicks < 1 || c.ElectionTicks <= c.HeartbeatTicks || c.ElectionTicks > ElectionTicksMax {
		return fmt.Errorf("node: Config.ElectionTicks (%d) must exceed HeartbeatTicks (%d, at least 1) and be at most %d",
			c.ElectionTicks, c.HeartbeatTicks, ElectionTicksMax)
	}
	if c.Transport == nil {
		scheme := "http"
		if c.PeerServerTLS != nil || c.PeerClientTLS != nil {
			if c.PeerServerTLS == nil || c.PeerClientTLS == nil {
				return errors.New("node: set both Config.PeerServerTLS and Config.PeerClientTLS, or neither")
			}
			scheme = "https"
		}
		for _, p := range c.Peers {
			if len(p.PeerURLs) == 0 {
				return fmt.Errorf("node: member %d (%q) has no peer URL, and Config.Transport is nil: the node cannot reach it", p.ID, p.Name)
			}
			if _, err := HostPort(p.PeerURLs[0]); err != nil {
				return fmt.Errorf("node: member %d (%q): %w", p.ID, p.Name, err)
			}
			if u, _ := url.Parse(p.PeerURLs[0]); u.Scheme != scheme {
				return fmt.Errorf("node: member %d (%q) has peer URL %s, but with peer TLS %s the URLs must be %s://",
					p.ID, p.Name, p.PeerURLs[0], map[string]string{"http": "off", "https": "on"}[scheme], scheme)
			}
		}
	}
	if c.SnapshotEntries < 1 || c.SnapshotEntries > SnapshotEntriesMax {
		return fmt.Errorf("node: Config.SnapshotEntries is %d; allowed 1..%d", c.SnapshotEntries, SnapshotEntriesMax)
	}
	if c.SnapshotRetainEntries < 0 || c.SnapshotRetainEntries > SnapshotRetainEntriesMax {
		return fmt.Errorf("node: Config.SnapshotRetainEntries is %d; allowed 0..%d", c.SnapshotRetainEntries, SnapshotRetainEntriesMax)
	}
	if c.SnapshotChunkBytes < 1 || c.SnapshotChunkBytes > SnapshotChunkBytesMax {
		return fmt.Errorf("node: Config.SnapshotChunkBytes is %d; allowed 1..%d", c.SnapshotChunkBytes, SnapshotChunkBytesMax)
	}
	if c.WALSegmentBytes < wal.SegmentBytesMin || c.WALSegmentBytes > wal.SegmentBytesMax {
		return fmt.Errorf("node: Config.WALSegmentBytes is %d; allowed %d..%d", c.WALSegmentBytes, wal.SegmentBytesMin, wal.SegmentBytesMax)
	}
	for _, q := range []struct {
		name string
		v    int
	}{
		{"InboundQueueMax", c.InboundQueueMax}, {"ProposalQueueMax", c.ProposalQueueMax},
		{"ReadQueueMax", c.ReadQueueMax}, {"ProposalBatchMax", c.ProposalBatchMax},
	} {
		if q.v < 1 || q.v > QueueMaxLimit {
			return fmt.Errorf("node: Config.%s is %d; allowed 1..%d", q.name, q.v, QueueMaxLimit)
		}
	}
	if c.LeaveTimeout < 0 || c.LeaveTimeout > LeaveTimeoutMax {
		return fmt.Errorf("node: Config.LeaveTimeout is %v; allowed 0..%v", c.LeaveTimeout, LeaveTimeoutMax)
	}
	if c.RequestTimeout < 0 || c.RequestTimeout > RequestTimeoutMax {
		return fmt.Errorf("node: Config.RequestTimeout is %v; allowed up to %v", c.RequestTimeout, RequestTimeoutMax)
	}
	if c.WatchHistoryEvents < 1 || c.WatchHistoryEvents > WatchHistoryEventsMax {
		return fmt.Errorf("node: Config.WatchHistoryEvents is %d; allowed 1..%d", c.WatchHistoryEvents, WatchHistoryEventsMax)
	}
	if c.WatchHistoryBytes < 1 || c.WatchHistoryBytes > WatchHistoryBytesMax {
		return fmt.Errorf("node: Config.WatchHistoryBytes is %d; allowed 1..%d", c.WatchHistoryBytes, int64(WatchHistoryBytesMax))
	}
	if c.Protocol == Gossip {
		// No replica: the store's settings are fixed (gossipnode.go), but
		// its largest write must fit a WAL record.
		if max := gossipChunkBytes(walOptions(c.WALSegmentBytes).RecordBytesMax); max < gossipEntryBytesMax() {
			return fmt.Errorf("node: Config.WALSegmentBytes is %d: under %s a WAL record must hold the largest write (%d bytes); "+
				"use at least %d", c.WALSegmentBytes, Gossip, gossipEntryBytesMax(), 2*gossipEntryBytesMax()+8192)
		}
		return nil
	}
	// Last, the protocol's own limits on what the node hands it.
	s := c.replicaSettings(rand.New(rand.NewPCG(0, 0)), consensus.DiscardLogger, nil)
	if err := proto.config(&s).Validate(); err != nil {
		return fmt.Errorf("node: the settings do not suit %s: %w", c.Protocol, err)
	}
	return nil
}

// replicaSettings resolves what the protocol's constructor needs from c
// (after defaults), with the node's source of randomness, its logger for
// the replica and its snapshot store.
func (c *Config) replicaSettings(r consensus.Rand, l consensus.Logger, snaps consensus.SnapshotStore) replicaSettings {
	peers := make([]consensus.NodeID, 0, len(c.Peers))
	for _, p := range c.Peers {
		peers = append(peers, p.ID)
	}
	slices.Sort(peers)
	return replicaSettings{
		ID: c.ID, Peers: peers, Rand: r, Logger: l,
		ElectionTicks: c.ElectionTicks, HeartbeatTicks: c.HeartbeatTicks,
		Snapshots:       snaps,
		SnapshotEntries: c.SnapshotEntries, SnapshotRetainEntries: c.SnapshotRetainEntries,
		SnapshotChunkBytes: c.SnapshotChunkBytes,
		PayloadBytesMax:    payloadBytesMax,
	}
}

// Data directory layout.
const (
	walDirName    = "wal"
	snapDirName   = "snap"
	kvDirName     = "kv"
	identityName  = "cluster"
	snapshotsKept = 2
)

func (c *Config) path(name string) string { return filepath.Join(c.DataDir, name) }

// HostPort returns the host:port of a peer or client URL such as
// "http://10.0.0.1:2380" or "https://10.0.0.1:2380". Only http and https
// URLs with an explicit port are accepted; https needs TLS configured
// where the URL is served.
func HostPort(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("bad URL %q: want http://host:port or https://host:port (%w)", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("bad URL %q: want http://host:port or https://host:port", rawURL)
	}
	if u.Port() == "" || u.Hostname() == "" {
		return "", fmt.Errorf("bad URL %q: want %s://host:port", rawURL, u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return "", fmt.Errorf("bad URL %q: a URL must not have a path", rawURL)
	}
	return u.Host, nil
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip/wire"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/server"
)

// serveFlags are the serve command's flags, named after etcd's.
type serveFlags struct {
	name                string
	dataDir             string
	listenClientURLs    string
	advertiseClientURLs string
	listenPeerURLs      string
	advertisePeerURLs   string
	initialCluster      string
	initialClients      string
	initialClusterState string
	initialClusterToken string
	protocol            string
	logFormat           string
	logLevel            string
	tickInterval        time.Duration
	electionTicks       int
	snapshotCount       int
	listenMetricsURLs   string
	gossipKeyringFile   string
	tls                 tlsFlags // see tls.go
}

// envPrefix: every serve flag can also be set from the environment as
// SYNOD_<FLAG>, with dashes as underscores (SYNOD_DATA_DIR).
const envPrefix = "SYNOD_"

// stopTimeout bounds the graceful stop of the client server.
const stopTimeout = 5 * time.Second

// leaveTimeout bounds how long a stopping member waits for its SWIM leave
// announcement to be sent (node.Config.LeaveTimeout), so that the others
// record it as left rather than declaring it dead.
const leaveTimeout = 500 * time.Millisecond

func newServeCommand() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a cluster member behind etcd's v3 API",
		Long: `Run one member of a synod cluster: the replica with its write-ahead log,
snapshots and key-value store under --data-dir, the peer transport on
--listen-peer-urls, and etcd's v3 gRPC API (KV, Maintenance.Status,
Cluster.MemberList) on --listen-client-urls, so etcdctl and etcd's Go client
work against it.

--protocol picks the replication protocol: raft (the default),
multipaxos, epaxos, or gossip. Every member of a cluster must run the same
one; the data directory records it, and a member restarted with another is
refused.
Under epaxos there is no leader: every member orders writes and serves
linearizable reads itself (nothing is forwarded), revisions are local to
each member (a txn compare on create or mod revision is refused), and a
member rebuilds its key-value state from its whole log on every start (no
snapshots yet). Under gossip there is no consensus at all (eventually
consistent mode): every member accepts writes at once, even cut off from
the others, and serves every read from its own copy; members converge by
gossip and Merkle-tree anti-entropy, the later write (by hybrid logical
clock) winning. Txn compares, reads and watches at a revision, and Compact
are refused. The README's "etcd guarantees by protocol" has the details.

Every member, whatever its protocol, also runs SWIM membership with
Lifeguard over the peer connections; synod status shows what it sees.
With --gossip-keyring-file, SWIM's messages (and the gossip store's) are
sealed with AES-GCM under the file's first key and accepted only if one of
its keys opens them. To rotate without downtime: add the new key as a
second line on every member and send each SIGHUP; move it to the first line
everywhere and SIGHUP again; then drop the old line and SIGHUP. The
replication protocols' messages are not sealed: use peer TLS for them.

The flags follow etcd's. Member IDs are derived from each member's name and
--initial-cluster-token, and the cluster ID from the token and the member
names, so every member computes the same IDs. The membership is static: it
is --initial-cluster, on every start.

etcd's --initial-cluster lists only peer URLs; synod also needs every
member's client URL so that a follower can forward writes and linearizable
reads to the leader. Pass them with --initial-cluster-clients
(name=clientURL,...); members missing from it are reachable by peers only,
and requests to a follower then fail with "no leader" instead of being
forwarded.

Every flag can also be set in the environment as SYNOD_<FLAG> with dashes
as underscores (SYNOD_NAME, SYNOD_DATA_DIR, SYNOD_INITIAL_CLUSTER, ...); a
flag given on the command line wins.

On SIGINT or SIGTERM the member stops gracefully: the client API drains,
the member announces to the SWIM group that it leaves (synod status then
shows it as left, not dead), and the replica, transport and storage close.`,
		Example: `  synod serve --name n1 --data-dir /var/lib/synod/n1 \
    --listen-client-urls http://10.0.0.1:2379 --listen-peer-urls http://10.0.0.1:2380 \
    --initial-cluster n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380 \
    --initial-cluster-clients n1=http://10.0.0.1:2379,n2=http://10.0.0.2:2379,n3=http://10.0.0.3:2379 \
    --initial-cluster-token prod-1

  # the same, replicating with Multi-Paxos, or leaderless with EPaxos
  # (every member must agree)
  synod serve --protocol multipaxos --name n1 ...
  synod serve --protocol epaxos --name n1 ...`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd.Flags())
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "default", "human-readable name of this member")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for this member's state (default \"<name>.synod\")")
	fl.StringVar(&f.listenClientURLs, "listen-client-urls", "http://localhost:2379", "URLs to serve the client API on (comma-separated)")
	fl.StringVar(&f.advertiseClientURLs, "advertise-client-urls", "", "this member's client URLs as advertised to clients (default: --listen-client-urls)")
	fl.StringVar(&f.listenPeerURLs, "listen-peer-urls", "http://localhost:2380", "URL to serve peer traffic on (one)")
	fl.StringVar(&f.advertisePeerURLs, "initial-advertise-peer-urls", "", "this member's peer URL as advertised to the cluster (default: --listen-peer-urls)")
	fl.StringVar(&f.initialCluster, "initial-cluster", "", "every member as name=peerURL, comma-separated (default: this member alone)")
	fl.StringVar(&f.initialClients, "initial-cluster-clients", "", "members' client URLs as name=clientURL, comma-separated (for forwarding to the leader)")
	fl.StringVar(&f.initialClusterState, "initial-cluster-state", "new", "new or existing (membership is static, so both start the same way; existing with an empty data dir catches up from the peers)")
	fl.StringVar(&f.initialClusterToken, "initial-cluster-token", "synod-cluster", "token that names the cluster; member and cluster IDs derive from it")
	fl.StringVar(&f.protocol, "protocol", "raft", "replication protocol, one of "+strings.Join(node.MemberProtocols, ", ")+
		" (recorded in --data-dir; a member cannot change it)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.DurationVar(&f.tickInterval, "tick-interval", node.TickIntervalDefault, "length of one protocol tick (heartbeat interval)")
	fl.IntVar(&f.electionTicks, "election-ticks", node.ElectionTicksDefault, "election timeout in ticks (randomized between this and twice this); "+
		"under epaxos, how long an instance may stay uncommitted before a member recovers it")
	fl.IntVar(&f.snapshotCount, "snapshot-count", node.SnapshotEntriesDefault, "applied entries between snapshots (under epaxos, executed commands)")
	fl.StringVar(&f.listenMetricsURLs, "listen-metrics-urls", "", "URLs to serve HTTP /metrics, /health and /status on (comma-separated; default: none)")
	fl.StringVar(&f.gossipKeyringFile, "gossip-keyring-file", "", "file of AES keys (base64, one per line, the primary first) that seal SWIM and gossip-store messages; "+
		"every member needs the same keys; SIGHUP reloads it, to rotate keys (default: unsealed)")
	f.tls.register(fl)
	return cmd
}

// flagsFromEnv sets every flag not given on the command line from its
// SYNOD_<FLAG> environment variable, if set.
func flagsFromEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed {
			return
		}
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if serr := fs.Set(fl.Name, v); serr != nil {
				err = fmt.Errorf("environment variable %s=%q: %w", env, v, serr)
			}
		}
	})
	return err
}

// newLogger builds the slog logger the flags ask for, writing to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// memberID derives a member's ID from its name and the cluster token, so
// that every member computes the same IDs from the same flags.
func memberID(token, name string) consensus.NodeID {
	sum := sha256.Sum256([]byte("synod member\x00" + token + "\x00" + name))
	id := binary.BigEndian.Uint64(sum[:8])
	if id == 0 {
		id = 1
	}
	return consensus.NodeID(id)
}

// clusterID derives the cluster ID from the token and the member names.
func clusterID(token string, names []string) uint64 {
	names = slices.Sorted(slices.Values(names))
	sum := sha256.Sum256([]byte("synod cluster\x00" + token + "\x00" + strings.Join(names, "\x00")))
	id := binary.BigEndian.Uint64(sum[:8])
	if id == 0 {
		id = 1
	}
	return id
}

// parseNameURLs parses "name=url,name=url" (a name may repeat, giving it
// several URLs), keeping the order of first appearance.
func parseNameURLs(flag, s string) (names []string, urls map[string][]string, err error) {
	urls = map[string][]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return nil, nil, fmt.Errorf("--%s: %q is not name=URL", flag, part)
		}
		if _, err := node.HostPort(u); err != nil {
			return nil, nil, fmt.Errorf("--%s: member %s: %w", flag, name, err)
		}
		if _, seen := urls[name]; !seen {
			names = append(names, name)
		}
		urls[name] = append(urls[name], u)
	}
	return names, urls, nil
}

func splitURLs(flag, s string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if _, err := node.HostPort(u); err != nil {
			return nil, fmt.Errorf("--%s: %w", flag, err)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--%s is empty", flag)
	}
	return out, nil
}

// serveConfig turns the flags into a node configuration and the client
// listen URLs.
func serveConfig(f *serveFlags) (node.Config, []string, error) {
	var cfg node.Config
	if f.name == "" {
		return cfg, nil, errors.New("--name is empty")
	}
	switch f.initialClusterState {
	case "new", "existing":
	default:
		return cfg, nil, fmt.Errorf("--initial-cluster-state %q: want new or existing", f.initialClusterState)
	}
	if !slices.Contains(node.MemberProtocols, f.protocol) {
		return cfg, nil, fmt.Errorf("--protocol %q is not supported; this build runs %s", f.protocol, strings.Join(node.MemberProtocols, ", "))
	}
	listenClient, err := splitURLs("listen-client-urls", f.listenClientURLs)
	if err != nil {
		return cfg, nil, err
	}
	advClient := listenClient
	if f.advertiseClientURLs != "" {
		if advClient, err = splitURLs("advertise-client-urls", f.advertiseClientURLs); err != nil {
			return cfg, nil, err
		}
	}
	listenPeer, err := splitURLs("listen-peer-urls", f.listenPeerURLs)
	if err != nil {
		return cfg, nil, err
	}
	if len(listenPeer) > 1 {
		return cfg, nil, fmt.Errorf("--listen-peer-urls lists %d URLs; synod listens for peers on one", len(listenPeer))
	}
	advPeer := listenPeer
	if f.advertisePeerURLs != "" {
		if advPeer, err = splitURLs("initial-advertise-peer-urls", f.advertisePeerURLs); err != nil {
			return cfg, nil, err
		}
	}
	initial := f.initialCluster
	if initial == "" {
		initial = f.name + "=" + advPeer[0]
	}
	names, peerURLs, err := parseNameURLs("initial-cluster", initial)
	if err != nil {
		return cfg, nil, err
	}
	mine, ok := peerURLs[f.name]
	if !ok {
		return cfg, nil, fmt.Errorf("--initial-cluster does not list this member (--name %s): %s", f.name, initial)
	}
	if !slices.Equal(mine, advPeer) {
		return cfg, nil, fmt.Errorf("--initial-cluster lists %s=%s, but --initial-advertise-peer-urls is %s",
			f.name, strings.Join(mine, ","), strings.Join(advPeer, ","))
	}
	_, clientURLs, err := parseNameURLs("initial-cluster-clients", f.initialClients)
	if err != nil {
		return cfg, nil, err
	}
	for name := range clientURLs {
		if _, ok := peerURLs[name]; !ok {
			return cfg, nil, fmt.Errorf("--initial-cluster-clients names %q, which is not in --initial-cluster", name)
		}
	}
	clientURLs[f.name] = advClient
	token := f.initialClusterToken
	cfg = node.Config{
		Name:            f.name,
		ID:              memberID(token, f.name),
		ClusterID:       clusterID(token, names),
		DataDir:         f.dataDir,
		Protocol:        f.protocol,
		TickInterval:    f.tickInterval,
		ElectionTicks:   f.electionTicks,
		SnapshotEntries: f.snapshotCount,
		LeaveTimeout:    leaveTimeout,
	}
	if cfg.DataDir == "" {
		cfg.DataDir = f.name + ".synod"
	}
	for _, name := range names {
		cfg.Peers = append(cfg.Peers, node.Peer{ID: memberID(token, name), Name: name,
			PeerURLs: peerURLs[name], ClientURLs: clientURLs[name]})
	}
	return cfg, listenClient, checkServeSchemes(f, listenClient, cfg)
}

func runServe(cmd *cobra.Command, f *serveFlags) error {
	log, err := newLogger(cmd.ErrOrStderr(), f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	cfg, listenClient, err := serveConfig(f)
	if err != nil {
		return err
	}
	cfg.Logger = log
	tlsCfg, err := f.tls.build()
	if err != nil {
		return err
	}
	cfg.PeerServerTLS, cfg.PeerClientTLS = tlsCfg.peerServer, tlsCfg.peerClient
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Listen before starting the node, so that a busy port fails fast.
	peerAddr, _ := node.HostPort(strings.Split(f.listenPeerURLs, ",")[0])
	peerLis, err := net.Listen("tcp", peerAddr)
	if err != nil {
		return fmt.Errorf("listening for peers on %s: %w", peerAddr, err)
	}
	var clientLis []net.Listener
	closeClients := func() {
		for _, l := range clientLis {
			l.Close()
		}
	}
	for _, u := range listenClient {
		addr, _ := node.HostPort(u)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeClients()
			peerLis.Close()
			return fmt.Errorf("listening for clients on %s: %w", addr, err)
		}
		clientLis = append(clientLis, l)
	}
	cfg.PeerListener = peerLis
	if f.gossipKeyringFile != "" {
		keys, err := readKeyringFile(f.gossipKeyringFile)
		if err == nil {
			cfg.GossipKeyring, err = wire.NewKeyring(keys[0], keys[1:]...)
		}
		if err != nil {
			closeClients()
			peerLis.Close()
			return err
		}
		stopReload := reloadKeyringOnHUP(f.gossipKeyringFile, cfg.GossipKeyring, log)
		defer stopReload()
	}
	if f.initialClusterState == "existing" {
		log.Info("joining an existing cluster: the membership is --initial-cluster; an empty data directory catches up from the peers")
	}
	n, err := startMember(cfg)
	if err != nil {
		closeClients()
		peerLis.Close()
		return err
	}
	srv, err := server.New(server.Config{Backend: backend{n}, Logger: log.With("component", "server"),
		TLS: tlsCfg.client, ForwardTLS: tlsCfg.forward})
	if err != nil {
		closeClients()
		n.Stop()
		return err
	}
	stopMetrics, err := serveMetrics(f.listenMetricsURLs, n, tlsCfg.client, log.With("component", "http"))
	if err != nil {
		closeClients()
		n.Stop()
		return err
	}
	defer stopMetrics()
	serveErr := make(chan error, len(clientLis))
	for _, l := range clientLis {
		go func() { serveErr <- srv.Serve(l) }()
	}
	log.Info("member ready", "name", cfg.Name, "member_id", fmt.Sprintf("%x", uint64(cfg.ID)),
		"cluster_id", fmt.Sprintf("%x", cfg.ClusterID), "client_urls", strings.Join(listenClient, ","),
		"peer_url", f.listenPeerURLs, "data_dir", cfg.DataDir, "protocol", cfg.Protocol)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("signal received; stopping")
	case <-n.Done():
		runErr = fmt.Errorf("member stopped: %w", n.Err())
	case err := <-serveErr:
		runErr = fmt.Errorf("client API stopped: %w", err)
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopTimeout):
		srv.Stop()
		<-stopped
	}
	if err := n.Stop(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// readKeyringFile reads the gossip keyring file (wire.ParseKeys).
func readKeyringFile(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--gossip-keyring-file: %w", err)
	}
	keys, err := wire.ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("--gossip-keyring-file %s: %w", path, err)
	}
	return keys, nil
}

// reloadKeyringOnHUP replaces kr's keys with the file's on every SIGHUP
// (a file that does not parse is logged and changes nothing). It returns
// a function that stops it.
func reloadKeyringOnHUP(path string, kr *wire.Keyring, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-hup:
				keys, err := readKeyringFile(path)
				if err == nil {
					err = kr.Replace(keys)
				}
				if err != nil {
					log.Error("gossip keyring not reloaded; keeping the keys in use", "err", err)
					continue
				}
				log.Info("gossip keyring reloaded", "file", path, "keys", len(keys))
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-finished
	}
}

// runningMember is a running cluster member: a *node.Node (a consensus
// protocol) or a *node.GossipNode (eventually consistent mode).
type runningMember interface {
	Propose(ctx context.Context, req kv.Request) (kv.Result, error)
	Read(ctx context.Context, req kv.Request, linearizable bool) (kv.Result, error)
	Watch(key, end []byte, from int64, maxEvents int) (node.WatchBatch, error)
	Status() node.Status
	Members() []node.Peer
	Metrics() node.Metrics
	Done() <-chan struct{}
	Err() error
	Stop() error
}

var (
	_ runningMember = (*node.Node)(nil)
	_ runningMember = (*node.GossipNode)(nil)
)

// startMember starts the member cfg configures, of the kind its protocol
// needs.
func startMember(cfg node.Config) (runningMember, error) {
	if cfg.Protocol == node.Gossip {
		return node.StartGossip(cfg)
	}
	return node.Start(cfg)
}

// backend adapts a member to server.Backend. It lives here, not in node or
// server, because node (layer 3) may not import server (layer 4).
type backend struct{ n runningMember }

var _ server.Backend = backend{}

func (b backend) Propose(ctx context.Context, req kv.Request) (kv.Result, error) {
	res, err := b.n.Propose(ctx, req)
	return res, backendErr(err)
}

func (b backend) Read(ctx context.Context, req kv.Request, linearizable bool) (kv.Result, error) {
	res, err := b.n.Read(ctx, req, linearizable)
	return res, backendErr(err)
}

// backendErr makes a stopped node's errors match server.ErrStopped.
func backendErr(err error) error {
	if errors.Is(err, node.ErrStopped) {
		return fmt.Errorf("%w: %w", server.ErrStopped, err)
	}
	return err
}

func (b backend) Status() server.NodeStatus {
	st := b.n.Status()
	var swim *server.Membership
	if len(st.Membership.Members) > 0 { // a SWIM view lists at least the member itself
		swim = &st.Membership
	}
	return server.NodeStatus{
		ClusterID: st.ClusterID, MemberID: st.MemberID, Name: st.Name, Protocol: st.Protocol,
		Replica: st.Replica, Revision: st.Revision,
		DBSizeBytes: st.DBSizeBytes, WALSizeBytes: st.WALSizeBytes,
		Membership: swim,
	}
}

// Watch reads the node's recent changes, with the node's errors made the
// server's.
func (b backend) Watch(key, end []byte, from int64, maxEvents int) (server.WatchBatch, error) {
	wb, err := b.n.Watch(key, end, from, maxEvents)
	if err != nil {
		if ce, ok := errors.AsType[*node.CompactedError](err); ok {
			return server.WatchBatch{}, &server.CompactedError{Revision: ce.Revision}
		}
		return server.WatchBatch{}, backendErr(err)
	}
	return server.WatchBatch{Events: wb.Events, Next: wb.Next, Revision: wb.Revision, More: wb.More, Changed: wb.Changed}, nil
}

func (b backend) Members() []server.Member {
	peers := b.n.Members()
	out := make([]server.Member, len(peers))
	for i, p := range peers {
		out[i] = server.Member{ID: p.ID, Name: p.Name, PeerURLs: p.PeerURLs, ClientURLs: p.ClientURLs}
	}
	return out
}

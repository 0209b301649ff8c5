package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/storage/durable"
	"github.com/synod-io/synod/transport"
)

// Eventually consistent mode (Config.Protocol Gossip): a GossipNode runs
// no consensus replica. Its state is a gossip/store replica that accepts
// every write at once and spreads it by gossip and Merkle-tree
// anti-entropy to the live members SWIM reports; it serves every read
// from its own replica. See gossip/store's package doc for exactly which
// guarantees hold, and gossipkv.go for how etcd's requests map onto it.
//
// # Data directory
//
//	<data-dir>/cluster            identity (protocol "gossip")
//	<data-dir>/swim-incarnation   SWIM incarnation
//	<data-dir>/wal/               the store's records: one per change, and
//	                              every SnapshotEntries changes the whole
//	                              state as one checkpoint record, after
//	                              which the older records are released
//
// A write is acknowledged once its record is durable. On restart the
// records from the newest checkpoint on are replayed into a new store
// replica; the clock resumes above every recovered timestamp.

// gossipPeersMax bounds the members of a gossip-mode cluster: the
// transport's bound.
const gossipPeersMax = transport.PeersMax

// tuneStore, if set, adjusts the store's configuration (tests shorten its
// intervals).
var tuneStore func(*store.Config)

// GossipNode is one running member in eventually consistent mode. Its
// methods are safe for concurrent use.
type GossipNode struct {
	cfg Config
	log *slog.Logger

	// Owned by the loop goroutine after StartGossip.
	store *store.Store
	swim  *membership
	wal   *durable.Log
	tr    transport.Transport
	// pending are the requests served since the last flush, answered
	// once their changes are durable.
	pending []gossipAnswer
	// sinceCheckpoint counts records written since the last checkpoint.
	sinceCheckpoint int
	// chunkBytes bounds the encoded records written as one WAL record.
	chunkBytes int
	// aliveSavedMs is when the last-alive file was last written.
	aliveSavedMs uint64

	recvc chan consensus.Message
	reqc  chan *gossipRequest
	lifecycle

	watch       *WatchHub
	storeStatus atomic.Pointer[store.Status]
	metrics     metrics

	sizesMu  sync.Mutex
	sizesAt  time.Time
	sizesWAL int64
}

// gossipRequest is a client request waiting for the loop.
type gossipRequest struct {
	ctx   context.Context
	req   kv.Request
	write bool
	done  chan proposalResult // buffered: the loop never blocks on it
}

type gossipAnswer struct {
	rq  *gossipRequest
	res kv.Result
}

// StartGossip opens (or creates) the member's data directory, rebuilds its
// store replica from it, starts SWIM, the transport and the loop, and
// returns the running member. cfg.Protocol must be Gossip. Stop it with
// Stop.
func StartGossip(cfg Config) (*GossipNode, error) {
	if cfg.Protocol != Gossip {
		return nil, fmt.Errorf("node: StartGossip runs protocol %q, not %q: start it with Start", Gossip, cfg.Protocol)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Peers = slices.Clone(cfg.Peers)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &GossipNode{
		cfg:       cfg,
		log:       logger.With("member", cfg.Name, "id", cfg.ID),
		recvc:     make(chan consensus.Message, cfg.InboundQueueMax),
		reqc:      make(chan *gossipRequest, cfg.ProposalQueueMax),
		lifecycle: newLifecycle(),
	}
	if err := g.open(); err != nil {
		g.closeStorage()
		return nil, err
	}
	g.watch = NewWatchHub(int64(g.store.Revision()), cfg.WatchHistoryEvents, cfg.WatchHistoryBytes)
	var err error
	if g.swim, err = newMembership(&g.cfg, g.log); err != nil {
		g.closeStorage()
		return nil, err
	}
	g.setPeers()
	newTransport := cfg.Transport
	if newTransport == nil {
		newTransport = func(h transport.Handler) (transport.Transport, error) {
			return newGRPCTransport(&g.cfg, peerCodec{keyring: g.cfg.GossipKeyring}, g.log, h)
		}
	}
	if g.tr, err = newTransport(g.receive); err != nil {
		g.closeStorage()
		return nil, fmt.Errorf("node: starting the transport: %w", err)
	}
	g.publishStatus()
	go g.run()
	return g, nil
}

// open checks the data directory's identity, opens the WAL and replays it
// into a new store replica.
func (g *GossipNode) open() error {
	cfg := &g.cfg
	if err := vfsDefault.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("node: creating data directory: %w", err)
	}
	fresh, err := checkIdentity(cfg)
	if err != nil {
		return err
	}
	sc := store.DefaultConfig(cfg.ID, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	sc.Logger = slogLogger{g.log.With("component", "store")}
	if tuneStore != nil {
		tuneStore(&sc)
	}
	if g.store, err = store.New(sc); err != nil {
		return fmt.Errorf("node: creating the store replica: %w", err)
	}
	if err := checkLastAlive(cfg, sc); err != nil {
		return err
	}
	walOpts := walOptions(cfg.WALSegmentBytes)
	g.chunkBytes = gossipChunkBytes(walOpts.RecordBytesMax)
	var recs []consensus.Record
	g.wal, recs, err = durable.Open(vfsDefault, cfg.path(walDirName), walOpts, store.RecordCodec)
	if err != nil {
		return fmt.Errorf("node: opening the write-ahead log in %s: %w", cfg.path(walDirName), err)
	}
	for i, r := range recs {
		if err := g.store.Recover(r); err != nil {
			return fmt.Errorf("node: replaying record %d of the write-ahead log in %s: %w; "+
				"if it is damaged, remove this member's data directory and let anti-entropy refill it from its peers",
				i, cfg.path(walDirName), err)
		}
		if _, ok := r.(consensus.Checkpoint); ok {
			g.sinceCheckpoint = 0
		} else {
			g.sinceCheckpoint++
		}
	}
	st := g.store.Status()
	if fresh {
		g.log.Info("initialized new data directory", "dir", cfg.DataDir, "cluster", fmt.Sprintf("%x", cfg.ClusterID), "protocol", Gossip)
	} else {
		g.log.Info("restarted from data directory", "dir", cfg.DataDir, "records", len(recs),
			"keys", st.Keys, "tombstones", st.Tombstones, "revision", st.Revision)
	}
	return nil
}

// receive is the transport's handler: it queues a peer message for the
// loop, dropping it if the queue is full (gossip tolerates loss).
func (g *GossipNode) receive(m consensus.Message) {
	select {
	case g.recvc <- m:
	default:
	}
}

// nowMs is the physical clock the store stamps writes with.
func nowMs() uint64 { return uint64(time.Now().UnixMilli()) }

// run is the loop. It owns the store, SWIM and the WAL.
func (g *GossipNode) run() {
	defer close(g.donec)
	defer g.watch.Stop()
	ticker := time.NewTicker(g.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-g.stopc:
			g.failAll(ErrStopped)
			announceLeave(g.log, g.cfg.LeaveTimeout, g.swim, g.tr)
			return
		case <-ticker.C:
			g.store.Tick(nowMs())
			g.swim.tick()
		case m := <-g.recvc:
			g.step(m)
		drain:
			for i := 1; i < InboundBatchMax; i++ {
				select {
				case m := <-g.recvc:
					g.step(m)
				default:
					break drain
				}
			}
		case rq := <-g.reqc:
			g.serve(rq)
			bytes := gossipRequestBytes(&rq.req)
		more:
			for i := 1; i < g.cfg.ProposalBatchMax && bytes < ProposalBatchBytesMax; i++ {
				select {
				case rq := <-g.reqc:
					g.serve(rq)
					bytes += gossipRequestBytes(&rq.req)
				default:
					break more
				}
			}
		}
		if err := g.flush(); err != nil {
			g.fail(err)
			return
		}
	}
}

func (g *GossipNode) step(m consensus.Message) {
	g.metrics.received(m)
	switch p := m.Payload.(type) {
	case *gossip.Message:
		g.swim.step(m.From, p)
	case *rejectedMessage:
		g.swim.rejected(m.From, p)
	case *store.Message:
		if p.From != m.From {
			g.log.Debug("dropped a store message whose sender differs from its stream's peer", "from", m.From, "claimed", p.From)
			return
		}
		if err := g.store.Step(p, nowMs()); err != nil {
			g.log.Debug("dropped a store message", "from", m.From, "err", err)
		}
	default:
		g.log.Debug("dropped a peer message of another protocol", "from", m.From, "type", m.Payload.MessageType())
	}
}

// serve applies one client request to the replica; it is answered by the
// next flush, once its changes are durable.
func (g *GossipNode) serve(rq *gossipRequest) {
	if rq.ctx.Err() != nil {
		return // the caller gave up while it was queued
	}
	var res kv.Result
	if rq.write {
		res = gossipWrite(g.store, rq.req, nowMs())
	} else {
		res = gossipRead(g.store, rq.req)
	}
	g.pending = append(g.pending, gossipAnswer{rq: rq, res: res})
}

// flush handles the store's and SWIM's work in the contract's order:
// persist the store's changes, send, publish them to watchers, answer the
// requests; then checkpoint if due. An error is fatal.
func (g *GossipNode) flush() error {
	rd := g.store.Ready()
	changes := gossipReadyEvents(g.store, rd)
	if len(rd.Persist) > 0 {
		start := time.Now()
		if err := g.persist(chunkRecords(rd.Persist, g.chunkBytes)); err != nil {
			return fmt.Errorf("node: writing the write-ahead log: %w", err)
		}
		g.metrics.walSync.observe(time.Since(start))
		g.sinceCheckpoint += len(rd.Persist)
	}
	if len(rd.Messages) > 0 {
		msgs := make([]consensus.Message, len(rd.Messages))
		for i, m := range rd.Messages {
			msgs[i] = consensus.Message{From: g.cfg.ID, To: m.To, Payload: m}
		}
		g.metrics.sent(msgs)
		g.tr.Send(msgs)
	}
	g.store.Advance(rd)
	g.watch.Publish(changes)
	for _, a := range g.pending {
		if a.rq.write && a.res.Err == nil {
			g.metrics.proposalsCommitted.Add(1)
		}
		a.rq.done <- proposalResult{res: a.res, applied: true}
	}
	g.pending = g.pending[:0]
	if g.sinceCheckpoint >= g.cfg.SnapshotEntries {
		if err := g.checkpoint(); err != nil {
			return err
		}
	}
	msgs, err := g.swim.flush()
	if err != nil {
		return err
	}
	if len(msgs) > 0 {
		g.metrics.sent(msgs)
		g.tr.Send(msgs)
	}
	if err := g.saveLastAlive(); err != nil {
		return err
	}
	if g.swim.membersChanged {
		g.swim.membersChanged = false
		g.setPeers()
	}
	g.publishStatus()
	return nil
}

// persist writes chunks of records, one WAL record each, and makes them
// durable together; if the first chunk holds a checkpoint, the WAL then
// releases the records before it.
func (g *GossipNode) persist(chunks [][]consensus.Record) error {
	var first uint64
	var checkpoint bool
	for i, c := range chunks {
		index, cp, err := g.wal.Write(c)
		if err != nil {
			return err
		}
		if i == 0 {
			first, checkpoint = index, cp
		}
	}
	return g.wal.Commit(first, checkpoint)
}

// checkpoint restates the whole state (store.Restate) in chunks that fit
// WAL records; once it is durable, the records before it are released. A
// crash in the middle loses nothing: the restatement merges with what
// precedes it.
func (g *GossipNode) checkpoint() error {
	if err := g.persist(g.store.Restate(g.chunkBytes)); err != nil {
		return fmt.Errorf("node: writing a checkpoint of the store: %w", err)
	}
	g.sinceCheckpoint = 0
	return nil
}

// gossipRequestBytes estimates the bytes a request writes, for the
// loop's batch bound.
func gossipRequestBytes(r *kv.Request) int {
	switch {
	case r.Put != nil:
		return len(r.Put.Key) + len(r.Put.Value)
	case r.DeleteRange != nil:
		return len(r.DeleteRange.Key) + len(r.DeleteRange.RangeEnd)
	case r.Txn != nil:
		n := 0
		for i := range r.Txn.Success {
			n += gossipRequestBytes(&r.Txn.Success[i])
		}
		return n
	}
	return 0
}

// chunkRecords splits records into runs whose encodings add up to at most
// chunkBytes each (a larger record goes alone), so that each fits one WAL
// record.
func chunkRecords(recs []consensus.Record, chunkBytes int) [][]consensus.Record {
	var chunks [][]consensus.Record
	start, size := 0, 0
	for i, r := range recs {
		n := store.RecordBytes(r) + binary.MaxVarintLen64
		if size+n > chunkBytes && i > start {
			chunks, start, size = append(chunks, recs[start:i]), i, 0
		}
		size += n
	}
	return append(chunks, recs[start:])
}

// setPeers tells the store who the live members are.
func (g *GossipNode) setPeers() {
	if err := g.store.SetPeers(g.swim.liveIDs()); err != nil {
		g.log.Warn("store: setting peers", "err", err)
	}
}

func (g *GossipNode) publishStatus() {
	st := g.store.Status()
	g.storeStatus.Store(&st)
}

// failAll answers every waiting request with err.
func (g *GossipNode) failAll(err error) {
	for _, a := range g.pending {
		a.rq.done <- proposalResult{err: err}
	}
	g.pending = nil
	for {
		select {
		case rq := <-g.reqc:
			rq.done <- proposalResult{err: err}
		default:
			return
		}
	}
}

// fail stops the loop after a fatal error.
func (g *GossipNode) fail(err error) {
	g.setFatal(g.log, err)
	g.failAll(err)
}

// Stop stops the loop, the transport and the WAL, and waits for them. It
// returns the first error met closing them. Calling it again returns the
// same error.
func (g *GossipNode) Stop() error {
	return g.stop(g.log, g.cfg.LeaveTimeout, g.tr, g.closeStorage)
}

func (g *GossipNode) closeStorage() error {
	if g.wal != nil {
		if err := g.wal.Close(); err != nil {
			return fmt.Errorf("node: closing the write-ahead log: %w", err)
		}
	}
	return nil
}

// do queues rq for the loop and waits for its answer.
func (g *GossipNode) do(ctx context.Context, req kv.Request, write bool) (kv.Result, error) {
	if err := g.checkRunning(); err != nil {
		return kv.Result{}, err
	}
	ctx, cancel := withTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	rq := &gossipRequest{ctx: ctx, req: req, write: write, done: make(chan proposalResult, 1)}
	select {
	case g.reqc <- rq:
	default:
		return kv.Result{}, ErrBusy
	}
	r, err := g.await(ctx, rq.done)
	if err != nil {
		return kv.Result{}, err
	}
	return r.res, r.res.Err
}

// Propose applies a write request to this member's replica and returns
// its result once the change is durable here. It never waits for other
// members: the write reaches them by gossip and anti-entropy, and a
// concurrent write to the same key elsewhere may win (last writer wins).
// A Txn with a compare is refused (see gossipkv.go); one without is
// applied operation by operation, not atomically.
func (g *GossipNode) Propose(ctx context.Context, req kv.Request) (kv.Result, error) {
	if req.ReadOnly() {
		return g.Read(ctx, req, false)
	}
	res, err := g.do(ctx, req, true)
	if err != nil && res.Err == nil {
		g.metrics.proposalsFailed.Add(1)
	}
	return res, err
}

// Read serves a read-only request from this member's replica. Every read
// is local, linearizable or not: there is nothing to linearize against
// (see gossip/store: read-your-writes and monotonic reads hold on one
// member only).
func (g *GossipNode) Read(ctx context.Context, req kv.Request, _ bool) (kv.Result, error) {
	if !req.ReadOnly() {
		return kv.Result{Err: kv.ErrNotReadOnly}, kv.ErrNotReadOnly
	}
	return g.do(ctx, req, false)
}

// Watch reads the member's recent changes: local writes and the changes
// merged from other members, in the order this member made them, at its
// local revisions (see WatchHub.Read). There is no history before the
// member's start.
func (g *GossipNode) Watch(key, end []byte, from int64, maxEvents int) (WatchBatch, error) {
	return g.watch.Read(key, end, from, maxEvents)
}

// Status describes the member. Replica reports the role peer (every
// member takes writes), no term and no leader; its Commit and Applied
// are the store's local revision.
func (g *GossipNode) Status() Status {
	st := *g.storeStatus.Load()
	return Status{
		ClusterID: g.cfg.ClusterID, MemberID: g.cfg.ID, Name: g.cfg.Name, Protocol: Gossip,
		Replica: consensus.Status{
			ID: g.cfg.ID, Role: consensus.RolePeer,
			Commit: st.Revision, Applied: st.Revision, LastIndex: st.Revision,
		},
		Revision:     int64(st.Revision),
		WALSizeBytes: g.walBytes(),
		Membership:   g.swim.snapshot(),
	}
}

// walBytes returns the WAL's size on disk, at most sizesMaxAge old.
func (g *GossipNode) walBytes() int64 {
	g.sizesMu.Lock()
	defer g.sizesMu.Unlock()
	if time.Since(g.sizesAt) > sizesMaxAge {
		g.sizesWAL, g.sizesAt = dirBytes(g.cfg.path(walDirName)), time.Now()
	}
	return g.sizesWAL
}

// StoreStatus is the store replica's status as of the loop's last
// iteration: keys, tombstones, Merkle root, peers.
func (g *GossipNode) StoreStatus() store.Status { return *g.storeStatus.Load() }

// Members lists the cluster's members, as configured.
func (g *GossipNode) Members() []Peer { return clonePeers(g.cfg.Peers) }

// Metrics returns a snapshot of the member's counters: writes served,
// WAL sync latency, transport statistics.
func (g *GossipNode) Metrics() Metrics { return g.metrics.snapshot(g.tr) }

// lastAliveName is the file, in a gossip-mode data directory, that holds
// when the member last ran (Unix milliseconds), written at most every
// lastAliveEveryMs.
const (
	lastAliveName    = "last-alive"
	lastAliveEveryMs = 60_000
)

// checkLastAlive refuses to start a member with data that was down for
// longer than the store keeps tombstones (see gossip/store: a replica that missed
// deletes and rejoins after its peers purged their tombstones brings the
// deleted keys back everywhere).
func checkLastAlive(cfg *Config, sc store.Config) error {
	if _, err := os.Stat(cfg.path(walDirName)); errors.Is(err, fs.ErrNotExist) {
		return nil // no data to bring back: the member starts empty
	}
	p := cfg.path(lastAliveName)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: reading %s: %w", p, err)
	}
	last, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return fmt.Errorf("node: %s is damaged (%v); remove it to start anyway", p, err)
	}
	now := nowMs()
	limit := sc.TombstoneTTLMs - min(sc.TombstoneTTLMs, sc.ClockDriftMaxMs+lastAliveEveryMs)
	if now <= last || now-last <= limit {
		return nil
	}
	return fmt.Errorf("node: this member last ran at %s, %v ago, longer than deletes are remembered (%v): "+
		"its data may hold keys deleted since, which it would bring back on every member. "+
		"Remove %s (its write-ahead log) and restart it: it then refills from its peers. "+
		"If every member was down that long (nobody to refill from), remove %s instead to keep this member's data",
		time.UnixMilli(int64(last)).UTC().Format(time.RFC3339), time.Duration(now-last)*time.Millisecond,
		time.Duration(sc.TombstoneTTLMs)*time.Millisecond, cfg.path(walDirName), p)
}

// saveLastAlive records, at most every lastAliveEveryMs, that the member
// runs.
func (g *GossipNode) saveLastAlive() error {
	now := nowMs()
	if now >= g.aliveSavedMs && now-g.aliveSavedMs < lastAliveEveryMs {
		return nil
	}
	if err := writeFileDurably(g.cfg.DataDir, g.cfg.path(lastAliveName), []byte(strconv.FormatUint(now, 10)+"\n")); err != nil {
		return fmt.Errorf("node: recording that the member runs in %s: %w", g.cfg.path(lastAliveName), err)
	}
	g.aliveSavedMs = now
	return nil
}

// gossipChunkBytes is how many bytes of encoded records the node writes as
// one WAL record of at most recordBytesMax: room is left for the batch's
// framing.
func gossipChunkBytes(recordBytesMax int) int { return recordBytesMax - 4096 }

// gossipEntryBytesMax bounds one encoded store record: the store's key and
// value bounds and the record's own fields.
func gossipEntryBytesMax() int {
	sc := store.DefaultConfig(1, nil)
	return sc.KeyBytesMax + sc.ValueBytesMax + 64
}

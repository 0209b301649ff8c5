// Package node runs one replica for real: a ticker, the write-ahead log and
// snapshot store on disk, the key-value state machine on Pebble
// (storage/kvstore), and a peer transport. It is the production twin of
// the simulator's host (sim/): one goroutine owns the replica and handles
// each Ready in the contract's order, exactly as sim.process does.
//
// The node is generic over the replication protocol (Config.Protocol, one
// of Protocols): a small table (protocol.go) maps each name to a
// constructor of its consensus.Replica and to its record and message
// codecs; the rest of the node uses only the consensus contract. Every
// node also runs SWIM membership beside its replica (swim.go). A member in
// eventually consistent mode (protocol Gossip) runs no consensus replica:
// it is a GossipNode (gossipnode.go), started with StartGossip.
//
// # Data directory
//
//	<data-dir>/cluster   identity: cluster ID, member ID, name, protocol (JSON)
//	<data-dir>/wal/      write-ahead log of the replica's records, one WAL record per Ready
//	<data-dir>/snap/     state-machine snapshots (<index>-<term>.snap)
//	<data-dir>/kv/       the key-value state on Pebble, with its applied index
//	<data-dir>/swim-incarnation   this member's SWIM incarnation (swim.go)
//
// The identity file is written on first start; a directory recording
// another cluster, member or protocol is refused.
//
// # The loop
//
// One goroutine takes, each iteration, a tick, or a batch of peer
// messages, or a batch of client proposals and read-index requests, feeds
// them to the replica, and then handles every Ready until there is none:
//
//  1. Restore: the snapshot was installed durably by the snapshot store
//     when its last chunk arrived (snap.Receiver);
//  2. Persist: the records, encoded with the protocol's codec, are
//     appended to the WAL as one record and fsynced;
//  3. Messages are handed to the transport;
//  4. Restore: the key-value store is replaced by the snapshot; then
//     Committed is applied with kvstore.ApplyBatch (one synced Pebble
//     batch, with the applied index);
//  5. the batch's changes go to the watch history (WatchHub), then
//     waiting proposals get their results; read states whose index is
//     applied release their reads;
//  6. Advance;
//  7. SnapshotWanted (asked only by a replica that implements
//     consensus.Compactor): the key-value store is streamed into a
//     snapshot file at the applied index, old snapshots are collected, and
//     the replica compacts its log; its next Ready persists a checkpoint,
//     after which the WAL's older records are released.
//
// On restart the WAL is replayed into the replica (from its newest
// checkpoint). The key-value store already holds the state up to its own
// applied index; entries at or below it are skipped as they are re-emitted.
// If it is behind the checkpoint's snapshot (a crash between installing a
// received snapshot and restoring from it), it is restored from that
// snapshot first.
//
// A protocol whose replicas order non-conflicting commands locally
// (EPaxos: its replica re-executes the committed commands after its newest
// snapshot on each start, perhaps in another order) is the exception: the
// node puts the key-value store exactly at that snapshot on start
// (restoring it from the snapshot unless it is there already, or emptying
// it if the log builds on none) and applies everything re-emitted. Its
// revisions after the snapshot are renumbered then (they are local to
// each run of each member, see kv.Options.PerKeyOrder), and start-up takes
// time proportional to the state and the log since the snapshot, not to
// the whole history. Such a replica snapshots and compacts its log like
// Raft (it implements consensus.SnapshotDescriber, whose metadata the
// snapshot is saved with), and a member that fell behind installs a
// peer's snapshot.
//
// # Leaderless protocols
//
// Under a protocol without a leader (Leaderless), every member takes
// writes and linearizable reads; nothing is forwarded, and a member's
// status names no leader. Without a read index, a linearizable read is
// proposed as a command with the keys it reads and answered when it is
// applied (see Read).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/storage/durable"
	"github.com/synod-io/synod/storage/kvstore"
	"github.com/synod-io/synod/storage/snap"
	"github.com/synod-io/synod/storage/vfs"
	"github.com/synod-io/synod/storage/wal"
	"github.com/synod-io/synod/transport"
)

var vfsDefault = vfs.Default

var (
	// ErrStopped is returned by requests to a node that is stopping or
	// stopped.
	ErrStopped = errors.New("node: stopped")
	// ErrBusy is returned when the node's request queue is full: the server
	// is overloaded; retry later. It matches consensus.ErrProposalDropped.
	ErrBusy = fmt.Errorf("node: too many requests queued, server busy; retry later: %w", consensus.ErrProposalDropped)
)

// readyLoopsMax bounds the Readys handled in a row after one input; a
// replica that keeps producing work forever is a bug (see handleReady).
// A variable only so that tests can shrink it.
var readyLoopsMax = 1000

// sweepTicks is how often (in ticks) the loop forgets requests whose
// callers gave up.
const sweepTicks = 20

// Node is one running member. Its methods are safe for concurrent use.
type Node struct {
	cfg      Config
	log      *slog.Logger
	voters   []consensus.NodeID
	clientID uint64 // this incarnation's session client ID

	// proto is the protocol the node runs (see protocol.go).
	proto protocol

	// Owned by the loop goroutine after Start.
	replica consensus.Replica
	wal     *durable.Log
	snaps   *durable.Snapshots
	kv      *kvstore.Store
	tr      transport.Transport
	// swim is the node's SWIM membership (swim.go).
	swim *membership
	// applied is the index (and term) of the last entry handed to the
	// state machine by the replica (or of the snapshot restored).
	applied, appliedTerm uint64
	nextSeq              uint64
	waiting              map[uint64]*proposal // by session seq
	reads                map[uint64]*readRequest
	readSeq              uint64
	readStates           []consensus.ReadState
	prev                 consensus.Status // for logging changes
	ticks                uint64

	recvc chan consensus.Message
	propc chan *proposal
	readc chan *readRequest
	lifecycle

	// watch is the history of recent changes that watchers read; the
	// loop publishes to it after each applied batch.
	watch *WatchHub

	status   atomic.Pointer[consensus.Status]
	revision atomic.Int64

	metrics metrics // see metrics.go

	sizesMu           sync.Mutex
	sizesAt           time.Time
	sizesDB, sizesWAL int64
}

type proposal struct {
	ctx  context.Context
	keys []string
	data []byte
	done chan proposalResult // buffered: the loop never blocks on it
}

type proposalResult struct {
	res kv.Result
	err error
	// applied is set when res is the result of applying the command: always
	// for a proposal, and for a linearizable read that went through the
	// log (see readRequest). A read released by its read index gets neither
	// res nor applied, and is served from the local state.
	applied bool
}

type readRequest struct {
	ctx context.Context
	id  uint64
	// keys and data are the read as a command, set when the protocol
	// serves linearizable reads through the log (protocol.readThroughLog).
	keys []string
	data []byte
	done chan proposalResult // buffered
}

// Start opens (or creates) the node's data directory, rebuilds the replica
// from it, starts the transport and the loop, and returns the running
// node. Stop it with Stop.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Peers = slices.Clone(cfg.Peers)
	proto, err := lookupProtocol(cfg.Protocol) // checked by Validate
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("member", cfg.Name, "id", cfg.ID)
	n := &Node{
		cfg:       cfg,
		log:       logger,
		proto:     proto,
		clientID:  rand.Uint64() | 1,
		waiting:   map[uint64]*proposal{},
		reads:     map[uint64]*readRequest{},
		recvc:     make(chan consensus.Message, cfg.InboundQueueMax),
		propc:     make(chan *proposal, cfg.ProposalQueueMax),
		readc:     make(chan *readRequest, cfg.ReadQueueMax),
		lifecycle: newLifecycle(),
		watch:     NewWatchHub(0, cfg.WatchHistoryEvents, cfg.WatchHistoryBytes),
	}
	n.metrics.heartbeat, n.metrics.heartbeatResp = proto.heartbeat, proto.heartbeatResp
	for _, p := range cfg.Peers {
		n.voters = append(n.voters, p.ID)
	}
	slices.Sort(n.voters)
	if err := n.open(); err != nil {
		n.closeStorage()
		return nil, err
	}
	n.watch.Reset(n.revision.Load())
	if n.swim, err = newMembership(&n.cfg, n.log); err != nil {
		n.closeStorage()
		return nil, err
	}
	newTransport := cfg.Transport
	if newTransport == nil {
		newTransport = n.grpcTransport
	}
	tr, err := newTransport(n.receive)
	if err != nil {
		n.closeStorage()
		return nil, fmt.Errorf("node: starting the transport: %w", err)
	}
	n.tr = tr
	st := n.replica.Status()
	n.prev = st
	n.status.Store(&st)
	go n.run()
	return n, nil
}

// open opens the data directory and rebuilds the replica and state
// machine from it.
func (n *Node) open() error {
	cfg := &n.cfg
	if err := vfsDefault.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("node: creating data directory: %w", err)
	}
	fresh, err := checkIdentity(cfg)
	if err != nil {
		return err
	}
	// Pebble locks its directory, so a second process on the same data
	// directory fails here, before touching the WAL.
	// The store applies entries the WAL already holds durably, so its
	// batches need no fsync of their own: after a machine crash it may
	// have lost some applied batches, and restart replays them from the
	// WAL (or restores the snapshot the WAL builds on).
	n.kv, err = kvstore.Open(cfg.path(kvDirName), kvstore.Options{
		NoSync: true,
		KV:     n.proto.kv,
		Logf:   func(format string, args ...any) { n.log.Error("kv store: " + fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return fmt.Errorf("node: opening the key-value store in %s: %w "+
			"(if it is damaged, remove this member's data directory and let it rejoin from its peers)", cfg.path(kvDirName), err)
	}
	ss, err := snap.Open(vfsDefault, cfg.path(snapDirName), snap.Options{Keep: snapshotsKept})
	if err != nil {
		return fmt.Errorf("node: opening the snapshot directory: %w", err)
	}
	n.snaps = durable.NewSnapshots(ss, n.voters)
	n.snaps.OnReceived = func(in snap.Info) {
		n.log.Info("snapshot received from a peer", "index", in.Index, "term", in.Term)
	}
	var recs []consensus.Record
	n.wal, recs, err = durable.Open(vfsDefault, cfg.path(walDirName), walOptions(cfg.WALSegmentBytes), n.proto.records)
	if err != nil {
		return fmt.Errorf("node: opening the write-ahead log in %s: %w", cfg.path(walDirName), err)
	}
	// The newest checkpoint names the snapshot the log builds on.
	var base uint64
	for _, r := range recs {
		if cp, ok := r.(consensus.Checkpoint); ok {
			base = cp.SnapshotIndex()
		}
	}
	if base > 0 {
		in, err := n.snaps.Find(base)
		if err != nil {
			return fmt.Errorf("node: the write-ahead log builds on snapshot %d, which is missing from %s: %w; "+
				"this member's state cannot be rebuilt: remove its data directory and let it rejoin", base, ss.Dir(), err)
		}
		n.applied, n.appliedTerm = in.Index, in.Term
		// Check the snapshot the log depends on now, not when a follower
		// first needs it.
		if _, err := ss.Verify(in.Name); err != nil {
			return fmt.Errorf("node: the snapshot the write-ahead log builds on is damaged: %w; "+
				"this member's state cannot be rebuilt: remove its data directory and let it rejoin from its peers", err)
		}
		if ai := n.kv.AppliedIndex(); ai < base || n.proto.localOrder && ai != base {
			n.log.Info("restoring the key-value store from the log's snapshot", "kv_applied", ai, "snapshot", base)
			if err := n.restoreKV(base); err != nil {
				return err
			}
		}
	}
	if n.proto.localOrder && base == 0 {
		// The replica hands over every committed command again, from
		// index 1 and perhaps in another order: the store starts empty.
		if ai := n.kv.AppliedIndex(); ai > 0 {
			n.log.Info("emptying the key-value store: the log builds on no snapshot, and this protocol re-executes it in its own order", "kv_applied", ai, "protocol", cfg.Protocol)
			if err := n.kv.Reset(); err != nil {
				return fmt.Errorf("node: emptying the key-value store in %s before rebuilding it from the log: %w", cfg.path(kvDirName), err)
			}
		}
	}
	settings := cfg.replicaSettings(rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		slogLogger{n.log.With("component", cfg.Protocol)}, n.snaps)
	n.replica, err = n.proto.config(&settings).newReplica(recs)
	if err != nil {
		return fmt.Errorf("node: rebuilding the replica from %s: %w", cfg.path(walDirName), err)
	}
	st := n.replica.Status()
	// The key-value store may be ahead of the durable commit index (a
	// commit index is written without waiting for fsync), but never ahead
	// of the durable log: it only applies entries the log holds.
	if ai := n.kv.AppliedIndex(); ai > st.LastIndex && !n.proto.localOrder {
		return fmt.Errorf("node: the key-value store in %s has applied entry %d, beyond the log's last entry %d: "+
			"the data directory is inconsistent (was wal/ replaced?); remove it and let the member rejoin", cfg.path(kvDirName), ai, st.LastIndex)
	}
	n.revision.Store(n.readRevision())
	if fresh {
		n.log.Info("initialized new data directory", "dir", cfg.DataDir, "cluster", fmt.Sprintf("%x", cfg.ClusterID), "protocol", cfg.Protocol)
	} else {
		n.log.Info("restarted from data directory", "dir", cfg.DataDir, "term", st.Term, "commit", st.Commit,
			"last_index", st.LastIndex, "snapshot", base, "kv_applied", n.kv.AppliedIndex())
	}
	return nil
}

// walOptions are the WAL's options for segments of segmentBytes: each
// record must fit in one segment, with room for its frame.
func walOptions(segmentBytes int64) wal.Options {
	fit := segmentBytes - 64
	return wal.Options{SegmentBytes: segmentBytes, RecordBytesMax: int(fit - fit%8 - 64)}
}

// restoreKV replaces the key-value state with the stored snapshot at index.
func (n *Node) restoreKV(index uint64) error {
	in, err := n.snaps.Find(index)
	if err != nil {
		return err
	}
	r, err := n.snaps.Store().Open(in.Name)
	if err != nil {
		return fmt.Errorf("node: opening snapshot %d: %w; remove this member's data directory and let it rejoin", index, err)
	}
	defer r.Close()
	if err := n.kv.RestoreSnapshot(r); err != nil {
		return fmt.Errorf("node: restoring the key-value store from snapshot %s: %w", in.Name, err)
	}
	if got := n.kv.AppliedIndex(); got != index {
		return fmt.Errorf("node: snapshot %s holds state applied through %d, not %d", in.Name, got, index)
	}
	n.revision.Store(n.readRevision())
	n.watch.Reset(n.revision.Load())
	return nil
}

// readRevision reads the store's revision.
func (n *Node) readRevision() int64 {
	return n.kv.Read(kv.Get("\x00")).Revision
}

// grpcTransport starts the gRPC transport to the configured peers.
func (n *Node) grpcTransport(h transport.Handler) (transport.Transport, error) {
	return newGRPCTransport(&n.cfg, peerCodec{replica: n.proto.messages, keyring: n.cfg.GossipKeyring}, n.log, h)
}

// newGRPCTransport starts the gRPC transport of the member cfg configures,
// to its peers, with codec, delivering to h.
func newGRPCTransport(cfg *Config, codec consensus.MessageCodec, log *slog.Logger, h transport.Handler) (transport.Transport, error) {
	peers := make(map[consensus.NodeID]string, len(cfg.Peers))
	for _, p := range cfg.Peers {
		addr, err := HostPort(p.PeerURLs[0]) // checked by Validate
		if err != nil {
			return nil, err
		}
		peers[p.ID] = addr
	}
	return transport.New(transport.Config{
		ServerTLS: cfg.PeerServerTLS, ClientTLS: cfg.PeerClientTLS,
		ClusterID: cfg.ClusterID,
		ID:        cfg.ID,
		Peers:     peers,
		Listener:  cfg.PeerListener,
		Codec:     codec,
		// The protocol keeps its messages within this (protocol.go).
		MessageBytesMax: MessageBytesMax,
		Handler:         h,
		Logger:          log.With("component", "transport"),
	})
}

// receive is the transport's handler: it queues a peer message for the
// loop, dropping it if the queue is full (the protocol tolerates loss).
func (n *Node) receive(m consensus.Message) {
	select {
	case n.recvc <- m:
	default:
	}
}

// run is the loop. It owns the replica and storage.
func (n *Node) run() {
	defer close(n.donec)
	defer n.watch.Stop()
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	// resume is ready while the replica has Readys left over (a long
	// re-execution, see handleReady), so that the loop goes on handling
	// them between its other inputs; nil (never ready) otherwise.
	ready := make(chan struct{})
	close(ready)
	var resume <-chan struct{}
	for {
		select {
		case <-resume:
		case <-n.stopc:
			n.failAll(ErrStopped)
			announceLeave(n.log, n.cfg.LeaveTimeout, n.swim, n.tr)
			return
		case <-ticker.C:
			n.replica.Tick()
			n.swim.tick()
			n.ticks++
			if n.ticks%sweepTicks == 0 {
				n.sweep()
			}
		case m := <-n.recvc:
			n.step(m)
		drain:
			for i := 1; i < InboundBatchMax; i++ {
				select {
				case m := <-n.recvc:
					n.step(m)
				default:
					break drain
				}
			}
		case p := <-n.propc:
			n.propose(p)
			n.drainRequests(n.cfg.ProposalBatchMax-1, len(p.data))
		case rq := <-n.readc:
			n.readIndex(rq)
			n.drainRequests(n.cfg.ProposalBatchMax-1, 0)
		}
		more, err := n.handleReady()
		if err == nil {
			err = n.flushMembership()
		}
		if err != nil {
			n.fail(err)
			return
		}
		resume = nil
		if more {
			resume = ready
		}
		n.publish()
	}
}

// drainRequests takes up to max more queued proposals and reads, and up
// to ProposalBatchBytesMax of command bytes.
func (n *Node) drainRequests(max, bytes int) {
	for range max {
		select {
		case p := <-n.propc:
			n.propose(p)
			if bytes += len(p.data); bytes >= ProposalBatchBytesMax {
				return
			}
		case rq := <-n.readc:
			n.readIndex(rq)
		default:
			return
		}
	}
}

func (n *Node) step(m consensus.Message) {
	n.metrics.received(m)
	switch p := m.Payload.(type) {
	case *gossip.Message:
		n.swim.step(m.From, p)
		return
	case *rejectedMessage:
		n.swim.rejected(m.From, p)
		return
	}
	if err := n.replica.Step(m); err != nil {
		n.log.Debug("dropped a peer message", "from", m.From, "err", err)
	}
}

func (n *Node) propose(p *proposal) {
	if p.ctx.Err() != nil {
		return // the caller gave up while it was queued
	}
	n.nextSeq++
	cmd := consensus.Command{Session: consensus.Session{ClientID: n.clientID, Seq: n.nextSeq}, Keys: p.keys, Data: p.data}
	if err := n.replica.Propose(cmd); err != nil {
		p.done <- proposalResult{err: err}
		return
	}
	n.waiting[n.nextSeq] = p
}

func (n *Node) readIndex(rq *readRequest) {
	if rq.ctx.Err() != nil {
		return
	}
	n.readSeq++
	rq.id = n.readSeq
	err := n.replica.ReadIndex(readContext(rq.id))
	if err != nil && rq.data != nil && errors.Is(err, n.proto.readThroughLog) {
		// The protocol has no read index: order the read among the
		// writes it conflicts with, as a command, and answer it with
		// the result of applying it.
		n.propose(&proposal{ctx: rq.ctx, keys: rq.keys, data: rq.data, done: rq.done})
		return
	}
	if err != nil {
		rq.done <- proposalResult{err: err}
		return
	}
	n.reads[rq.id] = rq
}

// handleReady handles Readys until the replica has no more work, or
// readyLoopsMax of them. Reaching the bound is fatal (a replica that
// produces work forever is a bug) unless the last Ready applied committed
// entries: a replica re-executing a long log after a restart (EPaxos,
// the log after its snapshot) hands it over a bounded slice per Ready,
// so handleReady returns more, and the loop comes back to it after its
// next input, without waiting for one. An error is fatal: the node's
// disk state can no longer be trusted to match what it told its peers,
// and it must stop (and restart from what is durable).
func (n *Node) handleReady() (more bool, err error) {
	for range readyLoopsMax {
		rd := n.replica.Ready()
		if rd.Empty() {
			return false, nil
		}
		more = len(rd.Committed) > 0
		// 1. A Restore's snapshot was installed durably by the snapshot
		// store when its last chunk arrived. 2. Persist.
		if err := n.persist(rd.Persist, rd.SyncOptional); err != nil {
			return false, fmt.Errorf("node: writing the write-ahead log: %w", err)
		}
		// 3. Send.
		if len(rd.Messages) > 0 {
			n.metrics.sent(rd.Messages)
			n.tr.Send(rd.Messages)
		}
		// 4. Restore, then apply.
		if rd.Restore != nil {
			start := time.Now()
			if err := n.restoreKV(rd.Restore.Index); err != nil {
				return false, err
			}
			n.applied, n.appliedTerm = rd.Restore.Index, rd.Restore.Term
			n.log.Info("installed snapshot from a peer", "index", rd.Restore.Index, "term", rd.Restore.Term, "took", time.Since(start))
		}
		if len(rd.Committed) > 0 {
			if err := n.apply(rd.Committed); err != nil {
				return false, err
			}
		}
		// 5. Reads.
		n.readStates = append(n.readStates, rd.Reads...)
		n.serveReads()
		n.replica.Advance(rd)
		// 7. Snapshot.
		if rd.SnapshotWanted {
			n.snapshot()
		}
	}
	if more {
		return true, nil
	}
	return false, fmt.Errorf("node: the replica produced %d Readys in a row without settling (a bug)", readyLoopsMax)
}

// flushMembership sends SWIM's messages.
func (n *Node) flushMembership() error {
	msgs, err := n.swim.flush()
	if err != nil {
		return err
	}
	if len(msgs) > 0 {
		n.metrics.sent(msgs)
		n.tr.Send(msgs)
	}
	return nil
}

// apply applies committed entries to the key-value store in one batch and
// answers the proposals waiting for them.
func (n *Node) apply(ents []consensus.Entry) error {
	results, err := n.applyBatch(ents)
	if err != nil {
		return fmt.Errorf("node: applying entries %d..%d: %w", ents[0].Index, ents[len(ents)-1].Index, err)
	}
	last := &ents[len(ents)-1]
	n.applied, n.appliedTerm = last.Index, last.Term
	// Watchers see a change before its proposer hears back.
	n.watch.Publish(results)
	for i := range ents {
		e := &ents[i]
		if !errors.Is(results[i].Err, kvstore.ErrAlreadyApplied) {
			n.revision.Store(results[i].Revision)
		}
		if e.Type != consensus.EntryNormal || e.Command.Session.ClientID != n.clientID {
			continue
		}
		p, ok := n.waiting[e.Command.Session.Seq]
		if !ok {
			continue
		}
		delete(n.waiting, e.Command.Session.Seq)
		p.done <- proposalResult{res: results[i], applied: true}
	}
	return nil
}

// serveReads releases the reads whose read index is applied.
func (n *Node) serveReads() {
	kept := n.readStates[:0]
	for _, rs := range n.readStates {
		if rs.Index > n.applied {
			kept = append(kept, rs)
			continue
		}
		id := readID(rs.Context)
		if rq, ok := n.reads[id]; ok {
			delete(n.reads, id)
			rq.done <- proposalResult{}
		}
	}
	clear(n.readStates[len(kept):])
	n.readStates = kept
}

// snapshot saves the key-value state at the applied index and lets the
// replica compact its log behind it. A failure is logged, not fatal: the
// log just keeps growing until the next attempt.
func (n *Node) snapshot() {
	// Only a replica that can compact its log behind a snapshot asks for
	// one; a snapshot it cannot use would only take disk space.
	compactor, ok := n.replica.(consensus.Compactor)
	if !ok || n.applied == 0 {
		return
	}
	if ai := n.kv.AppliedIndex(); ai != n.applied {
		// Just after a restart the store may be ahead of what the replica
		// re-emitted so far; a snapshot must hold exactly its index.
		n.log.Debug("snapshot skipped: the store is ahead of the replica's applied index", "kv_applied", ai, "applied", n.applied)
		return
	}
	meta := snap.Meta{Index: n.applied, Term: n.appliedTerm, Voters: slices.Clone(n.voters)}
	if d, ok := compactor.(consensus.SnapshotDescriber); ok {
		// The replica's snapshots carry its own state.
		m, err := d.DescribeSnapshot(n.applied)
		if err != nil {
			n.log.Error("snapshot failed", "index", meta.Index, "err", err)
			return
		}
		meta.Term, meta.Protocol = m.Term, m.Protocol
	}
	if newest, ok := n.snaps.Newest(); ok && (newest.Index > meta.Index || newest.Index == meta.Index && newest.Term >= meta.Term) {
		return
	}
	start := time.Now()
	w, err := n.snaps.Store().Create(meta)
	if err != nil {
		n.log.Error("snapshot failed", "index", meta.Index, "err", err)
		return
	}
	defer w.Abort()
	if err := n.kv.WriteSnapshot(w); err != nil {
		n.log.Error("snapshot failed", "index", meta.Index, "err", err)
		return
	}
	info, err := w.Commit()
	if err != nil {
		n.log.Error("snapshot failed", "index", meta.Index, "err", err)
		return
	}
	if err := n.snaps.Store().GC(); err != nil {
		n.log.Warn("removing old snapshots failed", "err", err)
	}
	cm := consensus.SnapshotMeta{Index: meta.Index, Term: meta.Term, Voters: slices.Clone(n.voters), Protocol: meta.Protocol}
	if err := compactor.Compact(cm); err != nil {
		n.log.Error("compaction refused", "index", meta.Index, "err", err)
		return
	}
	n.log.Info("snapshot saved", "file", info.Name, "index", meta.Index, "term", meta.Term, "took", time.Since(start))
}

// publish stores the replica's status for Status and logs role and leader
// changes; it fails reads waiting for a leadership this node lost.
func (n *Node) publish() {
	st := n.replica.Status()
	prev := n.prev
	n.prev = st
	n.status.Store(&st)
	n.metrics.statusChanged(prev, st)
	if st.Leader != prev.Leader || st.Term != prev.Term && st.Role == consensus.RoleLeader {
		switch {
		case st.Role == consensus.RoleLeader:
			n.log.Info("became leader", "term", st.Term)
		case st.Leader == consensus.None:
			n.log.Info("lost leader", "term", st.Term, "previous_leader", prev.Leader)
		default:
			n.log.Info("leader changed", "term", st.Term, "leader", st.Leader, "previous_leader", prev.Leader)
		}
	}
	if prev.Role == consensus.RoleLeader && (st.Role != consensus.RoleLeader || st.Term != prev.Term) {
		// The replica dropped its unconfirmed reads; confirmed ones (in
		// readStates) are still served once applied.
		confirmed := make(map[uint64]bool, len(n.readStates))
		for _, rs := range n.readStates {
			confirmed[readID(rs.Context)] = true
		}
		for id, rq := range n.reads {
			if !confirmed[id] {
				delete(n.reads, id)
				rq.done <- proposalResult{err: &consensus.NotLeaderError{Leader: st.Leader}}
			}
		}
	}
}

// sweep forgets requests whose callers gave up, so that entries that never
// commit (lost with a deposed leader) do not pile up.
func (n *Node) sweep() {
	for seq, p := range n.waiting {
		if p.ctx.Err() != nil {
			delete(n.waiting, seq)
		}
	}
	for id, rq := range n.reads {
		if rq.ctx.Err() != nil {
			delete(n.reads, id)
		}
	}
}

// failAll answers every waiting request with err.
func (n *Node) failAll(err error) {
	for seq, p := range n.waiting {
		delete(n.waiting, seq)
		p.done <- proposalResult{err: err}
	}
	for id, rq := range n.reads {
		delete(n.reads, id)
		rq.done <- proposalResult{err: err}
	}
	for {
		select {
		case p := <-n.propc:
			p.done <- proposalResult{err: err}
		case rq := <-n.readc:
			rq.done <- proposalResult{err: err}
		default:
			return
		}
	}
}

// fail stops the loop after a fatal error.
func (n *Node) fail(err error) {
	n.setFatal(n.log, err)
	n.failAll(err)
}

// Stop stops the loop, the transport and the storage, and waits for them.
// It returns the first error met closing them. Calling it again returns
// the same error.
func (n *Node) Stop() error {
	return n.stop(n.log, n.cfg.LeaveTimeout, n.tr, n.closeStorage)
}

// closeStorage closes whatever storage is open.
func (n *Node) closeStorage() error {
	var errs []error
	if n.snaps != nil {
		n.snaps.Close()
	}
	if n.wal != nil {
		if err := n.wal.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: closing the write-ahead log: %w", err))
		}
	}
	if n.kv != nil {
		if err := n.kv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: closing the key-value store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Propose replicates a write request and returns its result once this node
// has applied it. On a node that does not lead it returns a
// *consensus.NotLeaderError (matching consensus.ErrNotLeader) naming the
// leader it knows; under a leaderless protocol (Leaderless) every node
// takes proposals. If ctx ends first it returns ctx's error, and the
// request may or may not take effect. A full queue returns ErrBusy. A
// request the state machine rejects (invalid, or refused by the
// protocol's kv.Options, such as a revision compare under EPaxos) comes
// back with its Result.Err also returned as the error; one that is
// invalid whatever the state is refused before it is replicated.
func (n *Node) Propose(ctx context.Context, req kv.Request) (res kv.Result, err error) {
	if err := n.proto.kv.Check(&req); err != nil {
		return kv.Result{Err: err}, err
	}
	defer n.metrics.proposed(&res, &err)
	if err := n.checkRunning(); err != nil {
		return kv.Result{}, err
	}
	if err := n.checkLeader(); err != nil {
		return kv.Result{}, err
	}
	ctx, cancel := withTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	p := &proposal{ctx: ctx, keys: req.Keys(), data: req.Encode(), done: make(chan proposalResult, 1)}
	select {
	case n.propc <- p:
	default:
		return kv.Result{}, ErrBusy
	}
	r, err := n.await(ctx, p.done)
	if err != nil {
		return kv.Result{}, err
	}
	return r.res, r.res.Err
}

// checkLeader returns a *consensus.NotLeaderError if this node must not
// order commands itself: it runs a protocol with a leader and does not
// lead.
func (n *Node) checkLeader() error {
	if st := n.status.Load(); !n.proto.leaderless && st.Role != consensus.RoleLeader {
		return &consensus.NotLeaderError{Leader: st.Leader}
	}
	return nil
}

// Read serves a read-only request. A linearizable read reflects every
// write acknowledged before it started. Under a protocol with a leader it
// confirms a read index with the leader's quorum and waits until this node
// has applied it; on a node that does not lead it returns a
// *consensus.NotLeaderError. Under a protocol without a read index (EPaxos)
// every node serves it by proposing the read as a command ordered after
// the writes it conflicts with, and answering with the result of applying
// it. A serializable read is served from the local state at once (it may
// be stale).
func (n *Node) Read(ctx context.Context, req kv.Request, linearizable bool) (kv.Result, error) {
	if !req.ReadOnly() {
		return kv.Result{Err: kv.ErrNotReadOnly}, kv.ErrNotReadOnly
	}
	if err := n.proto.kv.Check(&req); err != nil {
		return kv.Result{Err: err}, err
	}
	if err := n.checkRunning(); err != nil {
		return kv.Result{}, err
	}
	if linearizable {
		if err := n.checkLeader(); err != nil {
			return kv.Result{}, err
		}
		ctx, cancel := withTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
		rq := &readRequest{ctx: ctx, done: make(chan proposalResult, 1)}
		if n.proto.readThroughLog != nil {
			rq.keys, rq.data = req.Keys(), req.Encode()
		}
		select {
		case n.readc <- rq:
		default:
			return kv.Result{}, ErrBusy
		}
		r, err := n.await(ctx, rq.done)
		if err != nil {
			return kv.Result{}, err
		}
		if r.applied {
			return r.res, r.res.Err
		}
	}
	res := n.kv.Read(req)
	return res, res.Err
}

// Status describes the node.
type Status struct {
	ClusterID uint64
	MemberID  consensus.NodeID
	Name      string
	Protocol  string
	// Replica is the protocol core's status as of the loop's last
	// iteration.
	Replica consensus.Status
	// Revision is the key-value store's current revision (this member's
	// own under a protocol with local revisions, see kv.Options).
	Revision int64
	// DBSizeBytes is the size of the key-value store's files; WALSizeBytes
	// of the write-ahead log's (preallocated segments count in full).
	DBSizeBytes, WALSizeBytes int64
	// Membership is the member's SWIM view: every member's liveness as
	// this one sees it, and its own local health.
	Membership MembershipStatus
}

// Status returns the node's current status.
func (n *Node) Status() Status {
	st := *n.status.Load()
	st.Progress = maps.Clone(st.Progress)
	db, walBytes := n.sizes()
	return Status{
		ClusterID: n.cfg.ClusterID, MemberID: n.cfg.ID, Name: n.cfg.Name, Protocol: n.cfg.Protocol,
		Replica:      st,
		Revision:     n.revision.Load(),
		DBSizeBytes:  db,
		WALSizeBytes: walBytes,
		Membership:   n.swim.snapshot(),
	}
}

// sizesMaxAge is how long Status reuses the sizes of the data directory
// (walking it on every call would make Status, which the server calls on
// every response, expensive).
const sizesMaxAge = time.Second

// sizes returns the kv store's and the WAL's sizes on disk, at most
// sizesMaxAge old.
func (n *Node) sizes() (db, walBytes int64) {
	n.sizesMu.Lock()
	defer n.sizesMu.Unlock()
	if time.Since(n.sizesAt) > sizesMaxAge {
		n.sizesDB, n.sizesWAL = dirBytes(n.cfg.path(kvDirName)), dirBytes(n.cfg.path(walDirName))
		n.sizesAt = time.Now()
	}
	return n.sizesDB, n.sizesWAL
}

// Members lists the cluster's members, as configured.
func (n *Node) Members() []Peer { return clonePeers(n.cfg.Peers) }

// ID returns the node's member ID; Name its name.
func (n *Node) ID() consensus.NodeID { return n.cfg.ID }
func (n *Node) Name() string         { return n.cfg.Name }

func readContext(id uint64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(id)
		id >>= 8
	}
	return b
}

func readID(ctx []byte) uint64 {
	if len(ctx) != 8 {
		return 0
	}
	var id uint64
	for _, b := range ctx {
		id = id<<8 | uint64(b)
	}
	return id
}

// slogLogger adapts a *slog.Logger to consensus.Logger.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Debugf(format string, args ...any) {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		s.l.Debug(fmt.Sprintf(format, args...))
	}
}
func (s slogLogger) Infof(format string, args ...any) { s.l.Info(fmt.Sprintf(format, args...)) }
func (s slogLogger) Warnf(format string, args ...any) { s.l.Warn(fmt.Sprintf(format, args...)) }

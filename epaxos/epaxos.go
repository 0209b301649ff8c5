package epaxos

import (
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// inst is one instance's state at this replica: the durable part (Instance)
// and, if this replica leads it, the leader's volatile bookkeeping.
type inst struct {
	Instance
	// keys are the instance's conflict keys: the union of its commands'
	// keys (conflictKeys), nil for a no-op or a bare promise.
	keys []string
	lead *leaderState
	// rec is the explicit-prepare state while this replica recovers the
	// instance (nil otherwise); seenRound the highest ballot round a
	// refusal told of, so the next attempt goes above it.
	rec       *recState
	seenRound uint64
}

// leaderState is what the leader of an instance tracks while driving it.
type leaderState struct {
	// ballot is the ballot this replica drives the instance at; the
	// leader gives up the instance when it promises a higher one.
	ballot Ballot
	// recovered: this replica drives the instance as a recoverer (or
	// leads it again after a restart); it does not count in inflight.
	recovered bool
	// origSeq and origDeps are the leader's original attributes.
	origSeq  uint64
	origDeps []InstanceID
	// replied holds the replicas that answered the current phase.
	replied map[consensus.NodeID]bool
	changed bool
	// seq and deps merge the PreAccept replies (slow path attributes).
	seq  uint64
	deps []InstanceID
	// commitAcked holds the replicas that acknowledged the commit.
	commitAcked map[consensus.NodeID]bool
	// ticks since the current phase's messages were (re)sent.
	ticks int
}

// keyIndex is the conflict index of one key: for each replica, the highest
// instance of its space that touches the key, and the highest seq of any
// instance touching the key. A new command depends on the latest instance
// per replica per key; earlier ones are reached transitively (see doc).
//
// floored marks the index of a key that may have executed history folded
// into the replica's floor (see Replica.floor): a command on it depends on
// the floor too.
//
// last is kept sorted by replica, one entry per replica: a cluster has few
// replicas, and a small slice costs far less than a map per key.
type keyIndex struct {
	last    []repLast
	maxSeq  uint64
	floored bool
}

// repLast is one entry of keyIndex.last: replica rep's highest instance.
type repLast struct {
	rep  consensus.NodeID
	inst uint64
}

// keyIndexAlloc lets newKeyIndex allocate an index and room for its first
// entry at once (most keys are touched by one replica's instances).
type keyIndexAlloc struct {
	ki  keyIndex
	buf [1]repLast
}

func newKeyIndex(floored bool) *keyIndex {
	a := &keyIndexAlloc{}
	a.ki.last = a.buf[:0:1]
	a.ki.floored = floored
	return &a.ki
}

// find returns the position of rep in ki.last, or where it would go.
func (ki *keyIndex) find(rep consensus.NodeID) (int, bool) {
	for i, e := range ki.last {
		if e.rep >= rep {
			return i, e.rep == rep
		}
	}
	return len(ki.last), false
}

// set makes n replica rep's entry.
func (ki *keyIndex) set(rep consensus.NodeID, n uint64) {
	i, ok := ki.find(rep)
	if ok {
		ki.last[i].inst = n
		return
	}
	ki.last = slices.Insert(ki.last, i, repLast{rep, n})
}

// raise raises replica rep's entry to at least n.
func (ki *keyIndex) raise(rep consensus.NodeID, n uint64) {
	i, ok := ki.find(rep)
	if ok {
		ki.last[i].inst = max(ki.last[i].inst, n)
		return
	}
	ki.last = slices.Insert(ki.last, i, repLast{rep, n})
}

// add records instance id, with sequence number seq, as touching the key.
func (ki *keyIndex) add(id InstanceID, seq uint64) {
	ki.raise(id.Replica, id.Instance)
	ki.maxSeq = max(ki.maxSeq, seq)
}

// merge adds everything o indexes.
func (ki *keyIndex) merge(o *keyIndex) {
	for _, e := range o.last {
		ki.raise(e.rep, e.inst)
	}
	ki.maxSeq = max(ki.maxSeq, o.maxSeq)
}

// clone returns a copy (nil for nil).
func (ki *keyIndex) clone() *keyIndex {
	if ki == nil {
		return nil
	}
	return &keyIndex{last: slices.Clone(ki.last), maxSeq: ki.maxSeq, floored: ki.floored}
}

// collect merges the index into attributes being computed for instance id:
// it raises *seq to the key's highest seq and appends the latest instance
// of each replica to *deps (never id itself).
func (ki *keyIndex) collect(id InstanceID, seq *uint64, deps *[]InstanceID) {
	if ki == nil {
		return
	}
	*seq = max(*seq, ki.maxSeq)
	for _, e := range ki.last {
		if d := (InstanceID{e.rep, e.inst}); d != id {
			// The instance itself may be indexed already (a retransmitted
			// or recovered PreAccept); its earlier instances are reached
			// through the same-space chain of the executor.
			*deps = append(*deps, d)
		}
	}
}

// conflictsWithAll reports whether keys include consensus.ConflictAll.
func conflictsWithAll(keys []string) bool {
	return slices.Contains(keys, consensus.ConflictAll)
}

// keysConflict reports whether commands with these conflict keys
// conflict: both have keys, and they share one or either includes
// consensus.ConflictAll. A command without keys conflicts with nothing,
// not even with a ConflictAll command.
func keysConflict(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	if conflictsWithAll(a) || conflictsWithAll(b) {
		return true
	}
	for _, k := range a {
		if slices.Contains(b, k) {
			return true
		}
	}
	return false
}

// Replica is one EPaxos replica. It implements consensus.Replica.
type Replica struct {
	cfg   Config
	id    consensus.NodeID
	peers []consensus.NodeID

	insts map[InstanceID]*inst
	// keys is the conflict index per key; keys[consensus.ConflictAll]
	// indexes the instances that conflict with everything. anyKey indexes
	// every instance with at least one key, whatever the key: what a
	// ConflictAll command conflicts with.
	keys   map[string]*keyIndex
	anyKey *keyIndex
	next   uint64 // next instance number of this replica's space
	// active holds the instances this replica leads that still need
	// messages: not committed, or commit not acknowledged by everyone.
	active   map[InstanceID]bool
	inflight int
	ncommit  uint64
	// uncommitted holds the instances known here but not committed;
	// suspect the recovery timers of instances this replica waits for.
	uncommitted map[InstanceID]bool
	suspect     map[InstanceID]*suspicion

	exec executor

	// Snapshots and compaction (snapshot.go).
	//
	// executedTo is the executed frontier E: every instance it covers is
	// executed here, and no other (the executor's same-space chain makes
	// the executed instances a prefix of each space, between Readys).
	// Executed instances may be dropped from memory (compacted); a
	// message about one this replica no longer holds is answered with
	// MsgCompacted.
	executedTo frontier
	// done and doneAny are the conflict index (like keys and anyKey) of
	// the executed instances alone, with their committed attributes: the
	// part of the conflict index a snapshot carries, since a new command
	// must still depend on the latest instance on each of its keys even
	// once it is executed and compacted.
	done    map[string]*keyIndex
	doneAny *keyIndex
	// floor, when not nil, merges the indexes of keys whose executed
	// history a snapshot folded (SnapshotStateBytesMax): a command on a
	// key without an exact index (keyIndex.floored, or not indexed at
	// all) depends on it too.
	floor *keyIndex
	// snap is the snapshot the durable state builds on (the last one
	// passed to Compact, installed, or named by the checkpoint New
	// replayed; Index and Term 0: none) and snapE its frontier.
	// Invariant: executedTo dominates snapE.
	snap  consensus.SnapshotMeta
	snapE frontier
	// checkpointDue makes the next Ready persist a Checkpoint; restore is
	// the installed snapshot the next Ready hands out in Restore.
	checkpointDue bool
	restore       *consensus.SnapshotMeta
	// snapWanted makes the next Ready set SnapshotWanted; sinceSnap counts
	// the commands executed since the last snapshot or SnapshotWanted.
	snapWanted bool
	sinceSnap  int
	// recv is the snapshot transfer this replica receives, need the
	// compacted instance it waits for (snapshot.go).
	recv snapRecv
	need snapNeed

	// pending holds the proposals not yet in an instance, in proposal
	// order; Ready (or a Propose that finds it full) starts an instance
	// for them. Invariant: at most Config.BatchCommandsMax commands, and
	// at most Config.BatchBytesMax bytes (consensus.Entry.Size, counted in
	// pendingBytes) unless it holds a single command.
	pending      []consensus.Command
	pendingBytes int

	persist  []consensus.Record
	msgs     []consensus.Message
	executed []consensus.Entry
	applied  uint64 // execution counter: Entry.Index of the last executed command
}

var _ consensus.Replica = (*Replica)(nil)

// New returns a replica configured by cfg, rebuilt from durable: every
// record it ever emitted in Ready.Persist, in order (nil for a new
// replica), or any suffix of them that starts with a Checkpoint. New
// replays from the newest Checkpoint in durable (ignoring the records
// before it). Without one, the rebuilt replica executes every committed
// instance again from execution index 1, so the host rebuilds its state
// machine from scratch. With one, its execution counter starts at the
// checkpoint's snapshot index, and it executes again the committed
// instances the snapshot does not hold: the host must first restore its
// state machine from that snapshot, which cfg.Snapshots must hold (New
// fails if its newest snapshot is older). Instances this replica led but
// had not committed are not driven again by the leader's bookkeeping;
// recovery commits them once RecoveryTimeoutTicks pass (see the doc).
func New(cfg Config, durable []consensus.Record) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = consensus.DiscardLogger
	}
	r := &Replica{
		cfg:    cfg,
		id:     cfg.ID,
		peers:  slices.Clone(cfg.Peers),
		insts:  map[InstanceID]*inst{},
		keys:   map[string]*keyIndex{},
		anyKey: newKeyIndex(false),
		next:   1,
		active: map[InstanceID]bool{},

		uncommitted: map[InstanceID]bool{},
		suspect:     map[InstanceID]*suspicion{},

		executedTo: frontier{},
		done:       map[string]*keyIndex{},
		doneAny:    newKeyIndex(false),
		snapE:      frontier{},
	}
	slices.Sort(r.peers)
	r.exec.init(r)
	start := 0
	for i := len(durable) - 1; i >= 0; i-- {
		if isCheckpoint(durable[i]) {
			start = i
			break
		}
	}
	for i := start; i < len(durable); i++ {
		var in Instance
		switch v := durable[i].(type) {
		case Checkpoint, *Checkpoint:
			cp, ok := v.(Checkpoint)
			if !ok {
				cp = *v.(*Checkpoint)
			}
			if i != start {
				panic("epaxos: a checkpoint replayed after another record")
			}
			if err := r.replayCheckpoint(&cp); err != nil {
				return nil, fmt.Errorf("epaxos: node %d: record %d: %w", r.id, i, err)
			}
			continue
		case Instance:
			in = v
		case *Instance:
			in = *v
		default:
			return nil, fmt.Errorf("epaxos: record %d has unknown type %T", i, durable[i])
		}
		if err := in.validate(); err != nil {
			return nil, fmt.Errorf("epaxos: record %d: %w", i, err)
		}
		if r.executedTo.covers(in.ID) {
			// An executed instance kept in memory after the checkpoint
			// (a promise it answered later); the snapshot holds it.
			continue
		}
		in.Deps = slices.Clone(in.Deps)
		old := r.insts[in.ID]
		if old != nil && (in.Status < old.Status || in.Promised.Less(old.Promised)) {
			return nil, fmt.Errorf("epaxos: record %d moves instance %v backwards", i, in.ID)
		}
		r.replayInstance(in)
	}
	if r.snap.Index > 0 || len(r.snapE) > 0 {
		if cfg.Snapshots == nil {
			return nil, fmt.Errorf("epaxos: node %d: the durable log starts after snapshot %d/%d, but Config.Snapshots is nil: the snapshot the log depends on is missing", r.id, r.snap.Index, r.snap.Term)
		}
		newest, ok := cfg.Snapshots.Newest()
		if !ok || newest.Index < r.snap.Index || newest.Index == r.snap.Index && newest.Term < r.snap.Term {
			have := "none"
			if ok {
				have = fmt.Sprintf("the newest is %d/%d", newest.Index, newest.Term)
			}
			return nil, fmt.Errorf("epaxos: node %d: the durable log starts after snapshot %d/%d, but the snapshot store holds no such snapshot (%s): the snapshot the log depends on is missing", r.id, r.snap.Index, r.snap.Term, have)
		}
		r.cfg.Logger.Infof("epaxos %d: restarted from snapshot %d/%d (executed %v), %d instances after it, next instance %d", r.id, r.snap.Index, r.snap.Term, r.snapE, len(r.insts), r.next)
	}
	return r, nil
}

// replayInstance installs a durable instance record during New.
func (r *Replica) replayInstance(in Instance) {
	r.install(in)
	if in.ID.Replica == r.id && in.ID.Instance >= r.next {
		r.next = in.ID.Instance + 1
	}
}

// N is the number of replicas.
func (r *Replica) n() int { return len(r.peers) }

// install stores in as the instance's state, updating the conflict index
// and the executor.
func (r *Replica) install(in Instance) *inst {
	it := r.insts[in.ID]
	if it == nil {
		it = &inst{}
		r.insts[in.ID] = it
	}
	wasCommitted := it.Status == StatusCommitted
	it.Instance = in
	it.keys = in.conflictKeys()
	if len(it.keys) > 0 {
		for _, k := range it.keys {
			ki := r.keys[k]
			if ki == nil {
				ki = newKeyIndex(r.floor != nil)
				r.keys[k] = ki
			}
			ki.add(in.ID, in.Seq)
		}
		r.anyKey.add(in.ID, in.Seq)
	}
	if in.Status == StatusCommitted && !wasCommitted {
		r.ncommit++
		r.exec.committed(in.ID)
	}
	if in.Status == StatusCommitted {
		delete(r.uncommitted, in.ID)
		delete(r.suspect, in.ID)
	} else {
		r.uncommitted[in.ID] = true
	}
	return it
}

// attributes computes seq and deps for instance id, whose conflict keys
// are keys, from the conflict index. An instance with keys depends on the
// latest instance of each replica on each of its keys and on the latest
// ConflictAll instance of each replica; a ConflictAll instance on the
// latest instance of each replica on any key. Its seq is one above the
// highest seq among the instances it conflicts with (1 if none). An
// instance without keys has no deps and seq 1.
func (r *Replica) attributes(id InstanceID, keys []string) (uint64, []InstanceID) {
	var seq uint64
	var deps []InstanceID
	switch {
	case len(keys) == 0:
	case conflictsWithAll(keys):
		r.anyKey.collect(id, &seq, &deps)
	default:
		for _, k := range keys {
			r.collectKey(r.keys, k, id, &seq, &deps)
		}
		r.collectKey(r.keys, consensus.ConflictAll, id, &seq, &deps)
	}
	return seq + 1, normDeps(deps)
}

// collectKey collects the index of key k in idx (r.keys or r.done), and the
// floor if k's executed history may be folded into it.
func (r *Replica) collectKey(idx map[string]*keyIndex, k string, id InstanceID, seq *uint64, deps *[]InstanceID) {
	ki := idx[k]
	ki.collect(id, seq, deps)
	if r.floor != nil && (ki == nil || ki.floored) {
		r.floor.collect(id, seq, deps)
	}
}

// cleanDeps returns a sorted, duplicate-free copy of deps without invalid
// IDs or id itself, so that a peer's message never makes a record invalid.
func cleanDeps(id InstanceID, deps []InstanceID) []InstanceID {
	out := slices.DeleteFunc(slices.Clone(deps), func(d InstanceID) bool {
		return d == id || d.Replica == consensus.None || d.Instance == 0
	})
	if len(out) == 0 {
		return nil
	}
	return normDeps(out)
}

func (r *Replica) save(it *inst) {
	rec := it.Instance
	rec.Deps = slices.Clone(rec.Deps)
	r.persist = append(r.persist, rec)
}

func (r *Replica) send(to consensus.NodeID, m *Msg) {
	r.msgs = append(r.msgs, consensus.Message{From: r.id, To: to, Payload: m})
}

func (r *Replica) broadcast(m func() *Msg, skip map[consensus.NodeID]bool) {
	for _, p := range r.peers {
		if p != r.id && !skip[p] {
			r.send(p, m())
		}
	}
}

// Propose queues cmd for a new instance of this replica's space; any
// replica may propose. Commands proposed before the next Ready are packed
// into one instance (batching), which that Ready starts, up to
// Config.BatchCommandsMax commands and Config.BatchBytesMax bytes; a
// Propose that finds the batch full starts it at once. While
// Config.InflightMax instances this replica leads are uncommitted, the
// batch waits for one of them to commit, and Propose returns
// consensus.ErrProposalDropped once the waiting batch is full. Each
// command keeps its own Session, Keys and Data: it executes as one entry
// of Ready.Committed, after the commands proposed before it in its batch.
func (r *Replica) Propose(cmd consensus.Command) error {
	if len(cmd.Keys) == 0 {
		cmd.Keys = nil
	} else {
		keys := slices.Clone(cmd.Keys)
		slices.Sort(keys)
		cmd.Keys = slices.Compact(keys)
	}
	size := (&consensus.Entry{Command: cmd}).Size()
	if len(r.pending) > 0 && (len(r.pending) >= r.cfg.BatchCommandsMax || r.pendingBytes+size > r.cfg.BatchBytesMax) {
		if r.inflight >= r.cfg.InflightMax {
			return consensus.ErrProposalDropped
		}
		r.startPending()
	}
	r.pending = append(r.pending, cmd)
	r.pendingBytes += size
	return nil
}

// startPending starts an instance for the pending batch.
func (r *Replica) startPending() {
	cmds := r.pending
	r.pending, r.pendingBytes = nil, 0
	id := InstanceID{r.id, r.next}
	r.next++
	first, batched := splitCommands(cmds)
	seq, deps := r.attributes(id, keysOf(true, &first, batched))
	b := Ballot{Node: r.id}
	it := r.install(Instance{ID: id, Status: StatusPreAccepted, Promised: b, Accepted: b, Command: first, Batched: batched, Seq: seq, Deps: deps})
	it.lead = &leaderState{ballot: b, origSeq: seq, origDeps: slices.Clone(deps), seq: seq, deps: slices.Clone(deps), replied: map[consensus.NodeID]bool{}}
	r.active[id] = true
	r.inflight++
	r.save(it)
	r.sendPreAccept(it)
	r.decidePreAccept(it, false)
}

func (r *Replica) sendPreAccept(it *inst) {
	r.broadcast(func() *Msg {
		return &Msg{Type: MsgPreAccept, Ballot: it.Promised, ID: it.ID, Command: it.Command, Batched: it.Batched, Seq: it.lead.origSeq, Deps: slices.Clone(it.lead.origDeps)}
	}, it.lead.replied)
}

func (r *Replica) sendAccept(it *inst) {
	r.broadcast(func() *Msg {
		return &Msg{Type: MsgAccept, Ballot: it.Promised, ID: it.ID, NoOp: it.NoOp, Command: it.Command, Batched: it.Batched, Seq: it.Seq, Deps: slices.Clone(it.Deps)}
	}, it.lead.replied)
}

func (r *Replica) sendCommit(it *inst) {
	r.broadcast(func() *Msg {
		return commitMsg(it)
	}, it.lead.commitAcked)
}

// decidePreAccept acts on the PreAccept replies held for it.
func (r *Replica) decidePreAccept(it *inst, timedOut bool) {
	ls := it.lead
	initial := it.Promised == Ballot{Node: r.id}
	fastQuorum := FastQuorum(r.n())
	if r.cfg.bug == bugMajorityFastQuorum {
		fastQuorum = consensus.Majority(r.n())
	}
	switch preAcceptDecision(r.n(), fastQuorum, len(ls.replied), ls.changed, initial, timedOut) {
	case decideFast:
		r.cfg.Logger.Debugf("epaxos %d: %v: fast commit at %v seq=%d deps=%s", r.id, it.ID, it.Promised, ls.origSeq, formatDeps(ls.origDeps))
		r.commit(it, ls.origSeq, ls.origDeps)
	case decideSlow:
		in := it.Instance
		in.Status = StatusAccepted
		in.Seq, in.Deps = ls.seq, slices.Clone(ls.deps)
		in.Accepted = in.Promised
		r.install(in)
		r.save(it)
		ls.replied = map[consensus.NodeID]bool{}
		ls.ticks = 0
		r.sendAccept(it)
		r.decideAccept(it)
	}
}

func (r *Replica) decideAccept(it *inst) {
	if len(it.lead.replied)+1 >= consensus.Majority(r.n()) {
		r.commit(it, it.Seq, it.Deps)
	}
}

// commit marks an instance this replica leads committed and tells everyone.
func (r *Replica) commit(it *inst, seq uint64, deps []InstanceID) {
	in := it.Instance
	in.Status = StatusCommitted
	in.Seq, in.Deps = seq, slices.Clone(deps)
	in.Accepted = in.Promised
	r.install(in)
	r.save(it)
	if !it.lead.recovered {
		r.inflight--
	}
	it.lead.commitAcked = map[consensus.NodeID]bool{}
	it.lead.ticks = 0
	r.sendCommit(it)
	if r.n() == 1 {
		delete(r.active, it.ID)
		it.lead = nil
	}
}

// Step handles a message from a peer.
func (r *Replica) Step(m consensus.Message) error {
	if m.To != r.id {
		return fmt.Errorf("epaxos: message for %d stepped into %d", m.To, r.id)
	}
	msg, ok := m.Payload.(*Msg)
	if !ok || msg == nil {
		return fmt.Errorf("epaxos: unknown payload %T", m.Payload)
	}
	if !slices.Contains(r.peers, m.From) || m.From == r.id {
		return fmt.Errorf("epaxos: message from unknown peer %d", m.From)
	}
	switch msg.Type {
	case MsgSnapRequest:
		r.onSnapRequest(m.From, msg)
		return nil
	case MsgSnap:
		r.onSnap(m.From, msg)
		return nil
	}
	if msg.ID.Replica == consensus.None || msg.ID.Instance == 0 {
		return fmt.Errorf("epaxos: message about invalid instance %v", msg.ID)
	}
	if msg.Type > 0 && msg.Type <= msgTypeLast && r.insts[msg.ID] == nil && r.executedTo.covers(msg.ID) {
		r.onExecutedAndDropped(m.From, msg)
		return nil
	}
	switch msg.Type {
	case MsgPreAccept:
		r.onPreAccept(m.From, msg)
	case MsgAccept:
		r.onAccept(m.From, msg)
	case MsgCommit:
		r.onCommit(m.From, msg)
	case MsgPreAcceptOK, MsgAcceptOK, MsgCommitOK:
		r.onReply(m.From, msg)
	case MsgPrepare:
		r.onPrepare(m.From, msg)
	case MsgPrepareOK:
		r.onPrepareOK(m.From, msg)
	case MsgNack:
		r.onNack(msg)
	case MsgTryPreAccept:
		r.onTryPreAccept(m.From, msg)
	case MsgTryPreAcceptOK:
		r.onTryPreAcceptOK(m.From, msg)
	case MsgLearn:
		r.onLearn(m.From, msg)
	case MsgCompacted:
		r.onCompacted(m.From, msg)
	default:
		return fmt.Errorf("epaxos: unknown message type %d", msg.Type)
	}
	r.dropStale(msg.ID)
	return nil
}

// onExecutedAndDropped answers a message about an instance this replica
// executed and no longer holds (compacted): it is committed, and only a
// snapshot can tell its attributes now. A Commit is acknowledged; a
// replica still driving or asking about the instance is told it was
// compacted (MsgCompacted); replies are ignored.
func (r *Replica) onExecutedAndDropped(from consensus.NodeID, m *Msg) {
	switch m.Type {
	case MsgCommit:
		r.send(from, &Msg{Type: MsgCommitOK, Ballot: m.Ballot, ID: m.ID})
	case MsgPreAccept, MsgAccept, MsgPrepare, MsgTryPreAccept, MsgLearn:
		r.send(from, &Msg{Type: MsgCompacted, ID: m.ID})
	}
}

func (r *Replica) onPreAccept(from consensus.NodeID, m *Msg) {
	it := r.insts[m.ID]
	if it != nil && m.Ballot.Less(it.Promised) {
		r.nack(from, it)
		return
	}
	if it != nil && it.Status >= StatusAccepted {
		return // a later phase is known; the leader has moved on
	}
	if it != nil && it.Status == StatusPreAccepted && it.Accepted == m.Ballot {
		// A retransmission: answer with the attributes already chosen.
		r.send(from, &Msg{Type: MsgPreAcceptOK, Ballot: m.Ballot, ID: m.ID, Seq: it.Seq, Deps: slices.Clone(it.Deps), Changed: it.Seq != m.Seq || !slices.Equal(it.Deps, m.Deps)})
		return
	}
	seq, deps := r.attributes(m.ID, m.conflictKeys())
	if r.cfg.bug == bugPreAcceptIgnoresConflicts {
		seq, deps = 0, nil
	}
	seq = max(seq, m.Seq)
	deps = unionDeps(deps, cleanDeps(m.ID, m.Deps))
	changed := seq != m.Seq || !slices.Equal(deps, m.Deps)
	it = r.install(Instance{ID: m.ID, Status: StatusPreAccepted, Promised: m.Ballot, Accepted: m.Ballot, Command: m.Command, Batched: m.Batched, Seq: seq, Deps: deps, Changed: changed})
	r.save(it)
	r.send(from, &Msg{Type: MsgPreAcceptOK, Ballot: m.Ballot, ID: m.ID, Seq: seq, Deps: slices.Clone(deps), Changed: changed})
}

func (r *Replica) onAccept(from consensus.NodeID, m *Msg) {
	if m.NoOp {
		m.Command, m.Batched = consensus.Command{}, nil
	}
	it := r.insts[m.ID]
	if it != nil && m.Ballot.Less(it.Promised) {
		r.nack(from, it)
		return
	}
	if it == nil || it.Status < StatusCommitted {
		it = r.install(Instance{ID: m.ID, Status: StatusAccepted, Promised: m.Ballot, Accepted: m.Ballot, NoOp: m.NoOp, Command: m.Command, Batched: m.Batched, Seq: m.Seq, Deps: cleanDeps(m.ID, m.Deps)})
		r.save(it)
	}
	r.send(from, &Msg{Type: MsgAcceptOK, Ballot: m.Ballot, ID: m.ID})
}

func (r *Replica) onCommit(from consensus.NodeID, m *Msg) {
	if m.NoOp {
		m.Command, m.Batched = consensus.Command{}, nil
	}
	it := r.insts[m.ID]
	if it != nil && it.Status < StatusCommitted {
		// Decided elsewhere: whatever this replica drove is over.
		r.dropLead(it)
		it.rec = nil
	}
	if it == nil || it.Status < StatusCommitted {
		promised := m.Ballot
		if it != nil && promised.Less(it.Promised) {
			promised = it.Promised
		}
		it = r.install(Instance{ID: m.ID, Status: StatusCommitted, Promised: promised, Accepted: m.Ballot, NoOp: m.NoOp, Command: m.Command, Batched: m.Batched, Seq: m.Seq, Deps: cleanDeps(m.ID, m.Deps)})
		r.save(it)
	}
	r.send(from, &Msg{Type: MsgCommitOK, Ballot: m.Ballot, ID: m.ID})
}

// commitMsg is the Commit of a committed instance.
func commitMsg(it *inst) *Msg {
	return &Msg{Type: MsgCommit, Ballot: it.Accepted, ID: it.ID, NoOp: it.NoOp, Command: it.Command, Batched: it.Batched, Seq: it.Seq, Deps: slices.Clone(it.Deps)}
}

// onLearn answers a replica waiting for an instance this one holds
// committed.
func (r *Replica) onLearn(from consensus.NodeID, m *Msg) {
	if it := r.insts[m.ID]; it != nil && it.Status == StatusCommitted {
		r.send(from, commitMsg(it))
	}
}

func (r *Replica) onReply(from consensus.NodeID, m *Msg) {
	it := r.insts[m.ID]
	if it == nil || it.lead == nil {
		return
	}
	// A commit is acknowledged at the ballot it was sent with, which a
	// later Prepare may have left below the promise.
	if m.Type != MsgCommitOK && m.Ballot != it.Promised {
		return
	}
	ls := it.lead
	switch {
	case m.Type == MsgPreAcceptOK && it.Status == StatusPreAccepted:
		if ls.replied[from] {
			return
		}
		ls.replied[from] = true
		if m.Changed || m.Seq != ls.origSeq || !slices.Equal(m.Deps, ls.origDeps) {
			ls.changed = true
		}
		ls.seq = max(ls.seq, m.Seq)
		ls.deps = unionDeps(ls.deps, cleanDeps(it.ID, m.Deps))
		r.decidePreAccept(it, false)
	case m.Type == MsgAcceptOK && it.Status == StatusAccepted:
		if ls.replied[from] {
			return
		}
		ls.replied[from] = true
		r.decideAccept(it)
	case m.Type == MsgCommitOK && it.Status == StatusCommitted:
		ls.commitAcked[from] = true
		if len(ls.commitAcked) >= r.n()-1 {
			delete(r.active, it.ID)
			it.lead = nil
		}
	}
}

// Tick advances time: a leader resends a phase's messages to replicas
// that have not answered, and gives up waiting for a fast quorum.
func (r *Replica) Tick() {
	ids := make([]InstanceID, 0, len(r.active))
	for id := range r.active {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, InstanceID.Compare)
	for _, id := range ids {
		it := r.insts[id]
		ls := it.lead
		ls.ticks++
		if ls.ticks < r.cfg.RetryTicks {
			continue
		}
		ls.ticks = 0
		switch it.Status {
		case StatusPreAccepted:
			r.decidePreAccept(it, true)
			if it.Status == StatusPreAccepted {
				r.sendPreAccept(it)
			}
		case StatusAccepted:
			r.sendAccept(it)
		case StatusCommitted:
			r.sendCommit(it)
		}
	}
	r.tickRecovery()
	r.tickSnapshot()
}

// ReadIndex always fails with ErrReadThroughLog: see the package doc.
func (r *Replica) ReadIndex([]byte) error { return ErrReadThroughLog }

// Ready returns the work for the host. It starts an instance for the
// commands proposed since the last Ready (unless Config.InflightMax
// instances this replica leads are uncommitted; see Propose), and runs
// the executor for at most Config.ExecuteStepsMax steps (none while a
// snapshot is being received); the commands it executes are in
// Committed. After Compact, or after installing a received snapshot (in
// Restore), Persist ends with a Checkpoint.
func (r *Replica) Ready() consensus.Ready {
	if len(r.pending) > 0 && r.inflight < r.cfg.InflightMax {
		r.startPending()
	}
	if !r.receiving() {
		r.exec.run(r, r.cfg.ExecuteStepsMax)
	}
	if r.checkpointDue {
		r.checkpointDue = false
		r.persist = append(r.persist, r.checkpoint())
	}
	rd := consensus.Ready{
		Persist:        slices.Clone(r.persist),
		Messages:       slices.Clone(r.msgs),
		Committed:      slices.Clone(r.executed),
		SnapshotWanted: r.snapWanted,
	}
	if r.restore != nil {
		m := cloneMeta(*r.restore)
		rd.Restore = &m
	}
	return rd
}

// Advance drops the work of rd, which the host has done.
func (r *Replica) Advance(rd consensus.Ready) {
	r.persist = r.persist[min(len(rd.Persist), len(r.persist)):]
	r.msgs = r.msgs[min(len(rd.Messages), len(r.msgs)):]
	r.executed = r.executed[min(len(rd.Committed), len(r.executed)):]
	if len(r.persist) == 0 {
		r.persist = nil
	}
	if len(r.msgs) == 0 {
		r.msgs = nil
	}
	if len(r.executed) == 0 {
		r.executed = nil
	}
	if rd.Restore != nil {
		r.restore = nil
	}
	if rd.SnapshotWanted {
		// Ask again after as many more commands, or after Compact.
		r.snapWanted = false
		r.sinceSnap = 0
	}
}

// Status reports the replica's view: Commit counts committed instances
// known here, Applied the execution counter (see Entry.Index in the doc),
// LastIndex the last instance number of this replica's own space.
func (r *Replica) Status() consensus.Status {
	return consensus.Status{ID: r.id, Role: consensus.RolePeer, Commit: r.ncommit, Applied: r.applied, LastIndex: r.next - 1}
}

// InstancesHeld reports how many instances the replica holds in memory
// (compaction drops executed ones), for tests and tools.
func (r *Replica) InstancesHeld() int { return len(r.insts) }

// Instance returns this replica's state of instance id, for tests and
// tools.
func (r *Replica) Instance(id InstanceID) (Instance, bool) {
	it := r.insts[id]
	if it == nil {
		return Instance{}, false
	}
	in := it.Instance
	in.Deps = slices.Clone(in.Deps)
	in.Batched = slices.Clone(in.Batched)
	return in, true
}

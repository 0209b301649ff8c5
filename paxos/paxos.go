package paxos

import (
	"fmt"
	"math/bits"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// slot is one position of the replicated log: a single-decree Paxos
// instance whose acceptor shares the replica-wide promise.
type slot struct {
	// entry is the slot's value (Entry.Index is the slot), valid if has.
	// Once handed out it is never modified in place.
	entry consensus.Entry
	has   bool
	// accepted is the ballot at which this acceptor accepted entry; zero
	// if the value was only learned as chosen.
	// Invariant: accepted <= Replica.promised.
	accepted Ballot
	// chosen: the value is known chosen. Invariant: chosen implies has;
	// every slot at or below Replica.commit is chosen.
	chosen bool

	// Leader only: acks is the set (by peer position) of acceptors that
	// accepted entry at the leader's ballot; sentAt the tick at which the
	// leader last sent it.
	acks   uint64
	sentAt int64
}

// progress is a leader's view of one peer.
type progress struct {
	// commit is the peer's commit index, as last reported; known is set
	// once it reported one at this ballot.
	commit uint64
	known  bool
	// active is set when the peer answered since the last check-quorum.
	active bool
	// readAck is the highest read round the peer acknowledged.
	readAck uint64
	// learnTo is the last slot sent to the peer in a MsgLearn, at tick
	// learnSentAt.
	learnTo     uint64
	learnSentAt int64
}

type pendingRead struct {
	index uint64
	seq   uint64
	ctx   []byte
}

// Replica is one Multi-Paxos replica: proposer, acceptor and learner for
// every slot. It implements consensus.Replica and is not safe for
// concurrent use.
type Replica struct {
	cfg    Config
	id     consensus.NodeID
	peers  []consensus.NodeID // sorted
	self   int                // position of id in peers
	logger consensus.Logger

	// Durable state (HardState, Accept and Learn records).
	//
	// promised is the acceptor's promise, shared by every slot: it accepts
	// nothing below it. tried is the highest round this replica ever
	// proposed with; a new ballot is always above it.
	// Invariant: tried >= promised.Round whenever promised.Node == id.
	promised Ballot
	tried    uint64
	// commit is the highest slot such that every slot up to it is chosen.
	commit uint64
	// log[i] is slot offset+1+i; slots at or below offset are compacted
	// (chosen, and in the snapshot). Invariant: offset <= snap.Index <=
	// applied <= commit (snap.Index may pass applied only while a received
	// snapshot waits to be restored).
	log    []slot
	offset uint64
	// snap is the snapshot the log builds on (zero: none).
	snap consensus.SnapshotMeta

	// Snapshots (see snapshot.go). checkpointDue makes the next Ready
	// persist a Checkpoint; restore is a received snapshot for the next
	// Ready's Restore, and restoring is set until the host advanced past
	// it. snapWanted makes the next Ready set SnapshotWanted.
	checkpointDue    bool
	restore          *consensus.SnapshotMeta
	restoring        bool
	snapWanted       bool
	sinceSnapEntries int
	sinceSnapBytes   int
	// out[pos] is the snapshot transfer to the peer at pos; recv the one
	// being received.
	out  []snapSend
	recv snapRecv

	role   consensus.Role
	leader consensus.NodeID
	// ballot is the ballot this replica leads or campaigns with.
	// Invariant: when leading, ballot == promised.
	ballot Ballot
	// seen is the highest round seen in any message.
	seen uint64
	now  int64

	electionElapsed  int
	heartbeatElapsed int
	electionTimeout  int

	// Candidate: phase 1 covers every slot from start on. promises holds
	// the granted promises by peer position (nil: none yet).
	start    uint64
	promises []*Msg

	// Leader.
	prs []progress
	// recovered is the last slot phase 1 re-proposed: reads wait until
	// commit reaches it, so every value chosen under an earlier ballot is
	// below the read index.
	recovered uint64
	// unsent is the first slot not yet broadcast in a MsgAccept.
	unsent        uint64
	heartbeatDue  bool
	readSeq       uint64
	readRoundOpen bool
	pendingReads  []pendingRead
	// learnBelow is the commit index at the previous heartbeat: peers
	// behind it are sent the chosen values they lack.
	learnBelow uint64

	// Output.
	msgs      []consensus.Message
	recs      []consensus.Record
	accBuf    []consensus.Entry
	accBallot Ballot
	learnBuf  []consensus.Entry
	persisted HardState
	// emitted is the last slot handed out in Ready.Committed; applied the
	// last one advanced past. applied <= emitted <= commit.
	emitted uint64
	applied uint64
	reads   []consensus.ReadState
}

var _ consensus.Replica = (*Replica)(nil)

// New returns a replica configured by cfg, rebuilt from durable: every
// record it ever emitted in Ready.Persist, in order (nil for a new
// replica). A restarted replica starts as a follower, never proposes with a
// round at or below any it used before, and re-emits its chosen prefix from
// slot 1.
func New(cfg Config, durable []consensus.Record) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replica{cfg: cfg, id: cfg.ID, peers: slices.Clone(cfg.Peers), logger: cfg.Logger}
	slices.Sort(r.peers)
	if r.logger == nil {
		r.logger = consensus.DiscardLogger
	}
	r.self = slices.Index(r.peers, r.id)
	r.prs = make([]progress, len(r.peers))
	r.promises = make([]*Msg, len(r.peers))
	r.out = make([]snapSend, len(r.peers))

	// Replay from the newest checkpoint: it supersedes every older record.
	start := 0
	for i, rec := range durable {
		switch rec.(type) {
		case Checkpoint, *Checkpoint:
			start = i
		}
	}
	var hs HardState
	for i := start; i < len(durable); i++ {
		var err error
		switch rec := durable[i].(type) {
		case Checkpoint:
			err = r.replayCheckpoint(&rec, i == start, &hs)
		case *Checkpoint:
			err = r.replayCheckpoint(rec, i == start, &hs)
		case HardState:
			err = checkHardState(hs, rec)
			hs = rec
		case *HardState:
			err = checkHardState(hs, *rec)
			hs = *rec
		case Accept:
			err = r.replayAccept(&rec)
		case *Accept:
			err = r.replayAccept(rec)
		case Learn:
			err = r.replayLearn(&rec)
		case *Learn:
			err = r.replayLearn(rec)
		default:
			err = fmt.Errorf("unknown record type %T", durable[i])
		}
		if err != nil {
			return nil, fmt.Errorf("paxos: node %d: durable record %d: %w", r.id, i, err)
		}
	}
	if hs.Commit > r.lastIndex() {
		return nil, fmt.Errorf("paxos: node %d: durable commit index %d is beyond the durable log (%d slots)", r.id, hs.Commit, r.lastIndex())
	}
	if hs.Commit < r.snap.Index {
		return nil, fmt.Errorf("paxos: node %d: durable commit index %d is below the snapshot at %d", r.id, hs.Commit, r.snap.Index)
	}
	for i := r.offset + 1; i <= hs.Commit; i++ {
		s := r.at(i)
		if !s.has {
			return nil, fmt.Errorf("paxos: node %d: durable commit index %d, but slot %d has no value", r.id, hs.Commit, i)
		}
		s.chosen = true
	}
	for i := range r.log {
		if s := &r.log[i]; hs.Promised.Less(s.accepted) {
			return nil, fmt.Errorf("paxos: node %d: slot %d accepted at %v, above the durable promise %v", r.id, r.offset+1+uint64(i), s.accepted, hs.Promised)
		}
	}
	if r.snap.Index > 0 {
		if r.cfg.Snapshots == nil {
			return nil, fmt.Errorf("paxos: node %d: the durable log builds on snapshot %d/%d, but Config.Snapshots is nil", r.id, r.snap.Index, r.snap.Term)
		}
		if newest, ok := r.cfg.Snapshots.Newest(); !ok || newest.Index < r.snap.Index {
			return nil, fmt.Errorf("paxos: node %d: the durable log builds on snapshot %d/%d, but the snapshot store's newest is %d (present: %v)", r.id, r.snap.Index, r.snap.Term, newest.Index, ok)
		}
		// The host restores its state machine from the snapshot first.
		r.applied, r.emitted = r.snap.Index, r.snap.Index
	}
	r.promised, r.tried, r.commit = hs.Promised, hs.Tried, hs.Commit
	r.seen = max(r.tried, r.promised.Round)
	r.persisted = hs
	r.becomeFollower(consensus.None)
	if len(durable) > 0 {
		r.logger.Infof("paxos %d: restarted: promised %v, tried round %d, commit %d, snapshot %d, slots %d..%d", r.id, r.promised, r.tried, r.commit, r.snap.Index, r.offset+1, r.lastIndex())
	}
	return r, nil
}

func checkHardState(prev, hs HardState) error {
	if hs.Promised.Less(prev.Promised) {
		return fmt.Errorf("HardState promise went back from %v to %v", prev.Promised, hs.Promised)
	}
	if hs.Tried < prev.Tried {
		return fmt.Errorf("HardState tried round went back from %d to %d", prev.Tried, hs.Tried)
	}
	if hs.Commit < prev.Commit {
		return fmt.Errorf("HardState commit went back from %d to %d", prev.Commit, hs.Commit)
	}
	return nil
}

func (r *Replica) replayAccept(a *Accept) error {
	if err := validateEntries("Accept", a.Entries); err != nil {
		return err
	}
	for _, e := range a.Entries {
		if e.Index <= r.offset {
			continue
		}
		s := r.slotAt(e.Index)
		if s.chosen {
			continue
		}
		s.entry, s.has, s.accepted = e, true, a.Ballot
	}
	return nil
}

func (r *Replica) replayLearn(l *Learn) error {
	if err := validateEntries("Learn", l.Entries); err != nil {
		return err
	}
	for _, e := range l.Entries {
		if e.Index <= r.offset {
			continue
		}
		s := r.slotAt(e.Index)
		s.entry, s.has, s.chosen, s.accepted = e, true, true, Ballot{}
	}
	return nil
}

// slotAt returns slot i, which must not be compacted, growing the log to
// hold it.
func (r *Replica) slotAt(i uint64) *slot {
	if i <= r.offset {
		panic(fmt.Sprintf("paxos: slot %d is compacted (log starts after %d)", i, r.offset))
	}
	for r.lastIndex() < i {
		r.log = append(r.log, slot{})
	}
	return r.at(i)
}

// at returns slot i, which must be in the log: offset < i <= lastIndex.
func (r *Replica) at(i uint64) *slot { return &r.log[i-1-r.offset] }

func (r *Replica) lastIndex() uint64 { return r.offset + uint64(len(r.log)) }

// FirstIndex is the first slot the log holds; the slots before it are
// compacted into the snapshot.
func (r *Replica) FirstIndex() uint64 { return r.offset + 1 }

func (r *Replica) quorum() int { return consensus.Majority(len(r.peers)) }

// Entry returns the value the replica holds for slot index (chosen,
// accepted, or proposed by it as leader). The entry must not be modified.
func (r *Replica) Entry(index uint64) (consensus.Entry, bool) {
	if index <= r.offset || index > r.lastIndex() || !r.at(index).has {
		return consensus.Entry{}, false
	}
	return r.at(index).entry, true
}

// RoleTerm reports the role and the ballot round: a leader's or
// candidate's own ballot, otherwise the promised one.
func (r *Replica) RoleTerm() (consensus.Role, uint64) {
	if r.role == consensus.RoleLeader || r.role == consensus.RoleCandidate {
		return r.role, r.ballot.Round
	}
	return r.role, r.promised.Round
}

// Ballot returns the ballot the replica leads or campaigns with, or its
// promise if it follows.
func (r *Replica) Ballot() Ballot {
	if r.role == consensus.RoleFollower {
		return r.promised
	}
	return r.ballot
}

// Status implements consensus.Replica. Term is the ballot round.
func (r *Replica) Status() consensus.Status {
	role, term := r.RoleTerm()
	st := consensus.Status{ID: r.id, Role: role, Term: term, Leader: r.leader,
		Commit: r.commit, Applied: r.applied, LastIndex: r.lastIndex()}
	if r.role == consensus.RoleLeader {
		st.Progress = make(map[consensus.NodeID]consensus.Progress, len(r.peers))
		for i, id := range r.peers {
			pr := &r.prs[i]
			state := "unknown"
			if pr.known || i == r.self {
				state = "known"
			}
			match := pr.commit
			if i == r.self {
				match = r.commit
			}
			st.Progress[id] = consensus.Progress{Match: match, Next: r.unsent, State: state}
		}
	}
	return st
}

// ---- Time ----

// Tick implements consensus.Replica.
func (r *Replica) Tick() {
	r.now++
	r.electionElapsed++
	r.heartbeatElapsed++
	r.tickSnapshots()
	switch r.role {
	case consensus.RoleLeader:
		if r.electionElapsed >= r.cfg.ElectionTimeoutTicks {
			r.electionElapsed = 0
			if !r.quorumActive() {
				r.logger.Infof("paxos %d: stepping down at ballot %v: no quorum heard within the election timeout", r.id, r.ballot)
				r.becomeFollower(consensus.None)
				return
			}
		}
		if r.heartbeatElapsed >= r.cfg.HeartbeatTicks {
			r.heartbeatElapsed = 0
			r.heartbeatDue = true
		}
	case consensus.RoleCandidate:
		if r.electionElapsed >= r.electionTimeout {
			r.campaign()
			return
		}
		if r.heartbeatElapsed >= r.cfg.HeartbeatTicks {
			// Resend the prepare to acceptors that have not answered.
			r.heartbeatElapsed = 0
			for i := range r.peers {
				if i != r.self && r.promises[i] == nil {
					r.send(r.peers[i], &Msg{Type: MsgPrepare, Ballot: r.ballot, Index: r.start})
				}
			}
		}
	default:
		if r.electionElapsed >= r.electionTimeout {
			r.campaign()
		}
	}
}

func (r *Replica) quorumActive() bool {
	active := 0
	for i := range r.prs {
		if i == r.self || r.prs[i].active {
			active++
		}
		r.prs[i].active = false
	}
	return active >= r.quorum()
}

// resetTimers draws a new election timeout in [E, 2E): the randomized
// back-off that lets duelling proposers converge.
func (r *Replica) resetTimers() {
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.electionTimeout = r.cfg.ElectionTimeoutTicks + r.cfg.Rand.IntN(r.cfg.ElectionTimeoutTicks)
}

// ---- Roles ----

func (r *Replica) becomeFollower(leader consensus.NodeID) {
	if r.role != consensus.RoleFollower || r.leader != leader {
		r.logger.Debugf("paxos %d: following, promised %v, leader %d", r.id, r.promised, leader)
	}
	r.role = consensus.RoleFollower
	r.leader = leader
	r.resetTimers()
	r.dropLeaderState()
}

func (r *Replica) dropLeaderState() {
	r.heartbeatDue = false
	r.readRoundOpen = false
	clear(r.pendingReads)
	r.pendingReads = r.pendingReads[:0]
	clear(r.promises)
}

// campaign starts phase 1 for every slot from the first unchosen one, with
// a ballot above every round this replica tried or saw. The round is
// persisted (HardState.Tried, and the self-promise) in the same Ready as
// the prepares, before they go out.
func (r *Replica) campaign() {
	round := NextRound(max(r.tried, r.seen, r.promised.Round), r.self, len(r.peers))
	r.tried = round
	r.ballot = Ballot{Round: round, Node: r.id}
	r.promised = r.ballot
	r.seen = max(r.seen, round)
	r.role = consensus.RoleCandidate
	r.leader = consensus.None
	r.resetTimers()
	r.dropLeaderState()
	r.start = r.commit + 1
	r.logger.Infof("paxos %d: phase 1 at ballot %v from slot %d", r.id, r.ballot, r.start)
	r.promises[r.self] = &Msg{Type: MsgPromise, Ballot: r.ballot}
	if r.countPromises() >= r.quorum() {
		r.becomeLeader()
		return
	}
	for i, p := range r.peers {
		if i != r.self {
			r.send(p, &Msg{Type: MsgPrepare, Ballot: r.ballot, Index: r.start})
		}
	}
}

func (r *Replica) countPromises() int {
	n := 0
	for _, p := range r.promises {
		if p != nil {
			n++
		}
	}
	return n
}

// observe notes a ballot seen from a peer. A higher promise than ours is
// adopted (promising more is always safe), and a leader or candidate with
// a lower ballot steps down and backs off.
func (r *Replica) observe(b Ballot) {
	r.seen = max(r.seen, b.Round)
	if !r.promised.Less(b) {
		return
	}
	r.promised = b
	if r.role != consensus.RoleFollower {
		r.logger.Infof("paxos %d: ballot %v preempted by %v", r.id, r.ballot, b)
		r.becomeFollower(consensus.None)
	}
}

// becomeLeader ends phase 1: a majority promised r.ballot. For every slot
// from start to the highest any of them reported, the leader takes a value
// it knows chosen, else the value accepted at the highest ballot among the
// promises (SelectValue's rule, per slot), else a no-op; and re-proposes
// each slot not known chosen at its own ballot.
func (r *Replica) becomeLeader() {
	// Slots learned chosen during phase 1 need no recovery; they may even
	// have been compacted since.
	r.start = max(r.start, r.commit+1)
	top := r.lastIndex()
	for _, p := range r.promises {
		if p != nil && len(p.Entries) > 0 {
			top = max(top, p.Entries[len(p.Entries)-1].Index)
		}
	}
	if top >= r.start {
		r.slotAt(top) // grow once: the loop holds pointers into the log
	}
	cursors := make([]int, len(r.promises))
	acc := make([]acceptedValue[consensus.Entry], 0, len(r.peers))
	bug := r.cfg.bug == bugPhase2AnyAccepted
	for i := r.start; i <= top; i++ {
		acc = acc[:0]
		var chosen *consensus.Entry
		own := r.slotAt(i)
		if own.has {
			if own.chosen {
				chosen = &own.entry
			}
			acc = append(acc, acceptedValue[consensus.Entry]{ballot: own.accepted, value: own.entry})
		}
		for pi, p := range r.promises {
			if p == nil || pi == r.self {
				continue
			}
			c := cursors[pi]
			for c < len(p.Entries) && p.Entries[c].Index < i {
				c++
			}
			cursors[pi] = c
			if c < len(p.Entries) && p.Entries[c].Index == i {
				e := &p.Entries[c]
				if i <= p.Commit && chosen == nil {
					chosen = e
				}
				acc = append(acc, acceptedValue[consensus.Entry]{ballot: p.Ballots[c], value: *e})
			}
		}
		if own.chosen {
			continue
		}
		if chosen != nil && !bug {
			own.entry, own.has, own.chosen, own.accepted = *chosen, true, true, Ballot{}
			r.learnBuf = append(r.learnBuf, *chosen)
			continue
		}
		v, ok := pickAccepted(acc, bug)
		if !ok {
			if chosen != nil {
				v = *chosen
			} else {
				v = consensus.Entry{Index: i, Term: r.ballot.Round, Type: consensus.EntryNoOp}
			}
		}
		own.entry, own.has = v, true
		r.acceptOwn(own)
	}
	clear(r.promises)
	r.role = consensus.RoleLeader
	r.leader = r.id
	r.resetTimers()
	for i := range r.prs {
		r.prs[i] = progress{active: true}
	}
	r.recovered = top
	r.unsent = r.start
	r.learnBelow = 0
	r.heartbeatDue = true
	r.logger.Infof("paxos %d: leading at ballot %v; slots %d..%d recovered, commit %d", r.id, r.ballot, r.start, top, r.commit)
	r.advanceLeaderCommit()
}

// acceptOwn makes the leader's own acceptor accept s at its ballot: it is
// recorded for the next Ready (durable before the accepts go out) and
// counts as the leader's acknowledgement.
func (r *Replica) acceptOwn(s *slot) {
	s.accepted = r.ballot
	s.acks = 1 << uint(r.self)
	s.sentAt = r.now
	r.bufferAccept(r.ballot, s.entry)
	if bits.OnesCount64(s.acks) >= r.quorum() {
		s.chosen = true
	}
}

func (r *Replica) bufferAccept(b Ballot, e consensus.Entry) {
	if len(r.accBuf) > 0 && r.accBallot != b {
		r.flushAcceptRecord()
	}
	r.accBallot = b
	r.accBuf = append(r.accBuf, e)
}

func (r *Replica) flushAcceptRecord() {
	if len(r.accBuf) > 0 {
		r.recs = append(r.recs, Accept{Ballot: r.accBallot, Entries: r.accBuf})
		r.accBuf = nil
	}
}

// ---- Messages ----

// Step implements consensus.Replica.
func (r *Replica) Step(msg consensus.Message) error {
	if msg.To != r.id {
		return fmt.Errorf("paxos %d: message addressed to %d", r.id, msg.To)
	}
	m, ok := msg.Payload.(*Msg)
	if !ok || m == nil {
		return fmt.Errorf("paxos %d: payload %T is not a *paxos.Msg", r.id, msg.Payload)
	}
	pos := slices.Index(r.peers, msg.From)
	if pos < 0 || pos == r.self {
		return fmt.Errorf("paxos %d: message from unknown node %d", r.id, msg.From)
	}
	switch m.Type {
	case MsgPrepare:
		r.handlePrepare(pos, m)
	case MsgPromise:
		r.handlePromise(pos, m)
	case MsgAccept:
		r.handleAccept(pos, m)
	case MsgAccepted:
		r.handleAccepted(pos, m)
	case MsgHeartbeat:
		r.handleHeartbeat(pos, m)
	case MsgHeartbeatResp:
		r.handleHeartbeatResp(pos, m)
	case MsgLearn:
		r.handleLearn(pos, m)
	case MsgLearnResp:
		r.handleLearnResp(pos, m)
	case MsgSnap:
		r.handleSnap(pos, m)
	case MsgSnapResp:
		r.handleSnapResp(pos, m)
	default:
		return fmt.Errorf("paxos %d: unknown message type %v from %d", r.id, m.Type, msg.From)
	}
	return nil
}

// handlePrepare is the acceptor's phase 1b, for every slot from m.Index.
func (r *Replica) handlePrepare(pos int, m *Msg) {
	from := r.peers[pos]
	if m.Ballot.Less(r.promised) {
		r.send(from, &Msg{Type: MsgPromise, Ballot: r.promised, Reject: true})
		return
	}
	if m.Ballot != r.promised {
		r.observe(m.Ballot)
		r.leader = consensus.None
	}
	// Give the candidate time to finish phase 1.
	r.electionElapsed = 0
	resp := &Msg{Type: MsgPromise, Ballot: m.Ballot, Index: max(m.Index, 1), Commit: r.commit}
	if resp.Index <= r.offset {
		// The candidate lacks chosen slots this acceptor has compacted: it
		// reports from its first slot (the candidate will not count the
		// promise while it is behind it) and sends the candidate its
		// snapshot.
		resp.Index = r.offset + 1
		r.startSnapshot(pos)
	}
	for i := resp.Index; i <= r.lastIndex(); i++ {
		s := r.at(i)
		if !s.has || (s.accepted.IsZero() && !s.chosen) {
			continue
		}
		resp.Entries = append(resp.Entries, s.entry)
		resp.Ballots = append(resp.Ballots, s.accepted)
	}
	r.send(from, resp)
}

func (r *Replica) handlePromise(pos int, m *Msg) {
	if m.Reject {
		r.observe(m.Ballot)
		return
	}
	if r.role != consensus.RoleCandidate || m.Ballot != r.ballot || r.promises[pos] != nil {
		return // stale or duplicate
	}
	if m.Index > r.start {
		// The acceptor compacted slots this candidate has not learned: it
		// cannot report them, so its promise is not counted until the
		// candidate has caught up (from the snapshot the acceptor sends);
		// the prepare is resent meanwhile.
		r.logger.Debugf("paxos %d: promise from %d reports slots from %d, but phase 1 starts at %d; waiting for its snapshot", r.id, r.peers[pos], m.Index, r.start)
		return
	}
	if len(m.Ballots) != len(m.Entries) {
		r.logger.Warnf("paxos %d: malformed promise from %d: %d entries, %d ballots", r.id, r.peers[pos], len(m.Entries), len(m.Ballots))
		return
	}
	r.promises[pos] = m
	if r.countPromises() >= r.quorum() {
		r.becomeLeader()
	}
}

// followLeader is an acceptor hearing from the proposer of ballot b, which
// is at least its promise.
func (r *Replica) followLeader(pos int, b Ballot) {
	if b != r.promised {
		r.observe(b)
	}
	if r.role != consensus.RoleFollower {
		// Our own ballot equals b only if b is ours, which no peer sends.
		r.becomeFollower(r.peers[pos])
	}
	r.leader = r.peers[pos]
	r.electionElapsed = 0
}

// handleAccept is the acceptor's phase 2b.
func (r *Replica) handleAccept(pos int, m *Msg) {
	from := r.peers[pos]
	if m.Ballot.Less(r.promised) {
		r.send(from, &Msg{Type: MsgAccepted, Ballot: r.promised, Reject: true, Commit: r.commit})
		return
	}
	r.followLeader(pos, m.Ballot)
	slots := make([]uint64, 0, len(m.Entries))
	for _, e := range m.Entries {
		if e.Index == 0 {
			continue
		}
		if e.Index <= r.offset {
			// Compacted, hence chosen: acknowledged like a chosen slot.
			slots = append(slots, e.Index)
			continue
		}
		s := r.slotAt(e.Index)
		if !s.chosen {
			s.entry, s.has, s.accepted = e, true, m.Ballot
			r.bufferAccept(m.Ballot, e)
		}
		slots = append(slots, e.Index)
	}
	r.learnCommit(m.Ballot, m.Commit)
	r.send(from, &Msg{Type: MsgAccepted, Ballot: m.Ballot, Slots: slots, Commit: r.commit})
}

// learnCommit is a commit notification from the leader of ballot b whose
// commit index is c: every slot up to c is chosen, and for ballot b the
// leader proposed exactly one value per slot, so a slot this acceptor
// accepted at b holds the chosen value.
func (r *Replica) learnCommit(b Ballot, c uint64) {
	for r.commit < c && r.commit < r.lastIndex() {
		s := r.at(r.commit + 1)
		if !s.chosen && !(s.has && s.accepted == b) {
			break
		}
		s.chosen = true
		r.commit++
	}
}

func (r *Replica) handleHeartbeat(pos int, m *Msg) {
	from := r.peers[pos]
	if m.Ballot.Less(r.promised) {
		r.send(from, &Msg{Type: MsgHeartbeatResp, Ballot: r.promised, Reject: true, Commit: r.commit})
		return
	}
	r.followLeader(pos, m.Ballot)
	r.learnCommit(m.Ballot, m.Commit)
	r.send(from, &Msg{Type: MsgHeartbeatResp, Ballot: m.Ballot, ReadSeq: m.ReadSeq, Commit: r.commit})
}

// handleLearn takes chosen values from any peer: a chosen value is a fact,
// whatever the ballot of whoever reports it.
func (r *Replica) handleLearn(pos int, m *Msg) {
	for _, e := range m.Entries {
		if e.Index <= r.commit {
			continue
		}
		if e.Index != r.commit+1 {
			break
		}
		s := r.slotAt(e.Index)
		s.entry, s.has, s.chosen, s.accepted = e, true, true, Ballot{}
		r.learnBuf = append(r.learnBuf, e)
		r.commit++
	}
	// Slots after the learned ones may already be chosen here.
	for r.commit < r.lastIndex() && r.at(r.commit+1).chosen {
		r.commit++
	}
	if r.role == consensus.RoleLeader {
		r.advanceLeaderCommit()
	}
	r.send(r.peers[pos], &Msg{Type: MsgLearnResp, Ballot: m.Ballot, Commit: r.commit})
}

// ---- Leader ----

func (r *Replica) leaderResponse(pos int, m *Msg) bool {
	pr := &r.prs[pos]
	if m.Reject {
		r.observe(m.Ballot)
		return false
	}
	if r.role != consensus.RoleLeader || m.Ballot != r.ballot {
		return false
	}
	pr.active = true
	pr.known = true
	// As last reported, not the highest ever: a restarted peer may have
	// lost a commit index it wrote without syncing (Ready.SyncOptional).
	pr.commit = m.Commit
	return true
}

func (r *Replica) handleAccepted(pos int, m *Msg) {
	if !r.leaderResponse(pos, m) {
		return
	}
	bit := uint64(1) << uint(pos)
	last := r.lastIndex()
	for _, i := range m.Slots {
		if i <= r.commit || i > last {
			continue
		}
		s := r.at(i)
		if s.chosen || s.accepted != r.ballot {
			continue
		}
		s.acks |= bit
		if bits.OnesCount64(s.acks) >= r.quorum() {
			s.chosen = true
		}
	}
	r.advanceLeaderCommit()
}

func (r *Replica) handleHeartbeatResp(pos int, m *Msg) {
	if !r.leaderResponse(pos, m) {
		return
	}
	pr := &r.prs[pos]
	if m.ReadSeq > pr.readAck {
		pr.readAck = m.ReadSeq
		r.resolveReads()
	}
	r.maybeSendLearn(pos, r.learnBelow)
}

func (r *Replica) handleLearnResp(pos int, m *Msg) {
	if !r.leaderResponse(pos, m) {
		return
	}
	// Pipeline the catch-up: the previous batch arrived.
	if r.prs[pos].commit >= r.prs[pos].learnTo {
		r.maybeSendLearn(pos, r.commit)
	}
}

// maybeSendLearn sends the peer at pos the chosen values it lacks, up to
// below, one batch at a time (a batch is resent after 2 heartbeats).
func (r *Replica) maybeSendLearn(pos int, below uint64) {
	pr := &r.prs[pos]
	below = min(below, r.commit)
	if !pr.known || pr.commit >= below {
		return
	}
	if pr.commit < r.offset {
		// The peer needs slots compacted away here: it gets the snapshot.
		r.startSnapshot(pos)
		return
	}
	if pr.learnTo > pr.commit && r.now-pr.learnSentAt < int64(2*r.cfg.HeartbeatTicks) {
		return // a batch is in flight
	}
	ents := r.batch(pr.commit+1, below, func(*slot) bool { return true })
	if len(ents) == 0 {
		return
	}
	pr.learnTo = ents[len(ents)-1].Index
	pr.learnSentAt = r.now
	r.send(r.peers[pos], &Msg{Type: MsgLearn, Ballot: r.ballot, Entries: ents})
}

// batch returns entries of slots lo..hi that want selects, within the
// message bounds (at least one if any is selected).
func (r *Replica) batch(lo, hi uint64, want func(*slot) bool) []consensus.Entry {
	var ents []consensus.Entry
	size := 0
	for i := max(lo, r.offset+1); i <= hi && i <= r.lastIndex(); i++ {
		s := r.at(i)
		if !want(s) {
			continue
		}
		size += s.entry.Size()
		if len(ents) > 0 && (len(ents) >= r.cfg.EntriesPerMsgMax || size > r.cfg.MsgBytesMax) {
			break
		}
		ents = append(ents, s.entry)
	}
	return ents
}

func (r *Replica) advanceLeaderCommit() {
	for r.commit < r.lastIndex() && r.at(r.commit+1).chosen {
		r.commit++
	}
	r.startWaitingReads()
}

// Propose implements consensus.Replica. The leader assigns the command the
// next slot and runs phase 2 only; proposals between two Readys share
// messages. The command is retained: the caller must not modify it.
func (r *Replica) Propose(cmd consensus.Command) error {
	e := consensus.Entry{Type: consensus.EntryNormal, Command: cmd}
	if n := e.Size(); n > r.cfg.EntryBytesMax {
		return fmt.Errorf("%w: %d bytes, EntryBytesMax is %d", ErrEntryTooLarge, n, r.cfg.EntryBytesMax)
	}
	if r.role != consensus.RoleLeader {
		return &consensus.NotLeaderError{Leader: r.leader}
	}
	if r.lastIndex()-r.commit >= uint64(r.cfg.InflightSlotsMax) {
		return consensus.ErrProposalDropped
	}
	e.Index = r.lastIndex() + 1
	e.Term = r.ballot.Round
	s := r.slotAt(e.Index)
	s.entry, s.has = e, true
	r.acceptOwn(s)
	r.advanceLeaderCommit()
	return nil
}

// flushAccepts broadcasts the slots proposed since the last Ready.
func (r *Replica) flushAccepts() {
	last := r.lastIndex()
	for lo := r.unsent; lo <= last; {
		ents := r.batch(lo, last, func(s *slot) bool { return !s.chosen })
		if len(ents) == 0 {
			break
		}
		lo = ents[len(ents)-1].Index + 1
		for i, p := range r.peers {
			if i != r.self {
				r.send(p, &Msg{Type: MsgAccept, Ballot: r.ballot, Commit: r.commit, Entries: ents})
			}
		}
	}
	r.unsent = last + 1
}

// bcastHeartbeat sends every peer a heartbeat with the commit index and
// read round, resends unchosen slots that waited AcceptRetryTicks to
// acceptors that did not accept them, and catches up lagging learners.
func (r *Replica) bcastHeartbeat() {
	r.heartbeatDue, r.readRoundOpen = false, false
	for i, p := range r.peers {
		if i != r.self {
			r.send(p, &Msg{Type: MsgHeartbeat, Ballot: r.ballot, Commit: r.commit, ReadSeq: r.readSeq})
		}
	}
	retryBefore := r.now - int64(r.cfg.AcceptRetryTicks)
	hi := min(r.unsent-1, r.lastIndex())
	for pos, p := range r.peers {
		if pos == r.self {
			continue
		}
		bit := uint64(1) << uint(pos)
		want := func(s *slot) bool { return !s.chosen && s.acks&bit == 0 && s.sentAt <= retryBefore }
		for lo := r.commit + 1; lo <= hi; {
			ents := r.batch(lo, hi, want)
			if len(ents) == 0 {
				break
			}
			lo = ents[len(ents)-1].Index + 1
			r.send(p, &Msg{Type: MsgAccept, Ballot: r.ballot, Commit: r.commit, Entries: ents})
		}
	}
	for i := r.commit + 1; i <= hi; i++ {
		if s := r.at(i); !s.chosen && s.sentAt <= retryBefore {
			s.sentAt = r.now
		}
	}
	for pos := range r.peers {
		if pos != r.self {
			r.maybeSendLearn(pos, r.learnBelow)
		}
	}
	r.learnBelow = r.commit
}

// ---- Reads ----

// ReadIndex implements consensus.Replica: the read barrier. On the leader,
// a read waits until the commit index covers every slot phase 1
// recovered, takes the commit index, and is confirmed once a majority
// acknowledged a heartbeat sent after the request at the leader's ballot —
// which an acceptor does only if it has promised no higher ballot (see the
// package doc for why that makes the read linearizable). ctx is returned
// unchanged.
func (r *Replica) ReadIndex(ctx []byte) error {
	if r.role != consensus.RoleLeader {
		return &consensus.NotLeaderError{Leader: r.leader}
	}
	if r.cfg.bug == bugReadWithoutBarrier {
		r.reads = append(r.reads, consensus.ReadState{Index: r.commit, Context: ctx})
		return nil
	}
	if len(r.pendingReads) >= ReadsPendingMax {
		return ErrReadDropped
	}
	if r.commit < r.recovered {
		r.pendingReads = append(r.pendingReads, pendingRead{ctx: ctx})
		return nil
	}
	r.pendingReads = append(r.pendingReads, pendingRead{index: r.commit, seq: r.nextReadRound(), ctx: ctx})
	r.resolveReads()
	return nil
}

// nextReadRound returns the round the next heartbeat carries; reads issued
// before it goes out share it.
func (r *Replica) nextReadRound() uint64 {
	if !r.readRoundOpen {
		r.readSeq++
		r.readRoundOpen = true
	}
	return r.readSeq
}

func (r *Replica) startWaitingReads() {
	if r.role != consensus.RoleLeader || len(r.pendingReads) == 0 || r.pendingReads[0].seq != 0 || r.commit < r.recovered {
		return
	}
	seq := r.nextReadRound()
	for i := range r.pendingReads {
		pr := &r.pendingReads[i]
		if pr.seq != 0 {
			break
		}
		pr.index, pr.seq = r.commit, seq
	}
	r.resolveReads()
}

func (r *Replica) resolveReads() {
	if len(r.pendingReads) == 0 || r.pendingReads[0].seq == 0 {
		return
	}
	var buf [PeersMax]uint64
	vals := buf[:len(r.prs)]
	for i := range r.prs {
		vals[i] = r.prs[i].readAck
	}
	vals[r.self] = r.readSeq
	slices.Sort(vals)
	acked := vals[len(vals)-r.quorum()]
	n := 0
	for n < len(r.pendingReads) {
		pr := &r.pendingReads[n]
		if pr.seq == 0 || pr.seq > acked {
			break
		}
		r.reads = append(r.reads, consensus.ReadState{Index: pr.index, Context: pr.ctx})
		n++
	}
	if n > 0 {
		rest := copy(r.pendingReads, r.pendingReads[n:])
		clear(r.pendingReads[rest:])
		r.pendingReads = r.pendingReads[:rest]
	}
}

// ---- Output ----

func (r *Replica) send(to consensus.NodeID, m *Msg) {
	r.msgs = append(r.msgs, consensus.Message{From: r.id, To: to, Payload: m})
}

func (r *Replica) hardState() HardState {
	return HardState{Promised: r.promised, Tried: r.tried, Commit: r.commit}
}

// Ready implements consensus.Replica. Everything it returns is handed over
// for good and never modified.
func (r *Replica) Ready() consensus.Ready {
	if r.role == consensus.RoleLeader {
		if r.unsent <= r.lastIndex() {
			r.flushAccepts()
		}
		if r.heartbeatDue || r.readRoundOpen {
			r.bcastHeartbeat()
		}
	}
	r.sendSnapshots()
	var rd consensus.Ready
	if r.checkpointDue {
		// The checkpoint holds the whole durable state, so it supersedes
		// the records buffered since the last Ready.
		r.checkpointDue = false
		r.accBuf, r.learnBuf, r.recs = nil, nil, nil
		hs := r.hardState()
		rd.Persist = []consensus.Record{r.checkpoint(hs)}
		r.persisted = hs
	} else {
		r.flushAcceptRecord()
		if len(r.learnBuf) > 0 {
			r.recs = append(r.recs, Learn{Entries: r.learnBuf})
			r.learnBuf = nil
		}
		if hs := r.hardState(); hs != r.persisted {
			// A change of the commit index alone needs no sync before the
			// messages go out: nothing acknowledges it (peers learn it as
			// a fact, the leader re-reads it from every reply), and a
			// restarted replica learns the slots as chosen again.
			rd.SyncOptional = len(r.recs) == 0 && hs.Promised == r.persisted.Promised && hs.Tried == r.persisted.Tried
			r.recs = append(r.recs, hs)
			r.persisted = hs
		}
		if len(r.recs) > 0 {
			rd.Persist, r.recs = r.recs, nil
		}
	}
	if len(r.msgs) > 0 {
		rd.Messages, r.msgs = r.msgs, nil
	}
	if r.emitted < r.commit {
		ents := make([]consensus.Entry, 0, r.commit-r.emitted)
		for i := r.emitted + 1; i <= r.commit; i++ {
			ents = append(ents, r.at(i).entry)
		}
		rd.Committed = ents
		r.emitted = r.commit
	}
	if len(r.reads) > 0 {
		rd.Reads, r.reads = r.reads, nil
	}
	rd.Restore, r.restore = r.restore, nil
	rd.SnapshotWanted, r.snapWanted = r.snapWanted, false
	return rd
}

// Advance implements consensus.Replica.
func (r *Replica) Advance(rd consensus.Ready) {
	if rd.Restore != nil {
		r.restoring = false
		r.applied = max(r.applied, rd.Restore.Index)
	}
	for i := range rd.Committed {
		e := &rd.Committed[i]
		if e.Index <= r.applied {
			continue
		}
		r.applied = e.Index
		r.sinceSnapEntries++
		r.sinceSnapBytes += e.Size()
	}
	if r.cfg.Snapshots != nil && r.snapshotThresholdReached() {
		r.snapWanted = true
		r.sinceSnapEntries, r.sinceSnapBytes = 0, 0
	}
}

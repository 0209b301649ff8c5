package raft

import (
	"errors"
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// Raft is one Raft replica: a deterministic state machine driven by Tick,
// Step, Propose and ReadIndex, whose output comes out of Ready. It
// implements consensus.Replica and, like every replica, is not safe for
// concurrent use.
type Raft struct {
	cfg    Config
	id     consensus.NodeID
	peers  []consensus.NodeID // a private copy of cfg.Peers
	self   int                // position of id in peers
	logger consensus.Logger

	// Durable state (emitted as HardState).
	term uint64
	vote consensus.NodeID

	role   consensus.Role
	leader consensus.NodeID
	step   func(r *Raft, pos int, m *Msg)

	log raftLog

	// prs is the leader's view of every voter, indexed like peers. It is
	// allocated once and reset on each election win.
	prs []progress
	// votes holds the answers of the current (pre-)election, indexed like
	// peers: 0 none yet, 1 granted, -1 refused.
	votes []int8

	electionElapsed  int
	heartbeatElapsed int
	// electionTimeout is the current randomized timeout, in [E, 2E).
	electionTimeout int

	// Output bookkeeping.
	msgs        []consensus.Message
	msgsCapHint int
	// persisted is the last HardState emitted in Ready.Persist.
	persisted HardState
	// unstable is the first log index not yet emitted in Ready.Persist.
	// Invariant: unstable <= log.lastIndex()+1.
	unstable uint64
	// emitted is the last index handed out in Ready.Committed; applied the
	// last one the host has advanced past. applied <= emitted <= commit.
	emitted uint64
	applied uint64
	reads   []consensus.ReadState

	// Leader-only state.
	sendPending   bool // some follower may have appends to send
	commitBcast   bool // commit advanced: tell followers even without entries
	heartbeatDue  bool // the heartbeat timer fired: send at the next Ready
	readRoundOpen bool // readSeq is assigned to reads but not yet sent
	readSeq       uint64
	// pendingReads are unconfirmed reads in request order. Those with seq 0
	// (always a prefix) wait for the leader's first commit in its term.
	pendingReads []pendingRead

	// Snapshots (only with cfg.Snapshots).
	//
	// snap is the snapshot the log builds on: the last one passed to
	// Compact, received from a leader, or named by the checkpoint New
	// replayed. Index 0: none.
	// Invariant: log.offset <= snap.Index <= emitted.
	snap consensus.SnapshotMeta
	// checkpointDue makes the next Ready persist a Checkpoint (after
	// Compact, or after installing a received snapshot).
	checkpointDue bool
	// restore is the received snapshot the next Ready hands out in
	// Ready.Restore. restoring is set from when it was received until the
	// Advance of that Ready: meanwhile the store holds it uninstalled, so
	// no new transfer may start.
	restore   *consensus.SnapshotMeta
	restoring bool
	// snapWanted makes the next Ready set SnapshotWanted.
	snapWanted bool
	// sinceSnapEntries and sinceSnapBytes count what was applied since the
	// last snapshot or the last SnapshotWanted, against the thresholds.
	sinceSnapEntries int
	sinceSnapBytes   int
	// recv is a follower's incoming snapshot transfer.
	recv snapRecv
}

// snapRecv is a follower's transfer in progress: the chunks of meta up to
// offset next came from leader from in term term. A chunk continues it only
// if it comes from the same leader in the same term (snapshots of the same
// index taken by different replicas may differ byte for byte).
type snapRecv struct {
	active bool
	meta   consensus.SnapshotMeta
	from   consensus.NodeID
	term   uint64
	next   int64
}

type pendingRead struct {
	index uint64
	seq   uint64
	ctx   []byte
}

var (
	_ consensus.Replica   = (*Raft)(nil)
	_ consensus.Compactor = (*Raft)(nil)
)

// New returns a replica configured by cfg. durable is every record the
// replica ever emitted in Ready.Persist, in order (nil for a new replica),
// or any suffix of them that starts with a Checkpoint: New replays from the
// newest Checkpoint in durable (ignoring the records before it) and rebuilds
// term, vote, commit index and log. A restarted replica starts as a
// follower. Without a checkpoint it re-emits its committed entries from
// index 1. With one, its applied index starts at the checkpoint's snapshot
// index, and it re-emits committed entries from the one after: the host
// must first restore its state machine from that snapshot, which
// cfg.Snapshots must hold (New fails if its newest snapshot is older).
func New(cfg Config, durable []consensus.Record) (*Raft, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Raft{
		cfg:    cfg,
		id:     cfg.ID,
		peers:  slices.Clone(cfg.Peers),
		logger: cfg.Logger,
		log:    newLog(),
	}
	if r.logger == nil {
		r.logger = consensus.DiscardLogger
	}
	r.self = slices.Index(r.peers, r.id)
	r.prs = make([]progress, len(r.peers))
	r.votes = make([]int8, len(r.peers))

	start := 0
	for i := len(durable) - 1; i >= 0; i-- {
		if isCheckpoint(durable[i]) {
			start = i
			break
		}
	}
	var hs HardState
	for i := start; i < len(durable); i++ {
		var err error
		switch rec := durable[i].(type) {
		case Checkpoint:
			err = r.replayCheckpoint(&rec, i == start)
			hs = rec.HardState
		case *Checkpoint:
			err = r.replayCheckpoint(rec, i == start)
			hs = rec.HardState
		case HardState:
			err = checkHardState(hs, rec)
			hs = rec
		case *HardState:
			err = checkHardState(hs, *rec)
			hs = *rec
		case Append:
			err = r.replayAppend(rec)
		case *Append:
			err = r.replayAppend(*rec)
		default:
			err = fmt.Errorf("unknown record type %T", rec)
		}
		if err != nil {
			return nil, fmt.Errorf("raft: node %d: durable record %d: %w", r.id, i, err)
		}
	}
	last := r.log.lastIndex()
	if hs.Commit > last {
		return nil, fmt.Errorf("raft: node %d: durable commit index %d is beyond the durable log (last index %d)", r.id, hs.Commit, last)
	}
	if lt := r.log.lastTerm(); lt > hs.Term {
		return nil, fmt.Errorf("raft: node %d: durable log ends in term %d, after the durable term %d", r.id, lt, hs.Term)
	}
	if hs.Commit < r.snap.Index {
		return nil, fmt.Errorf("raft: node %d: durable commit index %d is below the snapshot index %d", r.id, hs.Commit, r.snap.Index)
	}
	if r.snap.Index > 0 {
		if cfg.Snapshots == nil {
			return nil, fmt.Errorf("raft: node %d: the durable log starts after snapshot %d (term %d), but Config.Snapshots is nil: the snapshot the log depends on is missing", r.id, r.snap.Index, r.snap.Term)
		}
		newest, ok := cfg.Snapshots.Newest()
		if !ok || newest.Index < r.snap.Index {
			have := "none"
			if ok {
				have = fmt.Sprintf("the newest is at index %d", newest.Index)
			}
			return nil, fmt.Errorf("raft: node %d: the durable log starts after snapshot %d (term %d), but the snapshot store holds no such snapshot (%s): the snapshot the log depends on is missing", r.id, r.snap.Index, r.snap.Term, have)
		}
	}
	r.applied, r.emitted = r.snap.Index, r.snap.Index
	r.term, r.vote = hs.Term, hs.Vote
	r.log.committed = hs.Commit
	r.persisted = hs
	r.unstable = last + 1
	r.becomeFollower(r.term, consensus.None)
	if len(durable) > 0 {
		if r.snap.Index > 0 {
			r.logger.Infof("raft %d: restarted at term %d, vote %d, commit %d, last index %d, from snapshot %d/%d (log after %d)", r.id, r.term, r.vote, hs.Commit, last, r.snap.Index, r.snap.Term, r.log.offset)
		} else {
			r.logger.Infof("raft %d: restarted at term %d, vote %d, commit %d, last index %d", r.id, r.term, r.vote, hs.Commit, last)
		}
	}
	return r, nil
}

func checkHardState(prev, hs HardState) error {
	if hs.Term < prev.Term {
		return fmt.Errorf("HardState term went back from %d to %d", prev.Term, hs.Term)
	}
	if hs.Term == prev.Term && prev.Vote != consensus.None && hs.Vote != prev.Vote {
		return fmt.Errorf("HardState vote changed from %d to %d within term %d", prev.Vote, hs.Vote, hs.Term)
	}
	return nil
}

func isCheckpoint(rec consensus.Record) bool {
	switch rec.(type) {
	case Checkpoint, *Checkpoint:
		return true
	}
	return false
}

// replayCheckpoint rebuilds the log from a Checkpoint during New. It is
// always the first record replayed.
func (r *Raft) replayCheckpoint(cp *Checkpoint, first bool) error {
	if !first {
		panic("raft: a checkpoint replayed after another record")
	}
	if err := cp.validate(); err != nil {
		return err
	}
	r.log.entries = make([]consensus.Entry, 1, 1+len(cp.Entries)+64)
	r.log.entries[0] = consensus.Entry{Index: cp.LogIndex, Term: cp.LogTerm}
	r.log.entries = append(r.log.entries, cp.Entries...)
	r.log.offset = cp.LogIndex
	r.snap = cloneMeta(cp.Snapshot)
	return nil
}

func cloneMeta(m consensus.SnapshotMeta) consensus.SnapshotMeta {
	m.Voters = slices.Clip(slices.Clone(m.Voters))
	return m
}

// replayAppend applies an Append record during New. Nothing has been handed
// out yet, so it may overwrite the log's array in place.
func (r *Raft) replayAppend(a Append) error {
	if len(a.Entries) == 0 {
		return errors.New("Append record without entries")
	}
	last := r.log.lastIndex()
	if a.Index <= r.log.offset || a.Index > last+1 {
		return fmt.Errorf("Append record at index %d does not attach to the log (%d..%d)", a.Index, r.log.offset+1, last)
	}
	prevTerm := r.log.mustTerm(a.Index - 1)
	for i := range a.Entries {
		e := &a.Entries[i]
		if e.Index != a.Index+uint64(i) {
			return fmt.Errorf("Append record at index %d holds entry %d at position %d", a.Index, e.Index, i)
		}
		if e.Term < prevTerm {
			return fmt.Errorf("Append record entry %d has term %d, below the previous entry's term %d", e.Index, e.Term, prevTerm)
		}
		prevTerm = e.Term
	}
	r.log.entries = append(r.log.entries[:a.Index-r.log.offset], a.Entries...)
	return nil
}

// Entry returns the log entry at index, if the log holds it. The entry must
// not be modified.
func (r *Raft) Entry(index uint64) (consensus.Entry, bool) {
	if index <= r.log.offset || index > r.log.lastIndex() {
		return consensus.Entry{}, false
	}
	return *r.log.at(index), true
}

// Status implements consensus.Replica.
func (r *Raft) Status() consensus.Status {
	st := consensus.Status{
		ID:        r.id,
		Role:      r.role,
		Term:      r.term,
		Leader:    r.leader,
		Commit:    r.log.committed,
		Applied:   r.applied,
		LastIndex: r.log.lastIndex(),
	}
	if r.role == consensus.RoleLeader {
		st.Progress = make(map[consensus.NodeID]consensus.Progress, len(r.peers))
		for i, id := range r.peers {
			pr := &r.prs[i]
			st.Progress[id] = consensus.Progress{Match: pr.match, Next: pr.next, State: pr.state.String()}
		}
	}
	return st
}

// ---- Time ----

// Tick implements consensus.Replica.
func (r *Raft) Tick() {
	if r.role == consensus.RoleLeader {
		r.tickLeader()
		return
	}
	r.electionElapsed++
	if r.electionElapsed >= r.electionTimeout {
		r.hup()
	}
}

func (r *Raft) tickLeader() {
	r.heartbeatElapsed++
	r.electionElapsed++
	if r.electionElapsed >= r.cfg.ElectionTimeoutTicks {
		r.electionElapsed = 0
		if r.cfg.CheckQuorum {
			if !r.quorumActive() {
				r.logger.Infof("raft %d: stepping down at term %d: no quorum heard within the election timeout", r.id, r.term)
				r.becomeFollower(r.term, consensus.None)
				return
			}
		}
	}
	if r.heartbeatElapsed >= r.cfg.HeartbeatTicks {
		r.heartbeatElapsed = 0
		// Sent at the next Ready: several ticks between Readys send one.
		r.heartbeatDue = true
	}
	for i := range r.prs {
		if i != r.self && r.prs[i].state == stateSnapshot {
			r.tickSnapshot(i)
		}
	}
}

// quorumActive reports whether a majority (counting the leader) answered
// since the last check, and starts a new check period.
func (r *Raft) quorumActive() bool {
	active := 0
	for i := range r.prs {
		if i == r.self || r.prs[i].recentActive {
			active++
		}
		r.prs[i].recentActive = false
	}
	return active >= consensus.Majority(len(r.peers))
}

func (r *Raft) resetTimers() {
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.electionTimeout = r.cfg.ElectionTimeoutTicks + r.cfg.Rand.IntN(r.cfg.ElectionTimeoutTicks)
}

// inLease reports whether this replica believes a leader is alive: it leads,
// or it heard from the leader within the base election timeout. A replica in
// lease ignores (pre-)vote requests for higher terms (leader stickiness,
// dissertation §9.6).
//
// Stickiness is sound only with CheckQuorum: it is check-quorum that makes a
// leader which lost its majority step down (and so stop renewing its
// followers' leases). Without it, a leader that can still send to some
// followers but hears from no one keeps those followers in lease forever,
// and they refuse the votes the connected majority needs: the cluster can
// never elect again (etcd gates its lease on checkQuorum for this reason).
func (r *Raft) inLease() bool {
	if !r.cfg.CheckQuorum {
		return false
	}
	switch r.role {
	case consensus.RoleLeader:
		return true
	case consensus.RoleFollower:
		return r.leader != consensus.None && r.electionElapsed < r.cfg.ElectionTimeoutTicks
	}
	return false
}

// ---- Role changes ----

func (r *Raft) becomeFollower(term uint64, leader consensus.NodeID) {
	if term < r.term {
		panic(fmt.Sprintf("raft %d: term going back from %d to %d", r.id, r.term, term))
	}
	if term > r.term {
		r.term = term
		r.vote = consensus.None
	}
	if r.role != consensus.RoleFollower || r.leader != leader {
		r.logger.Infof("raft %d: became follower at term %d, leader %d", r.id, r.term, leader)
	}
	r.role = consensus.RoleFollower
	r.leader = leader
	r.step = stepFollower
	r.resetTimers()
	r.dropLeaderState()
}

func (r *Raft) dropLeaderState() {
	r.sendPending = false
	r.commitBcast = false
	r.heartbeatDue = false
	r.readRoundOpen = false
	clear(r.pendingReads)
	r.pendingReads = r.pendingReads[:0]
}

func (r *Raft) becomePreCandidate() {
	r.role = consensus.RolePreCandidate
	r.leader = consensus.None
	r.step = stepCandidate
	r.resetTimers()
	r.dropLeaderState()
	r.logger.Infof("raft %d: became pre-candidate at term %d", r.id, r.term)
}

func (r *Raft) becomeCandidate() {
	r.term++
	r.vote = r.id
	r.role = consensus.RoleCandidate
	r.leader = consensus.None
	r.step = stepCandidate
	r.resetTimers()
	r.dropLeaderState()
	r.logger.Infof("raft %d: became candidate at term %d", r.id, r.term)
}

func (r *Raft) becomeLeader() {
	r.role = consensus.RoleLeader
	r.leader = r.id
	r.step = stepLeader
	r.resetTimers()
	r.dropLeaderState()
	last := r.log.lastIndex()
	for i := range r.prs {
		r.prs[i].reset(last+1, r.cfg.InflightMsgsMax)
	}
	me := &r.prs[r.self]
	me.match, me.state, me.recentActive = last, stateReplicate, true
	r.logger.Infof("raft %d: became leader at term %d", r.id, r.term)
	// A no-op in the new term lets the leader commit (and so learn the
	// commit index of) everything before it (Raft §5.4.2, §6.4).
	r.appendEntry(consensus.Entry{Type: consensus.EntryNoOp})
}

// hup starts an election, preceded by a pre-election when PreVote is on.
func (r *Raft) hup() {
	if r.role == consensus.RoleLeader {
		return
	}
	if r.cfg.PreVote {
		r.becomePreCandidate()
		r.requestVotes(MsgPreVote, r.term+1)
		return
	}
	r.becomeCandidate()
	r.requestVotes(MsgVote, r.term)
}

func (r *Raft) requestVotes(t MsgType, term uint64) {
	clear(r.votes)
	if r.poll(r.self, true) == consensus.VoteWon {
		r.electionWon(t)
		return
	}
	last, lastTerm := r.log.lastIndex(), r.log.lastTerm()
	for i, id := range r.peers {
		if i != r.self {
			r.send(id, &Msg{Type: t, Term: term, Index: last, LogTerm: lastTerm})
		}
	}
}

func (r *Raft) electionWon(t MsgType) {
	if t == MsgPreVote {
		r.becomeCandidate()
		r.requestVotes(MsgVote, r.term)
		return
	}
	r.becomeLeader()
}

// poll records one voter's answer, once per election, and counts.
func (r *Raft) poll(pos int, granted bool) consensus.VoteResult {
	if r.votes[pos] == 0 {
		if granted {
			r.votes[pos] = 1
		} else {
			r.votes[pos] = -1
		}
	}
	yes, no := 0, 0
	for _, v := range r.votes {
		switch v {
		case 1:
			yes++
		case -1:
			no++
		}
	}
	q := consensus.Majority(len(r.peers))
	switch {
	case yes >= q:
		return consensus.VoteWon
	case no > len(r.peers)-q:
		return consensus.VoteLost
	}
	return consensus.VotePending
}

// ---- Messages in ----

// Step implements consensus.Replica. It returns an error only for a message
// that is not a Raft message (or has an unknown type), is not addressed to
// this replica, or comes from a node that is not a peer.
func (r *Raft) Step(msg consensus.Message) error {
	m, ok := msg.Payload.(*Msg)
	if !ok || m == nil {
		return fmt.Errorf("raft %d: cannot step a %T payload", r.id, msg.Payload)
	}
	if m.Type < MsgPreVote || m.Type > msgTypeLast {
		// Refuse it before looking at its term: an unknown message must not
		// move this replica to a later term.
		return fmt.Errorf("raft %d: unknown message type %v from %d", r.id, m.Type, msg.From)
	}
	if msg.To != r.id {
		return fmt.Errorf("raft %d: message addressed to %d: %v", r.id, msg.To, m)
	}
	pos := r.pos(msg.From)
	if pos < 0 || pos == r.self {
		return fmt.Errorf("raft %d: message from %d, which is not a peer: %v", r.id, msg.From, m)
	}
	switch {
	case m.Term > r.term:
		switch m.Type {
		case MsgPreVote:
			if r.inLease() {
				return nil // stickiness: a live leader exists
			}
			// A pre-vote never changes terms.
		case MsgVote:
			if r.inLease() {
				return nil
			}
			r.becomeFollower(m.Term, consensus.None)
		case MsgPreVoteResp:
			if !m.Reject {
				break // a grant carries the term we would campaign in
			}
			r.becomeFollower(m.Term, consensus.None)
		case MsgApp, MsgHeartbeat, MsgSnap:
			r.becomeFollower(m.Term, msg.From)
		default:
			r.becomeFollower(m.Term, consensus.None)
		}
	case m.Term < r.term:
		switch m.Type {
		case MsgApp, MsgHeartbeat:
			// A leader of an older term, or one delayed in the network. Tell
			// it our term: if it is still leading it steps down. Without this
			// a node whose term rose while it was partitioned could never
			// rejoin, since sticky peers ignore its vote requests.
			r.send(msg.From, &Msg{Type: MsgAppResp, Term: r.term, Reject: true, Index: m.Index})
		case MsgPreVote:
			r.send(msg.From, &Msg{Type: MsgPreVoteResp, Term: r.term, Reject: true})
		case MsgVote:
			r.send(msg.From, &Msg{Type: MsgVoteResp, Term: r.term, Reject: true})
		case MsgSnap:
			r.send(msg.From, &Msg{Type: MsgSnapResp, Term: r.term, Reject: true, Index: m.Snapshot.Index})
		}
		return nil
	}
	r.step(r, pos, m)
	return nil
}

func (r *Raft) pos(id consensus.NodeID) int {
	for i, p := range r.peers {
		if p == id {
			return i
		}
	}
	return -1
}

func stepFollower(r *Raft, pos int, m *Msg) {
	switch m.Type {
	case MsgApp:
		r.electionElapsed = 0
		r.leader = r.peers[pos]
		r.handleAppend(pos, m)
	case MsgHeartbeat:
		r.electionElapsed = 0
		r.leader = r.peers[pos]
		r.handleHeartbeat(pos, m)
	case MsgSnap:
		r.electionElapsed = 0
		r.leader = r.peers[pos]
		r.handleSnap(pos, m)
	case MsgPreVote, MsgVote:
		r.handleVoteRequest(pos, m)
	}
}

func stepCandidate(r *Raft, pos int, m *Msg) {
	switch m.Type {
	case MsgApp, MsgHeartbeat, MsgSnap:
		// A leader exists in our term (or a later one).
		r.becomeFollower(m.Term, r.peers[pos])
		stepFollower(r, pos, m)
	case MsgPreVote, MsgVote:
		r.handleVoteRequest(pos, m)
	case MsgPreVoteResp:
		if r.role != consensus.RolePreCandidate || (!m.Reject && m.Term != r.term+1) {
			return // a stale answer
		}
		r.countVote(MsgPreVote, pos, !m.Reject)
	case MsgVoteResp:
		if r.role != consensus.RoleCandidate {
			return
		}
		r.countVote(MsgVote, pos, !m.Reject)
	}
}

func (r *Raft) countVote(t MsgType, pos int, granted bool) {
	switch r.poll(pos, granted) {
	case consensus.VoteWon:
		r.electionWon(t)
	case consensus.VoteLost:
		r.logger.Infof("raft %d: lost the %v election at term %d", r.id, t, r.term)
		r.becomeFollower(r.term, consensus.None)
	}
}

func stepLeader(r *Raft, pos int, m *Msg) {
	switch m.Type {
	case MsgAppResp:
		r.handleAppResp(pos, m)
	case MsgHeartbeatResp:
		r.handleHeartbeatResp(pos, m)
	case MsgSnapResp:
		r.handleSnapResp(pos, m)
	case MsgPreVote, MsgVote:
		r.handleVoteRequest(pos, m)
	case MsgApp, MsgHeartbeat, MsgSnap:
		r.logger.Warnf("raft %d: leader at term %d got %v from %d, another leader of the same term", r.id, r.term, m.Type, r.peers[pos])
	}
}

// handleVoteRequest answers a vote or pre-vote for m.Term >= r.term.
func (r *Raft) handleVoteRequest(pos int, m *Msg) {
	from := r.peers[pos]
	resp := MsgVoteResp
	if m.Type == MsgPreVote {
		resp = MsgPreVoteResp
	}
	// We may vote for a candidate we already voted for (a retransmission),
	// anyone if we have neither voted nor know a leader in this term, and
	// pre-vote for any later term (a pre-vote binds nothing).
	canVote := r.vote == from ||
		(r.vote == consensus.None && r.leader == consensus.None) ||
		(m.Type == MsgPreVote && m.Term > r.term)
	upToDate := r.cfg.bug == bugVoteWithoutLogCheck || r.log.isUpToDate(m.Index, m.LogTerm)
	if !canVote || !upToDate {
		r.send(from, &Msg{Type: resp, Term: r.term, Reject: true})
		return
	}
	if m.Type == MsgVote {
		r.vote = from
		r.electionElapsed = 0
	}
	r.send(from, &Msg{Type: resp, Term: m.Term})
}

// handleAppend is a follower receiving entries from the leader of its term.
func (r *Raft) handleAppend(pos int, m *Msg) {
	from := r.peers[pos]
	if m.Index < r.log.committed {
		// Everything up to our commit index matches the leader's log.
		r.send(from, &Msg{Type: MsgAppResp, Term: r.term, Index: r.log.committed})
		return
	}
	if !r.log.matchTerm(m.Index, m.LogTerm) {
		hintIndex, hintTerm := r.log.findConflictByTerm(m.Index, m.LogTerm)
		r.send(from, &Msg{Type: MsgAppResp, Term: r.term, Reject: true, Index: m.Index, HintIndex: hintIndex, HintTerm: hintTerm})
		return
	}
	lastNew := m.Index + uint64(len(m.Entries))
	if len(m.Entries) > 0 {
		if ci := r.log.findConflict(m.Entries); ci != 0 {
			// Entries from ci on are new or replace a conflicting suffix;
			// a duplicate of what we hold changes nothing.
			r.log.truncateAndAppend(m.Entries[ci-m.Index-1:])
			if ci < r.unstable {
				r.unstable = ci
			}
		}
	}
	r.log.commitTo(min(m.Commit, lastNew))
	r.send(from, &Msg{Type: MsgAppResp, Term: r.term, Index: lastNew})
}

func (r *Raft) handleHeartbeat(pos int, m *Msg) {
	// The leader sends min(match, commit), which our log holds.
	r.log.commitTo(m.Commit)
	r.send(r.peers[pos], &Msg{Type: MsgHeartbeatResp, Term: r.term, ReadSeq: m.ReadSeq})
}

func (r *Raft) handleAppResp(pos int, m *Msg) {
	pr := &r.prs[pos]
	pr.recentActive = true
	if m.Reject {
		// The follower's hint is its last entry that might match; find our
		// last entry that might match it.
		hint, _ := r.log.findConflictByTerm(m.HintIndex, m.HintTerm)
		if pr.maybeBackOff(m.Index, hint) {
			r.sendPending = true
		}
		return
	}
	if m.Index > r.log.lastIndex() || !pr.maybeUpdate(m.Index) {
		return // old or duplicated
	}
	switch pr.state {
	case stateProbe:
		pr.becomeReplicate()
	case stateReplicate:
		pr.inflight.freeLE(m.Index)
	case stateSnapshot:
		// The follower installed a snapshot (or otherwise caught up): if
		// the log still holds what follows, replicate from there. If the
		// log was compacted past what it now has, it needs a newer one.
		switch {
		case pr.match >= r.log.offset:
			pr.becomeReplicate()
		case pr.match >= pr.snap.meta.Index:
			r.restartSnapshot(pos)
		}
	}
	if r.maybeCommit() {
		r.commitBcast = true
	}
	r.sendPending = true
}

func (r *Raft) handleHeartbeatResp(pos int, m *Msg) {
	pr := &r.prs[pos]
	pr.recentActive = true
	pr.probeSent = false
	if pr.state == stateReplicate && pr.inflight.full() {
		// The window may be stuck on lost messages; let one more through.
		pr.inflight.freeFirst()
	}
	if pr.match < r.log.lastIndex() {
		// The follower is behind. Send an append even if everything is
		// already "in flight": if those messages were lost, the follower
		// rejects this one and we fall back to probing.
		pr.sendEmpty = true
		r.sendPending = true
	}
	if m.ReadSeq > pr.readAck {
		pr.readAck = m.ReadSeq
		r.resolveReads()
	}
}

// ---- Leader: replication and commit ----

// Propose implements consensus.Replica. The command is retained, not
// copied: the caller must not modify cmd.Data or cmd.Keys afterwards.
func (r *Raft) Propose(cmd consensus.Command) error {
	e := consensus.Entry{Type: consensus.EntryNormal, Command: cmd}
	if n := e.Size(); n > r.cfg.EntryBytesMax {
		return fmt.Errorf("%w: %d bytes, EntryBytesMax is %d", ErrEntryTooLarge, n, r.cfg.EntryBytesMax)
	}
	if r.role != consensus.RoleLeader {
		return &consensus.NotLeaderError{Leader: r.leader}
	}
	if r.log.lastIndex()-r.log.committed >= uint64(r.cfg.ProposalsPendingMax) {
		return consensus.ErrProposalDropped
	}
	r.appendEntry(e)
	return nil
}

// appendEntry appends e to the leader's log in the current term. Appends go
// out at the next Ready, batched with whatever else was proposed until then.
func (r *Raft) appendEntry(e consensus.Entry) {
	e.Index = r.log.lastIndex() + 1
	e.Term = r.term
	r.log.append(e)
	me := &r.prs[r.self]
	me.match, me.next = e.Index, e.Index+1
	if r.maybeCommit() {
		r.commitBcast = true
	}
	r.sendPending = true
}

// maybeCommit advances the commit index to the highest index a majority
// holds, if that entry is from the current term: an older entry is
// committed only indirectly (Raft §5.4.2, Figure 8).
func (r *Raft) maybeCommit() bool {
	var buf [PeersMax]uint64
	vals := buf[:len(r.prs)]
	for i := range r.prs {
		vals[i] = r.prs[i].match
	}
	idx := quorumValue(vals)
	if idx <= r.log.committed {
		return false
	}
	if r.cfg.bug != bugCommitOldTerm && r.log.mustTerm(idx) != r.term {
		return false
	}
	r.log.commitTo(idx)
	r.startWaitingReads()
	return true
}

// quorumValue returns the largest v such that a majority of vals are >= v.
// It reorders vals.
func quorumValue(vals []uint64) uint64 {
	// Insertion sort: vals is a handful of voters.
	for i := 1; i < len(vals); i++ {
		for j := i; j > 0 && vals[j-1] > vals[j]; j-- {
			vals[j-1], vals[j] = vals[j], vals[j-1]
		}
	}
	return vals[len(vals)-consensus.Majority(len(vals))]
}

// flushAppends sends every follower what it is due. It runs in Ready, so
// all proposals since the last Ready share messages.
func (r *Raft) flushAppends() {
	bc := r.commitBcast
	r.sendPending, r.commitBcast = false, false
	for i := range r.prs {
		if i != r.self {
			pr := &r.prs[i]
			r.sendAppends(i, bc || pr.sendEmpty)
			pr.sendEmpty = false
		}
	}
}

// sendAppends sends append messages to the follower at pos: one in probe
// state, as many as the in-flight window allows in replicate state. With
// sendIfEmpty it sends one even without entries, to carry the commit index.
func (r *Raft) sendAppends(pos int, sendIfEmpty bool) {
	pr := &r.prs[pos]
	if pr.state != stateSnapshot && pr.next <= r.log.offset {
		// The entry before next is compacted away.
		r.startSnapshot(pos)
	}
	if pr.state == stateSnapshot {
		r.sendSnapChunks(pos)
		return
	}
	last := r.log.lastIndex()
	for !pr.paused() {
		if pr.next > last && !sendIfEmpty {
			return
		}
		sendIfEmpty = false
		prev := pr.next - 1
		m := &Msg{Type: MsgApp, Term: r.term, Index: prev, LogTerm: r.log.mustTerm(prev), Commit: r.log.committed}
		if pr.next <= last {
			m.Entries = r.batch(pr.next, last)
		}
		r.send(r.peers[pos], m)
		if pr.state == stateProbe {
			pr.probeSent = true
			return
		}
		n := len(m.Entries)
		if n == 0 {
			return
		}
		end := m.Entries[n-1].Index
		pr.next = end + 1
		pr.inflight.add(end)
	}
}

// batch returns entries from lo (<= last) within the message limits; at
// least one.
func (r *Raft) batch(lo, last uint64) []consensus.Entry {
	hi := lo + uint64(r.cfg.EntriesPerMsgMax) - 1
	if hi > last {
		hi = last
	}
	bytes := 0
	i := lo
	for ; i <= hi; i++ {
		bytes += r.log.at(i).Size()
		if bytes > r.cfg.MsgBytesMax && i > lo {
			break
		}
	}
	return r.log.slice(lo, i)
}

// bcastHeartbeat sends every follower a heartbeat carrying the current read
// round. It runs in Ready.
func (r *Raft) bcastHeartbeat() {
	r.heartbeatDue, r.readRoundOpen = false, false
	for i := range r.prs {
		if i == r.self {
			continue
		}
		commit := min(r.prs[i].match, r.log.committed)
		r.send(r.peers[i], &Msg{Type: MsgHeartbeat, Term: r.term, Commit: commit, ReadSeq: r.readSeq})
	}
}

// ---- Reads ----

// ReadIndex implements consensus.Replica. On the leader, the read waits for
// the leader's first commit in its term, takes the commit index at that
// point, and is confirmed once a majority acknowledged a heartbeat sent
// after it. A non-leader returns a *consensus.NotLeaderError. ctx is
// retained and returned unchanged in the ReadState.
func (r *Raft) ReadIndex(ctx []byte) error {
	if r.role != consensus.RoleLeader {
		return &consensus.NotLeaderError{Leader: r.leader}
	}
	if r.cfg.bug == bugReadWithoutQuorum {
		r.reads = append(r.reads, consensus.ReadState{Index: r.log.committed, Context: ctx})
		return nil
	}
	if len(r.pendingReads) >= ReadsPendingMax {
		return ErrReadDropped
	}
	if !r.committedInTerm() {
		r.pendingReads = append(r.pendingReads, pendingRead{ctx: ctx})
		return nil
	}
	r.pendingReads = append(r.pendingReads, pendingRead{index: r.log.committed, seq: r.nextReadRound(), ctx: ctx})
	r.resolveReads()
	return nil
}

func (r *Raft) committedInTerm() bool { return r.log.mustTerm(r.log.committed) == r.term }

// nextReadRound returns the read round that the next heartbeat will carry.
// Reads issued before that heartbeat goes out share it; a round that was
// already sent is never reused, since its acknowledgements may predate the
// read.
func (r *Raft) nextReadRound() uint64 {
	if !r.readRoundOpen {
		r.readSeq++
		r.readRoundOpen = true
	}
	return r.readSeq
}

// startWaitingReads gives the reads that waited for the leader's first
// commit in its term their index and read round.
func (r *Raft) startWaitingReads() {
	if len(r.pendingReads) == 0 || r.pendingReads[0].seq != 0 || !r.committedInTerm() {
		return
	}
	seq := r.nextReadRound()
	for i := range r.pendingReads {
		pr := &r.pendingReads[i]
		if pr.seq != 0 {
			break
		}
		pr.index, pr.seq = r.log.committed, seq
	}
	r.resolveReads()
}

// resolveReads confirms the reads whose round a majority acknowledged.
func (r *Raft) resolveReads() {
	if len(r.pendingReads) == 0 || r.pendingReads[0].seq == 0 {
		return
	}
	var buf [PeersMax]uint64
	vals := buf[:len(r.prs)]
	for i := range r.prs {
		vals[i] = r.prs[i].readAck
	}
	vals[r.self] = r.readSeq
	acked := quorumValue(vals)
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

func (r *Raft) send(to consensus.NodeID, m *Msg) {
	if r.msgs == nil {
		r.msgs = make([]consensus.Message, 0, max(r.msgsCapHint, 4))
	}
	r.msgs = append(r.msgs, consensus.Message{From: r.id, To: to, Payload: m})
}

func (r *Raft) hardState() HardState {
	return HardState{Term: r.term, Vote: r.vote, Commit: r.log.committed}
}

// Ready implements consensus.Replica. Everything it returns is handed over
// for good: Ready does not return it again, and never modifies it.
func (r *Raft) Ready() consensus.Ready {
	if r.role == consensus.RoleLeader {
		if r.heartbeatDue || r.readRoundOpen {
			r.bcastHeartbeat()
		}
		if r.sendPending {
			r.flushAppends()
		}
	}
	var rd consensus.Ready
	last := r.log.lastIndex()
	hs := r.hardState()
	if r.checkpointDue {
		r.checkpointDue = false
		cp := Checkpoint{Snapshot: r.snap, HardState: hs, LogIndex: r.log.offset, LogTerm: r.log.entries[0].Term}
		if last > r.log.offset {
			cp.Entries = r.log.slice(r.log.offset+1, last+1)
		}
		rd.Persist = []consensus.Record{cp}
		r.unstable = last + 1
		r.persisted = hs
	} else if r.unstable <= last || hs != r.persisted {
		// Only the commit index changed: nothing acknowledges it, and a
		// restarted node learns it again, so it need not be synced.
		rd.SyncOptional = r.unstable > last && hs.Term == r.persisted.Term && hs.Vote == r.persisted.Vote
		recs := make([]consensus.Record, 0, 2)
		if r.unstable <= last {
			recs = append(recs, Append{Index: r.unstable, Entries: r.log.slice(r.unstable, last+1)})
			r.unstable = last + 1
		}
		if hs != r.persisted {
			recs = append(recs, hs)
			r.persisted = hs
		}
		rd.Persist = recs
	}
	if len(r.msgs) > 0 {
		rd.Messages = r.msgs
		r.msgsCapHint = len(r.msgs)
		r.msgs = nil
	}
	if r.emitted < r.log.committed {
		rd.Committed = r.log.slice(r.emitted+1, r.log.committed+1)
		r.emitted = r.log.committed
	}
	if len(r.reads) > 0 {
		rd.Reads = r.reads
		r.reads = nil
	}
	rd.Restore, r.restore = r.restore, nil
	rd.SnapshotWanted, r.snapWanted = r.snapWanted, false
	return rd
}

// Advance implements consensus.Replica.
func (r *Raft) Advance(rd consensus.Ready) {
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

func (r *Raft) snapshotThresholdReached() bool {
	return (r.cfg.SnapshotEntries > 0 && r.sinceSnapEntries >= r.cfg.SnapshotEntries) ||
		(r.cfg.SnapshotBytes > 0 && r.sinceSnapBytes >= r.cfg.SnapshotBytes)
}

package epaxos

import (
	"slices"

	"github.com/synod-io/synod/consensus"
)

// suspicion is the recovery timer of one instance this replica waits for.
type suspicion struct{ ticks, limit int }

// recState is a recoverer's explicit-prepare state for one instance.
type recState struct {
	ballot  Ballot
	replies map[consensus.NodeID]*Msg // PrepareOK, this replica's own included
	// TryPreAccept phase: attrs are the attributes that may have been
	// fast-committed; holders the replicas known to hold them.
	trying  bool
	attrs   *Msg
	holders map[consensus.NodeID]bool
}

func (r *Replica) recoveryWait() int {
	t := r.cfg.RecoveryTimeoutTicks
	if r.cfg.Rand != nil {
		return t + r.cfg.Rand.IntN(t)
	}
	return t + int(uint64(r.id)%uint64(t))
}

// tickRecovery advances the recovery timers of every instance known here
// and not committed, and of every instance the executor waits for, except
// those this replica leads itself and is still driving. A timer that
// expires starts (or restarts, at a higher ballot) an explicit prepare.
func (r *Replica) tickRecovery() {
	if r.cfg.noRecovery || r.n() == 1 {
		return
	}
	ids := make([]InstanceID, 0, len(r.uncommitted))
	for id := range r.uncommitted {
		ids = append(ids, id)
	}
	for id := range r.exec.waiting {
		if r.insts[id] == nil && !r.executedTo.covers(id) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, InstanceID.Compare)
	for _, id := range ids {
		it := r.insts[id]
		if it != nil && (it.Status == StatusCommitted || it.lead != nil && !it.lead.recovered) {
			delete(r.suspect, id)
			continue
		}
		s := r.suspect[id]
		if s == nil {
			s = &suspicion{limit: r.recoveryWait()}
			r.suspect[id] = s
		}
		s.ticks++
		if _, blocking := r.exec.waiting[id]; blocking && s.ticks >= 2*r.cfg.RetryTicks && s.ticks%r.cfg.RetryTicks == 0 && s.ticks < s.limit {
			// The executor waits for it: perhaps it committed and the
			// Commit was lost (its leader restarted before resending);
			// ask, which is cheaper and faster than recovering it.
			for _, p := range r.peers {
				if p != r.id {
					r.send(p, &Msg{Type: MsgLearn, ID: id})
				}
			}
		}
		if s.ticks >= s.limit {
			s.ticks, s.limit = 0, r.recoveryWait()
			r.startRecovery(id)
		}
	}
}

// dropLead makes this replica stop driving an instance it no longer owns
// (it promised a higher ballot, or the instance committed elsewhere).
func (r *Replica) dropLead(it *inst) {
	ls := it.lead
	if ls == nil {
		return
	}
	if !ls.recovered && it.Status != StatusCommitted {
		r.inflight--
	}
	delete(r.active, it.ID)
	it.lead = nil
}

// dropStale drops the leader and recovery state of an instance whose
// promise moved past them.
func (r *Replica) dropStale(id InstanceID) {
	it := r.insts[id]
	if it == nil {
		return
	}
	if it.lead != nil && it.Status != StatusCommitted && it.lead.ballot != it.Promised {
		r.dropLead(it)
	}
	if it.rec != nil && (it.Status == StatusCommitted || it.rec.ballot != it.Promised) {
		it.rec = nil
	}
}

func (r *Replica) nack(to consensus.NodeID, it *inst) {
	r.send(to, &Msg{Type: MsgNack, Ballot: it.Promised, ID: it.ID})
}

// prepareOK is this replica's PrepareOK for it at ballot b: its status,
// attributes and the ballot they were ACCEPTED under. priorPromise is the
// ballot it had promised before promising b, which only the known-wrong
// variant bugRecoveryReportsPromised reports instead.
func (r *Replica) prepareOK(it *inst, b, priorPromise Ballot) *Msg {
	accepted := it.Accepted
	if r.cfg.bug == bugRecoveryReportsPromised {
		accepted = priorPromise
	}
	return &Msg{Type: MsgPrepareOK, Ballot: b, ID: it.ID, Status: it.Status, Accepted: accepted,
		NoOp: it.NoOp, Command: it.Command, Batched: it.Batched, Seq: it.Seq, Deps: slices.Clone(it.Deps), Changed: it.Changed}
}

// promise raises this replica's promise for it to b (durably).
func (r *Replica) promise(it *inst, b Ballot) {
	if it.Promised.Less(b) {
		it.Promised = b
		r.save(it)
	}
}

func (r *Replica) getOrNone(id InstanceID) *inst {
	it := r.insts[id]
	if it == nil {
		it = &inst{Instance: Instance{ID: id}}
		r.insts[id] = it
		r.uncommitted[id] = true
	}
	return it
}

// startRecovery runs explicit prepare for id at a ballot above every one
// seen: {round+1, self}, unique to this replica.
func (r *Replica) startRecovery(id InstanceID) {
	if r.insts[id] == nil && r.executedTo.covers(id) {
		return // executed here and compacted
	}
	it := r.getOrNone(id)
	if it.Status == StatusCommitted {
		return
	}
	b := Ballot{Round: max(it.Promised.Round, it.seenRound) + 1, Node: r.id}
	r.dropLead(it)
	prior := it.Promised
	r.promise(it, b)
	it.rec = &recState{ballot: b, replies: map[consensus.NodeID]*Msg{r.id: r.prepareOK(it, b, prior)}}
	r.cfg.Logger.Debugf("epaxos %d: recovering %v at ballot %v", r.id, id, b)
	r.broadcast(func() *Msg { return &Msg{Type: MsgPrepare, Ballot: b, ID: id} }, nil)
	r.decideRecovery(it)
}

func (r *Replica) onPrepare(from consensus.NodeID, m *Msg) {
	it := r.getOrNone(m.ID)
	if m.Ballot.Less(it.Promised) {
		r.nack(from, it)
		return
	}
	prior := it.Promised
	r.promise(it, m.Ballot) // durable before the reply
	r.send(from, r.prepareOK(it, m.Ballot, prior))
}

func (r *Replica) onNack(m *Msg) {
	it := r.insts[m.ID]
	if it == nil {
		return
	}
	it.seenRound = max(it.seenRound, m.Ballot.Round)
	if it.lead != nil && it.Status != StatusCommitted && it.lead.ballot.Less(m.Ballot) {
		r.dropLead(it)
	}
	if it.rec != nil && it.rec.ballot.Less(m.Ballot) {
		it.rec = nil
	}
}

func (r *Replica) onPrepareOK(from consensus.NodeID, m *Msg) {
	it := r.insts[m.ID]
	if it == nil || it.rec == nil || it.rec.trying || m.Ballot != it.rec.ballot || it.Promised != m.Ballot {
		return
	}
	if m.Status > StatusCommitted {
		return
	}
	if m.NoOp {
		m.Command, m.Batched = consensus.Command{}, nil
	}
	m.Deps = cleanDeps(m.ID, m.Deps)
	it.rec.replies[from] = m
	r.decideRecovery(it)
}

func sameAttrs(a, b *Msg) bool {
	return a.Seq == b.Seq && slices.Equal(a.Deps, b.Deps)
}

// decideRecovery applies the recovery decision once a majority answered
// the prepare (see the package doc for the cases and why each is safe).
func (r *Replica) decideRecovery(it *inst) {
	rs := it.rec
	n := r.n()
	if len(rs.replies) < consensus.Majority(n) {
		return
	}
	from := make([]consensus.NodeID, 0, len(rs.replies))
	for p := range rs.replies {
		from = append(from, p)
	}
	slices.Sort(from)
	// 1. Committed somewhere: commit that.
	for _, p := range from {
		if m := rs.replies[p]; m.Status == StatusCommitted {
			r.recoverCommit(it, m)
			return
		}
	}
	// 2. Accepted somewhere: the attributes of the highest ACCEPTED ballot
	// (not the highest promise: Sutra 2019).
	var best *Msg
	for _, p := range from {
		if m := rs.replies[p]; m.Status == StatusAccepted && (best == nil || best.Accepted.Less(m.Accepted)) {
			best = m
		}
	}
	if best != nil {
		r.recoverAccept(it, best.NoOp, best.commands(), best.Seq, best.Deps)
		return
	}
	// 3. Could a fast path have committed some attributes? Only replicas
	// other than the leader, pre-accepted at the initial ballot with the
	// leader's attributes unchanged, count (the leader's own pre-accept is
	// no evidence, and a replica that merged conflicts of its own was
	// never part of a fast quorum); replicas not heard from might hold
	// them too. All such replies carry the leader's original attributes,
	// so there is at most one candidate.
	leader := it.ID.Replica
	initial := Ballot{Node: leader}
	unknown := 0
	for _, p := range r.peers {
		if p != leader && rs.replies[p] == nil {
			unknown++
		}
	}
	var cand []*Msg
	for _, p := range from {
		m := rs.replies[p]
		if p == leader || m.Status != StatusPreAccepted || m.Accepted != initial || m.Changed {
			continue
		}
		if slices.ContainsFunc(cand, func(c *Msg) bool { return sameAttrs(c, m) }) {
			continue
		}
		count := 0
		for _, q := range from {
			o := rs.replies[q]
			if q != leader && o.Status == StatusPreAccepted && o.Accepted == initial && !o.Changed && sameAttrs(o, m) {
				count++
			}
		}
		if count+unknown >= FastQuorum(n)-1 {
			cand = append(cand, m)
		}
	}
	if len(cand) > 1 {
		return // ambiguous: wait for more replies (or the next attempt)
	}
	if len(cand) == 1 {
		r.startTry(it, cand[0], from)
		return
	}
	// 4. No fast commit was possible: phase 1 again with the union of what
	// was pre-accepted, then Accept (never fast at this ballot).
	r.recoverPhase1(it, from)
}

// recoverPhase1 runs PreAccept at the recovery ballot with the union of
// the pre-accepted replies, or, if nobody in the majority knows the
// command, Accept of a no-op.
func (r *Replica) recoverPhase1(it *inst, from []consensus.NodeID) {
	rs := it.rec
	var any *Msg
	var seq uint64
	var deps []InstanceID
	for _, p := range from {
		if m := rs.replies[p]; m.Status == StatusPreAccepted {
			any = m
			seq = max(seq, m.Seq)
			deps = unionDeps(deps, m.Deps)
		}
	}
	if any != nil {
		r.recoverPreAccept(it, any.commands(), seq, deps)
		return
	}
	// 5. Nobody in a majority knows the command: it never committed.
	r.recoverAccept(it, true, nil, 0, nil)
}

// becomeRecoverer gives it leader bookkeeping at the recovery ballot.
func (r *Replica) becomeRecoverer(it *inst, seq uint64, deps []InstanceID) *leaderState {
	it.rec = nil
	ls := &leaderState{ballot: it.Promised, recovered: true, origSeq: seq, origDeps: slices.Clone(deps),
		seq: seq, deps: slices.Clone(deps), replied: map[consensus.NodeID]bool{}}
	it.lead = ls
	r.active[it.ID] = true
	return ls
}

func (r *Replica) recoverCommit(it *inst, m *Msg) {
	r.cfg.Logger.Debugf("epaxos %d: %v: recovered committed %v", r.id, it.ID, m)
	r.becomeRecoverer(it, m.Seq, m.Deps)
	it.NoOp, it.Command, it.Batched = m.NoOp, m.Command, m.Batched
	r.commit(it, m.Seq, m.Deps)
}

// recoverAccept runs Accept at the recovery ballot for the instance's
// commands cmds (ignored for a no-op) with attributes seq and deps.
func (r *Replica) recoverAccept(it *inst, noop bool, cmds []consensus.Command, seq uint64, deps []InstanceID) {
	r.cfg.Logger.Debugf("epaxos %d: %v: recovery Accept at %v noop=%t seq=%d deps=%v", r.id, it.ID, it.Promised, noop, seq, formatDeps(deps))
	if noop {
		cmds = nil
	}
	in := it.Instance
	in.Status = StatusAccepted
	in.NoOp, in.Seq, in.Deps = noop, seq, slices.Clone(deps)
	in.Command, in.Batched = splitCommands(cmds)
	in.Accepted = in.Promised
	r.install(in)
	r.save(it)
	r.becomeRecoverer(it, seq, deps)
	r.sendAccept(it)
	r.decideAccept(it)
}

// recoverPreAccept runs PreAccept at the recovery ballot for the
// instance's commands cmds, with seq and deps merged with this replica's
// own conflicts.
func (r *Replica) recoverPreAccept(it *inst, cmds []consensus.Command, seq uint64, deps []InstanceID) {
	r.cfg.Logger.Debugf("epaxos %d: %v: recovery phase 1 at %v seq=%d deps=%v", r.id, it.ID, it.Promised, seq, formatDeps(deps))
	s2, d2 := r.attributes(it.ID, conflictKeys(cmds))
	seq = max(seq, s2)
	deps = unionDeps(deps, d2)
	in := it.Instance
	in.Status = StatusPreAccepted
	in.NoOp, in.Seq, in.Deps = false, seq, slices.Clone(deps)
	in.Command, in.Batched = splitCommands(cmds)
	in.Accepted = in.Promised
	r.install(in)
	r.save(it)
	r.becomeRecoverer(it, seq, deps)
	r.sendPreAccept(it)
	r.decidePreAccept(it, false)
}

// startTry runs TryPreAccept for attributes a that may have been
// fast-committed: every replica that holds them (pre-accepted, at the
// initial ballot, the leader included) is a holder; the others, this
// replica first, are asked to pre-accept them if that creates no conflict.
// A majority of holders makes a safe, and the only possible, choice.
func (r *Replica) startTry(it *inst, a *Msg, from []consensus.NodeID) {
	rs := it.rec
	r.cfg.Logger.Debugf("epaxos %d: %v: try %v seq=%d deps=%s", r.id, it.ID, rs.ballot, a.Seq, formatDeps(a.Deps))
	rs.trying = true
	rs.attrs = &Msg{Command: a.Command, Batched: slices.Clone(a.Batched), Seq: a.Seq, Deps: slices.Clone(a.Deps)}
	rs.holders = map[consensus.NodeID]bool{}
	initial := Ballot{Node: it.ID.Replica}
	for _, p := range from {
		if m := rs.replies[p]; m.Status == StatusPreAccepted && m.Accepted == initial && sameAttrs(m, a) {
			rs.holders[p] = true
		}
	}
	if !rs.holders[r.id] {
		ok, _, committed := r.tryLocal(it, rs.ballot, rs.attrs)
		if committed {
			r.cfg.Logger.Debugf("epaxos %d: %v: try refused locally, committed conflict: phase 1", r.id, it.ID)
			r.recoverPhase1(it, from)
			return
		}
		if ok {
			rs.holders[r.id] = true
		}
	}
	if r.decideTry(it) {
		return
	}
	r.broadcast(func() *Msg {
		return &Msg{Type: MsgTryPreAccept, Ballot: rs.ballot, ID: it.ID, Command: rs.attrs.Command, Batched: rs.attrs.Batched, Seq: rs.attrs.Seq, Deps: slices.Clone(rs.attrs.Deps)}
	}, rs.holders)
}

func (r *Replica) decideTry(it *inst) bool {
	rs := it.rec
	if len(rs.holders) < consensus.Majority(r.n()) {
		return false
	}
	r.recoverAccept(it, false, rs.attrs.commands(), rs.attrs.Seq, rs.attrs.Deps)
	return true
}

// tryLocal is the TryPreAccept check at this replica: it pre-accepts a at
// ballot b unless it holds a later phase or an instance that conflicts
// with the command, is not among a's deps and does not depend on it
// (committing a would then leave two conflicting instances unordered).
//
// It returns the conflicting instance, if any, and whether that instance
// is committed here: then the instance being recovered cannot have been
// committed with a (two committed conflicting instances always have an
// edge between them), so the recoverer may run phase 1 instead.
func (r *Replica) tryLocal(it *inst, b Ballot, a *Msg) (ok bool, conflict InstanceID, committed bool) {
	if it.Status >= StatusAccepted {
		return false, InstanceID{}, false
	}
	if it.Status == StatusPreAccepted && sameAttrs(&Msg{Seq: it.Seq, Deps: it.Deps}, a) && !it.NoOp {
		return true, InstanceID{}, false
	}
	var found *inst
	keys := a.conflictKeys()
	for gid, g := range r.insts {
		if gid == it.ID || g.Status == StatusNone || g.NoOp || !keysConflict(g.keys, keys) {
			continue
		}
		// Instances of one space are ordered by the executor's chain, and
		// a dep on a later instance of a space reaches the earlier ones.
		if gid.Replica == it.ID.Replica || covers(a.Deps, gid) || covers(g.Deps, it.ID) {
			continue
		}
		// Report a committed conflict first, and deterministically.
		if found == nil || (g.Status == StatusCommitted) != (found.Status == StatusCommitted) && g.Status == StatusCommitted ||
			(g.Status == StatusCommitted) == (found.Status == StatusCommitted) && gid.Compare(found.ID) < 0 {
			found = g
		}
	}
	if found != nil {
		return false, found.ID, found.Status == StatusCommitted
	}
	if c, committed, ok := r.compactedConflict(it.ID, keys, a.Deps); ok {
		return false, c, committed
	}
	r.install(Instance{ID: it.ID, Status: StatusPreAccepted, Promised: b, Accepted: b, Command: a.Command, Batched: a.Batched, Seq: a.Seq, Deps: slices.Clone(a.Deps)})
	r.save(it)
	return true, InstanceID{}, false
}

// compactedConflict is tryLocal's check against the executed instances
// this replica no longer holds (compacted), which the conflict index of
// executed instances (done) still describes: for each space but id's,
// the latest executed instance conflicting with keys. If deps do not
// reach it, it is a committed conflict with no edge: deps do not reach it,
// and it cannot depend on id, which is not committed here (an executed
// instance that depends on id has made the executor commit id here, as a
// dependency to follow or to prune). A conflict that only the floor
// names may not exist at all, so it is reported as not committed: the
// attempt waits, rather than concluding anything from it.
func (r *Replica) compactedConflict(id InstanceID, keys []string, deps []InstanceID) (conflict InstanceID, committed, ok bool) {
	if len(keys) == 0 {
		return InstanceID{}, false, false
	}
	var cands []InstanceID
	var seq uint64
	if conflictsWithAll(keys) {
		r.doneAny.collect(id, &seq, &cands)
	} else {
		for _, k := range keys {
			r.done[k].collect(id, &seq, &cands)
		}
		r.done[consensus.ConflictAll].collect(id, &seq, &cands)
	}
	var floored []InstanceID
	if r.floor != nil && !conflictsWithAll(keys) {
		for _, k := range append([]string{consensus.ConflictAll}, keys...) {
			if ki := r.done[k]; ki == nil || ki.floored {
				r.floor.collect(id, &seq, &floored)
				break
			}
		}
	}
	check := func(list []InstanceID) (InstanceID, bool) {
		slices.SortFunc(list, InstanceID.Compare)
		for _, d := range list {
			if d.Replica == id.Replica || covers(deps, d) || r.insts[d] != nil {
				// Ordered by the chain, reached by deps, or held in
				// memory (tryLocal's scan judged it).
				continue
			}
			return d, true
		}
		return InstanceID{}, false
	}
	if d, found := check(cands); found {
		return d, true, true
	}
	if d, found := check(floored); found {
		return d, false, true
	}
	return InstanceID{}, false, false
}

func (r *Replica) onTryPreAccept(from consensus.NodeID, m *Msg) {
	it := r.getOrNone(m.ID)
	if m.Ballot.Less(it.Promised) {
		r.nack(from, it)
		return
	}
	if it.Status == StatusCommitted {
		r.send(from, commitMsg(it))
		return
	}
	m.Deps = cleanDeps(m.ID, m.Deps)
	r.promise(it, m.Ballot)
	ok, conflict, committed := r.tryLocal(it, m.Ballot, m)
	reply := &Msg{Type: MsgTryPreAcceptOK, Ballot: m.Ballot, ID: m.ID, Changed: !ok}
	if !ok && conflict.Instance != 0 {
		reply.Deps = []InstanceID{conflict}
		reply.Status = StatusPreAccepted
		if committed {
			reply.Status = StatusCommitted
		}
	}
	r.send(from, reply)
}

func (r *Replica) onTryPreAcceptOK(from consensus.NodeID, m *Msg) {
	it := r.insts[m.ID]
	if it == nil || it.rec == nil || !it.rec.trying || m.Ballot != it.rec.ballot || it.Promised != m.Ballot {
		return
	}
	if m.Changed {
		// Refused. A conflict committed there proves the attributes tried
		// were never committed: phase 1. Otherwise this attempt waits for
		// a majority of holders or the next attempt, and the conflicting
		// instance is suspected at once (it may be the one to recover
		// first).
		if len(m.Deps) == 1 && m.Status == StatusCommitted {
			r.cfg.Logger.Debugf("epaxos %d: %v: try refused by %d, committed conflict %v: phase 1", r.id, it.ID, from, m.Deps[0])
			from := make([]consensus.NodeID, 0, len(it.rec.replies))
			for p := range it.rec.replies {
				from = append(from, p)
			}
			slices.Sort(from)
			r.recoverPhase1(it, from)
			return
		}
		if len(m.Deps) == 1 && m.Deps[0].Replica != consensus.None && m.Deps[0].Instance != 0 {
			g := m.Deps[0]
			if gi := r.insts[g]; gi == nil || gi.Status != StatusCommitted && gi.rec == nil && gi.lead == nil {
				if s := r.suspect[g]; s != nil {
					s.ticks = max(s.ticks, s.limit-1)
				} else {
					r.suspect[g] = &suspicion{limit: 1}
				}
			}
		}
		return
	}
	it.rec.holders[from] = true
	r.decideTry(it)
}

// covers reports whether deps reach target directly: they hold it or a
// later instance of its space, which reaches it through the executor's
// same-space chain (see numEdges).
func covers(deps []InstanceID, target InstanceID) bool {
	for _, d := range deps {
		if d.Replica == target.Replica && d.Instance >= target.Instance {
			return true
		}
	}
	return false
}

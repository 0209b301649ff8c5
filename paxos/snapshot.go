package paxos

import (
	"errors"
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// ErrSnapshotsDisabled is returned by Compact when Config.Snapshots is nil.
var ErrSnapshotsDisabled = errors.New("paxos: snapshots are disabled (Config.Snapshots is nil)")

// snapSend is a snapshot transfer to one peer.
type snapSend struct {
	active bool
	meta   consensus.SnapshotMeta
	// sent is the offset of the next chunk to send, acked the offset the
	// peer acknowledged; ends are the end offsets of the chunks in flight
	// (at most SnapshotChunksInflightMax). done: the last chunk was sent.
	sent, acked int64
	ends        []int64
	done        bool
	// hold stops sending until the resend timer fires (after a refusal).
	hold bool
	// stall counts ticks without progress; retries counts resends in a
	// row without progress.
	stall, retries int
}

// snapRecv is the snapshot transfer being received.
type snapRecv struct {
	active bool
	from   consensus.NodeID
	meta   consensus.SnapshotMeta
	next   int64
	// at is the tick of the last chunk accepted.
	at int64
}

func cloneMeta(m consensus.SnapshotMeta) consensus.SnapshotMeta {
	m.Voters = slices.Clip(slices.Clone(m.Voters))
	return m
}

// Compact implements consensus.Compactor. The host calls it after it saved,
// in Config.Snapshots, a snapshot of its state machine holding every slot
// up to meta.Index, which must be applied (handed out in Ready.Committed
// and passed to Advance) and not below the snapshot of the previous
// Compact.
//
// meta.Term must be the Term of the entry chosen at meta.Index: the round
// of the ballot at which that value was first proposed (Propose and a new
// leader's no-ops set it; a value keeps it when re-proposed), which is the
// same on every replica. It is not the ballot at which the slot was
// chosen, which replicas may not know. Compacting again at the current
// snapshot's index (with its term) changes nothing.
//
// The replica then discards the slots up to meta.Index minus
// Config.CompactionRetainEntries, and its next Ready persists a Checkpoint,
// after which the host may discard every older record. The host must keep
// the snapshot while that checkpoint is its newest.
func (r *Replica) Compact(meta consensus.SnapshotMeta) error {
	if r.cfg.Snapshots == nil {
		return ErrSnapshotsDisabled
	}
	switch {
	case meta.Index > r.applied:
		return fmt.Errorf("paxos %d: Compact: snapshot at slot %d is beyond the applied slot %d", r.id, meta.Index, r.applied)
	case meta.Index < r.snap.Index:
		return fmt.Errorf("paxos %d: Compact: snapshot at slot %d is older than the current snapshot at %d", r.id, meta.Index, r.snap.Index)
	case len(meta.Voters) > PeersMax:
		return fmt.Errorf("paxos %d: Compact: snapshot names %d voters; at most %d", r.id, len(meta.Voters), PeersMax)
	}
	if meta.Index == r.snap.Index {
		if meta.Term != r.snap.Term {
			return fmt.Errorf("paxos %d: Compact: snapshot at slot %d has term %d, but the current snapshot there has term %d", r.id, meta.Index, meta.Term, r.snap.Term)
		}
		return nil
	}
	// r.offset <= r.snap.Index < meta.Index <= r.applied <= r.commit.
	if t := r.at(meta.Index).entry.Term; t != meta.Term {
		return fmt.Errorf("paxos %d: Compact: snapshot at slot %d has term %d, but the value chosen there has term %d", r.id, meta.Index, meta.Term, t)
	}
	r.snap = cloneMeta(meta)
	if keep := uint64(r.cfg.CompactionRetainEntries); meta.Index > keep && meta.Index-keep > r.offset {
		r.compactTo(meta.Index - keep)
	}
	r.checkpointDue = true
	// Count again from the snapshot.
	r.snapWanted = false
	r.sinceSnapEntries, r.sinceSnapBytes = int(r.applied-meta.Index), 0
	for i := meta.Index + 1; i <= r.applied; i++ {
		r.sinceSnapBytes += r.at(i).entry.Size()
	}
	r.logger.Debugf("paxos %d: compacted: snapshot %d/%d, log after %d", r.id, meta.Index, meta.Term, r.offset)
	return nil
}

// compactTo drops the slots up to i (i <= commit), copying what remains so
// the dropped entries can be freed.
func (r *Replica) compactTo(i uint64) {
	if i <= r.offset {
		return
	}
	if i >= r.lastIndex() {
		r.log = nil
	} else {
		r.log = slices.Clone(r.log[i-r.offset:])
	}
	r.offset = i
}

func (r *Replica) snapshotThresholdReached() bool {
	return (r.cfg.SnapshotEntries > 0 && r.sinceSnapEntries >= r.cfg.SnapshotEntries) ||
		(r.cfg.SnapshotBytes > 0 && r.sinceSnapBytes >= r.cfg.SnapshotBytes)
}

// checkpoint returns the Checkpoint of the replica's durable state.
func (r *Replica) checkpoint(hs HardState) Checkpoint {
	cp := Checkpoint{Snapshot: cloneMeta(r.snap), HardState: hs, LogIndex: r.offset}
	n := 0
	for i := range r.log {
		if r.log[i].has {
			n++
		}
	}
	if n > 0 {
		cp.Entries = make([]consensus.Entry, 0, n)
		cp.Ballots = make([]Ballot, 0, n)
		for i := range r.log {
			if s := &r.log[i]; s.has {
				// A zero ballot (learned) replays as chosen; a slot chosen
				// beyond the commit index with a ballot replays as merely
				// accepted, as its Accept record would.
				cp.Entries = append(cp.Entries, s.entry)
				cp.Ballots = append(cp.Ballots, s.accepted)
			}
		}
	}
	return cp
}

// replayCheckpoint rebuilds the state a checkpoint describes. It must be
// the first record replayed.
func (r *Replica) replayCheckpoint(cp *Checkpoint, first bool, hs *HardState) error {
	if !first {
		return errors.New("a Checkpoint after the newest Checkpoint")
	}
	if err := cp.validate(); err != nil {
		return err
	}
	r.snap = cloneMeta(cp.Snapshot)
	r.offset = cp.LogIndex
	r.log = nil
	for i, e := range cp.Entries {
		s := r.slotAt(e.Index)
		s.entry, s.has, s.accepted = e, true, cp.Ballots[i]
		s.chosen = cp.Ballots[i].IsZero()
	}
	*hs = cp.HardState
	return nil
}

// ---- Sending snapshots ----

// snapshotResendTicks is how long a transfer may make no progress before
// the sender resends its unacknowledged chunks.
func (r *Replica) snapshotResendTicks() int { return 2 * r.cfg.HeartbeatTicks }

// newestSnapshot returns the newest snapshot in the store if a peer that
// installs it can go on from this replica's log: it must be chosen here
// and not older than the compacted prefix.
func (r *Replica) newestSnapshot() (consensus.SnapshotMeta, bool) {
	meta, ok := r.cfg.Snapshots.Newest()
	if !ok {
		r.logger.Warnf("paxos %d: a peer needs a snapshot, but the snapshot store holds none", r.id)
		return consensus.SnapshotMeta{}, false
	}
	fits := meta.Index >= r.offset && meta.Index <= r.commit && len(meta.Voters) <= PeersMax
	if fits && meta.Index > r.offset {
		fits = r.at(meta.Index).entry.Term == meta.Term
	} else if fits {
		fits = meta.Index == r.snap.Index && meta.Term == r.snap.Term
	}
	if !fits {
		r.logger.Warnf("paxos %d: the newest snapshot %d/%d does not fit the log (compacted to %d, commit %d); not sending it", r.id, meta.Index, meta.Term, r.offset, r.commit)
		return consensus.SnapshotMeta{}, false
	}
	return cloneMeta(meta), true
}

// startSnapshot starts sending the peer at pos the newest snapshot, unless
// a transfer to it is under way. Chunks go out in Ready.
func (r *Replica) startSnapshot(pos int) {
	if r.cfg.Snapshots == nil || r.out[pos].active {
		return
	}
	meta, ok := r.newestSnapshot()
	if !ok {
		return
	}
	r.out[pos] = snapSend{active: true, meta: meta}
	r.logger.Debugf("paxos %d: sending snapshot %d/%d to %d", r.id, meta.Index, meta.Term, r.peers[pos])
}

// sendSnapshots sends the next chunks of every transfer, up to
// SnapshotChunksInflightMax unacknowledged per peer.
func (r *Replica) sendSnapshots() {
	for pos := range r.out {
		s := &r.out[pos]
		for s.active && !s.hold && !s.done && len(s.ends) < SnapshotChunksInflightMax {
			chunkMax := r.cfg.SnapshotChunkBytes
			data, last, err := r.cfg.Snapshots.ReadChunk(s.meta.Index, s.sent, chunkMax)
			if err == nil && len(data) > chunkMax {
				err = fmt.Errorf("the store returned %d bytes, more than the %d asked for", len(data), chunkMax)
			}
			if err == nil && len(data) == 0 && !last {
				err = errors.New("the store returned an empty chunk that is not the last")
			}
			if err != nil {
				// The snapshot was replaced (or the store failed): give up;
				// the transfer starts over with the newest snapshot when
				// the peer is next found to need one.
				r.logger.Warnf("paxos %d: reading snapshot %d at offset %d for %d: %v; abandoning the transfer", r.id, s.meta.Index, s.sent, r.peers[pos], err)
				*s = snapSend{}
				break
			}
			data = slices.Clip(data)
			r.send(r.peers[pos], &Msg{Type: MsgSnap, Ballot: r.Ballot(), Snapshot: cloneMeta(s.meta), Offset: s.sent, Data: data, Last: last})
			s.sent += int64(len(data))
			s.done = last
			s.ends = append(s.ends, s.sent)
		}
	}
}

// tickSnapshots runs the resend timers of the transfers.
func (r *Replica) tickSnapshots() {
	for pos := range r.out {
		s := &r.out[pos]
		if !s.active {
			continue
		}
		s.stall++
		if s.stall < r.snapshotResendTicks() {
			continue
		}
		s.stall = 0
		s.retries++
		if s.retries > SnapshotRetriesMax {
			r.logger.Debugf("paxos %d: snapshot transfer to %d stalled; abandoning it", r.id, r.peers[pos])
			*s = snapSend{}
			continue
		}
		s.rewind(s.acked)
	}
}

func (s *snapSend) rewind(offset int64) {
	s.sent, s.acked = offset, offset
	s.ends = s.ends[:0]
	s.done, s.hold = false, false
}

// handleSnapResp is the sender hearing how a transfer goes.
func (r *Replica) handleSnapResp(pos int, m *Msg) {
	s := &r.out[pos]
	if r.role == consensus.RoleLeader && m.Ballot == r.ballot && !m.Reject {
		pr := &r.prs[pos]
		pr.known = true
		pr.commit = max(pr.commit, m.Commit)
	}
	if !s.active || m.Index != s.meta.Index {
		return // stale, or not about this transfer
	}
	if m.Commit >= s.meta.Index {
		// Installed (or the peer got past it otherwise): done.
		*s = snapSend{}
		return
	}
	if m.Offset < 0 || m.Offset > s.sent {
		return
	}
	if m.Reject {
		// Refused: resume from what the peer expects, at the next resend.
		s.rewind(m.Offset)
		s.hold = true
		return
	}
	if m.Offset <= s.acked {
		return // old or duplicated
	}
	s.acked = m.Offset
	n := 0
	for n < len(s.ends) && s.ends[n] <= m.Offset {
		n++
	}
	s.ends = s.ends[:copy(s.ends, s.ends[n:])]
	s.stall, s.retries = 0, 0
}

// ---- Receiving snapshots ----

// handleSnap is a replica receiving a snapshot chunk. A snapshot holds
// only chosen slots, which are facts, so it is taken from any peer,
// whatever its ballot — but one transfer at a time.
func (r *Replica) handleSnap(pos int, m *Msg) {
	from := r.peers[pos]
	meta := m.Snapshot
	resp := func(offset int64, reject bool) {
		r.send(from, &Msg{Type: MsgSnapResp, Ballot: m.Ballot, Index: meta.Index, Offset: offset, Reject: reject, Commit: r.commit})
	}
	if meta.Index <= r.commit {
		// Everything the snapshot holds is chosen and known here already.
		if r.recv.active && r.recv.meta.Index <= r.commit {
			r.recv = snapRecv{}
		}
		resp(0, false)
		return
	}
	if r.restoring {
		// A received snapshot waits for the host to install it; a new
		// transfer would abandon it in the store. The sender resends.
		return
	}
	if r.cfg.Snapshots == nil {
		r.logger.Warnf("paxos %d: got snapshot %d/%d from %d, but snapshots are disabled here", r.id, meta.Index, meta.Term, from)
		resp(0, true)
		return
	}
	rv := &r.recv
	same := rv.active && rv.from == from && rv.meta.Index == meta.Index && rv.meta.Term == meta.Term
	switch {
	case same && m.Offset < rv.next:
		resp(rv.next, false) // a duplicate: say again what we expect
		return
	case same && m.Offset > rv.next:
		resp(rv.next, true)
		return
	case !same && rv.active && rv.from != from && r.now-rv.at <= int64(r.cfg.ElectionTimeoutTicks):
		// Another peer's transfer is making progress: finish that one
		// first. This sender stalls, retries, and gives up.
		return
	case !same && m.Offset != 0:
		resp(0, true)
		return
	}
	if len(meta.Voters) > PeersMax || len(m.Data) > SnapshotChunkBytesMax || m.Offset < 0 {
		r.logger.Warnf("paxos %d: malformed snapshot chunk from %d: %d voters, %d bytes", r.id, from, len(meta.Voters), len(m.Data))
		*rv = snapRecv{}
		resp(0, true)
		return
	}
	if err := r.cfg.Snapshots.ReceiveChunk(meta, m.Offset, m.Data, m.Last); err != nil {
		r.logger.Warnf("paxos %d: storing chunk at %d of snapshot %d/%d from %d: %v", r.id, m.Offset, meta.Index, meta.Term, from, err)
		*rv = snapRecv{}
		resp(0, true)
		return
	}
	next := m.Offset + int64(len(m.Data))
	if !m.Last {
		*rv = snapRecv{active: true, meta: cloneMeta(meta), from: from, next: next, at: r.now}
		resp(next, false)
		return
	}
	*rv = snapRecv{}
	r.installSnapshot(meta)
	resp(next, false)
}

// installSnapshot makes a fully received snapshot, past the commit index,
// the base of the log. The slots after it keep their acceptor state
// (accepted values and ballots are promises to proposers, unlike a Raft
// log suffix); the slots up to it are chosen and dropped. The next Ready
// hands the snapshot out in Restore and persists a Checkpoint, and the
// chosen slots after it are applied after it.
func (r *Replica) installSnapshot(meta consensus.SnapshotMeta) {
	r.logger.Infof("paxos %d: installing snapshot %d/%d (commit was %d, last slot %d)", r.id, meta.Index, meta.Term, r.commit, r.lastIndex())
	if r.lastIndex() > meta.Index {
		r.log = slices.Clone(r.log[meta.Index-r.offset:])
	} else {
		r.log = nil
	}
	r.offset = meta.Index
	r.snap = cloneMeta(meta)
	r.commit = meta.Index
	for r.commit < r.lastIndex() && r.at(r.commit+1).chosen {
		r.commit++
	}
	r.emitted = meta.Index
	restored := cloneMeta(meta)
	r.restore = &restored
	r.restoring = true
	r.checkpointDue = true
	r.snapWanted = false
	r.sinceSnapEntries, r.sinceSnapBytes = 0, 0
	switch r.role {
	case consensus.RoleCandidate:
		// Phase 1 need not cover the slots now known chosen; promises that
		// reported from a later slot count from now on.
		r.start = max(r.start, r.commit+1)
	case consensus.RoleLeader:
		r.unsent = max(r.unsent, r.offset+1)
		r.recovered = max(r.recovered, r.offset)
		r.advanceLeaderCommit()
	}
}

package raft

import (
	"errors"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// ErrSnapshotsDisabled is returned by Compact when Config.Snapshots is nil.
var ErrSnapshotsDisabled = errors.New("raft: snapshots are disabled (Config.Snapshots is nil)")

// Compact implements consensus.Compactor. The host calls it after it saved,
// in Config.Snapshots, a snapshot of its state machine holding every entry
// up to meta.Index, which must be applied (handed out in Ready.Committed
// and passed to Advance) and not below the snapshot of the previous
// Compact; meta.Term must be the term of the entry at meta.Index. Compacting
// again at the current snapshot's index changes nothing.
//
// The replica then discards the log entries up to meta.Index minus
// Config.CompactionRetainEntries, and its next Ready persists a Checkpoint,
// after which the host may discard every older record. The host must keep
// the snapshot while that checkpoint is its newest.
func (r *Raft) Compact(meta consensus.SnapshotMeta) error {
	if r.cfg.Snapshots == nil {
		return ErrSnapshotsDisabled
	}
	switch {
	case meta.Index > r.applied:
		return fmt.Errorf("raft %d: Compact: snapshot at index %d is beyond the applied index %d", r.id, meta.Index, r.applied)
	case meta.Index < r.snap.Index:
		return fmt.Errorf("raft %d: Compact: snapshot at index %d is older than the current snapshot at %d", r.id, meta.Index, r.snap.Index)
	case len(meta.Voters) > PeersMax:
		return fmt.Errorf("raft %d: Compact: snapshot names %d voters; at most %d", r.id, len(meta.Voters), PeersMax)
	}
	// r.log.offset <= r.snap.Index <= meta.Index <= r.applied <= last.
	if t := r.log.mustTerm(meta.Index); t != meta.Term {
		return fmt.Errorf("raft %d: Compact: snapshot at index %d has term %d, but the log's entry there has term %d", r.id, meta.Index, meta.Term, t)
	}
	if meta.Index == r.snap.Index {
		return nil
	}
	r.snap = cloneMeta(meta)
	if keep := uint64(r.cfg.CompactionRetainEntries); meta.Index > keep && meta.Index-keep > r.log.offset {
		r.log.compact(meta.Index - keep)
	}
	r.checkpointDue = true
	// Count again from the snapshot.
	r.snapWanted = false
	r.sinceSnapEntries, r.sinceSnapBytes = int(r.applied-meta.Index), 0
	for i := meta.Index + 1; i <= r.applied; i++ {
		r.sinceSnapBytes += r.log.at(i).Size()
	}
	r.logger.Debugf("raft %d: compacted: snapshot %d/%d, log after %d", r.id, meta.Index, meta.Term, r.log.offset)
	return nil
}

// snapshotResendTicks is how long a snapshot transfer may make no progress
// before the leader resends its unacknowledged chunks.
func (r *Raft) snapshotResendTicks() int { return 2 * r.cfg.HeartbeatTicks }

// newestSnapshot returns the newest snapshot in the store if a follower
// that installs it can go on from the log: its index must be committed and
// not compacted away, and its term must match the log.
func (r *Raft) newestSnapshot() (consensus.SnapshotMeta, bool) {
	meta, ok := r.cfg.Snapshots.Newest()
	if !ok {
		r.logger.Warnf("raft %d: a follower needs a snapshot, but the snapshot store holds none", r.id)
		return consensus.SnapshotMeta{}, false
	}
	if meta.Index < r.log.offset || meta.Index > r.log.committed || !r.log.matchTerm(meta.Index, meta.Term) || len(meta.Voters) > PeersMax {
		r.logger.Warnf("raft %d: the newest snapshot %d/%d does not fit the log (compacted to %d, commit %d); not sending it", r.id, meta.Index, meta.Term, r.log.offset, r.log.committed)
		return consensus.SnapshotMeta{}, false
	}
	return cloneMeta(meta), true
}

// startSnapshot moves the follower at pos to snapshot state, sending the
// newest snapshot from offset 0 (or, if there is no usable one, waiting for
// the resend timer to try again).
func (r *Raft) startSnapshot(pos int) {
	meta, _ := r.newestSnapshot()
	r.prs[pos].becomeSnapshot(meta)
	r.logger.Debugf("raft %d: sending snapshot %d/%d to %d", r.id, meta.Index, meta.Term, r.peers[pos])
}

// restartSnapshot abandons the transfer to the follower at pos and starts
// over (with the newest snapshot, if the follower still needs one).
func (r *Raft) restartSnapshot(pos int) {
	pr := &r.prs[pos]
	pr.becomeProbe()
	if pr.next <= r.log.offset {
		r.startSnapshot(pos)
	}
	r.sendPending = true
}

// sendSnapChunks sends the follower at pos the next chunks of its snapshot,
// up to SnapshotChunksInflightMax unacknowledged.
func (r *Raft) sendSnapChunks(pos int) {
	pr := &r.prs[pos]
	restarted := false
	for pr.state == stateSnapshot && !pr.paused() {
		s := &pr.snap
		chunkMax := r.cfg.SnapshotChunkBytes
		data, last, err := r.cfg.Snapshots.ReadChunk(s.meta.Index, s.sent, chunkMax)
		if err == nil && len(data) > chunkMax {
			err = fmt.Errorf("the store returned %d bytes, more than the %d asked for", len(data), chunkMax)
		}
		if err == nil && len(data) == 0 && !last {
			err = errors.New("the store returned an empty chunk that is not the last")
		}
		if err != nil {
			r.logger.Warnf("raft %d: reading snapshot %d at offset %d for %d: %v; starting over with the newest snapshot", r.id, s.meta.Index, s.sent, r.peers[pos], err)
			if restarted {
				// Try again when the resend timer fires.
				pr.snap.meta = consensus.SnapshotMeta{}
				return
			}
			restarted = true
			r.restartSnapshot(pos)
			continue
		}
		data = data[:len(data):len(data)]
		r.send(r.peers[pos], &Msg{Type: MsgSnap, Term: r.term, Snapshot: s.meta, Offset: s.sent, Data: data, Last: last})
		s.sent += int64(len(data))
		s.done = last
		pr.inflight.add(uint64(s.sent))
	}
}

// tickSnapshot runs the resend timer of the transfer to the follower at pos.
func (r *Raft) tickSnapshot(pos int) {
	pr := &r.prs[pos]
	s := &pr.snap
	s.stallTicks++
	if s.stallTicks < r.snapshotResendTicks() {
		return
	}
	s.retries++
	if s.meta.Index == 0 || s.retries > SnapshotRetriesMax {
		r.restartSnapshot(pos)
		return
	}
	pr.snapRewind(s.acked)
	r.sendPending = true
}

// handleSnapResp is the leader hearing how a snapshot transfer goes.
func (r *Raft) handleSnapResp(pos int, m *Msg) {
	pr := &r.prs[pos]
	pr.recentActive = true
	s := &pr.snap
	if pr.state != stateSnapshot || s.meta.Index == 0 || m.Index != s.meta.Index || m.Offset < 0 || m.Offset > s.sent {
		return // stale, or not about this transfer
	}
	if m.Reject {
		// Out of order or failed: resend from what the follower expects.
		pr.snapRewind(m.Offset)
		r.sendPending = true
		return
	}
	if m.Offset <= s.acked {
		return // old or duplicated
	}
	s.acked = m.Offset
	pr.inflight.freeLE(uint64(m.Offset))
	s.stallTicks, s.retries = 0, 0
	r.sendPending = true
}

// handleSnap is a follower receiving a snapshot chunk from the leader of
// its term.
func (r *Raft) handleSnap(pos int, m *Msg) {
	from := r.peers[pos]
	meta := m.Snapshot
	if meta.Index <= r.log.committed {
		// Everything the snapshot holds is committed here already, and
		// committed entries match the leader's log.
		if r.recv.active && r.recv.meta.Index <= r.log.committed {
			r.recv = snapRecv{}
		}
		r.send(from, &Msg{Type: MsgAppResp, Term: r.term, Index: r.log.committed})
		return
	}
	if r.restoring {
		// A received snapshot waits for the host to install it; a new
		// transfer would abandon it in the store. The leader resends.
		return
	}
	reject := func(offset int64) {
		r.send(from, &Msg{Type: MsgSnapResp, Term: r.term, Reject: true, Index: meta.Index, Offset: offset})
	}
	if r.cfg.Snapshots == nil {
		r.logger.Warnf("raft %d: got snapshot %d/%d from %d, but snapshots are disabled here", r.id, meta.Index, meta.Term, from)
		reject(0)
		return
	}
	rv := &r.recv
	same := rv.active && rv.from == from && rv.term == r.term && rv.meta.Index == meta.Index && rv.meta.Term == meta.Term
	switch {
	case same && m.Offset < rv.next:
		// A duplicate: say again what we expect.
		r.send(from, &Msg{Type: MsgSnapResp, Term: r.term, Index: meta.Index, Offset: rv.next})
		return
	case same && m.Offset > rv.next:
		reject(rv.next)
		return
	case !same && m.Offset != 0:
		reject(0)
		return
	}
	if len(meta.Voters) > PeersMax || len(m.Data) > SnapshotChunkBytesMax {
		r.logger.Warnf("raft %d: malformed snapshot chunk from %d: %d voters, %d bytes", r.id, from, len(meta.Voters), len(m.Data))
		*rv = snapRecv{}
		reject(0)
		return
	}
	if err := r.cfg.Snapshots.ReceiveChunk(meta, m.Offset, m.Data, m.Last); err != nil {
		r.logger.Warnf("raft %d: storing chunk at %d of snapshot %d/%d from %d: %v", r.id, m.Offset, meta.Index, meta.Term, from, err)
		*rv = snapRecv{}
		reject(0)
		return
	}
	if !m.Last {
		*rv = snapRecv{active: true, meta: meta, from: from, term: r.term, next: m.Offset + int64(len(m.Data))}
		r.send(from, &Msg{Type: MsgSnapResp, Term: r.term, Index: meta.Index, Offset: rv.next})
		return
	}
	*rv = snapRecv{}
	r.installSnapshot(meta)
	r.send(from, &Msg{Type: MsgAppResp, Term: r.term, Index: meta.Index})
}

// installSnapshot makes a fully received snapshot, past the commit index,
// the base of the log: the next Ready hands it out in Restore and persists a
// Checkpoint, and the entries after it are applied after it.
func (r *Raft) installSnapshot(meta consensus.SnapshotMeta) {
	r.logger.Infof("raft %d: installing snapshot %d/%d (commit was %d, last index %d)", r.id, meta.Index, meta.Term, r.log.committed, r.log.lastIndex())
	r.log.restore(meta.Index, meta.Term)
	r.unstable = min(r.unstable, r.log.lastIndex()+1)
	r.snap = cloneMeta(meta)
	r.emitted = meta.Index
	restored := r.snap
	r.restore = &restored
	r.restoring = true
	r.checkpointDue = true
	r.snapWanted = false
	r.sinceSnapEntries, r.sinceSnapBytes = 0, 0
}

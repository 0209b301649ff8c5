package raft

import "github.com/synod-io/synod/consensus"

// progressState is how a leader replicates to one follower.
type progressState uint8

const (
	// stateProbe: the leader does not know where the follower's log
	// diverges. It sends one append at a time and waits for the answer (or
	// the next heartbeat response) before sending another.
	stateProbe progressState = iota
	// stateReplicate: the follower's log matches up to match; the leader
	// streams appends optimistically, up to InflightMsgsMax in flight.
	stateReplicate
	// stateSnapshot: the follower needs entries the leader has compacted
	// away. The leader streams a snapshot to it in chunks (see snapSend),
	// and sends no appends until the follower acknowledges the installed
	// snapshot with an append response; then it replicates from there.
	stateSnapshot
)

func (s progressState) String() string {
	switch s {
	case stateReplicate:
		return "replicate"
	case stateSnapshot:
		return "snapshot"
	}
	return "probe"
}

// progress is a leader's view of one voter's log. The leader keeps one per
// peer, indexed by the peer's position in Config.Peers.
type progress struct {
	// match is the highest index known to match the leader's log.
	// Invariant: match < next.
	match uint64
	// next is the next index to send.
	next  uint64
	state progressState
	// probeSent is set in probe state while an append is outstanding.
	probeSent bool
	// recentActive is set when the peer answers; check-quorum clears it
	// every election timeout.
	recentActive bool
	// sendEmpty asks the next flush to send an append even without new
	// entries (after a heartbeat response from a lagging follower).
	sendEmpty bool
	// readAck is the highest read round the peer acknowledged this term.
	readAck uint64
	// inflight holds, in replicate state, the last index of each append in
	// flight; in snapshot state, the end offset of each chunk in flight
	// (at most SnapshotChunksInflightMax).
	inflight inflights
	// snap is the transfer in snapshot state.
	snap snapSend
}

// snapSend is a leader's transfer of one snapshot to one follower.
//
// Chunks go out in order from offset 0, at most SnapshotChunksInflightMax
// unacknowledged at a time. The follower acknowledges each chunk but the
// last with a MsgSnapResp carrying the offset it expects next, rejects an
// out-of-order chunk with the offset it expects (0 after an error), and
// answers the last chunk, once installed, with a MsgAppResp at the
// snapshot's index. A transfer that makes no progress for
// snapshotResendTicks resends from the acknowledged offset; after
// SnapshotRetriesMax such resends in a row, or when the snapshot can no
// longer be read, it starts over from offset 0 of the newest snapshot.
type snapSend struct {
	// meta is the snapshot being sent; Index 0 while none could be chosen
	// (the transfer waits for the resend timer to try again).
	meta consensus.SnapshotMeta
	// sent is the offset of the next chunk to send; acked the offset the
	// follower last said it expects. Invariant: acked <= sent.
	sent, acked int64
	// done is set once the last chunk is sent.
	done bool
	// stallTicks counts ticks without progress; retries counts resends in
	// a row without progress.
	stallTicks int
	retries    int
}

func (p *progress) reset(next uint64, inflightMax int) {
	p.match = 0
	p.next = next
	p.state = stateProbe
	p.probeSent = false
	p.recentActive = false
	p.readAck = 0
	p.sendEmpty = false
	p.inflight.reset(inflightMax)
	p.snap = snapSend{}
}

// paused reports whether the leader must not send appends (in snapshot
// state: chunks) now.
func (p *progress) paused() bool {
	switch p.state {
	case stateProbe:
		return p.probeSent
	case stateSnapshot:
		return p.snap.meta.Index == 0 || p.snap.done || p.inflight.full() || p.inflight.count >= SnapshotChunksInflightMax
	}
	return p.inflight.full()
}

func (p *progress) becomeProbe() {
	p.state = stateProbe
	p.probeSent = false
	p.next = p.match + 1
	p.inflight.clear()
	p.snap = snapSend{}
}

func (p *progress) becomeReplicate() {
	p.state = stateReplicate
	p.probeSent = false
	p.next = p.match + 1
	p.inflight.clear()
	p.snap = snapSend{}
}

// becomeSnapshot starts sending the snapshot meta (Index 0: none yet) from
// offset 0.
func (p *progress) becomeSnapshot(meta consensus.SnapshotMeta) {
	p.state = stateSnapshot
	p.probeSent = false
	p.inflight.clear()
	p.snap = snapSend{meta: meta}
	if meta.Index >= p.next {
		p.next = meta.Index + 1
	}
}

// snapRewind makes the transfer resend from offset.
func (p *progress) snapRewind(offset int64) {
	p.snap.sent, p.snap.acked = offset, offset
	p.snap.done = false
	p.snap.stallTicks = 0
	p.inflight.clear()
}

// maybeUpdate records that the follower matches up to index. It reports
// whether match advanced; an old or duplicated acknowledgement changes
// nothing.
func (p *progress) maybeUpdate(index uint64) bool {
	if index <= p.match {
		return false
	}
	p.match = index
	if p.next <= index {
		p.next = index + 1
	}
	p.probeSent = false
	return true
}

// maybeBackOff handles a rejection of the append whose preceding index was
// rejected; hint is the leader's estimate of the largest index that might
// match. It reports whether the rejection was current (not stale) and next
// moved.
func (p *progress) maybeBackOff(rejected, hint uint64) bool {
	switch p.state {
	case stateSnapshot:
		return false // the snapshot replaces what any append could repair
	case stateReplicate:
		if rejected <= p.match {
			return false // stale: the follower has since matched beyond it
		}
		p.becomeProbe()
		p.next = max(min(rejected, hint+1), p.match+1)
		return true
	}
	if rejected != p.next-1 {
		return false // stale: not the probe we are waiting for
	}
	p.next = max(min(rejected, hint+1), p.match+1)
	p.probeSent = false
	return true
}

// inflights is a ring buffer of the last index of each append message in
// flight to one follower, oldest first.
type inflights struct {
	buf   []uint64
	start int
	count int
}

func (in *inflights) reset(size int) {
	if cap(in.buf) < size {
		in.buf = make([]uint64, size)
	}
	in.buf = in.buf[:size]
	in.clear()
}

func (in *inflights) clear() { in.start, in.count = 0, 0 }

func (in *inflights) full() bool { return in.count == len(in.buf) }

func (in *inflights) add(last uint64) {
	if in.full() {
		panic("raft: inflights overflow")
	}
	i := in.start + in.count
	if i >= len(in.buf) {
		i -= len(in.buf)
	}
	in.buf[i] = last
	in.count++
}

// freeLE releases every message whose last index is at most index.
func (in *inflights) freeLE(index uint64) {
	for in.count > 0 && in.buf[in.start] <= index {
		in.start++
		if in.start == len(in.buf) {
			in.start = 0
		}
		in.count--
	}
	if in.count == 0 {
		in.start = 0
	}
}

// freeFirst releases the oldest message, so that a window whose messages
// were lost can move again.
func (in *inflights) freeFirst() {
	if in.count == 0 {
		return
	}
	in.start++
	if in.start == len(in.buf) {
		in.start = 0
	}
	in.count--
}

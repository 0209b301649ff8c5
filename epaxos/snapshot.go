package epaxos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// ErrSnapshotsDisabled is returned by DescribeSnapshot and Compact when
// Config.Snapshots is nil.
var ErrSnapshotsDisabled = errors.New("epaxos: snapshots are disabled (Config.Snapshots is nil)")

// snapshotStateBytesMax is SnapshotStateBytesMax; tests lower it to make
// the conflict index fold.
var snapshotStateBytesMax = SnapshotStateBytesMax

// frontier is an executed frontier E: for each space (replica), the
// highest instance executed, every earlier instance of the space being
// executed too (the executor's same-space chain). A missing space is 0.
type frontier map[consensus.NodeID]uint64

// covers reports whether id is at or below the frontier.
func (f frontier) covers(id InstanceID) bool { return id.Instance != 0 && id.Instance <= f[id.Replica] }

// dominates reports whether f covers everything o covers.
func (f frontier) dominates(o frontier) bool {
	for rep, n := range o {
		if f[rep] < n {
			return false
		}
	}
	return true
}

// equal reports whether f and o cover the same instances.
func (f frontier) equal(o frontier) bool { return f.dominates(o) && o.dominates(f) }

// instances counts the instances f covers.
func (f frontier) instances() uint64 {
	var n uint64
	for _, i := range f {
		n += i
	}
	return n
}

// ids lists the frontier as instance IDs (one per space), sorted.
func (f frontier) ids() []InstanceID {
	out := make([]InstanceID, 0, len(f))
	for rep, n := range f {
		if n > 0 {
			out = append(out, InstanceID{rep, n})
		}
	}
	slices.SortFunc(out, InstanceID.Compare)
	return out
}

// frontierOf is the inverse of ids, ignoring invalid entries.
func frontierOf(ids []InstanceID) frontier {
	f := frontier{}
	for _, id := range ids {
		if id.Replica != consensus.None && id.Instance > f[id.Replica] {
			f[id.Replica] = id.Instance
		}
	}
	return f
}

func (f frontier) String() string {
	return formatDeps(f.ids())
}

// snapState is the protocol state a snapshot carries
// (consensus.SnapshotMeta.Protocol): what a replica needs, besides the
// state machine, to go on from the snapshot. It is a function of the
// executed frontier alone (the same at every replica that executed the
// same instances), unless a conflict index too large for
// SnapshotStateBytesMax had to be folded.
type snapState struct {
	// index is the execution counter at the frontier: the commands the
	// snapshot holds (consensus.SnapshotMeta.Index).
	index uint64
	// executed is the frontier; its instance count is the snapshot's
	// consensus.SnapshotMeta.Term.
	executed frontier
	// anyKey, keys and floor are the conflict index of the executed
	// instances (see Replica.done): keys holds each key whose index is
	// exact; a key not in keys is covered by floor, a key index merging
	// every folded one (empty when nothing was folded).
	anyKey *keyIndex
	floor  *keyIndex
	keys   map[string]*keyIndex
}

// snapStateVersion is the first byte of an encoded snapState.
const snapStateVersion byte = 1

// keyIndexBytesMin is the shortest encoded key index (maxSeq and count).
const keyIndexBytesMin = 2

func appendKeyIndex(buf []byte, ki *keyIndex) []byte {
	buf = binary.AppendUvarint(buf, ki.maxSeq)
	buf = binary.AppendUvarint(buf, uint64(len(ki.last)))
	for _, e := range ki.last { // sorted by replica
		buf = binary.AppendUvarint(buf, uint64(e.rep))
		buf = binary.AppendUvarint(buf, e.inst)
	}
	return buf
}

func readKeyIndex(d *consensus.Decoder) *keyIndex {
	ki := newKeyIndex(false)
	ki.maxSeq = d.Uvarint()
	n := d.Count(2, PeersMax)
	for range n {
		rep, inst := consensus.NodeID(d.Uvarint()), d.Uvarint()
		if d.Err() == nil {
			ki.set(rep, inst)
		}
	}
	return ki
}

// encode returns the state's canonical encoding: version, index, the
// frontier (count, then replica and instance each, by replica), the
// any-key index and the floor (each: max seq, count, then replica and
// instance each, by replica), then the exact keys (count, then each key as
// a length-prefixed string with its index, by key).
func (st *snapState) encode() []byte {
	buf := []byte{snapStateVersion}
	buf = binary.AppendUvarint(buf, st.index)
	ids := st.executed.ids()
	buf = binary.AppendUvarint(buf, uint64(len(ids)))
	for _, id := range ids {
		buf = appendID(buf, id)
	}
	buf = appendKeyIndex(buf, st.anyKey)
	buf = appendKeyIndex(buf, st.floor)
	keys := slices.Sorted(maps.Keys(st.keys))
	buf = binary.AppendUvarint(buf, uint64(len(keys)))
	for _, k := range keys {
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
		buf = appendKeyIndex(buf, st.keys[k])
	}
	return buf
}

// decodeState decodes and validates an encoded snapState.
func decodeState(b []byte) (*snapState, error) {
	if len(b) == 0 {
		return nil, errors.New("epaxos: snapshot has no protocol state")
	}
	d := consensus.NewDecoder(b)
	if v := d.Byte(); d.Err() == nil && v != snapStateVersion {
		return nil, fmt.Errorf("%w: epaxos snapshot state version %d; this build reads version %d", consensus.ErrMalformed, v, snapStateVersion)
	}
	st := &snapState{executed: frontier{}, keys: map[string]*keyIndex{}}
	st.index = d.Uvarint()
	for range d.Count(2, PeersMax) {
		id := readID(d)
		if d.Err() == nil {
			if id.Replica == consensus.None || id.Instance == 0 || st.executed[id.Replica] != 0 {
				return nil, fmt.Errorf("%w: epaxos snapshot state frontier entry %v", consensus.ErrMalformed, id)
			}
			st.executed[id.Replica] = id.Instance
		}
	}
	st.anyKey = readKeyIndex(d)
	st.floor = readKeyIndex(d)
	n := d.Count(1+keyIndexBytesMin, 1<<32)
	prev := ""
	for i := range n {
		k := string(d.Bytes())
		ki := readKeyIndex(d)
		if d.Err() != nil {
			break
		}
		if i > 0 && k <= prev {
			return nil, fmt.Errorf("%w: epaxos snapshot state keys out of order", consensus.ErrMalformed)
		}
		prev = k
		st.keys[k] = ki
	}
	d.End()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("epaxos: snapshot state: %w", err)
	}
	// Every instance an index names is executed, so within the frontier.
	check := func(what string, ki *keyIndex) error {
		for _, e := range ki.last {
			if id := (InstanceID{e.rep, e.inst}); !st.executed.covers(id) {
				return fmt.Errorf("%w: epaxos snapshot state %s names %v, beyond its frontier %v", consensus.ErrMalformed, what, id, st.executed)
			}
		}
		return nil
	}
	if err := check("any-key index", st.anyKey); err != nil {
		return nil, err
	}
	if err := check("floor", st.floor); err != nil {
		return nil, err
	}
	for k, ki := range st.keys {
		if err := check(fmt.Sprintf("index of key %q", k), ki); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// snapshotState is the replica's protocol state now, for a snapshot at
// its execution counter. If the encoded conflict index would exceed
// snapshotStateBytesMax, the keys with the lowest seqs are folded into the
// floor until it fits, and keys known here only through a floor are
// always folded (see the package doc).
func (r *Replica) snapshotState() *snapState {
	st := &snapState{index: r.applied, executed: maps.Clone(r.executedTo), anyKey: r.doneAny.clone(),
		floor: r.floor.clone(), keys: map[string]*keyIndex{}}
	if st.floor == nil {
		st.floor = newKeyIndex(false)
	}
	for k, ki := range r.done {
		if ki.floored {
			st.floor.merge(ki)
			continue
		}
		st.keys[k] = ki.clone()
	}
	size := len(st.encode())
	if size <= snapshotStateBytesMax {
		return st
	}
	keys := slices.Collect(maps.Keys(st.keys))
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmpUint(st.keys[a].maxSeq, st.keys[b].maxSeq); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	floorBefore := len(appendKeyIndex(nil, st.floor))
	for _, k := range keys {
		if size <= snapshotStateBytesMax {
			break
		}
		ki := st.keys[k]
		size -= len(binary.AppendUvarint(nil, uint64(len(k)))) + len(k) + len(appendKeyIndex(nil, ki))
		delete(st.keys, k)
		st.floor.merge(ki)
		floorAfter := len(appendKeyIndex(nil, st.floor))
		size += floorAfter - floorBefore
		floorBefore = floorAfter
	}
	r.cfg.Logger.Warnf("epaxos %d: the conflict index of %d keys exceeds %d bytes in a snapshot; %d keys folded into a floor", r.id, len(r.done), snapshotStateBytesMax, len(keys)-len(st.keys))
	return st
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Checkpoint is the durable record that supersedes every record before it:
// the snapshot the replica's state builds on (with its protocol state),
// the next instance number of the replica's own space, and every instance
// the replica holds that the snapshot does not cover (uncommitted,
// committed but not executed, executed after the snapshot, and bare
// promises). Replaying starts at the newest Checkpoint, so once one is
// durable the host may discard every older record. It implements
// consensus.Checkpoint.
//
// Invariants (checked when encoding, decoding and replaying):
// Snapshot.Protocol decodes, its index is Snapshot.Index and its frontier
// holds Snapshot.Term instances; Instances are valid, sorted by ID,
// without repeats, and none is covered by the frontier; Next >= 1.
type Checkpoint struct {
	Snapshot  consensus.SnapshotMeta
	Next      uint64
	Instances []Instance
}

var _ consensus.Checkpoint = Checkpoint{}

// RecordType implements consensus.Record.
func (Checkpoint) RecordType() string { return "epaxos.Checkpoint" }

// SnapshotIndex implements consensus.Checkpoint.
func (cp Checkpoint) SnapshotIndex() uint64 { return cp.Snapshot.Index }

// String formats the record for traces.
func (cp Checkpoint) String() string {
	st, err := decodeState(cp.Snapshot.Protocol)
	e := "?"
	if err == nil {
		e = st.executed.String()
	}
	return fmt.Sprintf("Checkpoint snapshot=%d/%d executed=%s next=%d instances=%d", cp.Snapshot.Index, cp.Snapshot.Term, e, cp.Next, len(cp.Instances))
}

// validate checks the invariants above and returns the decoded state.
func (cp *Checkpoint) validate() (*snapState, error) {
	st, err := decodeState(cp.Snapshot.Protocol)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if st.index != cp.Snapshot.Index || st.executed.instances() != cp.Snapshot.Term {
		return nil, fmt.Errorf("checkpoint snapshot %d/%d, but its state is at index %d with %d instances", cp.Snapshot.Index, cp.Snapshot.Term, st.index, st.executed.instances())
	}
	if cp.Next == 0 {
		return nil, errors.New("checkpoint with next instance 0")
	}
	if len(cp.Instances) > CheckpointInstancesMax {
		return nil, fmt.Errorf("checkpoint holds %d instances; at most %d", len(cp.Instances), CheckpointInstancesMax)
	}
	for i := range cp.Instances {
		in := &cp.Instances[i]
		if err := in.validate(); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		if st.executed.covers(in.ID) {
			return nil, fmt.Errorf("checkpoint holds instance %v, which its snapshot covers", in.ID)
		}
		if i > 0 && cp.Instances[i-1].ID.Compare(in.ID) >= 0 {
			return nil, errors.New("checkpoint instances unsorted or repeated")
		}
	}
	return st, nil
}

func isCheckpoint(rec consensus.Record) bool {
	switch rec.(type) {
	case Checkpoint, *Checkpoint:
		return true
	}
	return false
}

func cloneMeta(m consensus.SnapshotMeta) consensus.SnapshotMeta {
	m.Voters = slices.Clip(slices.Clone(m.Voters))
	m.Protocol = slices.Clip(slices.Clone(m.Protocol))
	return m
}

// replayCheckpoint starts New from a checkpoint: the snapshot's state,
// then the instances it holds.
func (r *Replica) replayCheckpoint(cp *Checkpoint) error {
	st, err := cp.validate()
	if err != nil {
		return err
	}
	r.loadState(st)
	r.ncommit = st.executed.instances()
	r.snap = cloneMeta(cp.Snapshot)
	r.snap.Voters = nil
	r.snapE = maps.Clone(st.executed)
	r.next = max(r.next, cp.Next)
	for _, in := range cp.Instances {
		in.Deps = slices.Clone(in.Deps)
		r.replayInstance(in)
	}
	return nil
}

// loadState makes st the replica's executed state: its frontier,
// execution counter and the conflict index of its executed instances
// (merged into what is indexed here already).
func (r *Replica) loadState(st *snapState) {
	r.executedTo = maps.Clone(st.executed)
	r.applied = st.index
	if r.executedTo[r.id] >= r.next {
		r.next = r.executedTo[r.id] + 1
	}
	if len(st.floor.last) > 0 || st.floor.maxSeq > 0 {
		if r.floor == nil {
			r.floor = newKeyIndex(false)
		}
		r.floor.merge(st.floor)
		// A key the snapshot does not list exactly may have folded history.
		for k, ki := range r.keys {
			if st.keys[k] == nil {
				ki.floored = true
			}
		}
		for k, ki := range r.done {
			if st.keys[k] == nil {
				ki.floored = true
			}
		}
	}
	for k, ki := range st.keys {
		for _, idx := range []map[string]*keyIndex{r.done, r.keys} {
			if idx[k] == nil {
				idx[k] = newKeyIndex(false)
			}
			idx[k].merge(ki)
			// The snapshot's index of k holds every executed instance on
			// it, folded history included.
			idx[k].floored = false
		}
	}
	r.doneAny.merge(st.anyKey)
	r.anyKey.merge(st.anyKey)
}

// DescribeSnapshot implements consensus.SnapshotDescriber. index must be
// the execution counter (Status().Applied) of the last Ready the host
// advanced past. The returned metadata's Term is the number of instances
// executed (no-ops included), so that two snapshots with the same index
// but different executed instances (they differ only by no-ops) have
// different names; Protocol is the executed frontier and the conflict
// index of the executed instances (see the package doc).
func (r *Replica) DescribeSnapshot(index uint64) (consensus.SnapshotMeta, error) {
	if r.cfg.Snapshots == nil {
		return consensus.SnapshotMeta{}, ErrSnapshotsDisabled
	}
	if index != r.applied || r.restore != nil {
		return consensus.SnapshotMeta{}, fmt.Errorf("epaxos %d: DescribeSnapshot(%d): a snapshot is possible only at the execution counter %d, right after Advance", r.id, index, r.applied)
	}
	st := r.snapshotState()
	return consensus.SnapshotMeta{Index: index, Term: st.executed.instances(), Protocol: st.encode()}, nil
}

// Compact implements consensus.Compactor. The host calls it after it saved,
// in Config.Snapshots, a snapshot of its state machine described by meta,
// which DescribeSnapshot returned (its Protocol is the replica's state at
// the snapshot); meta must not be older than the snapshot of the previous
// Compact. Compacting again at the current snapshot changes nothing.
//
// The replica then drops from memory the executed instances the previous
// snapshot covers (those executed since stay one more snapshot, so that a
// peer that missed their commit can still learn it), and its next Ready
// persists a Checkpoint, after which the host may discard every older
// record. The host must keep the snapshot while that checkpoint is its
// newest.
func (r *Replica) Compact(meta consensus.SnapshotMeta) error {
	if r.cfg.Snapshots == nil {
		return ErrSnapshotsDisabled
	}
	st, err := decodeState(meta.Protocol)
	if err != nil {
		return fmt.Errorf("epaxos %d: Compact: %w (pass the metadata DescribeSnapshot returned)", r.id, err)
	}
	switch {
	case st.index != meta.Index || st.executed.instances() != meta.Term:
		return fmt.Errorf("epaxos %d: Compact: snapshot %d/%d, but its state is at index %d with %d instances", r.id, meta.Index, meta.Term, st.index, st.executed.instances())
	case meta.Index > r.applied || !r.executedTo.dominates(st.executed):
		return fmt.Errorf("epaxos %d: Compact: snapshot %d (executed %v) is beyond what this replica executed (%d, %v)", r.id, meta.Index, st.executed, r.applied, r.executedTo)
	case !st.executed.dominates(r.snapE):
		return fmt.Errorf("epaxos %d: Compact: snapshot %d (executed %v) is older than the current snapshot %d (%v)", r.id, meta.Index, st.executed, r.snap.Index, r.snapE)
	}
	if st.executed.equal(r.snapE) && meta.Index == r.snap.Index {
		return nil
	}
	r.dropCovered(r.snapE)
	r.snap = cloneMeta(meta)
	r.snap.Voters = nil
	r.snapE = maps.Clone(st.executed)
	r.checkpointDue = true
	r.snapWanted = false
	r.sinceSnap = int(r.applied - meta.Index)
	r.cfg.Logger.Debugf("epaxos %d: compacted: snapshot %d/%d at %v, %d instances in memory", r.id, meta.Index, meta.Term, st.executed, len(r.insts))
	return nil
}

// dropCovered drops from memory every instance f covers: executed ones,
// or (installing a snapshot) ones executed by the peer the snapshot comes
// from. Nothing is driven for them any more.
func (r *Replica) dropCovered(f frontier) {
	for id, it := range r.insts {
		if !f.covers(id) {
			continue
		}
		r.dropLead(it)
		delete(r.insts, id)
		delete(r.uncommitted, id)
		delete(r.suspect, id)
		delete(r.active, id)
	}
}

// checkpoint is the Checkpoint of the replica's state now: the snapshot
// it builds on and every instance that snapshot does not cover.
func (r *Replica) checkpoint() Checkpoint {
	cp := Checkpoint{Snapshot: cloneMeta(r.snap), Next: r.next}
	for id, it := range r.insts {
		if r.snapE.covers(id) || it.Status == StatusNone && it.Promised.IsZero() {
			continue
		}
		in := it.Instance
		in.Deps = slices.Clone(in.Deps)
		in.Batched = slices.Clone(in.Batched)
		cp.Instances = append(cp.Instances, in)
	}
	slices.SortFunc(cp.Instances, func(a, b Instance) int { return a.ID.Compare(b.ID) })
	return cp
}

// ---- Snapshot transfer ----

// snapRecv is a transfer this replica receives. It asks from for chunks
// one at a time; meta (Index 0 until the first chunk arrived) is the
// snapshot, state its protocol state, next the offset it asks for next.
// From the first chunk on, the executor pauses, so that the snapshot
// still holds everything executed here when it is installed.
type snapRecv struct {
	active  bool
	from    consensus.NodeID
	meta    consensus.SnapshotMeta
	state   *snapState
	next    int64
	ticks   int
	retries int
}

// snapNeed is an instance this replica needs and that a peer compacted:
// it waits for a snapshot covering it (or for its commit to arrive
// otherwise). from is the peer that last said it compacted it.
type snapNeed struct {
	id    InstanceID
	from  consensus.NodeID
	ticks int
}

// receiving reports whether a transfer's first chunk was accepted (the
// executor pauses until it ends).
func (r *Replica) receiving() bool { return r.recv.active && r.recv.meta.Index != 0 }

// onCompacted: a peer executed and compacted an instance this replica
// asked about; it is committed. Whatever this replica drove for it is
// over, and unless it learns the commit otherwise, it needs a snapshot.
func (r *Replica) onCompacted(from consensus.NodeID, m *Msg) {
	if r.executedTo.covers(m.ID) {
		return
	}
	it := r.insts[m.ID]
	if it != nil && it.Status == StatusCommitted {
		return
	}
	if it != nil {
		r.dropLead(it)
		it.rec = nil
	}
	if r.cfg.Snapshots == nil {
		r.cfg.Logger.Warnf("epaxos %d: %d compacted %v, which this replica needs, but snapshots are disabled here", r.id, from, m.ID)
		return
	}
	r.need.id, r.need.from = m.ID, from
	if !r.recv.active {
		r.requestSnapshot()
	}
}

// requestSnapshot starts a transfer from the peer that last compacted
// what this replica needs.
func (r *Replica) requestSnapshot() {
	r.recv = snapRecv{active: true, from: r.need.from}
	r.need.ticks = 0
	r.cfg.Logger.Debugf("epaxos %d: asking %d for a snapshot covering %v (executed %v)", r.id, r.need.from, r.need.id, r.executedTo)
	r.sendSnapRequest()
}

func (r *Replica) sendSnapRequest() {
	rv := &r.recv
	m := &Msg{Type: MsgSnapRequest, Offset: rv.next}
	if rv.meta.Index == 0 {
		m.ID, m.Deps = r.need.id, r.executedTo.ids()
	} else {
		m.Snapshot = consensus.SnapshotMeta{Index: rv.meta.Index, Term: rv.meta.Term}
	}
	r.send(rv.from, m)
}

// abandonRecv gives up the transfer in progress; the need, if still open,
// asks again after RecoveryTimeoutTicks.
func (r *Replica) abandonRecv(why string) {
	r.cfg.Logger.Debugf("epaxos %d: snapshot transfer from %d abandoned: %s", r.id, r.recv.from, why)
	r.recv = snapRecv{}
	r.need.ticks = 0
}

// useful reports whether installing a snapshot with state st would move
// this replica forward without losing anything: it holds everything
// executed here, and more.
func (r *Replica) useful(st *snapState) bool {
	return st.executed.dominates(r.executedTo) && !st.executed.equal(r.executedTo) && st.index >= r.applied
}

// tickSnapshot runs the transfer's resend timer, and asks again for a
// snapshot this replica still needs.
func (r *Replica) tickSnapshot() {
	if rv := &r.recv; rv.active {
		rv.ticks++
		if rv.ticks < 2*r.cfg.RetryTicks {
			return
		}
		rv.ticks = 0
		rv.retries++
		if rv.retries > SnapshotRetriesMax {
			r.abandonRecv("no answer")
			return
		}
		r.sendSnapRequest()
		return
	}
	if r.need.id.Instance == 0 {
		return
	}
	if it := r.insts[r.need.id]; r.executedTo.covers(r.need.id) || it != nil && it.Status == StatusCommitted {
		r.need = snapNeed{}
		return
	}
	r.need.ticks++
	if r.need.ticks >= r.cfg.RecoveryTimeoutTicks {
		r.requestSnapshot()
	}
}

// onSnapRequest serves a chunk of this replica's newest snapshot. At
// offset 0 it serves only a snapshot that covers the instance the
// requester needs and everything it executed; if the replica's own state
// would, it asks its host for a snapshot (Ready.SnapshotWanted), and the
// requester asks again later.
func (r *Replica) onSnapRequest(from consensus.NodeID, m *Msg) {
	none := func() { r.send(from, &Msg{Type: MsgSnap}) }
	if r.cfg.Snapshots == nil {
		none()
		return
	}
	meta, ok := r.cfg.Snapshots.Newest()
	if !ok {
		none()
		return
	}
	st, err := decodeState(meta.Protocol)
	if err != nil || st.index != meta.Index || st.executed.instances() != meta.Term {
		r.cfg.Logger.Warnf("epaxos %d: the newest snapshot %d/%d has no usable protocol state (%v); not sending it", r.id, meta.Index, meta.Term, err)
		none()
		return
	}
	off := m.Offset
	if m.Snapshot.Index != meta.Index || m.Snapshot.Term != meta.Term || off < 0 {
		off = 0
	}
	if off == 0 {
		theirs := frontierOf(m.Deps)
		if !st.executed.dominates(theirs) || m.ID.Instance != 0 && !st.executed.covers(m.ID) || st.executed.equal(theirs) {
			if r.executedTo.dominates(theirs) && !r.executedTo.equal(theirs) && (m.ID.Instance == 0 || r.executedTo.covers(m.ID)) {
				r.snapWanted = true
			}
			none()
			return
		}
	}
	data, last, err := r.cfg.Snapshots.ReadChunk(meta.Index, off, r.cfg.SnapshotChunkBytes)
	if err == nil && len(data) > r.cfg.SnapshotChunkBytes {
		err = fmt.Errorf("the store returned %d bytes, more than the %d asked for", len(data), r.cfg.SnapshotChunkBytes)
	}
	if err == nil && len(data) == 0 && !last {
		err = errors.New("the store returned an empty chunk that is not the last")
	}
	if err != nil {
		r.cfg.Logger.Warnf("epaxos %d: reading snapshot %d at offset %d for %d: %v", r.id, meta.Index, off, from, err)
		none()
		return
	}
	out := &Msg{Type: MsgSnap, Snapshot: consensus.SnapshotMeta{Index: meta.Index, Term: meta.Term}, Offset: off, Data: slices.Clip(data), Last: last}
	if off == 0 {
		out.Snapshot.Protocol = slices.Clip(meta.Protocol)
	}
	r.send(from, out)
}

// onSnap stores a chunk of the transfer in progress, asks for the next
// one, and installs the snapshot after the last.
func (r *Replica) onSnap(from consensus.NodeID, m *Msg) {
	rv := &r.recv
	if !rv.active || from != rv.from {
		return
	}
	if m.Snapshot.Index == 0 {
		r.abandonRecv(fmt.Sprintf("%d has no snapshot that would do", from))
		return
	}
	same := rv.meta.Index == m.Snapshot.Index && rv.meta.Term == m.Snapshot.Term
	switch {
	case m.Offset == 0 && same && rv.next > 0:
		return // a duplicate of the first chunk
	case m.Offset == 0:
		st, err := decodeState(m.Snapshot.Protocol)
		if err == nil && (st.index != m.Snapshot.Index || st.executed.instances() != m.Snapshot.Term) {
			err = errors.New("its state does not match its index and term")
		}
		if err != nil {
			r.abandonRecv(fmt.Sprintf("snapshot %d/%d: %v", m.Snapshot.Index, m.Snapshot.Term, err))
			return
		}
		if !r.useful(st) || r.need.id.Instance == 0 || !st.executed.covers(r.need.id) {
			r.abandonRecv(fmt.Sprintf("snapshot %d/%d (executed %v) does not cover %v and everything executed here (%v)", m.Snapshot.Index, m.Snapshot.Term, st.executed, r.need.id, r.executedTo))
			return
		}
		rv.meta, rv.state, rv.next = cloneMeta(m.Snapshot), st, 0
		r.cfg.Logger.Debugf("epaxos %d: receiving snapshot %d/%d (executed %v) from %d", r.id, rv.meta.Index, rv.meta.Term, st.executed, from)
	case !same || m.Offset != rv.next:
		return // stale or duplicated; the resend timer asks again
	}
	if len(m.Data) > SnapshotChunkBytesMax {
		r.abandonRecv(fmt.Sprintf("a chunk of %d bytes", len(m.Data)))
		return
	}
	if m.Last && !r.useful(rv.state) {
		r.abandonRecv("it no longer holds everything executed here")
		return
	}
	if err := r.cfg.Snapshots.ReceiveChunk(rv.meta, m.Offset, m.Data, m.Last); err != nil {
		r.cfg.Logger.Warnf("epaxos %d: storing chunk at %d of snapshot %d/%d from %d: %v", r.id, m.Offset, rv.meta.Index, rv.meta.Term, from, err)
		r.abandonRecv("the store refused a chunk")
		return
	}
	rv.ticks, rv.retries = 0, 0
	if !m.Last {
		rv.next += int64(len(m.Data))
		r.sendSnapRequest()
		return
	}
	meta, st := rv.meta, rv.state
	r.recv = snapRecv{}
	r.installSnapshot(meta, st)
}

// installSnapshot makes a fully received snapshot, which holds everything
// executed here, the replica's executed state: every instance it covers
// is dropped (executed, by the snapshot), the frontier, execution counter
// and conflict index come from it, and instances above it are kept. The
// next Ready hands it out in Restore (the host replaces its state machine
// before applying Committed) and persists a Checkpoint.
func (r *Replica) installSnapshot(meta consensus.SnapshotMeta, st *snapState) {
	r.cfg.Logger.Infof("epaxos %d: installing snapshot %d/%d (executed %v; here %d, %v)", r.id, meta.Index, meta.Term, st.executed, r.applied, r.executedTo)
	r.dropCovered(st.executed)
	r.loadState(st)
	// Entries executed but not yet handed out (none, if the host called
	// Advance before Step, as it must) are in the snapshot.
	r.executed = nil
	r.snap = cloneMeta(meta)
	r.snap.Voters = nil
	r.snapE = maps.Clone(st.executed)
	restored := cloneMeta(meta)
	r.restore = &restored
	r.checkpointDue = true
	r.snapWanted = false
	r.sinceSnap = 0
	// Count the commits again, and start the executor over with every
	// committed instance above the snapshot.
	r.ncommit = st.executed.instances()
	r.exec.reset()
	r.exec.queue = nil
	clear(r.exec.waiting)
	ids := make([]InstanceID, 0, len(r.insts))
	for id, it := range r.insts {
		if it.Status == StatusCommitted {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, InstanceID.Compare)
	r.ncommit += uint64(len(ids))
	r.exec.queue = ids
	if r.executedTo.covers(r.need.id) {
		r.need = snapNeed{}
	}
}

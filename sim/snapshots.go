package sim

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/storage/durable"
	"github.com/synod-io/synod/storage/snap"
)

// snapDir holds a node's state-machine snapshots on its simulated disk.
const snapDir = "snap"

// nodeSnapshots is a node's snapshot store as its replica sees it
// (consensus.SnapshotStore), on the node's simulated disk.
type nodeSnapshots struct {
	*durable.Snapshots
}

// loadState reads the stored snapshot at index (the newest with that
// index) into a fresh state machine, and returns the metadata it was saved
// with.
func (s *nodeSnapshots) loadState(index uint64) (*kv.Store, consensus.SnapshotMeta, error) {
	in, err := s.Find(index)
	if err != nil {
		return nil, consensus.SnapshotMeta{}, err
	}
	r, err := s.Store().Open(in.Name)
	if err != nil {
		return nil, consensus.SnapshotMeta{}, err
	}
	m := r.Meta()
	_ = r.Close()
	meta := consensus.SnapshotMeta{Index: m.Index, Term: m.Term, Voters: m.Voters, Protocol: m.Protocol}
	data, err := s.ReadAll(index)
	if err != nil {
		return nil, meta, err
	}
	st, err := kv.Restore(data)
	return st, meta, err
}

// takeSnapshot saves the node's state machine and lets its replica compact
// its log behind it. A replica whose snapshots carry protocol state
// (consensus.SnapshotDescriber) describes the snapshot first.
func (w *world) takeSnapshot(n *node) {
	if n.snaps == nil || n.applied == 0 {
		return
	}
	c, ok := n.replica.(consensus.Compactor)
	if !ok {
		return
	}
	meta := consensus.SnapshotMeta{Index: n.applied, Term: n.appliedTerm, Voters: slices.Clone(w.peers)}
	if d, ok := c.(consensus.SnapshotDescriber); ok {
		m, err := d.DescribeSnapshot(n.applied)
		if err != nil {
			w.violate(checkViolation(w, "snapshot", fmt.Sprintf("node %d: DescribeSnapshot(%d) refused: %v", n.id, n.applied, err)))
			return
		}
		meta.Term, meta.Protocol = m.Term, m.Protocol
	}
	if newest, ok := n.snaps.Newest(); ok && (newest.Index > meta.Index || newest.Index == meta.Index && newest.Term >= meta.Term) {
		return
	}
	data := n.store.Snapshot()
	w.noteSnapshot(n, &meta, n.store, true)
	if _, err := n.snaps.Store().Save(snap.Meta{Index: meta.Index, Term: meta.Term, Voters: meta.Voters, Protocol: meta.Protocol}, bytes.NewReader(data)); err != nil {
		w.diskFailure(n, fmt.Errorf("saving snapshot %d: %w", meta.Index, err))
		return
	}
	_ = n.snaps.Store().GC()
	if err := c.Compact(meta); err != nil {
		w.violate(checkViolation(w, "snapshot", fmt.Sprintf("node %d: Compact(%d) refused: %v", n.id, meta.Index, err)))
		return
	}
	w.res.Snapshots++
	w.trace.note(w.now, fmt.Sprintf("node %d snapshot at %d/%d", n.id, meta.Index, meta.Term))
}

// restoreSnapshot replaces the node's state machine with the snapshot its
// replica received and installed.
func (w *world) restoreSnapshot(n *node, meta *consensus.SnapshotMeta) bool {
	st, saved, err := n.snaps.loadState(meta.Index)
	if err != nil {
		w.diskFailure(n, fmt.Errorf("restoring received snapshot %d: %w", meta.Index, err))
		return false
	}
	if st.AppliedIndex() != meta.Index {
		w.violate(checkViolation(w, "snapshot", fmt.Sprintf("node %d: snapshot %d holds state applied through %d", n.id, meta.Index, st.AppliedIndex())))
		return false
	}
	if saved.Term != meta.Term || !bytes.Equal(saved.Protocol, meta.Protocol) {
		w.violate(checkViolation(w, "snapshot", fmt.Sprintf("node %d: the stored snapshot %d carries other protocol state than the one installed", n.id, meta.Index)))
		return false
	}
	n.store = st
	n.applied, n.appliedTerm = meta.Index, meta.Term
	w.res.SnapshotsInstalled++
	w.noteSnapshot(n, meta, st, false)
	w.resumeKeyOrder(n, meta)
	w.trace.note(w.now, fmt.Sprintf("node %d installs snapshot %d/%d", n.id, meta.Index, meta.Term))
	return true
}

// noteSnapshot checks that every snapshot taken (taken) or installed with
// the same content holds the same state, and, for a leaderless protocol,
// records how far along each key's order a snapshot taken is (see
// check.KeyOrder). Under a protocol with one log order, snapshots at the
// same index must hold the same state, whole. Under a leaderless one,
// indexes are local to each node and so are the state machine's
// revisions: snapshots with the same protocol state (for EPaxos, the same
// executed instances) must hold the same keys with the same values and
// versions.
func (w *world) noteSnapshot(n *node, meta *consensus.SnapshotMeta, st *kv.Store, taken bool) {
	if w.snapHashes == nil {
		w.snapHashes = map[string]uint64{}
	}
	name, hash := fmt.Sprint(meta.Index), st.Hash()
	if w.cfg.Protocol.Leaderless {
		if len(meta.Protocol) == 0 {
			return
		}
		name, hash = snapshotName(meta), keyStateHash(st)
		if taken {
			if v := w.keyOrder.Snapshot(n.id, name, w.tick()); v != nil {
				w.violate(v)
				return
			}
		}
	}
	if h, ok := w.snapHashes[name]; ok && h != hash {
		w.violate(checkViolation(w, "agreement", fmt.Sprintf("node %d's state at snapshot %d/%d differs from another node's snapshot of the same content", n.id, meta.Index, meta.Term)))
		return
	}
	w.snapHashes[name] = hash
}

// snapshotName names a leaderless protocol's snapshot by its content: its
// index, term and protocol state.
func snapshotName(meta *consensus.SnapshotMeta) string {
	return fmt.Sprintf("%d/%d/%x", meta.Index, meta.Term, meta.Protocol)
}

// resumeKeyOrder makes the key-order checker resume node n at the snapshot
// meta (its state machine now starts there).
func (w *world) resumeKeyOrder(n *node, meta *consensus.SnapshotMeta) {
	if !w.cfg.Protocol.Leaderless {
		return
	}
	if len(meta.Protocol) == 0 || !w.keyOrder.Resume(n.id, snapshotName(meta)) {
		w.violate(checkViolation(w, "snapshot", fmt.Sprintf("node %d starts from snapshot %d/%d, which no node took", n.id, meta.Index, meta.Term)))
	}
}

// keyStateHash digests the keys of st with their values, versions and
// existence, leaving out revisions (local to each replica under
// kv.Options.PerKeyOrder) and the applied index.
func keyStateHash(st *kv.Store) uint64 {
	h := fnv.New64a()
	for _, e := range st.Read(kv.RangePrefix("")).KVs {
		fmt.Fprintf(h, "%q=%q@%d;", e.Key, e.Value, e.Version)
	}
	return h.Sum64()
}

package sim

import (
	"bytes"
	"fmt"
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

// loadState reads the stored snapshot at index into a fresh state machine.
func (s *nodeSnapshots) loadState(index uint64) (*kv.Store, error) {
	data, err := s.ReadAll(index)
	if err != nil {
		return nil, err
	}
	return kv.Restore(data)
}

// takeSnapshot saves the node's state machine and lets its replica compact
// its log behind it.
func (w *world) takeSnapshot(n *node) {
	if n.snaps == nil || n.applied == 0 {
		return
	}
	c, ok := n.replica.(consensus.Compactor)
	if !ok {
		return
	}
	meta := consensus.SnapshotMeta{Index: n.applied, Term: n.appliedTerm, Voters: slices.Clone(w.peers)}
	if newest, ok := n.snaps.Newest(); ok && newest.Index >= meta.Index {
		return
	}
	data := n.store.Snapshot()
	w.noteSnapshotHash(n, meta.Index, n.store.Hash())
	if _, err := n.snaps.Store().Save(snap.Meta{Index: meta.Index, Term: meta.Term, Voters: meta.Voters}, bytes.NewReader(data)); err != nil {
		w.diskFailure(n, fmt.Errorf("saving snapshot %d: %w", meta.Index, err))
		return
	}
	_ = n.snaps.Store().GC()
	if err := c.Compact(meta); err != nil {
		w.violate(checkViolation(w, "snapshot", fmt.Sprintf("node %d: Compact(%d) refused: %v", n.id, meta.Index, err)))
		return
	}
	w.res.Snapshots++
	w.trace.note(w.now, fmt.Sprintf("node %d snapshot at %d", n.id, meta.Index))
}

// restoreSnapshot replaces the node's state machine with the snapshot its
// replica received and installed.
func (w *world) restoreSnapshot(n *node, meta *consensus.SnapshotMeta) bool {
	st, err := n.snaps.loadState(meta.Index)
	if err != nil {
		w.diskFailure(n, fmt.Errorf("restoring received snapshot %d: %w", meta.Index, err))
		return false
	}
	if st.AppliedIndex() != meta.Index {
		w.violate(checkViolation(w, "snapshot", fmt.Sprintf("node %d: snapshot %d holds state applied through %d", n.id, meta.Index, st.AppliedIndex())))
		return false
	}
	n.store = st
	n.applied, n.appliedTerm = meta.Index, meta.Term
	w.res.SnapshotsInstalled++
	w.noteSnapshotHash(n, meta.Index, st.Hash())
	w.trace.note(w.now, fmt.Sprintf("node %d installs snapshot %d", n.id, meta.Index))
	return true
}

// noteSnapshotHash checks that every snapshot taken or installed at an
// index holds the same state (for protocols with one log order; under a
// leaderless protocol indexes are local, and agreement is KeyOrder's).
func (w *world) noteSnapshotHash(n *node, index, hash uint64) {
	if w.cfg.Protocol.Leaderless {
		return // indexes are local to each node there
	}
	if w.snapHashes == nil {
		w.snapHashes = map[uint64]uint64{}
	}
	if h, ok := w.snapHashes[index]; ok && h != hash {
		w.violate(checkViolation(w, "agreement", fmt.Sprintf("node %d's state at index %d differs from another node's snapshot there", n.id, index)))
		return
	}
	w.snapHashes[index] = hash
}

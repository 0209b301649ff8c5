package sim

import (
	"bytes"
	"fmt"
	"io"
	"slices"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/storage/snap"
)

// snapDir holds a node's state-machine snapshots on its simulated disk.
const snapDir = "snap"

// nodeSnapshots is a node's snapshot store as its replica sees it
// (consensus.SnapshotStore), on the node's simulated disk.
type nodeSnapshots struct {
	store *snap.Store
	peers []consensus.NodeID
	// src is the snapshot being read for sending, kept open between chunks.
	src      *snap.Source
	srcIndex uint64
	// recv is the transfer being received, if any.
	recv *snap.Receiver
}

func (s *nodeSnapshots) Newest() (consensus.SnapshotMeta, bool) {
	infos, err := s.store.List()
	if err != nil || len(infos) == 0 {
		return consensus.SnapshotMeta{}, false
	}
	in := infos[len(infos)-1]
	return consensus.SnapshotMeta{Index: in.Index, Term: in.Term, Voters: slices.Clone(s.peers)}, true
}

func (s *nodeSnapshots) ReadChunk(index uint64, offset int64, max int) ([]byte, bool, error) {
	if s.src == nil || s.srcIndex != index {
		s.closeSource()
		infos, err := s.store.List()
		if err != nil {
			return nil, false, err
		}
		name := ""
		for _, in := range infos {
			if in.Index == index {
				name = in.Name
			}
		}
		if name == "" {
			return nil, false, fmt.Errorf("sim: snapshot %d is no longer stored", index)
		}
		if s.src, err = s.store.OpenSource(name); err != nil {
			return nil, false, err
		}
		s.srcIndex = index
	}
	c, err := s.src.ReadChunk(offset, make([]byte, max))
	if err != nil {
		s.closeSource()
		return nil, false, err
	}
	return c.Data, c.Done, nil
}

func (s *nodeSnapshots) closeSource() {
	if s.src != nil {
		_ = s.src.Close()
		s.src = nil
	}
}

func (s *nodeSnapshots) ReceiveChunk(meta consensus.SnapshotMeta, offset int64, data []byte, last bool) error {
	if offset == 0 || s.recv == nil {
		if s.recv != nil {
			_ = s.recv.Abort()
		}
		var err error
		if s.recv, err = s.store.NewReceiver(); err != nil {
			s.recv = nil
			return err
		}
	}
	info, err := s.recv.Accept(snap.Chunk{Offset: offset, Data: data, Done: last})
	if err != nil {
		return err
	}
	if last {
		s.recv = nil
		if info.Index != meta.Index || info.Term != meta.Term {
			return fmt.Errorf("sim: received snapshot %d/%d, but the leader sent %d/%d", info.Index, info.Term, meta.Index, meta.Term)
		}
		_ = s.store.GC()
	}
	return nil
}

// loadState reads the stored snapshot at index into a fresh state machine.
func (s *nodeSnapshots) loadState(index uint64) (*kv.Store, error) {
	infos, err := s.store.List()
	if err != nil {
		return nil, err
	}
	for _, in := range infos {
		if in.Index != index {
			continue
		}
		r, err := s.store.Open(in.Name)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(r)
		_ = r.Close()
		if err != nil {
			return nil, err
		}
		return kv.Restore(data)
	}
	return nil, fmt.Errorf("snapshot %d is missing", index)
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
	if _, err := n.snaps.store.Save(snap.Meta{Index: meta.Index, Term: meta.Term, Voters: meta.Voters}, bytes.NewReader(data)); err != nil {
		w.diskFailure(n, fmt.Errorf("saving snapshot %d: %w", meta.Index, err))
		return
	}
	_ = n.snaps.store.GC()
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
// index holds the same state.
func (w *world) noteSnapshotHash(n *node, index, hash uint64) {
	if w.snapHashes == nil {
		w.snapHashes = map[uint64]uint64{}
	}
	if h, ok := w.snapHashes[index]; ok && h != hash {
		w.violate(checkViolation(w, "agreement", fmt.Sprintf("node %d's state at index %d differs from another node's snapshot there", n.id, index)))
		return
	}
	w.snapHashes[index] = hash
}

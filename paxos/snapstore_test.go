package paxos

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// memSnapshotStore is a test consensus.SnapshotStore that keeps snapshots
// in memory. Saved snapshots survive a crash of their node; an unfinished
// incoming transfer does not.
type memSnapshotStore struct {
	saved  []memSnap // ascending by index
	in     *memSnap  // incoming transfer
	inNext int64
	inDone bool

	reads    int // ReadChunk calls
	received int // chunks accepted
}

type memSnap struct {
	meta consensus.SnapshotMeta
	data []byte
}

var errSnapshotGone = errors.New("memstore: no such snapshot")

func (s *memSnapshotStore) Newest() (consensus.SnapshotMeta, bool) {
	if len(s.saved) == 0 {
		return consensus.SnapshotMeta{}, false
	}
	return s.saved[len(s.saved)-1].meta, true
}

func (s *memSnapshotStore) get(index uint64) ([]byte, bool) {
	for i := range s.saved {
		if s.saved[i].meta.Index == index {
			return s.saved[i].data, true
		}
	}
	return nil, false
}

func (s *memSnapshotStore) ReadChunk(index uint64, offset int64, max int) ([]byte, bool, error) {
	s.reads++
	data, ok := s.get(index)
	if !ok {
		return nil, false, fmt.Errorf("%w at index %d", errSnapshotGone, index)
	}
	if offset < 0 || offset > int64(len(data)) || max < 1 {
		return nil, false, fmt.Errorf("memstore: bad read at %d (max %d) of %d bytes", offset, max, len(data))
	}
	end := min(offset+int64(max), int64(len(data)))
	return slices.Clone(data[offset:end]), end == int64(len(data)), nil
}

func (s *memSnapshotStore) ReceiveChunk(meta consensus.SnapshotMeta, offset int64, data []byte, last bool) error {
	if offset == 0 {
		s.in, s.inNext, s.inDone = &memSnap{meta: meta}, 0, false
	}
	if s.in == nil || s.inDone || s.in.meta.Index != meta.Index || s.in.meta.Term != meta.Term || offset != s.inNext {
		return fmt.Errorf("memstore: chunk at %d of snapshot %d out of order", offset, meta.Index)
	}
	s.in.data = append(s.in.data, data...)
	s.inNext += int64(len(data))
	s.inDone = last
	s.received++
	return nil
}

// save stores a snapshot the host took.
func (s *memSnapshotStore) save(meta consensus.SnapshotMeta, data []byte) {
	s.saved = slices.DeleteFunc(s.saved, func(m memSnap) bool { return m.meta.Index == meta.Index })
	i, _ := slices.BinarySearchFunc(s.saved, meta.Index, func(m memSnap, index uint64) int { return cmp.Compare(m.meta.Index, index) })
	s.saved = slices.Insert(s.saved, i, memSnap{meta: meta, data: data})
}

// install makes the fully received snapshot meta a saved one (the host's
// step 1 for Ready.Restore).
func (s *memSnapshotStore) install(meta consensus.SnapshotMeta) error {
	if s.in == nil || !s.inDone || s.in.meta.Index != meta.Index {
		return fmt.Errorf("memstore: snapshot %d to restore was not fully received", meta.Index)
	}
	s.save(s.in.meta, s.in.data)
	s.in = nil
	return nil
}

// crash loses the unfinished incoming transfer.
func (s *memSnapshotStore) crash() { s.in, s.inNext, s.inDone = nil, 0, false }

package raft

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
	saved []memSnap // ascending by index
	in    *memSnap  // incoming transfer
	// inNext is the offset the incoming transfer expects; inDone is set
	// once its last chunk arrived.
	inNext int64
	inDone bool

	// failReceives makes that many ReceiveChunk calls fail.
	failReceives int
	reads        int // ReadChunk calls
	received     int // chunks accepted
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
	if s.failReceives > 0 {
		s.failReceives--
		s.in = nil
		return errors.New("memstore: injected receive failure")
	}
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

// prune drops saved snapshots below index (the host keeps the one its
// newest checkpoint names, and newer ones).
func (s *memSnapshotStore) prune(index uint64) {
	s.saved = slices.DeleteFunc(s.saved, func(m memSnap) bool { return m.meta.Index < index })
}

// crash loses the unfinished incoming transfer.
func (s *memSnapshotStore) crash() { s.in, s.inNext, s.inDone = nil, 0, false }

// wantSnapshots is a placeholder store in a clusterOpt: the harness gives
// each node its own memSnapshotStore in its place.
type wantSnapshots struct{}

func (wantSnapshots) Newest() (consensus.SnapshotMeta, bool) { panic("placeholder store") }
func (wantSnapshots) ReadChunk(uint64, int64, int) ([]byte, bool, error) {
	panic("placeholder store")
}
func (wantSnapshots) ReceiveChunk(consensus.SnapshotMeta, int64, []byte, bool) error {
	panic("placeholder store")
}

// withSnapshots turns snapshots on with small thresholds.
func withSnapshots(entries, retain, chunkBytes int) clusterOpt {
	return func(cfg *Config) {
		cfg.Snapshots = wantSnapshots{}
		cfg.SnapshotEntries = entries
		cfg.CompactionRetainEntries = retain
		cfg.SnapshotChunkBytes = chunkBytes
	}
}

// The test state machine is the list of applied entries; its snapshot is
// their encoding.

func encodeApplied(applied []consensus.Entry) []byte {
	buf := appendUvarint(nil, uint64(len(applied)))
	for i := range applied {
		buf = consensus.AppendEntry(buf, &applied[i])
	}
	return buf
}

func decodeApplied(data []byte) ([]consensus.Entry, error) {
	d := consensus.NewDecoder(data)
	n := d.Count(7, 1<<30)
	out := make([]consensus.Entry, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		e := d.Entry()
		if d.Err() == nil && e.Index != uint64(i+1) {
			return nil, fmt.Errorf("snapshot holds entry %d at position %d", e.Index, i)
		}
		out = append(out, e)
	}
	d.End()
	return out, d.Err()
}

// snapshotEntries returns the state machine saved in store at index.
func snapshotEntries(store *memSnapshotStore, index uint64) ([]consensus.Entry, error) {
	data, ok := store.get(index)
	if !ok {
		return nil, fmt.Errorf("no snapshot at %d", index)
	}
	ents, err := decodeApplied(data)
	if err == nil && uint64(len(ents)) != index {
		err = fmt.Errorf("snapshot at %d holds %d entries", index, len(ents))
	}
	return ents, err
}

// persistRecords is the host making recs durable: a checkpoint replaces
// every older record (the WAL is compacted), and snapshots older than the
// one it names are deleted.
func persistRecords(durable []consensus.Record, recs []consensus.Record, store *memSnapshotStore) []consensus.Record {
	for _, rec := range recs {
		if cp, ok := rec.(Checkpoint); ok {
			durable = []consensus.Record{cp}
			if store != nil {
				store.prune(cp.SnapshotIndex())
			}
			continue
		}
		durable = append(durable, rec)
	}
	return durable
}

// takeSnapshot is the host answering SnapshotWanted: it saves its state
// machine and calls Compact.
func takeSnapshot(r *Raft, store *memSnapshotStore, applied []consensus.Entry) (consensus.SnapshotMeta, error) {
	if len(applied) == 0 {
		return consensus.SnapshotMeta{}, nil
	}
	last := applied[len(applied)-1]
	meta := consensus.SnapshotMeta{Index: last.Index, Term: last.Term, Voters: slices.Clone(r.peers)}
	store.save(meta, encodeApplied(applied))
	return meta, r.Compact(meta)
}

// restartState returns the state machine a host restores before replaying
// durable: the snapshot its newest checkpoint names, or nothing.
func restartState(durable []consensus.Record, store *memSnapshotStore) ([]consensus.Entry, error) {
	for i := len(durable) - 1; i >= 0; i-- {
		if cp, ok := durable[i].(Checkpoint); ok {
			if cp.SnapshotIndex() == 0 {
				return nil, nil
			}
			return snapshotEntries(store, cp.SnapshotIndex())
		}
	}
	return nil, nil
}

package node

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/storage/snap"
	"github.com/synod-io/synod/storage/wal"
)

// walLog is the node's write-ahead log of its replica's records. Each
// Ready's records go in as one WAL record (a count, then each record
// length-prefixed, encoded by the protocol's codec), so a Ready is durable
// whole or not at all, as in the simulator (sim/disk.go).
type walLog struct {
	log   *wal.Log
	codec consensus.RecordCodec
	buf   []byte
	enc   []byte
}

func openWAL(dir string, segmentBytes int64, codec consensus.RecordCodec) (*walLog, []consensus.Record, error) {
	fit := segmentBytes - 64
	l, err := wal.Open(vfsDefault, dir, wal.Options{SegmentBytes: segmentBytes, RecordBytesMax: int(fit - fit%8 - 64)})
	if err != nil {
		return nil, nil, fmt.Errorf("node: opening the write-ahead log in %s: %w", dir, err)
	}
	var recs []consensus.Record
	err = l.Replay(l.FirstIndex(), func(index uint64, rec wal.Record) error {
		if rec.Type != walRecordBatch {
			return fmt.Errorf("WAL record %d has unknown type %d (written by a newer version?)", index, rec.Type)
		}
		dec := consensus.NewDecoder(rec.Data)
		count := dec.Count(1, walRecordsLimit)
		for range count {
			data := dec.Bytes()
			if dec.Err() != nil {
				break
			}
			r, err := codec.DecodeRecord(data)
			if err != nil {
				return fmt.Errorf("WAL record %d: %w", index, err)
			}
			recs = append(recs, r)
		}
		dec.End()
		if err := dec.Err(); err != nil {
			return fmt.Errorf("WAL record %d: %w", index, err)
		}
		return nil
	})
	if err != nil {
		_ = l.Close()
		return nil, nil, fmt.Errorf("node: replaying the write-ahead log in %s: %w", dir, err)
	}
	return &walLog{log: l, codec: codec}, recs, nil
}

// persist appends one Ready's records as one WAL record and syncs it,
// unless syncOptional says nothing depends on them being durable yet (a
// later sync covers them). Once a checkpoint is durable, the WAL records
// before it are released.
func (w *walLog) persist(recs []consensus.Record, syncOptional bool) error {
	if len(recs) == 0 {
		return nil
	}
	w.buf = binary.AppendUvarint(w.buf[:0], uint64(len(recs)))
	checkpoint := false
	for _, r := range recs {
		if _, ok := r.(consensus.Checkpoint); ok {
			checkpoint = true
		}
		var err error
		w.enc, err = w.codec.AppendRecord(w.enc[:0], r)
		if err != nil {
			// The protocol emitted a record its own codec cannot encode.
			panic(fmt.Sprintf("node: cannot encode record %T: %v", r, err))
		}
		w.buf = binary.AppendUvarint(w.buf, uint64(len(w.enc)))
		w.buf = append(w.buf, w.enc...)
	}
	var index uint64
	var err error
	if syncOptional && !checkpoint {
		index, err = w.log.Append(wal.Record{Type: walRecordBatch, Data: w.buf})
	} else {
		index, err = w.log.AppendSync(wal.Record{Type: walRecordBatch, Data: w.buf})
	}
	if cap(w.buf) > 4<<20 {
		w.buf, w.enc = nil, nil // do not keep a huge buffer
	}
	if err != nil {
		return err
	}
	if checkpoint {
		if err := w.log.ReleasePrefix(index); err != nil {
			return err
		}
	}
	return nil
}

// snapshots is the node's snapshot store as its replica sees it
// (consensus.SnapshotStore), over storage/snap. Its methods are called
// from the node's loop; mu guards it against Close.
type snapshots struct {
	mu     sync.Mutex
	store  *snap.Store
	voters []consensus.NodeID
	// src is the snapshot being read for sending, kept open between chunks.
	src      *snap.Source
	srcIndex uint64
	// recv is the transfer being received, if any.
	recv *snap.Receiver
	// onReceived is told of each snapshot fully received and installed.
	onReceived func(snap.Info)
}

var _ consensus.SnapshotStore = (*snapshots)(nil)

func (s *snapshots) Newest() (consensus.SnapshotMeta, bool) {
	infos, err := s.store.List()
	if err != nil || len(infos) == 0 {
		return consensus.SnapshotMeta{}, false
	}
	in := infos[len(infos)-1]
	return consensus.SnapshotMeta{Index: in.Index, Term: in.Term, Voters: slices.Clone(s.voters)}, true
}

// find returns the stored snapshot with the given index.
func (s *snapshots) find(index uint64) (snap.Info, error) {
	infos, err := s.store.List()
	if err != nil {
		return snap.Info{}, err
	}
	for _, in := range infos {
		if in.Index == index {
			return in, nil
		}
	}
	return snap.Info{}, fmt.Errorf("node: snapshot %d is not in %s", index, s.store.Dir())
}

func (s *snapshots) ReadChunk(index uint64, offset int64, max int) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.src == nil || s.srcIndex != index {
		s.closeSource()
		in, err := s.find(index)
		if err != nil {
			return nil, false, err
		}
		if s.src, err = s.store.OpenSource(in.Name); err != nil {
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

func (s *snapshots) closeSource() {
	if s.src != nil {
		_ = s.src.Close()
		s.src = nil
	}
}

func (s *snapshots) ReceiveChunk(meta consensus.SnapshotMeta, offset int64, data []byte, last bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
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
			return fmt.Errorf("node: received snapshot %d/%d, but the leader sent %d/%d", info.Index, info.Term, meta.Index, meta.Term)
		}
		_ = s.store.GC()
		if s.onReceived != nil {
			s.onReceived(info)
		}
	}
	return nil
}

// close releases open files and abandons an unfinished transfer.
func (s *snapshots) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeSource()
	if s.recv != nil {
		_ = s.recv.Abort()
		s.recv = nil
	}
}

// Package durable keeps a replica's durable state on disk, the same way in
// the real node and in the simulator: its records in a write-ahead log, one
// WAL record per Ready so that a Ready is durable whole or not at all, and
// its state-machine snapshots in a snapshot store that the replica reads
// and writes in chunks (consensus.SnapshotStore).
package durable

import (
	"encoding/binary"
	"fmt"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/storage/vfs"
	"github.com/synod-io/synod/storage/wal"
)

// walRecordBatch is the WAL record type holding one Ready's records.
const walRecordBatch = 1

// BatchRecordsMax bounds how many records one batch may declare, so a
// corrupt count cannot make recovery allocate without limit.
const BatchRecordsMax = 1 << 20

// Log is a replica's write-ahead log of records. Each Ready's records are
// one WAL record: a count, then each record length-prefixed, encoded by the
// protocol's codec. Once a checkpoint record (consensus.Checkpoint) is
// durable, every WAL record before it is released.
//
// A Log is not safe for concurrent use.
type Log struct {
	log   *wal.Log
	codec consensus.RecordCodec
	buf   []byte
	enc   []byte
}

// Open opens (or creates) the log in dir, recovers it, and returns the
// records it holds, decoded, in order. An error wrapping wal.ErrCorrupt
// means the log cannot be trusted.
func Open(fsys vfs.FS, dir string, opts wal.Options, codec consensus.RecordCodec) (*Log, []consensus.Record, error) {
	l, err := wal.Open(fsys, dir, opts)
	if err != nil {
		return nil, nil, err
	}
	var recs []consensus.Record
	err = l.Replay(l.FirstIndex(), func(index uint64, rec wal.Record) error {
		if rec.Type != walRecordBatch {
			return fmt.Errorf("durable: WAL record %d has unknown type %d (written by a newer version?)", index, rec.Type)
		}
		dec := consensus.NewDecoder(rec.Data)
		count := dec.Count(1, BatchRecordsMax)
		for range count {
			data := dec.Bytes()
			if dec.Err() != nil {
				break
			}
			r, err := codec.DecodeRecord(data)
			if err != nil {
				return fmt.Errorf("durable: WAL record %d: %w", index, err)
			}
			recs = append(recs, r)
		}
		dec.End()
		if err := dec.Err(); err != nil {
			return fmt.Errorf("durable: WAL record %d: %w", index, err)
		}
		return nil
	})
	if err != nil {
		_ = l.Close()
		return nil, nil, err
	}
	return &Log{log: l, codec: codec}, recs, nil
}

// Write appends one Ready's records as one WAL record, not yet durable. It
// returns the WAL index of the batch and whether it holds a checkpoint,
// for Commit. It panics if the protocol's codec cannot encode a record the
// protocol emitted (a bug in the protocol).
func (l *Log) Write(recs []consensus.Record) (index uint64, checkpoint bool, err error) {
	l.buf = binary.AppendUvarint(l.buf[:0], uint64(len(recs)))
	for _, r := range recs {
		if _, ok := r.(consensus.Checkpoint); ok {
			checkpoint = true
		}
		l.enc, err = l.codec.AppendRecord(l.enc[:0], r)
		if err != nil {
			panic(fmt.Sprintf("durable: cannot encode record %T: %v", r, err))
		}
		l.buf = binary.AppendUvarint(l.buf, uint64(len(l.enc)))
		l.buf = append(l.buf, l.enc...)
	}
	index, err = l.log.Append(wal.Record{Type: walRecordBatch, Data: l.buf})
	if cap(l.buf) > 4<<20 {
		l.buf, l.enc = nil, nil // do not keep a huge buffer
	}
	return index, checkpoint, err
}

// Commit makes everything written so far durable and, if the batch at
// index held a checkpoint, releases the WAL records before it.
func (l *Log) Commit(index uint64, checkpoint bool) error {
	if err := l.log.Sync(); err != nil {
		return err
	}
	if checkpoint {
		return l.log.ReleasePrefix(index)
	}
	return nil
}

// Persist writes one Ready's records and makes them durable, unless
// syncOptional says nothing depends on them yet (a later Commit covers
// them). A checkpoint is always made durable.
func (l *Log) Persist(recs []consensus.Record, syncOptional bool) error {
	if len(recs) == 0 {
		return nil
	}
	index, checkpoint, err := l.Write(recs)
	if err != nil {
		return err
	}
	if syncOptional && !checkpoint {
		return nil
	}
	return l.Commit(index, checkpoint)
}

// Stats describes the underlying WAL.
func (l *Log) Stats() wal.Stats { return l.log.Stats() }

// Close closes the WAL.
func (l *Log) Close() error { return l.log.Close() }

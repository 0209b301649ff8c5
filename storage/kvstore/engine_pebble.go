package kvstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleEngine keeps space s under the 8-byte big-endian prefix s.
type pebbleEngine struct {
	db   *pebble.DB
	sync bool
}

// logger passes Pebble's errors to Options.Logf (or Pebble's default
// logger) and drops its chatter.
type logger struct {
	logf func(format string, args ...any)
}

func (logger) Infof(string, ...any) {}

func (l logger) Errorf(format string, args ...any) {
	if l.logf != nil {
		l.logf("pebble: "+format, args...)
	} else {
		pebble.DefaultLogger.Errorf(format, args...)
	}
}

// Fatalf panics: Pebble calls it when it cannot go on (a failed WAL write),
// and the process must not continue as if the batch were durable.
func (logger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

func openEngine(dir string, opts Options) (engine, error) {
	l := logger{opts.Logf}
	db, err := pebble.Open(dir, &pebble.Options{
		Logger: l,
		EventListener: &pebble.EventListener{
			// The read that found the damage returns it (as ErrCorrupt);
			// Pebble's default would be Fatalf.
			DataCorruption: func(info pebble.DataCorruptionInfo) { l.Errorf("%s", info) },
		},
	})
	if err != nil {
		return nil, pebbleErr(err)
	}
	return &pebbleEngine{db: db, sync: !opts.NoSync}, nil
}

func pebbleErr(err error) error {
	if err != nil && pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

func (e *pebbleEngine) close() error { return pebbleErr(e.db.Close()) }

type pebbleReader interface {
	Get(key []byte) ([]byte, interface{ Close() error }, error)
}

func (e *pebbleEngine) begin(m mode) (tx, error) {
	t := &pebbleTx{e: e}
	switch m {
	case modeRead:
		t.snap = e.db.NewSnapshot()
	case modeWrite:
		t.batch = e.db.NewIndexedBatch()
	case modeLoad:
		t.batch = e.db.NewBatch()
		t.load = true
	}
	return t, nil
}

type pebbleTx struct {
	e     *pebbleEngine
	snap  *pebble.Snapshot
	batch *pebble.Batch
	load  bool
	kbuf  []byte
	vbuf  []byte
	done  bool
}

func (t *pebbleTx) key(space uint64, key []byte) []byte {
	t.kbuf = append(binary.BigEndian.AppendUint64(t.kbuf[:0], space), key...)
	return t.kbuf
}

func (t *pebbleTx) get(space uint64, key []byte) ([]byte, error) {
	k := t.key(space, key)
	var v []byte
	var c interface{ Close() error }
	var err error
	switch {
	case t.snap != nil:
		v, c, err = t.snap.Get(k)
	case t.load:
		v, c, err = t.e.db.Get(k)
	default:
		v, c, err = t.batch.Get(k)
	}
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, pebbleErr(err)
	}
	t.vbuf = append(t.vbuf[:0], v...)
	c.Close()
	if t.vbuf == nil {
		t.vbuf = []byte{}
	}
	return t.vbuf, nil
}

func (t *pebbleTx) ascend(space uint64, from, to []byte, fn func(k, v []byte) bool) error {
	o := &pebble.IterOptions{
		LowerBound: append(binary.BigEndian.AppendUint64(nil, space), from...),
		UpperBound: append(binary.BigEndian.AppendUint64(nil, space), to...),
	}
	var it *pebble.Iterator
	var err error
	switch {
	case t.snap != nil:
		it, err = t.snap.NewIter(o)
	case t.load:
		it, err = t.e.db.NewIter(o)
	default:
		it, err = t.batch.NewIter(o)
	}
	if err != nil {
		return pebbleErr(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return pebbleErr(err)
		}
		if !fn(it.Key()[8:], v) {
			break
		}
	}
	return pebbleErr(errors.Join(it.Error(), it.Close()))
}

func (t *pebbleTx) put(space uint64, key, val []byte) error {
	return t.batch.Set(t.key(space, key), val, nil)
}

func (t *pebbleTx) delete(space uint64, key []byte) error {
	return t.batch.Delete(t.key(space, key), nil)
}

func (t *pebbleTx) dropSpace(space uint64) error {
	lo := binary.BigEndian.AppendUint64(nil, space)
	hi := binary.BigEndian.AppendUint64(nil, space+1)
	return t.batch.DeleteRange(lo, hi, nil)
}

func (t *pebbleTx) commit(sync bool) error {
	t.done = true
	wo := pebble.NoSync
	if sync && t.e.sync {
		wo = pebble.Sync
	}
	err := t.batch.Commit(wo)
	t.batch.Close()
	return pebbleErr(err)
}

func (t *pebbleTx) rollback() {
	if t.done {
		return
	}
	t.done = true
	if t.snap != nil {
		t.snap.Close()
	}
	if t.batch != nil {
		t.batch.Close()
	}
}

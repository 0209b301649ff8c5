package storage

import (
	"encoding/binary"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bboltBucket = []byte("log")

// bboltTarget stores each record under its 8-byte big-endian seq in one
// bucket. One appender: one db.Update per record. Several: db.Batch, which
// coalesces concurrent calls into one read-write transaction (bbolt's group
// commit), with MaxBatchSize set to the number of appenders so that a batch
// starts as soon as every appender has joined it, instead of waiting for
// MaxBatchDelay (10 ms) to collect the default 1000 calls that a closed loop
// of N < 1000 appenders can never supply.
//
// Every commit of a read-write transaction makes two fdatasync(2) calls
// (tx.Commit: one after writing the dirty pages, one after writing the meta
// page), plus one fsync when the file grows; Syncs is derived as 2 per
// commit (the grows are rare and not counted).
type bboltTarget struct {
	path    string
	db      *bolt.DB
	batch   bool
	lastTx  int // only touched inside the (exclusive) write transaction
	commits atomic.Int64
	closed  bool
}

func openBbolt(dir string, appenders int) (Target, error) {
	p := filepath.Join(dir, "bolt.db")
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bboltBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	t := &bboltTarget{path: p, db: db, batch: appenders > 1, lastTx: -1}
	if t.batch {
		db.MaxBatchSize = appenders
	}
	return t, nil
}

func (t *bboltTarget) Append(seq uint64, rec []byte) error {
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], seq)
	fn := func(tx *bolt.Tx) error {
		if id := tx.ID(); id != t.lastTx {
			t.lastTx = id
			t.commits.Add(1)
		}
		// Put keeps the slices until the transaction commits, which is
		// before Update/Batch returns; rec is reused only after that.
		return tx.Bucket(bboltBucket).Put(key[:], rec)
	}
	if t.batch {
		return t.db.Batch(fn)
	}
	return t.db.Update(fn)
}

func (t *bboltTarget) Syncs() (int64, string) { return 2 * t.commits.Load(), "derived" }

func (t *bboltTarget) Commits() int64 { return t.commits.Load() }

func (t *bboltTarget) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	return t.db.Close()
}

func (t *bboltTarget) ReadBack(fn func([]byte) error) error {
	if err := t.Close(); err != nil {
		return err
	}
	db, err := bolt.Open(t.path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bboltBucket).ForEach(func(_, v []byte) error { return fn(v) })
	})
}

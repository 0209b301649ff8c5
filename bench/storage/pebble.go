package storage

import (
	"encoding/binary"
	"fmt"
	"log"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	pvfs "github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleFS wraps Pebble's OS file system and counts the durable syncs of
// every file it opens: Sync, SyncData, and SyncTo when it reports a full
// sync. Syncs of WAL files (*.log) are also counted apart: each is one
// group commit of the WAL.
type pebbleFS struct {
	pvfs.FS
	syncs    atomic.Int64
	walSyncs atomic.Int64
}

func (p *pebbleFS) wrap(name string, f pvfs.File, err error) (pvfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &pebbleFile{File: f, fs: p, wal: strings.HasSuffix(name, ".log")}, nil
}

func (p *pebbleFS) Create(name string, c pvfs.DiskWriteCategory) (pvfs.File, error) {
	f, err := p.FS.Create(name, c)
	return p.wrap(name, f, err)
}

func (p *pebbleFS) Open(name string, opts ...pvfs.OpenOption) (pvfs.File, error) {
	f, err := p.FS.Open(name, opts...)
	return p.wrap(name, f, err)
}

func (p *pebbleFS) OpenReadWrite(name string, c pvfs.DiskWriteCategory, opts ...pvfs.OpenOption) (pvfs.File, error) {
	f, err := p.FS.OpenReadWrite(name, c, opts...)
	return p.wrap(name, f, err)
}

func (p *pebbleFS) OpenDir(name string) (pvfs.File, error) {
	f, err := p.FS.OpenDir(name)
	return p.wrap(name, f, err)
}

func (p *pebbleFS) ReuseForWrite(oldname, newname string, c pvfs.DiskWriteCategory) (pvfs.File, error) {
	f, err := p.FS.ReuseForWrite(oldname, newname, c)
	return p.wrap(newname, f, err)
}

type pebbleFile struct {
	pvfs.File
	fs  *pebbleFS
	wal bool
}

func (f *pebbleFile) count() {
	f.fs.syncs.Add(1)
	if f.wal {
		f.fs.walSyncs.Add(1)
	}
}

func (f *pebbleFile) Sync() error     { f.count(); return f.File.Sync() }
func (f *pebbleFile) SyncData() error { f.count(); return f.File.SyncData() }
func (f *pebbleFile) SyncTo(n int64) (bool, error) {
	full, err := f.File.SyncTo(n)
	if full {
		f.count()
	}
	return full, err
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(format string, a ...any) { log.Printf("pebble: "+format, a...) }
func (quietLogger) Fatalf(format string, a ...any) { log.Fatalf("pebble: "+format, a...) }

// pebbleTarget does one db.Set(seq, rec, pebble.Sync) per record. Pebble's
// WAL writer groups concurrent syncing writers: one fdatasync covers every
// write queued while the previous one ran. Options are Pebble's defaults
// (4 MiB memtable, so memtables are flushed to sstables and compacted in
// the background during a run; those syncs are counted too).
type pebbleTarget struct {
	dir    string
	fs     *pebbleFS
	db     *pebble.DB
	closed bool
}

func pebbleOptions(fs pvfs.FS) *pebble.Options {
	return &pebble.Options{FS: fs, Logger: quietLogger{}}
}

func openPebble(dir string, _ int) (Target, error) {
	pfs := &pebbleFS{FS: pvfs.Default}
	db, err := pebble.Open(dir, pebbleOptions(pfs))
	if err != nil {
		return nil, err
	}
	return &pebbleTarget{dir: dir, fs: pfs, db: db}, nil
}

func (t *pebbleTarget) Append(seq uint64, rec []byte) error {
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], seq)
	return t.db.Set(key[:], rec, pebble.Sync)
}

func (t *pebbleTarget) Syncs() (int64, string) { return t.fs.syncs.Load(), "counted" }

func (t *pebbleTarget) Commits() int64 { return t.fs.walSyncs.Load() }

func (t *pebbleTarget) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	return t.db.Close()
}

func (t *pebbleTarget) ReadBack(fn func([]byte) error) error {
	if err := t.Close(); err != nil {
		return err
	}
	db, err := pebble.Open(t.dir, pebbleOptions(pvfs.Default))
	if err != nil {
		return err
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if len(it.Key()) != 8 {
			it.Close()
			return fmt.Errorf("pebble: key of %d bytes", len(it.Key()))
		}
		if err := fn(it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

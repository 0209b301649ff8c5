package storage

import (
	"sync/atomic"

	"github.com/synod-io/synod/storage/vfs"
	"github.com/synod-io/synod/storage/wal"
)

// CountingFS wraps a vfs.FS and counts every File.Sync and SyncDir: each
// is one fsync(2) on the OS file system.
type CountingFS struct {
	vfs.FS
	Syncs atomic.Int64
}

func (c *CountingFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return countingFile{File: f, n: &c.Syncs}, nil
}

func (c *CountingFS) Create(name string) (vfs.File, error) { return c.wrap(c.FS.Create(name)) }
func (c *CountingFS) Open(name string) (vfs.File, error)   { return c.wrap(c.FS.Open(name)) }
func (c *CountingFS) OpenReadWrite(name string) (vfs.File, error) {
	return c.wrap(c.FS.OpenReadWrite(name))
}
func (c *CountingFS) SyncDir(dir string) error {
	c.Syncs.Add(1)
	return c.FS.SyncDir(dir)
}

var _ vfs.FS = (*CountingFS)(nil)

type countingFile struct {
	vfs.File
	n *atomic.Int64
}

func (f countingFile) Sync() error {
	f.n.Add(1)
	return f.File.Sync()
}

// synodTarget is a wal.Log behind a wal.Committer (group commit).
type synodTarget struct {
	dir    string
	fs     *CountingFS
	log    *wal.Log
	c      *wal.Committer
	closed bool
}

func openSynod(dir string, _ int) (Target, error) {
	cfs := &CountingFS{FS: vfs.Default}
	l, err := wal.Open(cfs, dir, wal.Options{})
	if err != nil {
		return nil, err
	}
	c, err := wal.NewCommitter(l, wal.GroupOptions{})
	if err != nil {
		l.Close()
		return nil, err
	}
	return &synodTarget{dir: dir, fs: cfs, log: l, c: c}, nil
}

func (t *synodTarget) Append(_ uint64, rec []byte) error {
	_, err := t.c.Append(wal.Record{Type: 1, Data: rec})
	return err
}

func (t *synodTarget) Syncs() (int64, string) { return t.fs.Syncs.Load(), "counted" }

func (t *synodTarget) Commits() int64 { return t.c.Stats().Batches }

func (t *synodTarget) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	err := t.c.Close()
	if cerr := t.log.Close(); err == nil {
		err = cerr
	}
	return err
}

func (t *synodTarget) ReadBack(fn func([]byte) error) error {
	if err := t.Close(); err != nil {
		return err
	}
	l, err := wal.Open(vfs.Default, t.dir, wal.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	return l.Replay(l.FirstIndex(), func(_ uint64, r wal.Record) error {
		return fn(r.Data)
	})
}

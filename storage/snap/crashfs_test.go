package snap

import (
	"errors"
	iofs "io/fs"

	"github.com/synod-io/synod/storage/vfs"
)

// crashFS wraps a vfs.MemFS and stops the machine after a given number of
// mutating operations (Create, Remove, Rename, MkdirAll, SyncDir, and a
// file's Write, WriteAt, Sync, Truncate): the state at that moment is
// captured with CrashClone, and that operation and every later mutating
// one fail with errCrashed and change nothing.
type crashFS struct {
	*vfs.MemFS
	ops        int
	crashAfter int        // -1: never
	crashed    *vfs.MemFS // the machine as found after the crash, once it happened
}

var errCrashed = errors.New("test: machine crashed")

func newCrashFS(mem *vfs.MemFS) *crashFS { return &crashFS{MemFS: mem, crashAfter: -1} }

// op counts one mutating operation, or refuses it once the crash happened.
func (c *crashFS) op() error {
	if c.crashed != nil {
		return errCrashed
	}
	if c.crashAfter >= 0 && c.ops == c.crashAfter {
		c.crashed = c.MemFS.CrashClone()
		return errCrashed
	}
	c.ops++
	return nil
}

// afterCrash returns the file system a restarted machine finds: the one
// captured at the crash, or a crash of the current state if none happened.
func (c *crashFS) afterCrash() *vfs.MemFS {
	if c.crashed != nil {
		return c.crashed
	}
	return c.MemFS.CrashClone()
}

func (c *crashFS) Create(name string) (vfs.File, error) {
	if err := c.op(); err != nil {
		return nil, err
	}
	f, err := c.MemFS.Create(name)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) OpenReadWrite(name string) (vfs.File, error) {
	f, err := c.MemFS.OpenReadWrite(name)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) Remove(name string) error {
	if err := c.op(); err != nil {
		return err
	}
	return c.MemFS.Remove(name)
}

func (c *crashFS) Rename(oldname, newname string) error {
	if err := c.op(); err != nil {
		return err
	}
	return c.MemFS.Rename(oldname, newname)
}

func (c *crashFS) MkdirAll(dir string, perm iofs.FileMode) error {
	if err := c.op(); err != nil {
		return err
	}
	return c.MemFS.MkdirAll(dir, perm)
}

func (c *crashFS) SyncDir(dir string) error {
	if err := c.op(); err != nil {
		return err
	}
	return c.MemFS.SyncDir(dir)
}

type crashFile struct {
	vfs.File
	fs *crashFS
}

func (f *crashFile) Write(p []byte) (int, error) {
	if err := f.fs.op(); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.op(); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *crashFile) Sync() error {
	if err := f.fs.op(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *crashFile) Truncate(size int64) error {
	if err := f.fs.op(); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

package sim

import (
	"errors"
	"io/fs"

	"github.com/synod-io/synod/storage/vfs"
)

// errPowerLoss is what every disk operation returns once a node's armed
// power failure has tripped: the operation did not happen, and the node
// crashes.
var errPowerLoss = errors.New("sim: power lost")

// crashFS wraps a node's file system to cut the power just before the k-th
// mutating operation (create, remove, rename, mkdir, write, truncate, sync)
// from the moment it is armed. That crashes a node at an exact durability
// boundary: between a WAL append and its fsync, in the middle of a segment
// roll-over, a snapshot save or install, or a log compaction.
type crashFS struct {
	inner vfs.FS
	// countdown is the number of mutating operations still allowed; 0
	// means disarmed.
	countdown int
	tripped   bool
}

// arm cuts the power before the k-th mutating operation from now (k >= 1).
func (c *crashFS) arm(k int) { c.countdown, c.tripped = k, false }

// step accounts for one mutating operation and reports whether it may run.
func (c *crashFS) step() error {
	if c.tripped {
		return errPowerLoss
	}
	if c.countdown == 0 {
		return nil
	}
	c.countdown--
	if c.countdown == 0 {
		c.tripped = true
		return errPowerLoss
	}
	return nil
}

func (c *crashFS) Create(name string) (vfs.File, error) {
	if err := c.step(); err != nil {
		return nil, err
	}
	f, err := c.inner.Create(name)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) Open(name string) (vfs.File, error) {
	if c.tripped {
		return nil, errPowerLoss
	}
	f, err := c.inner.Open(name)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) OpenReadWrite(name string) (vfs.File, error) {
	if c.tripped {
		return nil, errPowerLoss
	}
	f, err := c.inner.OpenReadWrite(name)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) Remove(name string) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.inner.Remove(name)
}

func (c *crashFS) Rename(oldname, newname string) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.inner.Rename(oldname, newname)
}

func (c *crashFS) MkdirAll(dir string, perm fs.FileMode) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.inner.MkdirAll(dir, perm)
}

func (c *crashFS) List(dir string) ([]string, error) {
	if c.tripped {
		return nil, errPowerLoss
	}
	return c.inner.List(dir)
}

func (c *crashFS) Stat(name string) (fs.FileInfo, error) {
	if c.tripped {
		return nil, errPowerLoss
	}
	return c.inner.Stat(name)
}

func (c *crashFS) SyncDir(dir string) error {
	if err := c.step(); err != nil {
		return err
	}
	return c.inner.SyncDir(dir)
}

// crashFile counts a file's mutating operations against its crashFS.
type crashFile struct {
	vfs.File
	fs *crashFS
}

func (f *crashFile) Write(p []byte) (int, error) {
	if err := f.fs.step(); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.step(); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *crashFile) Sync() error {
	if err := f.fs.step(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *crashFile) Truncate(size int64) error {
	if err := f.fs.step(); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *crashFile) Read(p []byte) (int, error) {
	if f.fs.tripped {
		return 0, errPowerLoss
	}
	return f.File.Read(p)
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	if f.fs.tripped {
		return 0, errPowerLoss
	}
	return f.File.ReadAt(p, off)
}

package vfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Default is the operating system's file system. Names are slash-separated
// and converted with filepath.FromSlash. ENOSPC (and EDQUOT) errors are
// wrapped so that errors.Is(err, ErrNoSpace) holds.
var Default FS = osFS{}

type osFS struct{}

func osName(name string) string { return filepath.FromSlash(name) }

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(osName(name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, wrapOSErr(err)
	}
	return osFile{f}, nil
}

func (osFS) Open(name string) (File, error) {
	f, err := os.Open(osName(name))
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenReadWrite(name string) (File, error) {
	f, err := os.OpenFile(osName(name), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error { return os.Remove(osName(name)) }

func (osFS) Rename(oldname, newname string) error {
	return os.Rename(osName(oldname), osName(newname))
}

func (osFS) MkdirAll(dir string, perm fs.FileMode) error {
	return wrapOSErr(os.MkdirAll(osName(dir), perm))
}

// List returns the names in dir; os.ReadDir sorts them by name.
func (osFS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(osName(dir))
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

func (osFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(osName(name)) }

// SyncDir opens the directory and fsyncs it, which makes the creation,
// renaming and removal of its entries durable.
func (osFS) SyncDir(dir string) error {
	d, err := os.Open(osName(dir))
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return wrapOSErr(serr)
	}
	return cerr
}

// osFile maps "no space" errors to ErrNoSpace; everything else is *os.File.
type osFile struct{ *os.File }

func (f osFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, wrapOSErr(err)
}

func (f osFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, wrapOSErr(err)
}

func (f osFile) Truncate(size int64) error { return wrapOSErr(f.File.Truncate(size)) }

func (f osFile) Sync() error { return wrapOSErr(f.File.Sync()) }

// noSpaceError keeps the operating system's error (with its path) and also
// matches ErrNoSpace.
type noSpaceError struct{ err error }

func (e noSpaceError) Error() string        { return e.err.Error() }
func (e noSpaceError) Unwrap() error        { return e.err }
func (e noSpaceError) Is(target error) bool { return target == ErrNoSpace }

func wrapOSErr(err error) error {
	if err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		return noSpaceError{err}
	}
	return err
}

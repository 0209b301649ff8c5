package vfs_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"testing"

	"github.com/synod-io/synod/storage/vfs"
)

// eachFS runs a behavioural test against the OS file system (in a
// temporary directory) and against MemFS.
func eachFS(t *testing.T, test func(t *testing.T, fsys vfs.FS, root string)) {
	t.Run("os", func(t *testing.T) { test(t, vfs.Default, t.TempDir()) })
	t.Run("mem", func(t *testing.T) { test(t, vfs.NewMem(), "/data") })
}

func mustWrite(t *testing.T, fsys vfs.FS, name string, data []byte) {
	t.Helper()
	f, err := fsys.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, fsys vfs.FS, name string) []byte {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFileBasics(t *testing.T) {
	eachFS(t, func(t *testing.T, fsys vfs.FS, root string) {
		dir := path.Join(root, "a", "b")
		if err := fsys.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		name := path.Join(dir, "f")
		f, err := fsys.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("hello ")); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("world"), 6); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if n, err := f.ReadAt(buf, 6); err != nil || n != 5 || string(buf) != "world" {
			t.Fatalf("ReadAt = %d %v %q", n, err, buf)
		}
		if n, err := f.ReadAt(buf, 9); n != 2 || err != io.EOF {
			t.Fatalf("ReadAt past end = %d, %v; want 2, EOF", n, err)
		}
		// Truncate grows with zeros (preallocation) and shrinks.
		if err := f.Truncate(16); err != nil {
			t.Fatal(err)
		}
		if fi, err := f.Stat(); err != nil || fi.Size() != 16 {
			t.Fatalf("Stat = %v, %v", fi, err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, fsys, name); !bytes.Equal(got, append([]byte("hello world"), 0, 0, 0, 0, 0)) {
			t.Fatalf("content %q", got)
		}
		// Read-only files refuse writes.
		ro, err := fsys.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ro.Write([]byte("x")); err == nil {
			t.Fatal("write to read-only file succeeded")
		}
		ro.Close()
		// OpenReadWrite keeps the content.
		rw, err := fsys.OpenReadWrite(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rw.WriteAt([]byte("H"), 0); err != nil {
			t.Fatal(err)
		}
		rw.Close()
		if got := readAll(t, fsys, name); string(got[:5]) != "Hello" {
			t.Fatalf("content %q", got)
		}
		// Create truncates.
		mustWrite(t, fsys, name, []byte("x"))
		if got := readAll(t, fsys, name); string(got) != "x" {
			t.Fatalf("content after Create %q", got)
		}
	})
}

func TestDirectoryOps(t *testing.T) {
	eachFS(t, func(t *testing.T, fsys vfs.FS, root string) {
		if err := fsys.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"c", "a", "b"} {
			mustWrite(t, fsys, path.Join(root, n), []byte(n))
		}
		names, err := fsys.List(root)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(names); got != 3 || names[0] != "a" || names[1] != "b" || names[2] != "c" {
			t.Fatalf("List = %v, want [a b c]", names)
		}
		if err := fsys.Rename(path.Join(root, "a"), path.Join(root, "c")); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, fsys, path.Join(root, "c")); string(got) != "a" {
			t.Fatalf("after rename c = %q", got)
		}
		if _, err := fsys.Stat(path.Join(root, "a")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat(renamed) = %v, want ErrNotExist", err)
		}
		if err := fsys.Remove(path.Join(root, "b")); err != nil {
			t.Fatal(err)
		}
		if _, err := fsys.Open(path.Join(root, "b")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open(removed) = %v, want ErrNotExist", err)
		}
		if err := fsys.SyncDir(root); err != nil {
			t.Fatal(err)
		}
		if names, _ := fsys.List(root); len(names) != 1 || names[0] != "c" {
			t.Fatalf("List = %v, want [c]", names)
		}
		if _, err := fsys.List(path.Join(root, "missing")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("List(missing) = %v", err)
		}
		if _, err := fsys.Create(path.Join(root, "missing", "f")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Create in missing dir = %v", err)
		}
		if err := fsys.MkdirAll(path.Join(root, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi, err := fsys.Stat(path.Join(root, "d")); err != nil || !fi.IsDir() {
			t.Fatalf("Stat(dir) = %v, %v", fi, err)
		}
		if err := fsys.Remove(path.Join(root, "d")); err != nil {
			t.Fatal(err)
		}
	})
}

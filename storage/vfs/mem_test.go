package vfs_test

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"testing"

	"github.com/synod-io/synod/storage/vfs"
)

func exists(fsys vfs.FS, name string) bool {
	_, err := fsys.Stat(name)
	return err == nil
}

func TestMemCrashKeepsSyncedState(t *testing.T) {
	m := vfs.NewMem()
	m.MkdirAll("/d", 0o755)
	m.SyncDir("/")
	f, _ := m.Create("/d/f")
	m.SyncDir("/d")
	f.Write([]byte("durable"))
	f.Sync()
	f.Write([]byte(" lost"))
	f.Truncate(100)

	c := m.CrashClone()
	if got := readAll(t, c, "/d/f"); string(got) != "durable" {
		t.Fatalf("after crash %q, want %q", got, "durable")
	}
	// The original is unchanged and still usable.
	if got := readAll(t, m, "/d/f"); len(got) != 100 || string(got[:12]) != "durable lost" {
		t.Fatalf("original changed: %q", got[:12])
	}
	f.Sync()
	if got := readAll(t, m.CrashClone(), "/d/f"); len(got) != 100 {
		t.Fatalf("synced truncate lost: len %d", len(got))
	}
	// Crashing a crashed FS keeps the same state.
	if got := readAll(t, c.CrashClone(), "/d/f"); string(got) != "durable" {
		t.Fatalf("second crash %q", got)
	}
}

func TestMemDirectoryDurability(t *testing.T) {
	m := vfs.NewMem()
	// An unsynced directory loses its contents, even synced ones.
	m.MkdirAll("/d", 0o755)
	mustWrite(t, m, "/d/f", []byte("x"))
	m.SyncDir("/d")
	if c := m.CrashClone(); exists(c, "/d") || exists(c, "/d/f") {
		t.Fatal("entries of an unsynced directory survived")
	}
	m.SyncDir("/")
	if c := m.CrashClone(); !exists(c, "/d/f") {
		t.Fatal("file lost after syncing its directory and the parent")
	}

	// A created file needs its directory synced.
	mustWrite(t, m, "/d/g", []byte("g"))
	if exists(m.CrashClone(), "/d/g") {
		t.Fatal("unsynced creation survived")
	}
	m.SyncDir("/d")
	if !exists(m.CrashClone(), "/d/g") {
		t.Fatal("synced creation lost")
	}

	// Rename: old name until the directory is synced.
	if err := m.Rename("/d/g", "/d/h"); err != nil {
		t.Fatal(err)
	}
	c := m.CrashClone()
	if !exists(c, "/d/g") || exists(c, "/d/h") {
		t.Fatal("unsynced rename became durable")
	}
	m.SyncDir("/d")
	c = m.CrashClone()
	if exists(c, "/d/g") || !exists(c, "/d/h") {
		t.Fatal("synced rename not durable")
	}
	if got := readAll(t, c, "/d/h"); string(got) != "g" {
		t.Fatalf("renamed content %q", got)
	}

	// Remove: back after a crash until the directory is synced.
	m.Remove("/d/h")
	if !exists(m.CrashClone(), "/d/h") {
		t.Fatal("unsynced remove became durable")
	}
	m.SyncDir("/d")
	if exists(m.CrashClone(), "/d/h") {
		t.Fatal("synced remove not durable")
	}
}

func TestMemTornWrites(t *testing.T) {
	// Synced "base", then three unsynced writes; a torn crash must keep
	// base plus a prefix of "abcdefghi".
	const tail = "abcdefghi"
	seen := map[int]bool{}
	for seed := uint64(0); seed < 200; seed++ {
		m := vfs.NewMem()
		m.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(seed, 1)), TornWrites: true})
		f, _ := m.Create("/f")
		m.SyncDir("/")
		f.Write([]byte("base"))
		f.Sync()
		f.Write([]byte("abc"))
		f.Write([]byte("def"))
		f.Write([]byte("ghi"))
		got := readAll(t, m.CrashClone(), "/f")
		if !bytes.HasPrefix(got, []byte("base")) || !bytes.HasPrefix([]byte(tail), got[4:]) {
			t.Fatalf("seed %d: torn crash left %q, want base + a prefix of %q", seed, got, tail)
		}
		seen[len(got)-4] = true
	}
	for n := 0; n <= len(tail); n++ {
		if !seen[n] {
			t.Errorf("no crash kept exactly %d unsynced bytes", n)
		}
	}
}

func TestMemDeterministic(t *testing.T) {
	run := func() []byte {
		m := vfs.NewMem()
		m.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(7, 7)), TornWrites: true})
		var out []byte
		for i := 0; i < 5; i++ {
			f, _ := m.Create("/f" + string(rune('a'+i)))
			f.Write(bytes.Repeat([]byte{byte(i)}, 100))
		}
		m.SyncDir("/")
		c := m.CrashClone()
		names, _ := c.List("/")
		for _, n := range names {
			out = append(out, readAll(t, c, "/"+n)...)
			out = append(out, '|')
		}
		return out
	}
	if a, b := run(), run(); !bytes.Equal(a, b) {
		t.Fatal("same seed, different crash")
	}
}

func TestMemFailingSync(t *testing.T) {
	m := vfs.NewMem()
	f, _ := m.Create("/f")
	m.SyncDir("/")
	f.Write([]byte("one"))
	m.FailNextSync("/f")
	err := f.Sync()
	if !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Sync = %v, want ErrInjected", err)
	}
	if got := readAll(t, m.CrashClone(), "/f"); len(got) != 0 {
		t.Fatalf("failed sync made %q durable", got)
	}
	// As on Linux, the failed data stays visible but a later successful
	// sync does not make it durable; later writes do become durable.
	if got := readAll(t, m, "/f"); string(got) != "one" {
		t.Fatalf("visible content %q", got)
	}
	f.WriteAt([]byte("two"), 3)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, m.CrashClone(), "/f"); string(got) != "\x00\x00\x00two" {
		t.Fatalf("after failed then good sync: %q", got)
	}
	if s := m.Stats(); s.FailedSyncs != 1 || s.Syncs != 1 {
		t.Fatalf("stats %+v", s)
	}

	// A failed SyncDir makes nothing durable.
	mustWrite(t, m, "/g", nil)
	m.FailNextSync("/")
	if err := m.SyncDir("/"); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("SyncDir = %v", err)
	}
	if exists(m.CrashClone(), "/g") {
		t.Fatal("failed SyncDir made a creation durable")
	}

	// Probabilistic failures.
	m.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(1, 1)), SyncFailProb: 1})
	if err := f.Sync(); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Sync with SyncFailProb 1 = %v", err)
	}
}

func TestMemReadBitFlips(t *testing.T) {
	m := vfs.NewMem()
	data := bytes.Repeat([]byte{0x55}, 64)
	mustWrite(t, m, "/f", data)
	m.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(3, 3)), ReadBitFlipProb: 1})
	for i := 0; i < 10; i++ {
		got := readAll(t, m, "/f")
		if d := bitDiff(got, data); d != 1 {
			t.Fatalf("read differs in %d bits, want 1", d)
		}
	}
	m.SetFaults(vfs.Faults{})
	if got := readAll(t, m, "/f"); !bytes.Equal(got, data) {
		t.Fatal("read flips changed the stored data")
	}
	// Targeted flips.
	if err := m.InjectReadFlip("/f", 10, 3); err != nil {
		t.Fatal(err)
	}
	f, _ := m.Open("/f")
	b := make([]byte, 4)
	f.ReadAt(b, 8)
	if b[2] != 0x55^8 || b[0] != 0x55 {
		t.Fatalf("targeted flip: % x", b)
	}
	f.ReadAt(b, 20)
	if !bytes.Equal(b, data[:4]) {
		t.Fatal("flip outside its offset")
	}
	// Media corruption is persistent and survives a crash.
	m.Corrupt("/f", 0, 0)
	m.SyncDir("/")
	if got := readAll(t, m.CrashClone(), "/f"); got[0] != 0x54 {
		t.Fatalf("Corrupt did not persist: % x", got[:1])
	}
}

func bitDiff(a, b []byte) int {
	n := 0
	for i := range a {
		for x := a[i] ^ b[i]; x != 0; x &= x - 1 {
			n++
		}
	}
	return n
}

func TestMemNoSpace(t *testing.T) {
	m := vfs.NewMem()
	m.SetFaults(vfs.Faults{CapacityBytes: 100})
	f, _ := m.Create("/f")
	if err := f.Truncate(80); err != nil {
		t.Fatal(err)
	}
	// Overwriting preallocated space needs no capacity.
	if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 80), 0); err != nil {
		t.Fatal(err)
	}
	g, _ := m.Create("/g")
	if _, err := g.Write(make([]byte, 20)); err != nil {
		t.Fatal(err)
	}
	n, err := g.Write([]byte{1})
	if !errors.Is(err, vfs.ErrNoSpace) || n != 0 {
		t.Fatalf("Write beyond capacity = %d, %v; want 0, ErrNoSpace", n, err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != "/g" {
		t.Fatalf("error %v does not name the file", err)
	}
	if err := f.Truncate(81); !errors.Is(err, vfs.ErrNoSpace) {
		t.Fatalf("Truncate beyond capacity = %v", err)
	}
	if fi, _ := g.Stat(); fi.Size() != 20 {
		t.Fatalf("failed write changed the size to %d", fi.Size())
	}
	m.Remove("/f")
	if _, err := g.Write([]byte{1}); err != nil {
		t.Fatalf("write after freeing space: %v", err)
	}
}

func TestMemSyncHookAndStats(t *testing.T) {
	m := vfs.NewMem()
	var synced []string
	m.SetFaults(vfs.Faults{OnSync: func(name string) { synced = append(synced, name) }})
	m.MkdirAll("/d", 0o755)
	f, _ := m.Create("/d/f")
	f.Write([]byte("abc"))
	f.WriteAt([]byte("de"), 3)
	f.Sync()
	m.SyncDir("/d")
	if len(synced) != 2 || synced[0] != "/d/f" || synced[1] != "/d" {
		t.Fatalf("OnSync saw %v", synced)
	}
	if s := m.Stats(); s.Syncs != 1 || s.DirSyncs != 1 || s.Writes != 2 || s.BytesWritten != 5 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMemSetFaultsNeedsRand(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("SetFaults without Rand did not panic")
		}
	}()
	vfs.NewMem().SetFaults(vfs.Faults{TornWrites: true})
}

package wal

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/synod-io/synod/storage/vfs"
)

// crashFS counts the mutating operations of a workload and, just before
// operation crashAt, calls onCrash (which takes a CrashClone).
type crashFS struct {
	mem     *vfs.MemFS
	ops     int
	crashAt int
	onCrash func()
}

func (c *crashFS) step() {
	if c.ops == c.crashAt && c.onCrash != nil {
		c.onCrash()
	}
	c.ops++
}

func (c *crashFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, c: c}, nil
}

func (c *crashFS) Create(name string) (vfs.File, error) { c.step(); return c.wrap(c.mem.Create(name)) }
func (c *crashFS) Open(name string) (vfs.File, error)   { return c.wrap(c.mem.Open(name)) }
func (c *crashFS) OpenReadWrite(name string) (vfs.File, error) {
	return c.wrap(c.mem.OpenReadWrite(name))
}
func (c *crashFS) Remove(name string) error               { c.step(); return c.mem.Remove(name) }
func (c *crashFS) Rename(o, n string) error               { c.step(); return c.mem.Rename(o, n) }
func (c *crashFS) MkdirAll(d string, p fs.FileMode) error { c.step(); return c.mem.MkdirAll(d, p) }
func (c *crashFS) List(d string) ([]string, error)        { return c.mem.List(d) }
func (c *crashFS) Stat(name string) (fs.FileInfo, error)  { return c.mem.Stat(name) }
func (c *crashFS) SyncDir(d string) error                 { c.step(); return c.mem.SyncDir(d) }

type crashFile struct {
	vfs.File
	c *crashFS
}

func (f *crashFile) Write(p []byte) (int, error) { f.c.step(); return f.File.Write(p) }
func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	f.c.step()
	return f.File.WriteAt(p, off)
}
func (f *crashFile) Truncate(n int64) error { f.c.step(); return f.File.Truncate(n) }
func (f *crashFile) Sync() error            { f.c.step(); return f.File.Sync() }

// model is what a recovered log may contain: a prefix of gens (the
// generation of each record's content, by index-1) at least minLast long,
// starting at or below firstMax.
type model struct {
	gens     []int
	minLast  uint64
	firstMax uint64
}

func (m model) clone() model { m.gens = slices.Clone(m.gens); return m }

func (m model) gen(i uint64) int { return m.gens[i-1] }

// crashWorkload drives a log through appends with and without syncs,
// roll-overs, a truncation across segments, a release and a truncation
// inside the active segment, keeping st up to date: before each operation
// st admits both its outcomes, after it only the new one.
func crashWorkload(t *testing.T, fsys vfs.FS, st *model) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	l, err := Open(fsys, testDir, testOpts)
	must(err)
	gen := 0
	last := uint64(0)
	appendSync := func(n int, sync bool) {
		t.Helper()
		rs := recs(last+1, last+uint64(n), gen)
		for range n {
			st.gens = append(st.gens, gen)
		}
		got, err := l.Append(rs...)
		must(err)
		last += uint64(n)
		if got != last {
			t.Fatalf("Append returned %d, want %d", got, last)
		}
		if sync {
			must(l.Sync())
			st.minLast = last
		}
	}
	truncate := func(i uint64) {
		t.Helper()
		st.minLast = min(st.minLast, i-1)
		must(l.TruncateSuffix(i))
		st.gens = st.gens[:i-1]
		last = i - 1
		st.minLast = last
		gen++
	}
	for n := 1; last < 60; n = n%5 + 1 {
		appendSync(n, true)
	}
	appendSync(4, false)
	appendSync(3, false)
	must(l.Sync())
	st.minLast = last
	truncate(20) // across segments
	for n := 1; last < 45; n = n%4 + 1 {
		appendSync(n, n%2 == 0)
	}
	must(l.Sync())
	st.minLast = last
	st.firstMax = 30
	must(l.ReleasePrefix(30))
	appendSync(6, true)
	truncate(last - 2) // inside the active segment
	appendSync(2, true)
	appendSync(2, false)
	must(l.Close())
	st.minLast = last
}

// checkRecovered opens a crashed file system and checks it against the
// model, then checks that the recovered log accepts and keeps new records.
func checkRecovered(t *testing.T, fsys *vfs.MemFS, st model, what string) {
	t.Helper()
	l, err := Open(fsys, testDir, testOpts)
	if err != nil {
		t.Fatalf("%s: Open after crash: %v", what, err)
	}
	first, last := l.FirstIndex(), l.LastIndex()
	if first > st.firstMax {
		t.Fatalf("%s: FirstIndex %d, want <= %d", what, first, st.firstMax)
	}
	if last < st.minLast || last > uint64(len(st.gens)) {
		t.Fatalf("%s: LastIndex %d, want in [%d, %d]", what, last, st.minLast, len(st.gens))
	}
	got, err := readLog(t, l)
	if err != nil {
		t.Fatalf("%s: replay: %v", what, err)
	}
	for i := first; i <= last; i++ {
		if r := got[i]; !sameRecord(r, payload(i, st.gen(i))) {
			t.Fatalf("%s: record %d = %s, want %s", what, i, describe(r), describe(payload(i, st.gen(i))))
		}
	}
	// The repaired log must accept records and keep them across a crash.
	if _, err := l.AppendSync(recs(last+1, last+3, 99)...); err != nil {
		t.Fatalf("%s: append after recovery: %v", what, err)
	}
	l2, err := Open(fsys.CrashClone(), testDir, testOpts)
	if err != nil {
		t.Fatalf("%s: second recovery: %v", what, err)
	}
	if l2.LastIndex() != last+3 {
		t.Fatalf("%s: second recovery: LastIndex %d, want %d", what, l2.LastIndex(), last+3)
	}
	got, err = readLog(t, l2)
	if err != nil {
		t.Fatalf("%s: second replay: %v", what, err)
	}
	for i := last + 1; i <= last+3; i++ {
		if !sameRecord(got[i], payload(i, 99)) {
			t.Fatalf("%s: record %d appended after recovery is wrong", what, i)
		}
	}
}

// TestCrashAtEveryOp crashes the workload just before each of its file
// system operations in turn (and after the last), with and without torn
// writes, and checks that every acknowledged record survives, nothing
// unacknowledged appears damaged, and the recovered log works.
func TestCrashAtEveryOp(t *testing.T) {
	// Count the operations.
	probe := &crashFS{mem: vfs.NewMem(), crashAt: -1}
	crashWorkload(t, probe, &model{firstMax: 1})
	total := probe.ops
	if total < 100 {
		t.Fatalf("workload has only %d operations", total)
	}
	seeds := 4
	if testing.Short() {
		seeds = 1
	}
	for k := 0; k <= total; k++ {
		for seed := 0; seed <= seeds; seed++ {
			mem := vfs.NewMem()
			if seed > 0 { // seed 0: unsynced writes all lost
				mem.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(uint64(k), uint64(seed))), TornWrites: true})
			}
			st := &model{firstMax: 1}
			var crashed *vfs.MemFS
			var at model
			c := &crashFS{mem: mem, crashAt: k, onCrash: func() {
				crashed, at = mem.CrashClone(), st.clone()
			}}
			crashWorkload(t, c, st)
			if crashed == nil { // k == total: crash after the end
				crashed, at = mem.CrashClone(), st.clone()
			}
			checkRecovered(t, crashed, at, fmt.Sprintf("crash before op %d/%d, seed %d", k, total, seed))
		}
	}
	t.Logf("crashed at each of %d operations", total+1)
}

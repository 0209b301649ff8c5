package snap

import (
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/storage/vfs"
)

const dir = "/data/snap"

func TestRoundTripLargeStreamed(t *testing.T) {
	const n = 50 << 20
	tmp := t.TempDir()
	s := mustOpen(t, vfs.Default, tmp, Options{})
	m := Meta{Index: 1 << 40, Term: 7, Voters: []consensus.NodeID{5, 9}, Protocol: []byte{0, 1, 2}}
	info, err := s.Save(m, newGen(42, n))
	if err != nil {
		t.Fatal(err)
	}
	if info.Index != m.Index || info.Term != m.Term {
		t.Fatalf("info %+v", info)
	}
	if got, err := s.Verify(info.Name); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	r, skipped, err := s.LoadNewest()
	if err != nil || len(skipped) != 0 {
		t.Fatalf("LoadNewest: %v (skipped %v)", err, skipped)
	}
	defer r.Close()
	if r.Name() != info.Name || r.DataBytes() != n || !reflect.DeepEqual(r.Meta(), m) {
		t.Fatalf("reader: name %s, %d bytes, meta %+v", r.Name(), r.DataBytes(), r.Meta())
	}
	checkData(t, r, 42, n)
}

func TestWriterStreamsAndAborts(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs, dir, Options{})
	// Many small writes through the io.Writer side.
	w, err := s.Create(testMeta(5, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyBuffer(w, newGen(5, dataBytesFor(5)), make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Commit: %v", err)
	}
	// An aborted snapshot leaves nothing behind.
	w, err = s.Create(testMeta(9, 1))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := listNames(t, fs, dir); !slices.Equal(got, []string{fileName(5, 1)}) {
		t.Fatalf("files %v", got)
	}
	r, _, err := s.LoadNewest()
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, r, 5, 1)
	r.Close()
}

func TestEmptyDataAndMetaRoundTrip(t *testing.T) {
	s := mustOpen(t, vfs.NewMem(), dir, Options{})
	if _, err := s.Save(Meta{}, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	r, _, err := s.LoadNewest()
	if err != nil {
		t.Fatal(err)
	}
	if m := r.Meta(); !reflect.DeepEqual(m, Meta{}) {
		t.Fatalf("meta %+v", m)
	}
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Fatalf("data %q, %v", b, err)
	}
}

func TestInvalidMetaRejected(t *testing.T) {
	s := mustOpen(t, vfs.NewMem(), dir, Options{})
	for _, m := range []Meta{
		{Voters: []consensus.NodeID{1, 0}},
		{Voters: []consensus.NodeID{2, 1, 2}},
		{Voters: make([]consensus.NodeID, VotersMax+1)},
		{Protocol: make([]byte, ProtocolBytesMax+1)},
	} {
		if _, err := s.Save(m, strings.NewReader("x")); !errors.Is(err, ErrInvalidMeta) {
			t.Errorf("Save(%d voters, %d protocol bytes): %v, want ErrInvalidMeta", len(m.Voters), len(m.Protocol), err)
		}
	}
	// The largest metadata allowed fits MetadataBytesMax.
	m := Meta{Voters: make([]consensus.NodeID, VotersMax), Protocol: make([]byte, ProtocolBytesMax)}
	for i := range m.Voters {
		m.Voters[i] = consensus.NodeID(i + 1)
	}
	info, err := s.Save(m, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Verify(info.Name); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("Verify: %v", err)
	}
}

func TestSizeBytesMax(t *testing.T) {
	s := mustOpen(t, vfs.NewMem(), dir, Options{SizeBytesMax: 4096})
	_, err := s.Save(testMeta(1, 1), newGen(1, 4096))
	wantErr(t, err, ErrTooLarge, "Save over the limit")
	if got := listNames(t, s.fs, dir); len(got) != 0 {
		t.Fatalf("files left: %v", got)
	}
	if _, err := Open(vfs.NewMem(), dir, Options{Keep: -1}); err == nil {
		t.Fatal("Open accepted Keep -1")
	}
}

func TestLoadNewestEmpty(t *testing.T) {
	s := mustOpen(t, vfs.NewMem(), dir, Options{})
	_, skipped, err := s.LoadNewest()
	wantErr(t, err, ErrNoSnapshot, "LoadNewest on an empty directory")
	if len(skipped) != 0 {
		t.Fatalf("skipped %v", skipped)
	}
}

func TestNamesSortByIndex(t *testing.T) {
	s := mustOpen(t, vfs.NewMem(), dir, Options{Keep: 10})
	for _, it := range [][2]uint64{{0x100, 1}, {0xf, 3}, {0x1000, 2}, {1, 9}} {
		if _, err := s.Save(testMeta(it[0], it[1]), strings.NewReader("data")); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	for _, in := range infos {
		idx = append(idx, in.Index)
	}
	if !slices.Equal(idx, []uint64{1, 0xf, 0x100, 0x1000}) {
		t.Fatalf("List order %v", idx)
	}
	for _, bad := range []string{"x.snap", "0000000000000001-000000000000000g.snap", "000000000000000A-0000000000000001.snap", "0000000000000001-0000000000000001.snap.1.tmp"} {
		if _, ok := parseName(bad); ok {
			t.Errorf("parseName(%q) accepted", bad)
		}
	}
}

// TestSaveCrashAtEveryOp crashes the machine after each file-system
// operation of a Save (and the GC after it) and checks that a restart loads
// either the previous snapshot or the new one, never anything corrupt, and
// that no temporary file survives Open.
func TestSaveCrashAtEveryOp(t *testing.T) {
	t.Run("lose unsynced", func(t *testing.T) { testSaveCrashAtEveryOp(t, false) })
	t.Run("torn writes", func(t *testing.T) { testSaveCrashAtEveryOp(t, true) })
}

func testSaveCrashAtEveryOp(t *testing.T, torn bool) {
	for k := 0; ; k++ {
		mem := vfs.NewMem()
		if torn {
			mem.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(uint64(k), 1)), TornWrites: true})
		}
		fs := newCrashFS(mem)
		s := mustOpen(t, fs, dir, Options{Keep: 1})
		mustSave(t, s, 10, 1)
		fs.crashAfter = fs.ops + k
		_, saveErr := s.Save(testMeta(20, 2), newGen(20, dataBytesFor(20)))
		gcErr := s.GC()
		finished := fs.crashed == nil

		after := fs.afterCrash()
		s2 := mustOpen(t, after, dir, Options{Keep: 1})
		for _, n := range listNames(t, after, dir) {
			if strings.HasSuffix(n, tmpSuffix) {
				t.Fatalf("k=%d: temp file %s survived Open", k, n)
			}
		}
		r, skipped, err := s2.LoadNewest()
		if err != nil || len(skipped) != 0 {
			t.Fatalf("k=%d: LoadNewest: %v, skipped %v", k, err, skipped)
		}
		switch r.Meta().Index {
		case 10:
			if saveErr == nil {
				t.Fatalf("k=%d: Save succeeded but the old snapshot was loaded after the crash", k)
			}
			checkSnapshot(t, r, 10, 1)
		case 20:
			checkSnapshot(t, r, 20, 2)
		default:
			t.Fatalf("k=%d: loaded index %d", k, r.Meta().Index)
		}
		r.Close()
		if finished {
			if saveErr != nil || gcErr != nil {
				t.Fatalf("k=%d: no crash, but Save: %v, GC: %v", k, saveErr, gcErr)
			}
			if got := listNames(t, after, dir); !slices.Equal(got, []string{fileName(20, 2)}) {
				t.Fatalf("after a full Save and GC: files %v", got)
			}
			if k < 5 {
				t.Fatalf("only %d ops: the crash points were not exercised", k)
			}
			t.Logf("crashed after each of %d operations", k)
			return
		}
	}
}

// TestOpenCrashKeepsDirectory crashes right after Open and a Save: the
// directory Open created must itself be durable.
func TestOpenCrashKeepsDirectory(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, mem, "/a/b/snap", Options{})
	mustSave(t, s, 3, 1)
	s2 := mustOpen(t, mem.CrashClone(), "/a/b/snap", Options{})
	r, _, err := s2.LoadNewest()
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, r, 3, 1)
	r.Close()
}

func TestCorruptionRejectedAndFallsBack(t *testing.T) {
	// Layout of the newer snapshot, index 20.
	m := testMeta(20, 2)
	prefix := len(encodeHeader(&m))
	size := prefix + int(dataBytesFor(20)) + trailerBytes
	flips := []struct {
		name string
		off  int
	}{
		{"magic", 0},
		{"version", 8},
		{"metaLen", 13},
		{"metaLen high byte", 15},
		{"index", headerBytes},
		{"voter count", headerBytes + 16},
		{"voter", headerBytes + 20},
		{"protocol", prefix - crcBytes - 1},
		{"metaCRC", prefix - 2},
		{"first data byte", prefix},
		{"middle data byte", prefix + int(dataBytesFor(20))/2},
		{"last data byte", size - trailerBytes - 1},
		{"trailer dataLen", size - trailerBytes},
		{"trailer dataLen high byte", size - trailerBytes + 7},
		{"fileCRC", size - 8},
		{"end magic", size - 1},
	}
	damage := map[string]func([]byte) []byte{}
	for _, f := range flips {
		damage["flip "+f.name] = func(b []byte) []byte { b[f.off] ^= 0x10; return b }
	}
	for _, n := range []int{0, 1, headerBytes - 1, headerBytes, prefix - 1, prefix, prefix + 1, size - trailerBytes, size - 1} {
		damage["truncate to "+strconv.Itoa(n)] = func(b []byte) []byte { return b[:n] }
	}
	damage["append a byte"] = func(b []byte) []byte { return append(b, 0) }
	damage["append a trailer"] = func(b []byte) []byte { return append(b, b[len(b)-trailerBytes:]...) }
	damage["zeroed"] = func(b []byte) []byte { clear(b); return b }

	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := mustOpen(t, fs, dir, Options{})
			mustSave(t, s, 10, 1)
			newer := mustSave(t, s, 20, 2)
			p := s.path(newer.Name)
			b := readFile(t, fs, p)
			if len(b) != size {
				t.Fatalf("file is %d bytes, want %d", len(b), size)
			}
			writeFile(t, fs, p, f(b))

			_, err := s.Verify(newer.Name)
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("Verify: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), newer.Name) {
				t.Errorf("Verify error does not name the file: %v", err)
			}
			// Open either fails or the data read ends in ErrCorrupt.
			if r, err := s.Open(newer.Name); err == nil {
				_, err = io.Copy(io.Discard, r)
				wantErr(t, err, ErrCorrupt, "reading the damaged data")
				r.Close()
			}
			r, skipped, err := s.LoadNewest()
			if err != nil {
				t.Fatalf("LoadNewest: %v", err)
			}
			defer r.Close()
			if len(skipped) != 1 || !strings.Contains(skipped[0].Error(), newer.Name) {
				t.Fatalf("skipped %v, want the damaged file", skipped)
			}
			var fe *FileError
			if !errors.As(skipped[0], &fe) || fe.Name != newer.Name {
				t.Fatalf("skipped error %v is not a *FileError for %s", skipped[0], newer.Name)
			}
			checkSnapshot(t, r, 10, 1)
		})
	}
}

func TestAllCorrupt(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs, dir, Options{})
	for _, i := range []uint64{1, 2} {
		info := mustSave(t, s, i, 1)
		b := readFile(t, fs, s.path(info.Name))
		b[len(b)/2] ^= 1
		writeFile(t, fs, s.path(info.Name), b)
	}
	_, skipped, err := s.LoadNewest()
	wantErr(t, err, ErrNoSnapshot, "LoadNewest with only corrupt files")
	wantErr(t, err, ErrCorrupt, "LoadNewest with only corrupt files")
	if len(skipped) != 2 {
		t.Fatalf("skipped %v", skipped)
	}
}

func TestReadErrorIsNotSkipped(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs, dir, Options{})
	mustSave(t, s, 1, 1)
	mustSave(t, s, 2, 1)
	// The newest file cannot be opened: an I/O error, not corruption, so
	// LoadNewest must not fall back to the older snapshot.
	failing := &failOpenFS{FS: fs, name: s.path(fileName(2, 1))}
	s.fs = failing
	_, _, err := s.LoadNewest()
	if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, errFailOpen) {
		t.Fatalf("LoadNewest: %v, want the I/O error", err)
	}
}

var errFailOpen = errors.New("test: open fails")

type failOpenFS struct {
	vfs.FS
	name string
}

func (f *failOpenFS) Open(name string) (vfs.File, error) {
	if name == f.name {
		return nil, errFailOpen
	}
	return f.FS.Open(name)
}

func TestGCKeepsNewestK(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs, dir, Options{})
	for i := uint64(1); i <= 5; i++ {
		mustSave(t, s, i, 1)
	}
	writeFile(t, fs, dir+"/stale.1.tmp", []byte("left by a crash"))
	writeFile(t, fs, dir+"/README", []byte("not ours"))
	// A Writer in progress keeps its temporary file.
	w, err := s.Create(testMeta(6, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	got := listNames(t, fs, dir)
	want := []string{fileName(4, 1), fileName(5, 1), "README", w.tmp}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after GC: %v, want %v", got, want)
	}
	// The removals are durable: they survive a crash.
	after := fs.CrashClone()
	got = listNames(t, after, dir)
	if !slices.Equal(got, want) {
		t.Fatalf("after GC and a crash: %v, want %v", got, want)
	}
	w.Abort()

	// Open removes stale temporary files.
	writeFile(t, fs, dir+"/x.tmp", nil)
	fs.SyncDir(dir)
	mustOpen(t, fs, dir, Options{})
	if slices.Contains(listNames(t, fs, dir), "x.tmp") {
		t.Fatal("Open left x.tmp")
	}
}

func TestGCNeverRemovesLastGood(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs, dir, Options{Keep: 1})
	mustSave(t, s, 1, 1)
	good := mustSave(t, s, 2, 1)
	// A newer file appears that is garbage (say, copied in by an operator).
	writeFile(t, fs, s.path(fileName(3, 1)), []byte("garbage"))
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	got := listNames(t, fs, dir)
	if want := []string{good.Name, fileName(3, 1)}; !slices.Equal(got, want) {
		t.Fatalf("after GC: %v, want %v", got, want)
	}
	r, skipped, err := s.LoadNewest()
	if err != nil || len(skipped) != 1 {
		t.Fatalf("LoadNewest: %v, skipped %v", err, skipped)
	}
	checkSnapshot(t, r, 2, 1)
	r.Close()
}

func TestVerifyRejectsRenamedFile(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, mem, dir, Options{})
	info := mustSave(t, s, 10, 1)
	if err := mem.Rename(s.path(info.Name), s.path(fileName(11, 1))); err != nil {
		t.Fatal(err)
	}
	_, err := s.Verify(fileName(11, 1))
	wantErr(t, err, ErrCorrupt, "Verify of a renamed file")
}

// TestReaderChecksAsItReads flips a data bit on the way from the medium,
// after Open checked the header: the Reader reports ErrCorrupt at the end
// of the data instead of io.EOF.
func TestReaderChecksAsItReads(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, mem, dir, Options{})
	info := mustSave(t, s, 10, 1)
	r, err := s.Open(info.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := mem.InjectReadFlip(s.path(info.Name), r.dataOff+r.DataBytes()-1, 3); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	wantErr(t, err, ErrCorrupt, "reading flipped data")
	if n != r.DataBytes() {
		t.Fatalf("read %d bytes before the error, want all %d", n, r.DataBytes())
	}
	if _, err2 := r.Read(make([]byte, 1)); err2 != err {
		t.Fatalf("error not sticky: %v then %v", err, err2)
	}
}

// TestSyncFailureFailsSave checks that a failed fsync (of the file or the
// directory) fails the Save, is not retried, and leaves the older snapshot
// in charge; a later Save succeeds.
func TestSyncFailureFailsSave(t *testing.T) {
	for _, target := range []string{"file", "dir"} {
		mem := vfs.NewMem()
		s := mustOpen(t, mem, dir, Options{})
		mustSave(t, s, 10, 1)
		if target == "file" {
			mem.FailNextSync("")
		} else {
			mem.FailNextSync(dir)
		}
		_, err := s.Save(testMeta(20, 2), newGen(20, dataBytesFor(20)))
		wantErr(t, err, vfs.ErrInjected, target+" sync failure")
		for _, n := range listNames(t, mem, dir) {
			if strings.HasSuffix(n, tmpSuffix) {
				t.Fatalf("%s: temp file %s left behind", target, n)
			}
		}
		r, _, err := mustOpen(t, mem.CrashClone(), dir, Options{}).LoadNewest()
		if err != nil {
			t.Fatal(err)
		}
		checkSnapshot(t, r, 10, 1)
		r.Close()
		mustSave(t, s, 30, 2)
	}
}

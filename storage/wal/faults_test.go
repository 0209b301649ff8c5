package wal

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/synod-io/synod/storage/vfs"
)

// segmentFiles lists the log's segment paths, oldest first.
func segmentFiles(t *testing.T, m *vfs.MemFS) []string {
	t.Helper()
	names, err := m.List(testDir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = testDir + "/" + names[i]
	}
	return names
}

// frameOffsets returns the offsets of the frames in a segment file.
func frameOffsets(t *testing.T, m *vfs.MemFS, name string) []int {
	t.Helper()
	var offs []int
	_, err := scanSegment(readAllFile(t, m, name), RecordBytesMaxDefault, func(off int, _ uint64, _ uint16, _ []byte) error {
		offs = append(offs, off)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return offs
}

func wantCorruption(t *testing.T, err error, file string) *CorruptionError {
	t.Helper()
	var ce *CorruptionError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *CorruptionError", err)
	}
	if file != "" && ce.File != file {
		t.Fatalf("corruption reported in %s, want %s", ce.File, file)
	}
	msg := err.Error()
	if !strings.Contains(msg, ce.File) || !strings.Contains(msg, "offset") || !strings.Contains(msg, "restore this node from a peer") {
		t.Fatalf("message does not name the file and offset or say what to do: %s", msg)
	}
	return ce
}

// TestTornTailRecovery crashes with torn writes while unsynced records are
// being written: the acknowledged records survive, a prefix of the rest
// may, and the log continues.
func TestTornTailRecovery(t *testing.T) {
	kept := map[uint64]bool{}
	for seed := uint64(0); seed < 100; seed++ {
		m := vfs.NewMem()
		m.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(seed, 9)), TornWrites: true})
		l := mustOpen(t, m, testDir)
		l.AppendSync(recs(1, 10, 0)...)
		for i := uint64(11); i <= 14; i++ {
			l.Append(payload(i, 0)) // four separate unsynced writes
		}
		c := m.CrashClone()
		l2, err := Open(c, testDir, testOpts)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		last := l2.LastIndex()
		if last < 10 || last > 14 {
			t.Fatalf("seed %d: LastIndex %d", seed, last)
		}
		kept[last] = true
		checkContent(t, l2, 1, last, gen0)
		l2.AppendSync(recs(last+1, last+5, 0)...)
		checkContent(t, mustOpen(t, c.CrashClone(), testDir), 1, last+5, gen0)
	}
	if len(kept) < 4 {
		t.Fatalf("torn crashes kept only these last indexes: %v", kept)
	}
}

// TestTornFrameShapes builds the tails a torn write can leave by hand.
func TestTornFrameShapes(t *testing.T) {
	frame := appendFrame(nil, 4, 1, []byte(strings.Repeat("x", 100)))
	for _, cut := range []int{1, 4, 7, 8, 20, 24, 25, 60, frameHeaderSize + 99} { // beyond that, only zero padding is missing
		m := vfs.NewMem()
		l := mustOpen(t, m, testDir)
		l.AppendSync(recs(1, 3, 0)...)
		off := l.activeOff
		f, _ := m.OpenReadWrite(segmentFiles(t, m)[0])
		f.WriteAt(frame[:cut], off)
		f.Sync()
		l2, err := Open(m, testDir, testOpts)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		checkContent(t, l2, 1, 3, gen0)
		// The tail was zeroed: a shorter record then reopening is clean.
		l2.AppendSync(Record{Data: []byte("y")})
		if _, err := Open(m.CrashClone(), testDir, testOpts); err != nil {
			t.Fatalf("cut at %d, after repair: %v", cut, err)
		}
	}
}

func TestCorruptionInEarlierSegment(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	l.AppendSync(recs(1, 200, 0)...)
	l.Close()
	segs := segmentFiles(t, m)
	if len(segs) < 4 {
		t.Fatalf("only %d segments", len(segs))
	}
	for _, target := range []struct {
		seg   int
		frame int
		delta int
	}{
		{0, 1, 30},             // payload of an early record in the first segment
		{len(segs) / 2, 0, 2},  // header of a middle segment's first record
		{len(segs) / 2, -1, 5}, // length of a middle segment's last record
		{len(segs) - 2, -1, 40},
	} {
		c := m.CrashClone()
		name := segs[target.seg]
		offs := frameOffsets(t, c, name)
		fi := target.frame
		if fi < 0 {
			fi += len(offs)
		}
		off := int64(offs[fi] + target.delta)
		c.Corrupt(name, off, 2)
		_, err := Open(c, testDir, testOpts)
		ce := wantCorruption(t, err, name)
		if ce.Offset != int64(offs[fi]) {
			t.Errorf("corruption at %d reported at offset %d, want the frame at %d", off, ce.Offset, offs[fi])
		}
	}
	// A damaged segment header.
	c := m.CrashClone()
	c.Corrupt(segs[1], 3, 0)
	_, err := Open(c, testDir, testOpts)
	wantCorruption(t, err, segs[1])
	// A missing middle segment.
	c = m.CrashClone()
	c.Remove(segs[2])
	_, err = Open(c, testDir, testOpts)
	wantCorruption(t, err, segs[3])
}

func TestCorruptionInLastSegment(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	l.AppendSync(recs(1, 8, 0)...)
	l.Close()
	name := segmentFiles(t, m)[0]
	offs := frameOffsets(t, m, name)

	// A bad record followed by good ones is corruption, not a torn tail.
	c := m.CrashClone()
	c.Corrupt(name, int64(offs[3]+frameHeaderSize+1), 0)
	_, err := Open(c, testDir, testOpts)
	if ce := wantCorruption(t, err, name); ce.Offset != int64(offs[3]) {
		t.Fatalf("offset %d, want %d", ce.Offset, offs[3])
	}

	// A length grown so that the frame swallows the later records (with
	// zeros after them): still corruption, because a valid later frame
	// lies inside the claimed extent.
	c = m.CrashClone()
	f, _ := c.OpenReadWrite(name)
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(offs[7]-offs[5]+400))
	f.WriteAt(n[:], int64(offs[5]+4))
	f.Sync()
	_, err = Open(c, testDir, testOpts)
	wantCorruption(t, err, name)

	// Nonzero bytes in the preallocated space after the last record.
	c = m.CrashClone()
	c.Corrupt(name, testOpts.SegmentBytes-1, 0)
	_, err = Open(c, testDir, testOpts)
	wantCorruption(t, err, name)

	// Documented ambiguity: damage to the very last record, with only
	// zeros after it, looks exactly like a torn write and is cut.
	c = m.CrashClone()
	c.Corrupt(name, int64(offs[7]+frameHeaderSize), 0)
	l2, err := Open(c, testDir, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	checkContent(t, l2, 1, 7, gen0)
}

func TestReadBitFlipsDetected(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	l.AppendSync(recs(1, 100, 0)...)

	// Every read flips a bit: Replay never returns a damaged record.
	m.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(5, 5)), ReadBitFlipProb: 1})
	err := l.Replay(1, func(i uint64, r Record) error {
		if !sameRecord(r, payload(i, 0)) {
			t.Fatalf("Replay returned damaged record %d", i)
		}
		return nil
	})
	wantCorruption(t, err, "")
	// Open fails rather than acting on unstable reads (it must not cut
	// good records as if they were torn).
	_, err = Open(m, testDir, testOpts)
	wantCorruption(t, err, "")
	m.SetFaults(vfs.Faults{})
	checkContent(t, mustOpen(t, m, testDir), 1, 100, gen0)

	// A transient flip is survived by the re-read.
	m.SetFaults(vfs.Faults{Rand: rand.New(rand.NewPCG(6, 6)), ReadBitFlipProb: 0.3})
	ok := 0
	for range 20 {
		if l2, err := Open(m, testDir, testOpts); err == nil {
			ok++
			l2.Close()
		} else {
			wantCorruption(t, err, "")
		}
	}
	m.SetFaults(vfs.Faults{})
	if ok == 0 {
		t.Fatal("no Open survived occasional read flips")
	}
	checkContent(t, mustOpen(t, m, testDir), 1, 100, gen0)

	// A targeted persistent flip in an early record.
	name := segmentFiles(t, m)[0]
	offs := frameOffsets(t, m, name)
	m.InjectReadFlip(name, int64(offs[2]+frameHeaderSize+3), 6)
	_, err = Open(m, testDir, testOpts)
	wantCorruption(t, err, name)
}

func TestFailingFsync(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	l.AppendSync(recs(1, 5, 0)...)
	m.FailNextSync(segmentFiles(t, m)[0])
	last, err := l.AppendSync(recs(6, 8, 0)...)
	if !errors.Is(err, vfs.ErrInjected) || !errors.Is(err, ErrFailed) || last != 0 {
		t.Fatalf("AppendSync with failing fsync = %d, %v", last, err)
	}
	if l.DurableIndex() != 5 {
		t.Fatalf("DurableIndex %d after failed fsync, want 5", l.DurableIndex())
	}
	// The log refuses further work until reopened.
	for name, op := range map[string]func() error{
		"Append":         func() error { _, err := l.Append(payload(9, 0)); return err },
		"Sync":           l.Sync,
		"TruncateSuffix": func() error { return l.TruncateSuffix(3) },
		"ReleasePrefix":  func() error { return l.ReleasePrefix(3) },
		"Replay":         func() error { return l.Replay(1, func(uint64, Record) error { return nil }) },
		"Close":          l.Close,
	} {
		if err := op(); !errors.Is(err, ErrFailed) {
			t.Errorf("%s after failed fsync = %v, want ErrFailed", name, err)
		}
	}
	// After a crash only the acknowledged records are there.
	l2 := mustOpen(t, m.CrashClone(), testDir)
	checkContent(t, l2, 1, 5, gen0)

	// A failing fsync during roll-over fails the log too.
	m = vfs.NewMem()
	l = mustOpen(t, m, testDir)
	l.AppendSync(recs(1, 10, 0)...)
	m.FailNextSync("")
	_, err = l.Append(recs(11, 60, 0)...)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("Append across roll-over with failing fsync = %v", err)
	}
	checkContent(t, mustOpen(t, m.CrashClone(), testDir), 1, 10, gen0)
}

func TestNoSpace(t *testing.T) {
	m := vfs.NewMem()
	m.SetFaults(vfs.Faults{CapacityBytes: 3*testOpts.SegmentBytes + 100})
	l := mustOpen(t, m, testDir)
	var acked uint64
	var err error
	for i := uint64(1); ; i++ {
		var last uint64
		last, err = l.AppendSync(payload(i, 0))
		if err != nil {
			break
		}
		acked = last
	}
	if !errors.Is(err, vfs.ErrNoSpace) || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("append on a full disk = %v, want ErrNoSpace", err)
	}
	if acked < 40 {
		t.Fatalf("only %d records fit", acked)
	}
	// Nothing lost, and the log is still usable (the failed roll-over
	// wrote nothing): reads work, and appends work once space is freed.
	checkContent(t, l, 1, acked, gen0)
	checkContent(t, mustOpen(t, m.CrashClone(), testDir), 1, acked, gen0)
	if err := l.ReleasePrefix(acked); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendSync(payload(acked+1, 0)); err != nil {
		t.Fatalf("append after freeing space: %v", err)
	}
	checkContent(t, mustOpen(t, m.CrashClone(), testDir), l.FirstIndex(), acked+1, gen0)
}

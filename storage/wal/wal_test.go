package wal

import (
	"errors"
	"strings"
	"testing"

	"github.com/synod-io/synod/storage/vfs"
)

func TestRoundTrip(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	if l.FirstIndex() != 1 || l.LastIndex() != 0 {
		t.Fatalf("empty log: first %d last %d", l.FirstIndex(), l.LastIndex())
	}
	next := uint64(1)
	for batch := 1; next <= 600; batch = batch%9 + 1 {
		last, err := l.Append(recs(next, next+uint64(batch)-1, 0)...)
		if err != nil {
			t.Fatal(err)
		}
		next += uint64(batch)
		if last != next-1 {
			t.Fatalf("Append returned %d, want %d", last, next-1)
		}
		if batch%3 == 0 {
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			if l.DurableIndex() != last {
				t.Fatalf("DurableIndex %d after Sync, want %d", l.DurableIndex(), last)
			}
		}
	}
	last := next - 1
	checkContent(t, l, 1, last, gen0)
	if s := l.Stats(); s.Segments < 10 || s.Records != int64(last) {
		t.Fatalf("stats %+v: want many segments and %d records", s, last)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := l.Append(payload(1, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	// Reopen, after a crash too: Close synced everything.
	for _, fsys := range []vfs.FS{m, m.CrashClone()} {
		l := mustOpen(t, fsys, testDir)
		checkContent(t, l, 1, last, gen0)
		if _, err := l.AppendSync(payload(last+1, 0)); err != nil {
			t.Fatal(err)
		}
		checkContent(t, l, 1, last+1, gen0)
		l.Close()
	}
}

func TestSegmentNamesAndHeader(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	for i := uint64(1); i <= 100; i++ {
		if _, err := l.Append(payload(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	names, _ := m.List(testDir)
	if len(names) < 3 || names[0] != "0000000000000001.wal" {
		t.Fatalf("segments %v", names)
	}
	for _, n := range names {
		first, ok := parseSegmentName(n)
		if !ok {
			t.Fatalf("bad name %q", n)
		}
		fi, _ := m.Stat(testDir + "/" + n)
		if fi.Size() != testOpts.SegmentBytes {
			t.Fatalf("%s: size %d, want preallocated %d", n, fi.Size(), testOpts.SegmentBytes)
		}
		buf := readAllFile(t, m, testDir+"/"+n)
		if got, reason := decodeSegmentHeader(buf); got != first {
			t.Fatalf("%s: header first %d (%s)", n, got, reason)
		}
	}
}

func readAllFile(t testing.TB, fsys vfs.FS, name string) []byte {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	buf := make([]byte, fi.Size())
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	return buf
}

func TestReplayFromMiddle(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), testDir)
	l.Append(recs(1, 300, 0)...)
	for _, from := range []uint64{1, 2, 57, 150, 299, 300, 301} {
		want := from
		err := l.Replay(from, func(i uint64, r Record) error {
			if i != want || !sameRecord(r, payload(i, 0)) {
				t.Fatalf("from %d: got record %d %s, want %d", from, i, describe(r), want)
			}
			want++
			return nil
		})
		if err != nil || want != 301 {
			t.Fatalf("from %d: err %v, stopped before %d", from, err, want)
		}
	}
	if err := l.Replay(302, func(uint64, Record) error { return nil }); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Replay past the end = %v", err)
	}
	stop := errors.New("stop")
	n := 0
	if err := l.Replay(1, func(uint64, Record) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("callback error: %v after %d", err, n)
	}
}

func TestTruncateSuffix(t *testing.T) {
	for _, cut := range []uint64{1, 2, 37, 123, 250, 299, 300} {
		m := vfs.NewMem()
		l := mustOpen(t, m, testDir)
		l.Append(recs(1, 300, 0)...)
		segsBefore := l.Stats().Segments
		if err := l.TruncateSuffix(cut); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if l.DurableIndex() != cut-1 {
			t.Fatalf("cut %d: durable %d", cut, l.DurableIndex())
		}
		if cut < 200 && l.Stats().Segments >= segsBefore {
			t.Fatalf("cut %d: segments %d -> %d", cut, segsBefore, l.Stats().Segments)
		}
		gen := func(i uint64) int {
			if i >= cut {
				return 1
			}
			return 0
		}
		checkContent(t, l, 1, cut-1, gen)
		// New records at the same indexes, then a crash: the truncation
		// was durable and the new records after AppendSync too.
		if _, err := l.AppendSync(recs(cut, cut+40, 1)...); err != nil {
			t.Fatal(err)
		}
		checkContent(t, l, 1, cut+40, gen)
		l2 := mustOpen(t, m.CrashClone(), testDir)
		checkContent(t, l2, 1, cut+40, gen)
	}
	l := mustOpen(t, vfs.NewMem(), testDir)
	l.Append(recs(1, 10, 0)...)
	if err := l.TruncateSuffix(12); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("TruncateSuffix past end = %v", err)
	}
	if err := l.TruncateSuffix(11); err != nil || l.LastIndex() != 10 {
		t.Fatalf("TruncateSuffix(last+1) = %v, last %d", err, l.LastIndex())
	}
}

func TestReleasePrefix(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	l.Append(recs(1, 400, 0)...)
	segs := l.Stats().Segments
	if err := l.ReleasePrefix(200); err != nil {
		t.Fatal(err)
	}
	first := l.FirstIndex()
	if first <= 1 || first > 200 || l.Stats().Segments >= segs {
		t.Fatalf("after release: first %d, segments %d -> %d", first, segs, l.Stats().Segments)
	}
	if err := l.Replay(first-1, func(uint64, Record) error { return nil }); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Replay below first = %v", err)
	}
	if err := l.TruncateSuffix(first - 1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("TruncateSuffix below first = %v", err)
	}
	checkContent(t, l, first, 400, gen0)
	l.Sync()
	l2 := mustOpen(t, m.CrashClone(), testDir)
	if l2.FirstIndex() != first {
		t.Fatalf("after crash first %d, want %d", l2.FirstIndex(), first)
	}
	checkContent(t, l2, first, 400, gen0)
	// Releasing everything keeps the last segment.
	if err := l.ReleasePrefix(401); err != nil {
		t.Fatal(err)
	}
	if l.Stats().Segments != 1 || l.LastIndex() != 400 {
		t.Fatalf("segments %d last %d", l.Stats().Segments, l.LastIndex())
	}
	if err := l.ReleasePrefix(402); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("ReleasePrefix past end = %v", err)
	}
	if _, err := l.AppendSync(payload(401, 0)); err != nil {
		t.Fatal(err)
	}
	checkContent(t, mustOpen(t, m.CrashClone(), testDir), l.FirstIndex(), 401, gen0)
}

func TestLimits(t *testing.T) {
	m := vfs.NewMem()
	for _, o := range []Options{{SegmentBytes: 100}, {SegmentBytes: 4097}, {SegmentBytes: 2 << 30}, {RecordBytesMax: -1}, {SegmentBytes: 4096, RecordBytesMax: 4096}} {
		if _, err := Open(m, testDir, o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
	l := mustOpen(t, m, testDir)
	max := l.opts.RecordBytesMax
	if frameSize(max)+segmentHeaderSize > int(testOpts.SegmentBytes) {
		t.Fatalf("default RecordBytesMax %d does not fit a segment", max)
	}
	_, err := l.Append(payload(1, 0), Record{Data: make([]byte, max+1)})
	if !errors.Is(err, ErrRecordTooLarge) || !strings.Contains(err.Error(), "RecordBytesMax") {
		t.Fatalf("oversized record: %v", err)
	}
	if l.LastIndex() != 0 {
		t.Fatal("a batch with an invalid record was partly written")
	}
	// A record of the maximum size fits, even after others.
	for i := uint64(1); i <= 3; i++ {
		if _, err := l.Append(Record{Data: make([]byte, max)}); err != nil {
			t.Fatal(err)
		}
	}
	if l.Stats().Segments != 3 {
		t.Fatalf("segments %d, want 3", l.Stats().Segments)
	}
}

func TestOpenCreatesDirectoryDurably(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, "/a/b/wal")
	l.AppendSync(payload(1, 0))
	l2 := mustOpen(t, m.CrashClone(), "/a/b/wal")
	checkContent(t, l2, 1, 1, gen0)
}

func TestIgnoresForeignFiles(t *testing.T) {
	m := vfs.NewMem()
	l := mustOpen(t, m, testDir)
	l.AppendSync(recs(1, 5, 0)...)
	l.Close()
	for _, n := range []string{"README", "00000000000000AB.wal", "1.wal", "0000000000000000.wal"} {
		f, _ := m.Create(testDir + "/" + n)
		f.Close()
	}
	checkContent(t, mustOpen(t, m, testDir), 1, 5, gen0)
}

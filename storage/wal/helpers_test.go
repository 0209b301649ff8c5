package wal

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/synod-io/synod/storage/vfs"
)

// Small segments, so that tests roll over often.
var testOpts = Options{SegmentBytes: 4096}

const testDir = "/data/wal"

// payload is the deterministic content of a record; gen distinguishes
// records rewritten after a truncation.
func payload(index uint64, gen int) Record {
	n := int(index*37+uint64(gen)*11) % 300
	d := bytes.Repeat([]byte{byte(index), byte(gen)}, n/2+1)[:n]
	return Record{Type: uint16(index % 7), Data: d}
}

func recs(from, to uint64, gen int) []Record {
	var out []Record
	for i := from; i <= to; i++ {
		out = append(out, payload(i, gen))
	}
	return out
}

func mustOpen(t testing.TB, fsys vfs.FS, dir string) *Log {
	t.Helper()
	l, err := Open(fsys, dir, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// readLog replays the whole log into a map by index.
func readLog(t testing.TB, l *Log) (map[uint64]Record, error) {
	t.Helper()
	out := map[uint64]Record{}
	err := l.Replay(l.FirstIndex(), func(i uint64, r Record) error {
		out[i] = r
		return nil
	})
	return out, err
}

func sameRecord(a, b Record) bool { return a.Type == b.Type && bytes.Equal(a.Data, b.Data) }

// checkContent asserts that l holds exactly want[first..last].
func checkContent(t testing.TB, l *Log, first, last uint64, gen func(uint64) int) {
	t.Helper()
	if got := l.LastIndex(); got != last {
		t.Fatalf("LastIndex = %d, want %d", got, last)
	}
	got, err := readLog(t, l)
	if err != nil {
		t.Fatal(err)
	}
	if f := l.FirstIndex(); f > first {
		t.Fatalf("FirstIndex = %d, want <= %d", f, first)
	}
	for i := first; i <= last; i++ {
		if r, ok := got[i]; !ok || !sameRecord(r, payload(i, gen(i))) {
			t.Fatalf("record %d = %v (present %v), want %v", i, describe(r), ok, describe(payload(i, gen(i))))
		}
	}
	if len(got) != int(last-l.FirstIndex()+1) {
		t.Fatalf("replayed %d records, want %d", len(got), last-l.FirstIndex()+1)
	}
}

func describe(r Record) string { return fmt.Sprintf("{type %d, %d bytes}", r.Type, len(r.Data)) }

func gen0(uint64) int { return 0 }

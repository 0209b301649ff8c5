package kvstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// putRaw writes one raw engine key, as damage that got past the engine's
// own checksums would look.
func putRaw(t *testing.T, s *Store, key, val []byte) {
	t.Helper()
	tx, err := s.eng.begin(modeWrite)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.put(s.gen.Load(), key, val); err != nil {
		t.Fatal(err)
	}
	if err := tx.commit(true); err != nil {
		t.Fatal(err)
	}
}

func putEntry(index uint64, key, value string) consensus.Entry {
	r := kv.Put(key, value)
	return consensus.Entry{Index: index, Command: r.Command(consensus.Session{})}
}

// TestCorruptRecord: a record whose checksum fails is reported by every
// path that reads it, and a batch that reads it applies nothing.
func TestCorruptRecord(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	if _, err := s.ApplyBatch([]consensus.Entry{putEntry(1, "a", "1"), putEntry(2, "b", "2")}); err != nil {
		t.Fatal(err)
	}
	tx, _ := s.eng.begin(modeRead)
	rec, _ := tx.get(s.gen.Load(), []byte("ka"))
	rec = bytes.Clone(rec)
	tx.rollback()
	rec[len(rec)-5] ^= 1 // the value's last byte
	putRaw(t, s, []byte("ka"), rec)

	if res := s.Read(kv.Get("a")); !errors.Is(res.Err, ErrCorrupt) {
		t.Fatalf("read: %+v", res)
	}
	if res := s.Read(kv.RangePrefix("")); !errors.Is(res.Err, ErrCorrupt) {
		t.Fatalf("range: %+v", res)
	}
	if res := s.Read(kv.Get("b")); res.Err != nil || string(res.KVs[0].Value) != "2" {
		t.Fatalf("an intact key: %+v", res)
	}
	if _, err := s.ApplyBatch([]consensus.Entry{putEntry(3, "c", "3"), putEntry(4, "a", "4")}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("apply over a corrupt record: %v", err)
	}
	if s.AppliedIndex() != 2 {
		t.Fatalf("a failed batch moved the applied index to %d", s.AppliedIndex())
	}
	if res := s.Read(kv.Get("c")); res.Err != nil || len(res.KVs) != 0 {
		t.Fatalf("a failed batch applied part of itself: %+v", res)
	}
	if _, err := s.Hash(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("hash: %v", err)
	}
	if err := s.WriteSnapshot(&bytes.Buffer{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("snapshot: %v", err)
	}
}

// TestCorruptMeta: damaged metadata or counts that disagree with the data
// are reported, at Open or by Hash and WriteSnapshot.
func TestCorruptMeta(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if _, err := s.ApplyBatch([]consensus.Entry{putEntry(1, "a", "1")}); err != nil {
		t.Fatal(err)
	}
	// A key the meta does not count.
	putRaw(t, s, []byte("kz"), appendRecord(nil, &kv.KeyValue{Key: []byte("z"), CreateRevision: 2, ModRevision: 2, Version: 1}))
	if _, err := s.Hash(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "counts") {
		t.Fatalf("hash with a miscounted key: %v", err)
	}
	if err := s.WriteSnapshot(&bytes.Buffer{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("snapshot with a miscounted key: %v", err)
	}
	// A flipped bit in the meta record.
	tx, _ := s.eng.begin(modeRead)
	m, _ := tx.get(s.gen.Load(), metaKey)
	m = bytes.Clone(m)
	tx.rollback()
	m[0] ^= 1
	putRaw(t, s, metaKey, m)
	s.Close()
	if _, err := Open(dir, Options{NoSync: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a damaged meta: %v", err)
	}
}

// TestCorruptFiles damages the engine's files: the damage is reported as
// ErrCorrupt by Open or by the first read of the damaged data, never
// returned as data.
func TestCorruptFiles(t *testing.T) {
	build := func(t *testing.T) string {
		dir := t.TempDir()
		s := mustOpen(t, dir)
		if _, err := s.ApplyBatch(newWorkload(4).entries(500)); err != nil {
			t.Fatal(err)
		}
		// Move everything into sstables.
		if err := s.eng.(*pebbleEngine).db.Flush(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		return dir
	}
	damage := func(t *testing.T, dir, suffix string, at func(size int) int) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(dir, suffix))
		if len(files) == 0 {
			t.Fatalf("no %s files", suffix)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			i := at(len(data))
			binary.LittleEndian.PutUint32(data[i:], binary.LittleEndian.Uint32(data[i:])^0xdeadbeef)
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// check opens dir and reads everything; some step must fail with
	// ErrCorrupt.
	check := func(t *testing.T, dir string) {
		t.Helper()
		// Pebble logs from its background goroutines too.
		var logged atomic.Int64
		s, err := Open(dir, Options{NoSync: true, Logf: func(string, ...any) { logged.Add(1) }})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open: %v, want ErrCorrupt", err)
			}
			return
		}
		defer s.Close()
		if _, err := s.Hash(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("hash of a damaged store: %v, want ErrCorrupt", err)
		}
		if logged.Load() == 0 {
			t.Fatal("the damage was not logged")
		}
	}
	t.Run("sstable data", func(t *testing.T) {
		dir := build(t)
		damage(t, dir, "*.sst", func(int) int { return 100 })
		check(t, dir)
	})
	t.Run("manifest", func(t *testing.T) {
		dir := build(t)
		// The first record: Pebble takes damage to the last one for a torn
		// write and recovers from the WAL, which it keeps until the
		// manifest records the flush.
		damage(t, dir, "MANIFEST-*", func(int) int { return 10 })
		check(t, dir)
	})
}

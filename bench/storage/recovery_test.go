package storage

import (
	"path/filepath"
	"testing"
	"time"
)

func TestRecoverWAL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w, err := WriteWAL(dir, 3<<20, 4096)
	if err != nil {
		t.Fatal(err)
	}
	for _, cold := range []bool{true, false} {
		r, err := RecoverWAL(w, cold)
		if err != nil {
			t.Fatalf("cold=%v: %v", cold, err)
		}
		if r.Records != w.Records || r.Mem.Peak <= 0 {
			t.Fatalf("cold=%v: %+v", cold, r)
		}
	}
}

func TestSnapshotLoad(t *testing.T) {
	s, err := BuildSnapshot(t.TempDir(), 2000, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, cold := range []bool{true, false} {
		if _, err := s.LoadSnapshot(cold); err != nil {
			t.Fatalf("cold=%v: %v", cold, err)
		}
	}
}

func TestProbeSync(t *testing.T) {
	ps, err := ProbeSync(t.TempDir(), 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 4 {
		t.Fatalf("%d probes", len(ps))
	}
}

// BenchmarkWALRecovery is the recovery measurement at 64 MiB with a warm
// page cache (the storagebench command does 1 GiB, cold and warm): an op
// is one wal.Open + full Replay. ns/op includes the forced GC that
// RecoverWAL runs before it starts its clock; MiB/s and peak-RSS-MiB are
// from its own timing and sampling.
func BenchmarkWALRecovery(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "wal")
	w, err := WriteWAL(dir, 64<<20, 4096)
	if err != nil {
		b.Fatal(err)
	}
	payload := float64(w.Records) * float64(w.RecordBytes) / (1 << 20)
	var total time.Duration
	var peak int64
	b.ResetTimer()
	for range b.N {
		r, err := RecoverWAL(w, false)
		if err != nil {
			b.Fatal(err)
		}
		total += r.Total()
		peak = max(peak, r.Mem.Peak)
	}
	b.ReportMetric(payload*float64(b.N)/total.Seconds(), "MiB/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
}

package kvstore

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// benchKey is key i of a key space.
func benchKey(i int) string { return fmt.Sprintf("key/%08d", i) }

var benchValue = string(bytes.Repeat([]byte{'v'}, 256))

// putEntries returns n Put entries from index first on random keys of a
// keySpace-key space.
func putEntries(rng *rand.Rand, first uint64, n, keySpace int) []consensus.Entry {
	out := make([]consensus.Entry, n)
	for i := range out {
		r := kv.Put(benchKey(rng.IntN(keySpace)), benchValue)
		out[i] = consensus.Entry{Index: first + uint64(i), Term: 1, Command: r.Command(consensus.Session{})}
	}
	return out
}

// fill puts every key of the key space, unsynced, in large batches.
func fill(tb testing.TB, s *Store, keySpace int) {
	tb.Helper()
	const batch = 4096
	for i := 0; i < keySpace; i += batch {
		n := min(batch, keySpace-i)
		es := make([]consensus.Entry, n)
		for j := range es {
			r := kv.Put(benchKey(i+j), benchValue)
			es[j] = consensus.Entry{Index: s.AppliedIndex() + 1 + uint64(j), Term: 1, Command: r.Command(consensus.Session{})}
		}
		if _, err := s.ApplyBatch(es); err != nil {
			tb.Fatal(err)
		}
	}
}

// openFilled opens a store in a fresh directory holding every key of the
// key space, with sync as asked.
func openFilled(b *testing.B, keySpace int, noSync bool) *Store {
	dir := b.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	fill(b, s, keySpace)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s, err = Open(dir, Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkApply measures the apply path: batches of committed Puts of
// 256-byte values on random keys of a filled key space, each batch one
// synced store batch. Figures and the comparison with bbolt are in doc.go.
func BenchmarkApply(b *testing.B) {
	for _, keySpace := range []int{1000, 100000} {
		for _, batch := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("keys=%d/batch=%d", keySpace, batch), func(b *testing.B) {
				s := openFilled(b, keySpace, false)
				defer s.Close()
				rng := rand.New(rand.NewPCG(1, 2))
				batches := make([][]consensus.Entry, 64)
				next := s.AppliedIndex() + 1
				b.ResetTimer()
				for i := range b.N {
					if i%len(batches) == 0 {
						b.StopTimer()
						for j := range batches {
							batches[j] = putEntries(rng, next+uint64(j*batch), batch, keySpace)
						}
						b.StartTimer()
					}
					es := batches[i%len(batches)]
					if _, err := s.ApplyBatch(es); err != nil {
						b.Fatal(err)
					}
					next += uint64(len(es))
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}

// BenchmarkSnapshot measures writing a snapshot of a filled store (1M keys
// with 256-byte values; 100k with -short) to a counting writer, and
// restoring it into another store through a pipe from a second writer.
func BenchmarkSnapshot(b *testing.B) {
	keys := 1_000_000
	if testing.Short() {
		keys = 100_000
	}
	b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
		s := openFilled(b, keys, false)
		defer s.Close()
		dst, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer dst.Close()
		var wTime, rTime time.Duration
		var size int64
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		peak := watchHeap()
		b.ResetTimer()
		for range b.N {
			var cw countWriter
			t0 := time.Now()
			if err := s.WriteSnapshot(&cw); err != nil {
				b.Fatal(err)
			}
			wTime += time.Since(t0)
			size = cw.n
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(s.WriteSnapshot(pw)) }()
			t0 = time.Now()
			if err := dst.RestoreSnapshot(pr); err != nil {
				b.Fatal(err)
			}
			rTime += time.Since(t0)
		}
		b.ReportMetric(float64(peak()-min(base, peak()))/1e6, "peak-heap-growth-MB")
		b.ReportMetric(float64(size)/1e6, "MB")
		b.ReportMetric(wTime.Seconds()/float64(b.N), "write-s")
		b.ReportMetric(rTime.Seconds()/float64(b.N), "restore-s")
		if dst.AppliedIndex() != s.AppliedIndex() {
			b.Fatal("restored applied index differs")
		}
	})
}

// watchHeap samples the live heap until the returned function is called,
// which returns the peak seen.
func watchHeap() (stop func() uint64) {
	done := make(chan struct{})
	res := make(chan uint64)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				res <- peak
				return
			case <-t.C:
			}
		}
	}()
	var peak uint64
	stopped := false
	return func() uint64 {
		if !stopped {
			stopped = true
			close(done)
			peak = <-res
		}
		return peak
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

package wal

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/synod-io/synod/storage/vfs"
)

// BenchmarkAppend measures durable appends of 256-byte records on the
// operating system's file system through a Committer, with 1, 16 and 128
// concurrent appenders, each waiting for its record to be durable. It
// reports records/s and fsyncs/record (group commit shares fsyncs).
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			l, err := Open(vfs.Default, b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			c, err := NewCommitter(l, GroupOptions{})
			if err != nil {
				b.Fatal(err)
			}
			rec := Record{Type: 1, Data: make([]byte, 256)}
			syncs0 := l.Stats().Syncs
			var next atomic.Int64
			var wg sync.WaitGroup
			b.SetBytes(int64(len(rec.Data)))
			b.ResetTimer()
			for range appenders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := c.Append(rec); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			syncs := l.Stats().Syncs - syncs0
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(syncs)/float64(b.N), "fsyncs/record")
			c.Close()
			l.Close()
		})
	}
}

// BenchmarkAppendMem measures the synchronous path on MemFS (no real
// fsync): the cost of framing, checksumming and the FS interface.
func BenchmarkAppendMem(b *testing.B) {
	l, err := Open(vfs.NewMem(), "/wal", Options{SegmentBytes: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	rec := Record{Type: 1, Data: make([]byte, 256)}
	b.SetBytes(int64(len(rec.Data)))
	for b.Loop() {
		if _, err := l.AppendSync(rec); err != nil {
			b.Fatal(err)
		}
	}
}

package storage

import (
	"fmt"
	"testing"
)

// BenchmarkWALAppend appends b.N durable 256-byte records through each
// system with 1, 16 and 128 concurrent appenders. An op is one durable
// record; records/s, fsyncs/record and records/commit are reported as
// metrics. Every record is read back and checked after the timed part.
// Use a fixed count (-benchtime 20000x): each b.N opens a fresh store.
func BenchmarkWALAppend(b *testing.B) {
	for _, sys := range Systems {
		b.Run(sys.Name, func(b *testing.B) {
			for _, n := range []int{1, 16, 128} {
				b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) {
					res, err := RunAppend(sys, b.TempDir(), AppendConfig{
						Appenders:   n,
						RecordBytes: 256,
						Records:     int64(b.N),
						OnStart:     b.ResetTimer,
						OnStop:      b.StopTimer,
					})
					if err != nil {
						b.Fatal(err)
					}
					b.SetBytes(256)
					b.ReportMetric(res.RecordsPerSec(), "records/s")
					b.ReportMetric(res.SyncsPerRecord(), "fsyncs/record")
					if c := res.RecordsPerCommit(); c > 0 {
						b.ReportMetric(c, "records/commit")
					}
				})
			}
		})
	}
}

// TestAppend runs every system briefly at each concurrency, with the
// read-back checks.
func TestAppend(t *testing.T) {
	for _, sys := range Systems {
		for _, n := range []int{1, 16, 128} {
			t.Run(fmt.Sprintf("%s/appenders=%d", sys.Name, n), func(t *testing.T) {
				res, err := RunAppend(sys, t.TempDir(), AppendConfig{Appenders: n, RecordBytes: 256, Records: 300})
				if err != nil {
					t.Fatal(err)
				}
				if res.Records != 300 {
					t.Fatalf("%d records acknowledged, want 300", res.Records)
				}
				if res.Syncs < 1 {
					t.Fatalf("%d fsyncs for durable appends", res.Syncs)
				}
				if n == 1 && sys.Name == "synod" && res.Commits != 300 {
					t.Fatalf("one appender: %d commits, want one per record", res.Commits)
				}
				t.Logf("%.0f records/s, %.3f fsyncs/record, %.1f records/commit", res.RecordsPerSec(), res.SyncsPerRecord(), res.RecordsPerCommit())
			})
		}
	}
}

// TestCheckerCatches makes sure the read-back check catches a missing,
// duplicated, unknown, corrupt or short record.
func TestCheckerCatches(t *testing.T) {
	const n = 10
	recs := make([][]byte, n)
	var sum uint64
	for i := range recs {
		recs[i] = make([]byte, 64)
		FillRecord(recs[i], uint64(i))
		sum += RecordHash(recs[i])
	}
	run := func(mod func([][]byte) [][]byte) error {
		c := NewChecker(64, n, sum)
		for _, r := range mod(append([][]byte(nil), recs...)) {
			if err := c.Add(r); err != nil {
				return err
			}
		}
		return c.Done()
	}
	if err := run(func(r [][]byte) [][]byte { return r }); err != nil {
		t.Fatalf("intact: %v", err)
	}
	clone := func(b []byte) []byte { return append([]byte(nil), b...) }
	cases := map[string]func([][]byte) [][]byte{
		"missing":   func(r [][]byte) [][]byte { return r[1:] },
		"duplicate": func(r [][]byte) [][]byte { return append(r, r[3]) },
		"unknown": func(r [][]byte) [][]byte {
			x := make([]byte, 64)
			FillRecord(x, n)
			return append(r, x)
		},
		"corrupt payload": func(r [][]byte) [][]byte { r[4] = clone(r[4]); r[4][20] ^= 1; return r },
		"corrupt check":   func(r [][]byte) [][]byte { r[4] = clone(r[4]); r[4][63] ^= 1; return r },
		"short":           func(r [][]byte) [][]byte { r[2] = r[2][:63]; return r },
	}
	for name, mod := range cases {
		if err := run(mod); err == nil {
			t.Errorf("%s: not caught", name)
		}
	}
}

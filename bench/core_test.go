package bench

import (
	"testing"
	"time"
)

// BenchmarkCore commits b.N proposals of 256 bytes through a 3-node cluster
// of each system, keeping 256 outstanding. An op is one committed proposal,
// so ns/op, B/op and allocs/op are per proposal; proposals/s is reported too.
// The cluster is built and its leader elected before the timer starts.
//
//	go test -run '^$' -bench Core -benchtime 100000x
func BenchmarkCore(b *testing.B) {
	for _, s := range Systems {
		b.Run(s.Name, func(b *testing.B) {
			o := DefaultOptions()
			o.N = b.N
			b.ReportAllocs()
			res, err := s.Run(o, Hooks{Start: b.ResetTimer, Stop: b.StopTimer})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.PerSecond(), "proposals/s")
		})
	}
}

// TestCore runs each system on a small workload: the harness's own sanity
// checks (each command applied once on every node, in the same order) are
// the assertions.
func TestCore(t *testing.T) {
	for _, s := range Systems {
		t.Run(s.Name, func(t *testing.T) {
			for _, o := range []Options{
				{N: 5000, Window: 256, Size: 256, Timeout: time.Minute},
				{N: 1000, Window: 1, Size: 8, Timeout: time.Minute},
				{N: 3000, Window: 1000, Size: 100, Timeout: time.Minute},
			} {
				res, err := s.Run(o, Hooks{})
				if err != nil {
					t.Fatalf("%+v: %v", o, err)
				}
				if res.N != o.N || res.Elapsed <= 0 {
					t.Fatalf("%+v: bad result %+v", o, res)
				}
			}
		})
	}
}

// TestCheckerCatches makes sure the sanity checks fail loudly.
func TestCheckerCatches(t *testing.T) {
	o := Options{N: 4, Window: 1, Size: 16, Timeout: time.Second}
	mk := func(seqs ...int) *checker {
		c := newChecker(1, o)
		for _, s := range seqs {
			c.apply(payload(s, o.Size))
		}
		return c
	}
	if err := verify("ok", []*checker{mk(0, 1, 2, 3), mk(0, 1, 2, 3)}); err != nil {
		t.Fatalf("clean run rejected: %v", err)
	}
	bad := payload(2, o.Size)
	bad[o.Size-1]++
	corrupt := mk(0, 1)
	corrupt.apply(bad)
	for name, cs := range map[string][]*checker{
		"duplicate": {mk(0, 1, 1, 2, 3)},
		"missing":   {mk(0, 1, 2)},
		"unknown":   {mk(0, 1, 2, 4)},
		"order":     {mk(0, 1, 2, 3), mk(1, 0, 2, 3)},
		"corrupt":   {corrupt},
		"size":      {func() *checker { c := mk(0, 1, 2); c.apply(payload(3, 9)); return c }()},
	} {
		if err := verify(name, cs); err == nil {
			t.Errorf("%s: not caught", name)
		}
	}
}

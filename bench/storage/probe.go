package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// SyncProbe is the latency of one sequential small write followed by a
// sync, on a file prepared one way, without any store around it: the
// floor under every one-appender figure.
type SyncProbe struct {
	Name   string
	Median time.Duration
	P90    time.Duration
}

// ProbeSync measures n iterations of (pwrite 280 bytes at the end, sync)
// for each combination of how the file was preallocated — "sparse"
// (ftruncate, as wal.Log does: blocks are allocated by the first write into
// them, so the sync must also commit the allocation to the journal) or
// "written" (zeros written and synced beforehand) — and of the sync call:
// fsync (what wal.Log and snap use, via os.File.Sync) or fdatasync (what
// bbolt and Pebble's WAL use).
func ProbeSync(dir string, n int) ([]SyncProbe, error) {
	const rec = 280 // a 256-byte payload framed by wal (24-byte header)
	size := int64(n*rec) + 1<<20
	var out []SyncProbe
	for _, prealloc := range []string{"sparse", "written"} {
		for _, sync := range []string{"fsync", "fdatasync"} {
			p := filepath.Join(dir, fmt.Sprintf("probe-%s-%s", prealloc, sync))
			f, err := os.Create(p)
			if err != nil {
				return nil, err
			}
			if prealloc == "sparse" {
				err = f.Truncate(size)
			} else {
				_, err = f.WriteAt(make([]byte, size), 0)
			}
			if err == nil {
				err = f.Sync()
			}
			buf := make([]byte, rec)
			lat := make([]time.Duration, 0, n)
			for i := 0; i < n && err == nil; i++ {
				buf[0] = byte(i) | 1
				start := time.Now()
				if _, err = f.WriteAt(buf, int64(i*rec)); err != nil {
					break
				}
				if sync == "fsync" {
					err = f.Sync()
				} else {
					err = unix.Fdatasync(int(f.Fd()))
				}
				lat = append(lat, time.Since(start))
			}
			f.Close()
			os.Remove(p)
			if err != nil {
				return nil, err
			}
			slices.Sort(lat)
			out = append(out, SyncProbe{Name: prealloc + "+" + sync, Median: lat[len(lat)/2], P90: lat[len(lat)*9/10]})
		}
	}
	return out, nil
}

// Command storagebench measures synod's durable storage on the OS file
// system: durable-append throughput through wal.Committer against bbolt and
// Pebble (interleaved rounds, ratios from the same run), the recovery time
// and memory of a large WAL, and loading a large kv snapshot. See
// bench/README.md, section "Storage".
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synod-io/synod/bench/storage"
)

func main() {
	var (
		dir         = flag.String("dir", os.TempDir(), "directory for the test data (a temporary subdirectory is made and removed)")
		phases      = flag.String("phases", "probe,recovery,snapshot,append", "phases to run, comma-separated")
		systems     = flag.String("systems", "synod,bbolt,pebble", "systems compared in the append phase")
		appenders   = flag.String("appenders", "1,16,128", "concurrent appenders, comma-separated")
		recordBytes = flag.Int("record-bytes", 256, "append phase: record size")
		dur         = flag.Duration("dur", 2*time.Second, "append phase: duration of one run")
		rounds      = flag.Int("rounds", 5, "append phase: interleaved rounds (median reported)")
		warmup      = flag.Bool("warmup", true, "append phase: one short untimed run per system first")
		logBytes    = flag.Int64("log-bytes", 1<<30, "recovery phase: WAL payload bytes (a quarter-size log is measured too)")
		walRecBytes = flag.Int("wal-record-bytes", 4096, "recovery phase: record size")
		keys        = flag.Int("keys", 1_000_000, "snapshot phase: keys in the kv store")
		valueBytes  = flag.Int("value-bytes", 100, "snapshot phase: value size (keys are 16 bytes)")
		probeN      = flag.Int("probe-n", 300, "probe phase: write+sync iterations per variant")
	)
	flag.Parse()
	log := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

	root, err := os.MkdirTemp(*dir, "storagebench-")
	check(err)
	defer os.RemoveAll(root)

	printMachine(root)
	need := *logBytes*5/4 + 2*int64(*keys)*int64(*valueBytes+40) + 1<<30
	if free := freeBytes(root); free < 2*need {
		scaled := max(64<<20, (free/2-1<<30)*4/5)
		if scaled < *logBytes {
			log("only %d MiB free: scaling -log-bytes down from %d to %d MiB", free>>20, *logBytes>>20, scaled>>20)
			fmt.Printf("NOTE: -log-bytes scaled down to %d MiB for lack of free space\n", scaled>>20)
			*logBytes = scaled
		}
	}

	for _, ph := range strings.Split(*phases, ",") {
		switch strings.TrimSpace(ph) {
		case "probe":
			runProbe(root, *probeN)
		case "recovery":
			runRecovery(root, *logBytes, *walRecBytes)
		case "snapshot":
			runSnapshot(root, *keys, *valueBytes)
		case "append":
			runAppend(root, *systems, *appenders, *recordBytes, *dur, *rounds, *warmup)
		case "":
		default:
			check(fmt.Errorf("unknown phase %q", ph))
		}
	}
	fmt.Printf("\nload average at the end: %s\n", loadavg())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "storagebench:", err)
		os.Exit(1)
	}
}

func freeBytes(dir string) int64 {
	var st unix.Statfs_t
	check(unix.Statfs(dir, &st))
	return int64(st.Bavail) * int64(st.Bsize)
}

func fsType(dir string) string {
	var st unix.Statfs_t
	check(unix.Statfs(dir, &st))
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext2/3/4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// mountOf finds the mount entry (device, type) for dir in /proc/mounts.
func mountOf(dir string) string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "?"
	}
	best, bestLen := "?", -1
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		mp := f[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > bestLen {
			best, bestLen = fmt.Sprintf("%s on %s type %s (%s)", f[0], mp, f[2], f[3]), len(mp)
		}
	}
	return best
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func printMachine(root string) {
	fmt.Printf("storagebench  %s  go %s  %s/%s  %d CPUs  GOMAXPROCS %d\n",
		time.Now().Format(time.RFC3339), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("data dir %s: %s, statfs type %s, %d GiB free\n", root, mountOf(root), fsType(root), freeBytes(root)>>30)
	fmt.Printf("load average at the start: %s  (a shared machine: compare figures from the same run)\n", loadavg())
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func table() *tabwriter.Writer {
	return tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// ---- probe ----

func runProbe(root string, n int) {
	fmt.Printf("\n== fsync probe: pwrite 280 B at the end of a file + sync, %d times, no store ==\n", n)
	ps, err := storage.ProbeSync(root, n)
	check(err)
	w := table()
	fmt.Fprintln(w, "file+sync\tmedian\tp90\t")
	for _, p := range ps {
		fmt.Fprintf(w, "%s\t%.3f ms\t%.3f ms\t\n", p.Name, float64(p.Median)/1e6, float64(p.P90)/1e6)
	}
	w.Flush()
}

// ---- recovery ----

func memRow(m *storage.MemWatch) string {
	hwm := fmt.Sprintf("%.0f", mib(m.HWM))
	if !m.HWMReset {
		hwm += " (lifetime)"
	}
	return fmt.Sprintf("%.0f\t%.0f\t%s\t%.0f", mib(m.Before), mib(m.Peak), hwm, mib(m.After))
}

func runRecovery(root string, logBytes int64, recBytes int) {
	fmt.Printf("\n== WAL recovery: wal.Open + full Replay, %d-byte records, default 64 MiB segments ==\n", recBytes)
	w := table()
	fmt.Fprintln(w, "log\trecords\tsegs\ton disk (alloc)\twrite+1 sync\tcache\topen\treplay\ttotal\tMiB/s\tRSS before\tpeak\tVmHWM\tafter MiB\t")
	for _, size := range []int64{logBytes / 4, logBytes} {
		d, err := os.MkdirTemp(root, "wal-")
		check(err)
		wl, err := storage.WriteWAL(filepath.Join(d, "log"), size, recBytes)
		check(err)
		payload := int64(wl.Records) * int64(recBytes)
		for _, cold := range []bool{true, false, false} {
			r, err := storage.RecoverWAL(wl, cold)
			check(err)
			cache := "warm"
			if cold {
				cache = "cold"
			}
			fmt.Fprintf(w, "%.0f MiB\t%d\t%d\t%.0f (%.0f) MiB\t%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t\n",
				mib(payload), wl.Records, wl.Segments, mib(wl.Apparent), mib(wl.Allocated), secs(wl.Write), cache,
				ms(r.Open), ms(r.Replay), secs(r.Total()), mib(payload)/r.Total().Seconds(), memRow(r.Mem))
		}
		os.RemoveAll(d)
	}
	w.Flush()
	fmt.Println("cold = segment files evicted from the page cache (posix_fadvise DONTNEED) first; RSS in MiB, sampled every 2 ms; VmHWM reset before open")
}

// ---- snapshot ----

func runSnapshot(root string, keys, valueBytes int) {
	fmt.Printf("\n== kv snapshot: %d keys (16-byte keys, %d-byte values) ==\n", keys, valueBytes)
	d, err := os.MkdirTemp(root, "snap-")
	check(err)
	defer os.RemoveAll(d)
	s, err := storage.BuildSnapshot(d, keys, valueBytes)
	check(err)
	fmt.Printf("build (apply %d puts): %s; Snapshot(): %s, %.1f MiB; snap.Store.Save (write+fsync+rename+dir fsync): %s; file %.1f MiB\n",
		keys, secs(s.Build), ms(s.Encode), mib(s.DataBytes), ms(s.Save), mib(s.FileBytes))
	w := table()
	fmt.Fprintln(w, "cache\tLoadNewest (verify)\tread data\tkv.Restore\ttotal\tMiB/s\tkeys/s\tRSS before\tpeak\tVmHWM\tafter MiB\t")
	for _, cold := range []bool{true, false, false} {
		l, err := s.LoadSnapshot(cold)
		check(err)
		cache := "warm"
		if cold {
			cache = "cold"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t\n", cache, ms(l.LoadNewest), ms(l.Read), ms(l.Restore), secs(l.Total()),
			mib(s.FileBytes)/l.Total().Seconds(), float64(keys)/l.Total().Seconds(), memRow(l.Mem))
	}
	w.Flush()
	fmt.Println("LoadNewest verifies the whole file (first read); the Reader reads it again into one buffer; kv.Restore decodes it; 'after' includes the restored store")
}

// ---- append ----

func parseInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		check(err)
		out = append(out, n)
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func runAppend(root, systemList, appenderList string, recBytes int, dur time.Duration, rounds int, warmup bool) {
	var syss []storage.System
	for _, name := range strings.Split(systemList, ",") {
		s, err := storage.SystemByName(strings.TrimSpace(name))
		check(err)
		syss = append(syss, s)
	}
	levels := parseInts(appenderList)
	fmt.Printf("\n== durable appends: %d-byte records, each Append returns once durable; %s per run, %d interleaved rounds ==\n", recBytes, dur, rounds)
	if warmup {
		for _, s := range syss {
			_, err := storage.RunAppend(s, root, storage.AppendConfig{Appenders: 16, RecordBytes: recBytes, Duration: dur / 5})
			check(err)
		}
	}
	// res[level][system] holds one result per round.
	res := make([][][]storage.AppendResult, len(levels))
	for li := range levels {
		res[li] = make([][]storage.AppendResult, len(syss))
	}
	for round := range rounds {
		for li, n := range levels {
			for k := range syss {
				si := (k + round + li) % len(syss) // rotate the order
				r, err := storage.RunAppend(syss[si], root, storage.AppendConfig{Appenders: n, RecordBytes: recBytes, Duration: dur})
				check(err)
				res[li][si] = append(res[li][si], r)
				fmt.Fprintf(os.Stderr, "round %d appenders=%-3d %-6s %9.0f records/s  %.3f fsyncs/record  %6.1f records/commit\n",
					round+1, n, syss[si].Name, r.RecordsPerSec(), r.SyncsPerRecord(), r.RecordsPerCommit())
			}
		}
	}
	w := table()
	fmt.Fprintln(w, "appenders\tsystem\trecords/s median\tmin\tmax\tfsyncs/record\t(how)\trecords/commit\t")
	for li, n := range levels {
		for si, s := range syss {
			var rps, spr, rpc []float64
			for _, r := range res[li][si] {
				rps = append(rps, r.RecordsPerSec())
				spr = append(spr, r.SyncsPerRecord())
				rpc = append(rpc, r.RecordsPerCommit())
			}
			fmt.Fprintf(w, "%d\t%s\t%.0f\t%.0f\t%.0f\t%.3f\t%s\t%.1f\t\n", n, s.Name, median(rps), slices.Min(rps), slices.Max(rps),
				median(spr), res[li][si][0].SyncHow, median(rpc))
		}
	}
	w.Flush()

	// Ratios: synod ÷ each other system, per level.
	base := slices.IndexFunc(syss, func(s storage.System) bool { return s.Name == "synod" })
	if base < 0 || len(syss) < 2 {
		return
	}
	fmt.Println()
	w = table()
	fmt.Fprintln(w, "appenders\tratio\tof medians\tper-round median\tmin\tmax\t")
	for li, n := range levels {
		for si, s := range syss {
			if si == base {
				continue
			}
			var per, a, b []float64
			for round := range rounds {
				x, y := res[li][base][round].RecordsPerSec(), res[li][si][round].RecordsPerSec()
				per = append(per, x/y)
				a, b = append(a, x), append(b, y)
			}
			fmt.Fprintf(w, "%d\tsynod ÷ %s\t%.2f\t%.2f\t%.2f\t%.2f\t\n", n, s.Name, median(a)/median(b), median(per), slices.Min(per), slices.Max(per))
		}
	}
	w.Flush()
}

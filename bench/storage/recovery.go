package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/storage/snap"
	"github.com/synod-io/synod/storage/vfs"
	"github.com/synod-io/synod/storage/wal"
)

// ---- memory ----

// ProcMem reads VmRSS and VmHWM (bytes) from /proc/self/status.
func ProcMem() (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			*dst = kb << 10
		}
	}
	return rss, hwm, nil
}

// ResetPeakRSS resets VmHWM to the current RSS (Linux: clear_refs 5). It
// reports whether that worked; if not, VmHWM is the process's lifetime peak.
func ResetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// MemWatch samples VmRSS until stopped.
type MemWatch struct {
	Before, Peak, After, HWM int64 // bytes; HWM is VmHWM at Stop
	HWMReset                 bool  // VmHWM was reset at Start
	stop                     chan struct{}
	wg                       sync.WaitGroup
	mu                       sync.Mutex
}

// StartMemWatch collects garbage and returns freed memory to the OS (so
// that Before is the live baseline), resets VmHWM and starts sampling
// every 2 ms.
func StartMemWatch() *MemWatch {
	runtime.GC()
	debug.FreeOSMemory()
	w := &MemWatch{stop: make(chan struct{})}
	w.Before, _, _ = ProcMem()
	w.HWMReset = ResetPeakRSS()
	w.Peak = w.Before
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				if rss, _, err := ProcMem(); err == nil {
					w.mu.Lock()
					w.Peak = max(w.Peak, rss)
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

// Stop stops sampling and records After (before any collection) and VmHWM.
func (w *MemWatch) Stop() {
	close(w.stop)
	w.wg.Wait()
	w.After, w.HWM, _ = ProcMem()
	w.Peak = max(w.Peak, w.After, w.HWM)
}

// EvictCache asks the kernel to drop the page cache of every file in dir
// (posix_fadvise DONTNEED; the files must be synced: dirty pages are not
// dropped), so that the next read comes from the disk.
func EvictCache(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// DirBytes returns the apparent size and the allocated size (blocks) of
// the files in dir.
func DirBytes(dir string) (apparent, allocated int64, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, e.Name()), &st); err != nil {
			return 0, 0, err
		}
		apparent += st.Size
		allocated += st.Blocks * 512
	}
	return apparent, allocated, nil
}

// ---- WAL recovery ----

// WALLog is a log written for the recovery measurement.
type WALLog struct {
	Dir         string
	Records     uint64
	RecordBytes int
	Sum         uint64 // foldRecord over all records, in order
	Write       time.Duration
	Apparent    int64 // segment files' apparent size
	Allocated   int64 // their allocated blocks
	Segments    int
}

// foldRecord is the cheap in-order hash used by the recovery check: the
// record's seq and its last 8 bytes (the WAL's CRC-32C already checked
// every byte).
func foldRecord(h uint64, rec []byte) uint64 {
	h ^= binary.LittleEndian.Uint64(rec) + binary.LittleEndian.Uint64(rec[len(rec)-8:])
	return h * 0x100000001b3
}

// WriteWAL writes about logBytes of payload as records of recordBytes
// into a new log in dir (Log.Append in 1 MiB batches, no fsync per
// record), syncs once at the end and closes the log.
func WriteWAL(dir string, logBytes int64, recordBytes int) (WALLog, error) {
	if recordBytes < 16 {
		return WALLog{}, fmt.Errorf("record bytes %d < 16", recordBytes)
	}
	w := WALLog{Dir: dir, RecordBytes: recordBytes, Records: uint64(logBytes / int64(recordBytes)), Sum: 14695981039346656037}
	l, err := wal.Open(vfs.Default, dir, wal.Options{})
	if err != nil {
		return w, err
	}
	start := time.Now()
	per := max(1, (1<<20)/recordBytes)
	bufs := make([][]byte, per)
	for i := range bufs {
		bufs[i] = make([]byte, recordBytes)
	}
	recs := make([]wal.Record, per)
	for seq := uint64(0); seq < w.Records; {
		n := min(uint64(per), w.Records-seq)
		for i := range n {
			FillRecord(bufs[i], seq+i)
			w.Sum = foldRecord(w.Sum, bufs[i])
			recs[i] = wal.Record{Type: 1, Data: bufs[i]}
		}
		if _, err := l.Append(recs[:n]...); err != nil {
			l.Close()
			return w, err
		}
		seq += n
	}
	if err := l.Sync(); err != nil {
		l.Close()
		return w, err
	}
	w.Write = time.Since(start)
	w.Segments = l.Stats().Segments
	if err := l.Close(); err != nil {
		return w, err
	}
	w.Apparent, w.Allocated, err = DirBytes(dir)
	return w, err
}

// WALRecovery is one timed wal.Open + full Replay.
type WALRecovery struct {
	Cold    bool
	Open    time.Duration
	Replay  time.Duration
	Records uint64
	Mem     *MemWatch
}

// Total is Open + Replay.
func (r WALRecovery) Total() time.Duration { return r.Open + r.Replay }

// RecoverWAL times wal.Open and a full Replay of w, checking every record
// (count, order and the cheap hash). If cold, the files are evicted from
// the page cache first.
func RecoverWAL(w WALLog, cold bool) (WALRecovery, error) {
	r := WALRecovery{Cold: cold}
	if cold {
		if err := EvictCache(w.Dir); err != nil {
			return r, fmt.Errorf("evict: %w", err)
		}
	}
	r.Mem = StartMemWatch()
	stopped := false
	defer func() {
		if !stopped {
			r.Mem.Stop()
		}
	}()
	start := time.Now()
	l, err := wal.Open(vfs.Default, w.Dir, wal.Options{})
	if err != nil {
		return r, err
	}
	r.Open = time.Since(start)
	sum := uint64(14695981039346656037)
	start = time.Now()
	err = l.Replay(l.FirstIndex(), func(index uint64, rec wal.Record) error {
		if len(rec.Data) != w.RecordBytes {
			return fmt.Errorf("record %d: %d bytes, want %d", index, len(rec.Data), w.RecordBytes)
		}
		if seq := binary.LittleEndian.Uint64(rec.Data); seq != index-1 || rec.Data[len(rec.Data)-1] != checkByte(seq) {
			return fmt.Errorf("record %d: holds seq %d or a bad check byte", index, seq)
		}
		sum = foldRecord(sum, rec.Data)
		r.Records++
		return nil
	})
	r.Replay = time.Since(start)
	r.Mem.Stop()
	stopped = true
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return r, err
	}
	if r.Records != w.Records || sum != w.Sum {
		return r, fmt.Errorf("replayed %d records (hash %#x), want %d (hash %#x)", r.Records, sum, w.Records, w.Sum)
	}
	return r, nil
}

// ---- snapshot ----

// SnapshotRun is the 1M-key snapshot measurement.
type SnapshotRun struct {
	Keys      int
	Build     time.Duration // applying the puts to kv.New()
	Encode    time.Duration // Store.Snapshot
	Save      time.Duration // snap.Store.Save (write, fsync, rename, dir fsync)
	DataBytes int64
	FileBytes int64
	Loads     []SnapshotLoad
	hash      uint64
	dir       string
}

// SnapshotLoad is one timed load.
type SnapshotLoad struct {
	Cold       bool
	LoadNewest time.Duration // finds and verifies the newest file (reads it whole)
	Read       time.Duration // reads the data through the Reader (second read, checksum)
	Restore    time.Duration // kv.Restore
	Mem        *MemWatch
}

// Total is the whole load.
func (l SnapshotLoad) Total() time.Duration { return l.LoadNewest + l.Read + l.Restore }

// SnapshotKey and SnapshotValue are the data of key i.
func SnapshotKey(i int) string { return fmt.Sprintf("k%015x", i) }

// SnapshotValue returns the value of key i, valueBytes long.
func SnapshotValue(i, valueBytes int) string {
	b := make([]byte, valueBytes)
	x := uint64(i)*0x9E3779B97F4A7C15 + 7
	for j := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[j] = 'a' + byte(x%26)
	}
	return string(b)
}

// BuildSnapshot builds a kv.Store with keys keys (16-byte keys, valueBytes
// values) by applying one Put entry per key, encodes its snapshot and
// saves it in a snap.Store in dir.
func BuildSnapshot(dir string, keys, valueBytes int) (*SnapshotRun, error) {
	s := &SnapshotRun{Keys: keys, dir: dir}
	st := kv.New()
	start := time.Now()
	for i := range keys {
		req := kv.Put(SnapshotKey(i), SnapshotValue(i, valueBytes))
		res := st.Apply(consensus.Entry{Index: uint64(i) + 1, Term: 1, Type: consensus.EntryNormal, Command: req.Command(consensus.Session{})})
		if res.Err != nil {
			return s, fmt.Errorf("put %d: %w", i, res.Err)
		}
	}
	s.Build = time.Since(start)
	if st.Len() != keys {
		return s, fmt.Errorf("store holds %d keys, want %d", st.Len(), keys)
	}
	s.hash = st.Hash()
	start = time.Now()
	data := st.Snapshot()
	s.Encode = time.Since(start)
	s.DataBytes = int64(len(data))
	ss, err := snap.Open(vfs.Default, dir, snap.Options{SizeBytesMax: 4 * s.DataBytes})
	if err != nil {
		return s, err
	}
	start = time.Now()
	info, err := ss.Save(snap.Meta{Index: st.AppliedIndex(), Term: 1, Voters: []consensus.NodeID{1, 2, 3}}, bytes.NewReader(data))
	if err != nil {
		return s, err
	}
	s.Save = time.Since(start)
	fi, err := os.Stat(filepath.Join(dir, info.Name))
	if err != nil {
		return s, err
	}
	s.FileBytes = fi.Size()
	return s, nil
}

// LoadSnapshot times loading the newest snapshot back into a kv.Store
// (snap.Store.LoadNewest, reading the data to EOF, kv.Restore) and checks
// the restored store (key count and kv's state hash).
func (s *SnapshotRun) LoadSnapshot(cold bool) (SnapshotLoad, error) {
	l := SnapshotLoad{Cold: cold}
	if cold {
		if err := EvictCache(s.dir); err != nil {
			return l, fmt.Errorf("evict: %w", err)
		}
	}
	l.Mem = StartMemWatch()
	stopped := false
	defer func() {
		if !stopped {
			l.Mem.Stop()
		}
	}()
	start := time.Now()
	ss, err := snap.Open(vfs.Default, s.dir, snap.Options{SizeBytesMax: 4 * s.DataBytes})
	if err != nil {
		return l, err
	}
	r, skipped, err := ss.LoadNewest()
	if err != nil {
		return l, err
	}
	defer r.Close()
	if len(skipped) > 0 {
		return l, fmt.Errorf("skipped snapshots: %v", skipped)
	}
	l.LoadNewest = time.Since(start)
	start = time.Now()
	buf := make([]byte, r.DataBytes())
	if _, err := io.ReadFull(r, buf); err != nil {
		return l, err
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		return l, fmt.Errorf("reading past the data: %d, %v (want the checksum's io.EOF)", n, err)
	}
	l.Read = time.Since(start)
	start = time.Now()
	st, err := kv.Restore(buf)
	if err != nil {
		return l, err
	}
	l.Restore = time.Since(start)
	l.Mem.Stop()
	stopped = true
	if st.Len() != s.Keys || st.Hash() != s.hash {
		return l, fmt.Errorf("restored %d keys (hash %#x), want %d (hash %#x)", st.Len(), st.Hash(), s.Keys, s.hash)
	}
	runtime.KeepAlive(st)
	return l, nil
}

// Package storage benchmarks synod's durable storage (storage/wal,
// storage/snap, kv snapshots) on the operating system's file system, and
// compares durable appends through wal.Committer with the same appends on
// bbolt and Pebble. See bench/README.md, section "Storage".
package storage

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// A Target is one store under test, opened in its own directory. Append
// must return only once the record is durable, and is called concurrently.
type Target interface {
	// Append stores rec under seq durably. rec is reused by the caller
	// after Append returns.
	Append(seq uint64, rec []byte) error
	// Syncs returns the fsync/fdatasync calls made so far, and how they
	// were obtained ("counted" by wrapping the files, or "derived" from
	// commits and the store's code).
	Syncs() (n int64, how string)
	// Commits returns the group-commit rounds so far (writes made durable
	// together), or -1 if unknown.
	Commits() int64
	// ReadBack closes the store, reopens it from disk and calls fn for
	// every record it holds; the store is closed when it returns.
	ReadBack(fn func(rec []byte) error) error
	// Close closes the store (after ReadBack it does nothing).
	Close() error
}

// A System opens Targets.
type System struct {
	Name string
	// Open opens a fresh store in the empty directory dir, for appenders
	// concurrent appenders.
	Open func(dir string, appenders int) (Target, error)
}

// Systems are the systems compared, in the order they are listed.
var Systems = []System{
	{Name: "synod", Open: openSynod},
	{Name: "bbolt", Open: openBbolt},
	{Name: "pebble", Open: openPebble},
}

// SystemByName returns the named system.
func SystemByName(name string) (System, error) {
	for _, s := range Systems {
		if s.Name == name {
			return s, nil
		}
	}
	return System{}, fmt.Errorf("unknown system %q", name)
}

// AppendConfig is one append run.
type AppendConfig struct {
	Appenders   int
	RecordBytes int
	// Records, if positive, is the number of records appended in all;
	// otherwise the appenders run for Duration.
	Records  int64
	Duration time.Duration
	// OnStart, if set, is called right before the appenders start (the
	// Go benchmarks reset their timer there).
	OnStart func()
	// OnStop, if set, is called right after the last append returned.
	OnStop func()
}

// AppendResult is the outcome of one append run.
type AppendResult struct {
	System    string
	Appenders int
	Records   int64
	Elapsed   time.Duration
	Syncs     int64  // fsyncs during the timed interval
	SyncHow   string // "counted" or "derived"
	Commits   int64  // group-commit rounds during the timed interval, -1 if unknown
}

// RecordsPerSec is the throughput.
func (r AppendResult) RecordsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// SyncsPerRecord is the number of fsyncs per durable record.
func (r AppendResult) SyncsPerRecord() float64 { return float64(r.Syncs) / float64(r.Records) }

// RecordsPerCommit is the mean group size.
func (r AppendResult) RecordsPerCommit() float64 {
	if r.Commits <= 0 {
		return -1
	}
	return float64(r.Records) / float64(r.Commits)
}

// FillRecord writes the record numbered seq into rec: seq in the first 8
// bytes, bytes derived from seq after it, and a check byte at the end.
func FillRecord(rec []byte, seq uint64) {
	if len(rec) < 9 {
		panic("record too short")
	}
	binary.LittleEndian.PutUint64(rec, seq)
	x := seq*0x9E3779B97F4A7C15 + 1
	for i := 8; i < len(rec)-1; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		rec[i] = byte(x)
	}
	rec[len(rec)-1] = checkByte(seq)
}

func checkByte(seq uint64) byte {
	x := seq * 0xff51afd7ed558ccd
	return byte(x>>56) ^ byte(x)
}

// RecordHash is the hash folded (added) over a set of records; addition
// makes the sum independent of the order in which concurrent appenders
// got their records in.
func RecordHash(rec []byte) uint64 {
	h := fnv.New64a()
	h.Write(rec)
	return h.Sum64()
}

// Checker verifies a read-back against what was acknowledged: every
// acknowledged record exactly once, intact, and nothing else.
type Checker struct {
	RecordBytes int
	Want        int64  // records acknowledged: seqs [0, Want)
	WantSum     uint64 // sum of their RecordHash

	seen  []uint64 // bitmap
	n     int64
	sum   uint64
	first error
}

// NewChecker expects records [0, n) whose hashes add up to sum.
func NewChecker(recordBytes int, n int64, sum uint64) *Checker {
	return &Checker{RecordBytes: recordBytes, Want: n, WantSum: sum, seen: make([]uint64, (n+63)/64)}
}

// Add checks one record read back.
func (c *Checker) Add(rec []byte) error {
	if c.first != nil {
		return c.first
	}
	fail := func(format string, args ...any) error {
		c.first = fmt.Errorf("read-back: "+format, args...)
		return c.first
	}
	if len(rec) != c.RecordBytes {
		return fail("record of %d bytes, want %d", len(rec), c.RecordBytes)
	}
	seq := binary.LittleEndian.Uint64(rec)
	if rec[len(rec)-1] != checkByte(seq) {
		return fail("record %d has a bad check byte", seq)
	}
	if seq >= uint64(c.Want) {
		return fail("record %d was never acknowledged (%d were)", seq, c.Want)
	}
	if c.seen[seq/64]&(1<<(seq%64)) != 0 {
		return fail("record %d read twice", seq)
	}
	c.seen[seq/64] |= 1 << (seq % 64)
	c.n++
	c.sum += RecordHash(rec)
	return nil
}

// Done checks the totals.
func (c *Checker) Done() error {
	if c.first != nil {
		return c.first
	}
	if c.n != c.Want {
		return fmt.Errorf("read-back: %d records, want %d", c.n, c.Want)
	}
	if c.sum != c.WantSum {
		return fmt.Errorf("read-back: hash %#x, want %#x (a record's payload changed)", c.sum, c.WantSum)
	}
	return nil
}

// RunAppend opens sys in a new directory under dir, runs the appenders,
// reads every record back and checks it, and removes the directory. The
// clock runs from the start of the appenders until the last append
// returned; opening, reading back and removing are not timed.
func RunAppend(sys System, dir string, cfg AppendConfig) (AppendResult, error) {
	if cfg.Appenders < 1 || cfg.RecordBytes < 9 {
		return AppendResult{}, fmt.Errorf("bad config %+v", cfg)
	}
	sub, err := os.MkdirTemp(dir, "append-"+sys.Name+"-")
	if err != nil {
		return AppendResult{}, err
	}
	defer os.RemoveAll(sub)
	t, err := sys.Open(sub, cfg.Appenders)
	if err != nil {
		return AppendResult{}, fmt.Errorf("%s: open: %w", sys.Name, err)
	}
	defer t.Close()

	res := AppendResult{System: sys.Name, Appenders: cfg.Appenders}
	syncs0, _ := t.Syncs()
	commits0 := t.Commits()

	var (
		next     atomic.Uint64 // next seq to claim
		acked    atomic.Int64
		sumAcked atomic.Uint64
		errOnce  sync.Once
		runErr   error
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	var deadline time.Time
	if cfg.OnStart != nil {
		cfg.OnStart()
	}
	start := time.Now()
	if cfg.Records <= 0 {
		deadline = start.Add(cfg.Duration)
	}
	for range cfg.Appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, cfg.RecordBytes)
			var n int64
			var sum uint64
			defer func() { acked.Add(n); sumAcked.Add(sum) }()
			for !stop.Load() {
				if cfg.Records <= 0 && !time.Now().Before(deadline) {
					return
				}
				seq := next.Add(1) - 1
				if cfg.Records > 0 && seq >= uint64(cfg.Records) {
					return
				}
				FillRecord(rec, seq)
				if err := t.Append(seq, rec); err != nil {
					errOnce.Do(func() { runErr = fmt.Errorf("%s: append %d: %w", sys.Name, seq, err) })
					stop.Store(true)
					return
				}
				n++
				sum += RecordHash(rec)
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if cfg.OnStop != nil {
		cfg.OnStop()
	}
	if runErr != nil {
		return res, runErr
	}
	res.Records = acked.Load()
	syncs1, how := t.Syncs()
	res.Syncs, res.SyncHow = syncs1-syncs0, how
	res.Commits = -1
	if c := t.Commits(); c >= 0 {
		res.Commits = c - commits0
	}
	// Every seq below next was claimed, but appenders that found the
	// deadline passed (or the count reached) claimed none, so the claimed
	// seqs are exactly [0, acked).
	if got := min(next.Load(), uint64(res.Records)); got != uint64(res.Records) {
		return res, fmt.Errorf("%s: %d seqs claimed but %d acknowledged", sys.Name, got, res.Records)
	}
	chk := NewChecker(cfg.RecordBytes, res.Records, sumAcked.Load())
	if err := t.ReadBack(chk.Add); err != nil {
		return res, fmt.Errorf("%s: %w", sys.Name, err)
	}
	if err := chk.Done(); err != nil {
		return res, fmt.Errorf("%s: %w", sys.Name, err)
	}
	return res, nil
}

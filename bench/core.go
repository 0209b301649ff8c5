// Package bench measures synod's Raft core against its peers, etcd-io/raft
// and hashicorp/raft, on the same workload: a 3-node cluster in one process,
// no disk, messages delivered in memory, a closed loop keeping a fixed window
// of proposals outstanding on the leader until N of them have committed.
//
// It is its own Go module so that the product never depends on the peers.
// See README.md for what is measured and the fairness caveats.
package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// ErrLeaderLost is matched (errors.Is) by a run that failed because the
// leader changed during the measured interval: an event of the environment
// (a stall on a loaded machine), not a wrong result, so a driver may retry.
// Failed sanity checks never match it.
var ErrLeaderLost = errors.New("the leader changed during the run")

// Options describe one measured run.
type Options struct {
	// N is the number of proposals to commit.
	N int
	// Window is the number of proposals kept outstanding (proposed but not
	// yet committed on the leader).
	Window int
	// Size is the size of each command in bytes; at least 8 (the command
	// carries its sequence number).
	Size int
	// Timeout bounds the whole run, election and catch-up included.
	Timeout time.Duration
}

// DefaultOptions are the figures the README quotes.
func DefaultOptions() Options {
	return Options{N: 200_000, Window: 256, Size: 256, Timeout: 2 * time.Minute}
}

func (o Options) validate() error {
	switch {
	case o.N <= 0:
		return fmt.Errorf("bench: N must be positive, got %d", o.N)
	case o.Window <= 0:
		return fmt.Errorf("bench: window must be positive, got %d", o.Window)
	case o.Size < 8:
		return fmt.Errorf("bench: size must be at least 8 bytes, got %d", o.Size)
	case o.Timeout <= 0:
		return fmt.Errorf("bench: timeout must be positive, got %v", o.Timeout)
	}
	return nil
}

// Hooks are called right around the measured interval (from the first
// proposal to the last commit on the leader). Either may be nil. A benchmark
// uses them to reset and stop the testing timer.
type Hooks struct {
	Start func()
	Stop  func()
}

// Result is one measured run.
type Result struct {
	System  string
	N       int
	Elapsed time.Duration // first proposal to last commit on the leader
	// Mallocs and Bytes are the heap allocations of the whole process during
	// the measured interval (for hashicorp/raft this includes its background
	// goroutines, which is part of its cost).
	Mallocs uint64
	Bytes   uint64
}

// PerSecond is the throughput in committed proposals per second.
func (r Result) PerSecond() float64 { return float64(r.N) / r.Elapsed.Seconds() }

// System is one Raft implementation under test.
type System struct {
	Name string
	Run  func(Options, Hooks) (Result, error)
}

// Systems lists every implementation, synod first.
var Systems = []System{
	{Name: "synod", Run: RunSynod},
	{Name: "etcd-raft", Run: RunEtcd},
	{Name: "etcd-raft-unbatched", Run: RunEtcdUnbatched},
	{Name: "hashicorp-raft", Run: RunHashicorp},
}

// Lookup returns the system with the given name.
func Lookup(name string) (System, bool) {
	for _, s := range Systems {
		if s.Name == name {
			return s, true
		}
	}
	return System{}, false
}

// payload builds command seq: the sequence number in the first 8 bytes and
// (if there is room) its low byte repeated in the last one, zeros between. A fresh slice each
// time: every system keeps a reference to the command it replicates.
func payload(seq, size int) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b, uint64(seq))
	if size > 8 {
		b[size-1] = byte(seq)
	}
	return b
}

// checker is one node's state machine: it checks that every command it
// applies is well formed and new, counts them and hashes their order.
// It is not safe for concurrent use.
type checker struct {
	node  int
	n     int
	size  int
	count int
	hash  uint64
	seen  []uint64 // bitmap of applied sequence numbers
	err   error
}

func newChecker(node int, o Options) *checker {
	return &checker{node: node, n: o.N, size: o.Size, hash: fnvOffset, seen: make([]uint64, (o.N+63)/64)}
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func (c *checker) apply(data []byte) {
	if c.err != nil {
		return
	}
	if len(data) != c.size {
		c.err = fmt.Errorf("node %d: applied a command of %d bytes, want %d", c.node, len(data), c.size)
		return
	}
	seq := binary.LittleEndian.Uint64(data)
	switch {
	case seq >= uint64(c.n):
		c.err = fmt.Errorf("node %d: applied unknown command %d (N=%d)", c.node, seq, c.n)
	case c.seen[seq/64]&(1<<(seq%64)) != 0:
		c.err = fmt.Errorf("node %d: applied command %d twice", c.node, seq)
	case c.size > 8 && data[c.size-1] != byte(seq):
		c.err = fmt.Errorf("node %d: command %d is corrupt", c.node, seq)
	default:
		c.seen[seq/64] |= 1 << (seq % 64)
		c.count++
		// FNV-1a over the sequence numbers in apply order: cheap, and equal
		// on two nodes only if they applied the same commands in the same
		// order (the payload is a function of the sequence number).
		c.hash = (c.hash ^ seq) * fnvPrime
	}
}

// verify fails loudly unless every node applied each of the N commands
// exactly once, in the same order.
func verify(system string, cs []*checker) error {
	var errs []error
	for _, c := range cs {
		if c.err != nil {
			errs = append(errs, c.err)
			continue
		}
		if c.count != c.n {
			errs = append(errs, fmt.Errorf("node %d applied %d commands, want %d", c.node, c.count, c.n))
			continue
		}
		if c.hash != cs[0].hash {
			errs = append(errs, fmt.Errorf("node %d applied commands in a different order from node %d (hash %#x != %#x)",
				c.node, cs[0].node, c.hash, cs[0].hash))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: sanity check failed: %w", system, errors.Join(errs...))
	}
	return nil
}

// meter takes the measurements around the timed interval.
type meter struct {
	hooks   Hooks
	start   time.Time
	elapsed time.Duration
	ms0     runtime.MemStats
	ms1     runtime.MemStats
}

func (m *meter) begin() {
	runtime.GC() // do not bill one system for another's garbage
	runtime.ReadMemStats(&m.ms0)
	if m.hooks.Start != nil {
		m.hooks.Start()
	}
	m.start = time.Now()
}

func (m *meter) end() {
	m.elapsed = time.Since(m.start)
	if m.hooks.Stop != nil {
		m.hooks.Stop()
	}
	runtime.ReadMemStats(&m.ms1)
}

func (m *meter) result(system string, n int) Result {
	return Result{
		System:  system,
		N:       n,
		Elapsed: m.elapsed,
		Mallocs: m.ms1.Mallocs - m.ms0.Mallocs,
		Bytes:   m.ms1.TotalAlloc - m.ms0.TotalAlloc,
	}
}

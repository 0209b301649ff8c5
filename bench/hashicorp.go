package bench

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// RunHashicorp runs the loop over github.com/hashicorp/raft: three *raft.Raft
// with InmemStore, InmemSnapshotStore and connected InmemTransports. The
// library runs its own goroutines, so the window is kept by two goroutines:
// one submits Apply futures while fewer than o.Window are outstanding, the
// other waits for them in order (the leader completes them in log order).
func RunHashicorp(o Options, h Hooks) (res Result, err error) {
	const name = "hashicorp-raft"
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	deadline := time.Now().Add(o.Timeout)
	c, err := newHashiCluster(o)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", name, err)
	}
	defer func() {
		if cerr := c.shutdown(); cerr != nil && err == nil {
			err = fmt.Errorf("%s: shutdown: %w", name, cerr)
		}
	}()
	// A watchdog: if the run is stuck past the deadline, shutting the
	// cluster down fails every outstanding future and ends the loop.
	watchdog := time.AfterFunc(time.Until(deadline), func() { _ = c.shutdown() })
	defer watchdog.Stop()

	leader, err := c.elect(deadline)
	if err != nil {
		return Result{}, fmt.Errorf("%s: election: %w", name, err)
	}

	m := meter{hooks: h}
	m.begin()
	futures := make(chan raft.ApplyFuture, o.Window)
	slots := make(chan struct{}, o.Window) // one per outstanding proposal
	stop := make(chan struct{})
	var submitErr atomic.Value
	go func() {
		defer close(futures)
		for seq := 0; seq < o.N; seq++ {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			}
			futures <- leader.Apply(payload(seq, o.Size), o.Timeout)
		}
	}()
	committed := 0
	for f := range futures {
		if err := f.Error(); err != nil {
			submitErr.Store(err)
			break
		}
		committed++
		<-slots
	}
	m.end()
	close(stop)
	for range futures { // let the submitter finish (it stops at once)
	}
	if e, ok := submitErr.Load().(error); ok {
		if errors.Is(e, raft.ErrLeadershipLost) || errors.Is(e, raft.ErrNotLeader) {
			e = fmt.Errorf("%w: %w", e, ErrLeaderLost)
		}
		return Result{}, fmt.Errorf("%s: apply %d: %w", name, committed, e)
	}
	if committed != o.N {
		return Result{}, fmt.Errorf("%s: %d/%d proposals committed", name, committed, o.N)
	}

	// Let the followers learn the final commit index (untimed, bounded).
	for !c.allApplied(o.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := verify(name, c.checkers()); err != nil {
		return Result{}, err
	}
	return m.result(name, o.N), nil
}

// hashiFSM is a node's state machine: the shared checker behind a mutex
// (Apply runs on the library's FSM goroutine; the harness reads at the end).
type hashiFSM struct {
	mu    sync.Mutex
	check *checker
}

func (f *hashiFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	f.check.apply(l.Data)
	f.mu.Unlock()
	return nil
}

func (f *hashiFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, errors.New("bench: snapshots are disabled")
}

func (f *hashiFSM) Restore(io.ReadCloser) error {
	return errors.New("bench: snapshots are disabled")
}

type hashiCluster struct {
	rafts  []*raft.Raft
	trans  []*raft.InmemTransport
	fsms   []*hashiFSM
	closed sync.Once
	err    error
}

func newHashiCluster(o Options) (*hashiCluster, error) {
	const n = 3
	c := &hashiCluster{}
	var servers []raft.Server
	for i := range n {
		id := raft.ServerID(fmt.Sprintf("node%d", i+1))
		addr, t := raft.NewInmemTransport(raft.ServerAddress(id))
		c.trans = append(c.trans, t)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: addr})
	}
	for _, a := range c.trans {
		for _, b := range c.trans {
			if a != b {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	for i := range n {
		cfg := raft.DefaultConfig()
		cfg.LocalID = servers[i].ID
		cfg.Logger = hclog.NewNullLogger()
		// Timeouts low enough for a quick election (within about a
		// second), high enough that a leader on a loaded 2-core machine
		// keeps its lease (at 100 ms it sometimes stepped down mid-run).
		// The lease may not exceed the heartbeat timeout.
		cfg.HeartbeatTimeout = 500 * time.Millisecond
		cfg.ElectionTimeout = 500 * time.Millisecond
		cfg.LeaderLeaseTimeout = 500 * time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		// Flow control: hashicorp/raft bounds append batches by entry
		// count (at most 1024), not bytes; 1024 entries of 256 bytes are
		// well under the 1 MiB the other systems allow, and the window
		// bounds a batch anyway. Buffer the apply channel to match, as its
		// docs advise for throughput.
		cfg.MaxAppendEntries = 1024
		cfg.BatchApplyCh = true
		// No snapshots during the run (the other systems take none either).
		cfg.SnapshotThreshold = 1 << 62
		cfg.SnapshotInterval = time.Hour
		cfg.NoLegacyTelemetry = true
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(cfg, store, store, snaps, c.trans[i], raft.Configuration{Servers: servers}); err != nil {
			return nil, c.failed(err)
		}
		fsm := &hashiFSM{check: newChecker(i+1, o)}
		r, err := raft.NewRaft(cfg, fsm, store, store, snaps, c.trans[i])
		if err != nil {
			return nil, c.failed(err)
		}
		c.rafts = append(c.rafts, r)
		c.fsms = append(c.fsms, fsm)
	}
	return c, nil
}

func (c *hashiCluster) failed(err error) error {
	_ = c.shutdown()
	return err
}

// elect waits for a leader and for its barrier (everything before it
// applied), bounded by the deadline.
func (c *hashiCluster) elect(deadline time.Time) (*raft.Raft, error) {
	for time.Now().Before(deadline) {
		for _, r := range c.rafts {
			if r.State() == raft.Leader {
				if err := r.Barrier(time.Until(deadline)).Error(); err != nil {
					return nil, err
				}
				return r, nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return nil, errors.New("no leader before the deadline")
}

func (c *hashiCluster) allApplied(n int) bool {
	for _, f := range c.fsms {
		f.mu.Lock()
		done := f.check.count >= n || f.check.err != nil
		f.mu.Unlock()
		if !done {
			return false
		}
	}
	return true
}

func (c *hashiCluster) checkers() []*checker {
	cs := make([]*checker, len(c.fsms))
	for i, f := range c.fsms {
		f.mu.Lock() // a copy, in case a straggler is still applying
		cp := *f.check
		f.mu.Unlock()
		cs[i] = &cp
	}
	return cs
}

func (c *hashiCluster) shutdown() error {
	c.closed.Do(func() {
		var errs []error
		for _, r := range c.rafts {
			errs = append(errs, r.Shutdown().Error())
		}
		for _, t := range c.trans {
			errs = append(errs, t.Close())
		}
		c.err = errors.Join(errs...)
	})
	return c.err
}

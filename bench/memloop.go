package bench

import (
	"fmt"
	"time"
)

// tickInterval is the wall-clock period of a logical tick in the
// single-threaded loops. Ticks only drive heartbeats and elections (which do
// not happen while a healthy leader replicates), so they are rare.
const tickInterval = 10 * time.Millisecond

// memCluster is a 3-node cluster of a pure (Ready-style) Raft core driven
// from one goroutine: no disk, messages delivered in memory.
type memCluster interface {
	// elect makes a leader and waits until its first entry is committed and
	// applied everywhere. Bounded.
	elect() error
	// tick ticks every node once.
	tick()
	// propose hands one command to the leader.
	propose(data []byte) error
	// round handles each node's Ready in turn (persist, queue its messages,
	// apply its committed entries, advance) and then delivers every queued
	// message with Step. It fails if the leader lost its leadership.
	round() error
	// leaderChecker is the leader's state machine; checkers all of them.
	leaderChecker() *checker
	checkers() []*checker
}

// runMemLoop is "the loop" for the single-threaded systems: keep o.Window
// proposals outstanding on the leader, refilling the window before each
// round, until o.N proposals have committed (been applied) on the leader.
// The clock runs from the first proposal to the last commit; the election
// before and the followers' catch-up after are not timed.
func runMemLoop(name string, c memCluster, o Options, h Hooks) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	deadline := time.Now().Add(o.Timeout)
	if err := c.elect(); err != nil {
		return Result{}, fmt.Errorf("%s: election: %w", name, err)
	}
	lead := c.leaderChecker()
	if lead.count != 0 {
		return Result{}, fmt.Errorf("%s: leader applied %d commands before the run", name, lead.count)
	}

	m := meter{hooks: h}
	m.begin()
	lastTick := m.start
	proposed := 0
	for lead.count < o.N {
		now := time.Now()
		if now.After(deadline) {
			m.end()
			return Result{}, fmt.Errorf("%s: timed out after %v with %d/%d committed", name, o.Timeout, lead.count, o.N)
		}
		if now.Sub(lastTick) >= tickInterval {
			c.tick()
			lastTick = now
		}
		for proposed < o.N && proposed-lead.count < o.Window {
			if err := c.propose(payload(proposed, o.Size)); err != nil {
				m.end()
				return Result{}, fmt.Errorf("%s: propose %d: %w", name, proposed, err)
			}
			proposed++
		}
		if err := c.round(); err != nil {
			m.end()
			return Result{}, fmt.Errorf("%s: %w", name, err)
		}
		if lead.err != nil {
			m.end()
			return Result{}, fmt.Errorf("%s: %w", name, lead.err)
		}
	}
	m.end()

	// Let the followers learn the final commit index (untimed, bounded).
	for i := 0; ; i++ {
		done := true
		for _, ch := range c.checkers() {
			done = done && (ch.count >= o.N || ch.err != nil)
		}
		if done {
			break
		}
		if i >= 10_000 || time.Now().After(deadline) {
			break // verify reports who is behind
		}
		c.tick()
		if err := c.round(); err != nil {
			return Result{}, fmt.Errorf("%s: catch-up: %w", name, err)
		}
	}
	if err := verify(name, c.checkers()); err != nil {
		return Result{}, err
	}
	return m.result(name, o.N), nil
}

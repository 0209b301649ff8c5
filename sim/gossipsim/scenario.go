package gossipsim

import (
	"fmt"
	"time"

	"github.com/synod-io/synod/sim/check"
)

// scenario drives a world step by step for experiments and scripted
// runs: no quiet phase is scheduled, faults come from the script (and
// from Config.Faults, which experiments leave at zero).
type scenario struct {
	w     *world
	start time.Time
}

func newScenario(cfg Config) (*scenario, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &scenario{w: newWorld(cfg), start: time.Now()}
	if err := s.w.boot(); err != nil {
		return nil, err
	}
	return s, nil
}

// experimentConfig is a quiet network of n nodes with the given loss:
// every fault kind off, no clients, links of 5 to 50 ms with up to 20 ms
// of jitter.
func experimentConfig(seed int64, n int, loss float64, lifeguard bool) Config {
	cfg := DefaultConfig(seed)
	cfg.Nodes = n
	cfg.FaultTicks = TicksMax
	cfg.Network = NetworkConfig{LatencyMinUnits: 50, LatencyMaxUnits: 500, JitterUnits: 200, Loss: loss}
	cfg.Faults = FaultConfig{CrashDowntimeMaxTicks: 1, PartitionMaxTicks: 1, PauseMaxTicks: 1, SlowChance: 0.3,
		SlowDelayMaxTicks: 30, SlowPauseEveryTicks: 300, SlowPauseTicks: 10}
	cfg.Workload.Clients = 0
	cfg.Lifeguard = lifeguard
	cfg.AntiEntropyIntervalMs = 10_000 // the store's default
	cfg.TombstoneTTLMs = 24 * 3600 * 1000
	cfg.TraceTail = 0
	return cfg
}

func (s *scenario) ticks() int64 { return s.w.now / UnitsPerTick }

// runFor advances time by ticks ticks.
func (s *scenario) runFor(ticks int64) error {
	end := s.w.now + ticks*UnitsPerTick
	s.w.loop(end)
	s.w.now = max(s.w.now, end)
	return s.err()
}

// runUntil advances time a tick at a time until cond holds, at most
// limit ticks; it returns the ticks taken and whether cond held.
func (s *scenario) runUntil(limit int64, cond func() bool) (int64, bool, error) {
	for i := range limit {
		if cond() {
			return i, true, nil
		}
		end := s.w.now + UnitsPerTick
		s.w.loop(end)
		s.w.now = max(s.w.now, end)
		if err := s.err(); err != nil {
			return i, false, err
		}
	}
	return limit, cond(), nil
}

// err reports the first violation, if any.
func (s *scenario) err() error {
	if len(s.w.violations) == 0 {
		return nil
	}
	s.w.finish()
	return fmt.Errorf("gossipsim: seed %d: %v\n%s", s.w.cfg.Seed, s.w.violations[0], s.w.res.Report())
}

// warmUp runs until every node knows every other as alive.
func (s *scenario) warmUp() error {
	limit := 200 * s.w.periodTicks
	took, ok, err := s.runUntil(limit, s.w.members.Accurate)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("gossipsim: seed %d: %d nodes did not all come to know each other in %d ticks: %s",
			s.w.cfg.Seed, s.w.cfg.Nodes, took, s.w.members.Example(3))
	}
	return nil
}

// checkStore runs the store's final checks on every running replica:
// they agree and hold the model's last writes.
func (s *scenario) checkStore() error {
	w := s.w
	if d := w.storeDifference(); d != "" {
		return fmt.Errorf("gossipsim: seed %d: replicas differ: %s", w.cfg.Seed, d)
	}
	for _, n := range w.nodes {
		if !n.up {
			continue
		}
		if v := w.model.Final(n.id, n.st.Snapshot().Entries, w.nowMs(n), w.finalMarginMs(), w.liveData, w.tick()); v != nil {
			return fmt.Errorf("gossipsim: seed %d: %v", w.cfg.Seed, v)
		}
	}
	return nil
}

// violation wraps a checker's finding for a scenario.
func (s *scenario) violation(v *check.Violation) error {
	if v == nil {
		return nil
	}
	return fmt.Errorf("gossipsim: seed %d: %v", s.w.cfg.Seed, v)
}

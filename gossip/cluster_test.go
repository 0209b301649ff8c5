package gossip

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// Scenario tests on simNet: whole groups in virtual time, with loss,
// delay, crashes and pauses. Times are reported in protocol periods of
// the default configuration (ProbeIntervalTicks ticks).

const periodTicks = 10 // DefaultConfig's ProbeIntervalTicks

func periods(ticks int) float64 { return float64(ticks) / periodTicks }

func log2Ceil(n int) int { return int(math.Ceil(math.Log2(float64(n)))) }

// falsePositives counts the dead events about members that are not
// crashed.
func (s *simNet) falsePositives() int {
	fp := 0
	for _, r := range s.events(EventDead, consensus.None, 0) {
		if !s.node(r.ev.Member.ID).crashed {
			fp++
		}
	}
	return fp
}

// TestCrashDetection: with 1% loss, a crashed member is suspected within
// a few periods and declared dead by every member within a bound: the
// longest suspicion timeout (β·Min, no confirmation at all) plus time to
// be probed and to disseminate. Nobody alive is declared dead.
func TestCrashDetection(t *testing.T) {
	for _, c := range []struct{ size, seeds int }{{10, 20}, {100, 10}, {1000, 1}} {
		t.Run(fmt.Sprint("N=", c.size), func(t *testing.T) {
			if c.size >= 1000 && testing.Short() {
				t.Skip("1000 members: skipped with -short")
			}
			cfg := DefaultConfig(1, "x", nil)
			maxSuspicion := cfg.SuspicionBeta * suspicionMinTicks(cfg.SuspicionAlpha, c.size, cfg.ProbeIntervalTicks)
			bound := maxSuspicion + (2*log2Ceil(c.size)+4)*periodTicks
			var first, all float64
			for seed := uint64(1); seed <= uint64(c.seeds); seed++ {
				s := cluster(t, seed, c.size, nil)
				s.loss = 0.01
				s.codec = c.size <= 10
				s.run(50 + s.rng.IntN(periodTicks))
				victim := consensus.NodeID(1 + s.rng.IntN(c.size))
				t0 := s.now
				s.crash(victim)
				took, ok := s.runUntil(bound, func() bool { return s.allSee(victim, StateDead) })
				if !ok {
					t.Fatalf("seed %d: crashed node %d not dead everywhere after %d ticks (bound %d)", seed, victim, took, bound)
				}
				sus := s.events(EventSuspect, victim, t0)
				first += periods(int(sus[0].tick - t0))
				all += periods(took)
				if fp := s.falsePositives(); fp > 0 {
					t.Fatalf("seed %d: %d members alive declared dead", seed, fp)
				}
				s.checkInvariants()
			}
			first /= float64(c.seeds)
			all /= float64(c.seeds)
			t.Logf("N=%d, 1%% loss, %d seeds: first suspicion after %.1f periods, dead everywhere after %.1f periods (mean; bound %.0f)",
				c.size, c.seeds, first, all, periods(bound))
			if first > 3 {
				t.Errorf("mean time to first suspicion %.1f periods; SWIM expects under 2", first)
			}
		})
	}
}

// TestDissemination: news (a metadata update) reaches all N members in
// O(log N) periods, and a crash is first detected in O(1) periods, for
// N = 10, 100 and 1000 with 1% loss.
func TestDissemination(t *testing.T) {
	for _, c := range []struct{ size, seeds int }{{10, 20}, {100, 10}, {1000, 3}} {
		t.Run(fmt.Sprint("N=", c.size), func(t *testing.T) {
			if c.size >= 1000 && testing.Short() {
				t.Skip("1000 members: skipped with -short")
			}
			bound := (2*log2Ceil(c.size) + 2) * periodTicks
			var spread, first float64
			for seed := uint64(1); seed <= uint64(c.seeds); seed++ {
				s := cluster(t, seed, c.size, nil)
				s.loss = 0.01
				s.run(30 + s.rng.IntN(periodTicks))
				src := s.node(consensus.NodeID(1 + s.rng.IntN(c.size)))
				meta := []byte(fmt.Sprint("v", seed))
				if err := src.node.SetMeta(meta); err != nil {
					t.Fatal(err)
				}
				took, ok := s.runUntil(bound, func() bool {
					for _, sn := range s.nodes {
						if m, _ := sn.node.Member(src.id); !bytes.Equal(m.Meta, meta) {
							return false
						}
					}
					return true
				})
				if !ok {
					t.Fatalf("seed %d: metadata of %d not everywhere after %d ticks (bound %d)", seed, src.id, took, bound)
				}
				spread += periods(took)
				if got := len(s.events(EventUpdated, src.id, 0)); got != c.size-1 {
					t.Fatalf("seed %d: %d update events, want one per other member (%d)", seed, got, c.size-1)
				}

				victim := consensus.NodeID(1 + (int(src.id)+c.size/2)%c.size)
				t0 := s.now
				s.crash(victim)
				took, ok = s.runUntil(20*periodTicks, func() bool { return len(s.events(EventSuspect, victim, t0)) > 0 })
				if !ok {
					t.Fatalf("seed %d: crash of %d not detected in 20 periods", seed, victim)
				}
				first += periods(took)
			}
			spread /= float64(c.seeds)
			first /= float64(c.seeds)
			t.Logf("N=%d, 1%% loss, %d seeds: news everywhere after %.1f periods (mean; bound %d), first detection of a crash after %.1f periods",
				c.size, c.seeds, spread, bound/periodTicks, first)
		})
	}
}

// slowScenario runs a group of 16 in which member 1 is slow but alive:
// 30% of the messages to it and 30% of those from it are delayed by 5 to
// 30 ticks (the probe timeout is 4), and about every 300 ticks it pauses
// for 10 (no ticks, no messages handled). Both modes use α = 2, a fast
// detector (Min = 25 ticks at N = 16), so that plain SWIM errs often
// enough to count. It returns the dead events about members that are alive:
// about member 1, and about the others.
func slowScenario(t testing.TB, seed uint64, lifeguard bool, ticks int) (slow, healthy int) {
	s := cluster(t, seed, 16, func(c *Config) { c.Lifeguard = lifeguard; c.SuspicionAlpha = 2 })
	const slowID = consensus.NodeID(1)
	s.extraDelay = func(from, to consensus.NodeID) int {
		if (from == slowID || to == slowID) && s.rng.Float64() < 0.3 {
			return 5 + s.rng.IntN(26)
		}
		return 0
	}
	for range ticks {
		if s.rng.IntN(300) == 0 {
			s.pause(slowID, 10)
		}
		s.tick()
	}
	s.checkInvariants()
	for _, r := range s.events(EventDead, consensus.None, 0) {
		if r.ev.Member.ID == slowID {
			slow++
		} else {
			healthy++
		}
	}
	return slow, healthy
}

// TestSlowMemberLifeguard: in the slow-member scenario, Lifeguard declares
// nobody dead, while plain SWIM (Lifeguard off, same α, same runs)
// declares the slow member, and members it fails to hear from in time,
// dead again and again.
func TestSlowMemberLifeguard(t *testing.T) {
	seeds, ticks := 30, 3000
	if testing.Short() {
		seeds = 10
	}
	var on, off [2]int
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		a, b := slowScenario(t, seed, true, ticks)
		on[0], on[1] = on[0]+a, on[1]+b
		a, b = slowScenario(t, seed, false, ticks)
		off[0], off[1] = off[0]+a, off[1]+b
	}
	t.Logf("%d seeds × %d periods, dead events about live members (slow member / others): Lifeguard on %d / %d, off %d / %d",
		seeds, ticks/periodTicks, on[0], on[1], off[0], off[1])
	if on[0]+on[1] != 0 {
		t.Errorf("Lifeguard on: %d false positives, want none", on[0]+on[1])
	}
	if off[0] < 20*seeds/10 || off[1] < 20*seeds/10 {
		t.Errorf("Lifeguard off: only %d / %d false positives; the scenario no longer tells the modes apart", off[0], off[1])
	}
}

// TestRefutationAfterPause: a member that pauses for three periods is
// suspected, and on waking refutes (the buddy system tells it at once):
// it ends alive everywhere at a higher incarnation, and nobody declared
// it dead.
func TestRefutationAfterPause(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		s := cluster(t, seed, 10, nil)
		s.loss = 0.01
		s.run(40)
		const victim = 3
		t0 := s.now
		s.pause(victim, 3*periodTicks)
		took, ok := s.runUntil(50*periodTicks, func() bool {
			inc := s.node(victim).node.Status().Incarnation
			if inc == 0 || s.now < t0+3*periodTicks {
				return false
			}
			for _, sn := range s.nodes {
				if m, _ := sn.node.Member(victim); m.State != StateAlive || m.Incarnation != inc {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("seed %d: paused node not alive everywhere at its new incarnation after %d ticks", seed, took)
		}
		if len(s.events(EventSuspect, victim, t0)) == 0 {
			t.Fatalf("seed %d: the paused node was never suspected; the test proves nothing", seed)
		}
		if fp := s.falsePositives(); fp > 0 {
			t.Fatalf("seed %d: %d false positives", seed, fp)
		}
		if len(s.events(EventAlive, victim, t0)) == 0 {
			t.Fatalf("seed %d: no alive event for the refutation", seed)
		}
	}
}

// TestJoinAndLeaveUnderLoss: with 10% of messages lost, 20 nodes join
// one by one through seed 1 and all come to know each other; then one
// leaves gracefully and everybody records it as left, not dead.
func TestJoinAndLeaveUnderLoss(t *testing.T) {
	const size = 20
	for seed := uint64(1); seed <= 5; seed++ {
		s := newNet(t, seed)
		s.loss = 0.10
		s.codec = true
		s.add(nil)
		for range size - 1 {
			s.run(1 + s.rng.IntN(3))
			s.add(func(c *Config) {
				// Half know the seed's ID, half only its address.
				id := consensus.None
				if s.rng.IntN(2) == 0 {
					id = 1
				}
				c.Seeds = []Seed{{ID: id, Addr: addrOf(1)}}
			})
		}
		took, ok := s.runUntil(100*periodTicks, func() bool {
			for _, sn := range s.nodes {
				st := sn.node.Status()
				if len(st.Members) != size {
					return false
				}
				for _, m := range st.Members {
					if m.State != StateAlive {
						return false
					}
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("seed %d: %d nodes not all alive everywhere after %d ticks", seed, size, took)
		}
		if got := len(s.events(EventJoined, consensus.None, 0)); got < size*(size-1) {
			t.Fatalf("seed %d: %d joined events, want at least %d", seed, got, size*(size-1))
		}
		t.Logf("seed %d: %d nodes joined under 10%% loss, converged %.1f periods after the last join", seed, size, periods(took))

		const leaver = 5
		s.node(leaver).node.Leave()
		took, ok = s.runUntil(50*periodTicks, func() bool { return s.node(leaver).node.Left() })
		if !ok {
			t.Fatalf("seed %d: leave not done after %d ticks", seed, took)
		}
		s.crash(leaver) // the host stops it
		took, ok = s.runUntil(50*periodTicks, func() bool { return s.allSee(leaver, StateLeft) })
		if !ok {
			t.Fatalf("seed %d: not everybody saw %d leave after %d ticks", seed, leaver, took)
		}
		if d := s.events(EventDead, leaver, 0); len(d) > 0 {
			t.Fatalf("seed %d: %d declared dead instead of left: %v", seed, leaver, d[0].ev)
		}
		if fp := s.falsePositives(); fp > 0 {
			t.Fatalf("seed %d: %d false positives under 10%% loss", seed, fp)
		}
		s.checkInvariants()
	}
}

// TestReapAndRejoin: a crashed member is forgotten ReapTicks after it was
// declared dead, so state stays bounded; restarted afterwards with a
// fresh state it joins again. Restarted before it is reaped, it learns of
// its own death through the seed and refutes it.
func TestReapAndRejoin(t *testing.T) {
	const size, reap = 8, 200
	for _, beforeReap := range []bool{false, true} {
		s := cluster(t, 1, size, func(c *Config) {
			c.ReapTicks = reap
			c.Seeds = []Seed{{ID: 1, Addr: addrOf(1)}}
		})
		s.loss = 0.01
		s.run(30)
		const victim = 4
		s.crash(victim)
		if _, ok := s.runUntil(100*periodTicks, func() bool { return s.allSee(victim, StateDead) }); !ok {
			t.Fatal("crash never detected")
		}
		if beforeReap {
			s.restart(s.node(victim), nil)
			took, ok := s.runUntil(30*periodTicks, func() bool { return s.allSee(victim, StateAlive) })
			if !ok {
				t.Fatalf("restarted node not alive everywhere after %d ticks", took)
			}
			if inc := s.node(victim).node.Status().Incarnation; inc == 0 {
				t.Fatal("restarted node never refuted its death")
			}
			if len(s.events(EventAlive, victim, 0)) < size-1 {
				t.Fatalf("%d alive events for the restarted node", len(s.events(EventAlive, victim, 0)))
			}
			continue
		}
		took, ok := s.runUntil(reap+50*periodTicks, func() bool { return s.allSee(victim, 0) })
		if !ok {
			t.Fatalf("dead node still remembered after %d ticks (ReapTicks %d)", took, reap)
		}
		for _, sn := range s.running() {
			if n := len(sn.node.Status().Members); n != size-1 {
				t.Fatalf("node %d remembers %d members after reaping, want %d", sn.id, n, size-1)
			}
			if sn.node.queue.pending(victim) {
				t.Fatalf("node %d still gossips about the reaped node", sn.id)
			}
		}
		// Long after, nothing brings it back.
		s.run(3 * reap)
		if !s.allSee(victim, 0) {
			t.Fatal("reaped node came back without restarting")
		}
		joinedBefore := len(s.events(EventJoined, victim, 0))
		s.restart(s.node(victim), nil)
		took, ok = s.runUntil(30*periodTicks, func() bool { return s.allSee(victim, StateAlive) })
		if !ok {
			t.Fatalf("restarted node not alive everywhere after %d ticks", took)
		}
		if got := len(s.events(EventJoined, victim, 0)) - joinedBefore; got < size-1 {
			t.Fatalf("%d joined events for the reaped node coming back, want %d", got, size-1)
		}
		s.checkInvariants()
	}
}

// TestPartitionHeals: two halves cut off long enough to declare each
// other dead merge again once the cut heals, through push-pull with a
// member believed dead.
func TestPartitionHeals(t *testing.T) {
	const size, pushPull = 10, 100
	for seed := uint64(1); seed <= 5; seed++ {
		s := cluster(t, seed, size, func(c *Config) { c.PushPullTicks = pushPull })
		half := func(id consensus.NodeID) bool { return id <= size/2 }
		s.drop = func(from, to consensus.NodeID) bool { return half(from) != half(to) }
		s.run(40 * periodTicks)
		for a := consensus.NodeID(1); a <= size; a++ {
			for b := consensus.NodeID(1); b <= size; b++ {
				if half(a) != half(b) && s.stateAt(a, b) != StateDead {
					t.Fatalf("seed %d: %d sees %d %v during the partition", seed, a, b, s.stateAt(a, b))
				}
			}
		}
		s.drop = nil
		took, ok := s.runUntil(10*pushPull, func() bool {
			for _, sn := range s.nodes {
				for _, m := range sn.node.Status().Members {
					if m.State != StateAlive {
						return false
					}
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("seed %d: halves not merged %d ticks after healing", seed, took)
		}
		s.checkInvariants()
	}
}

// TestDeterministic: the same seed gives the same run.
func TestDeterministic(t *testing.T) {
	run := func() (string, int) {
		s := cluster(t, 42, 12, nil)
		s.loss = 0.05
		s.codec = true
		s.run(100)
		s.crash(5)
		s.pause(7, 25)
		s.run(400)
		return fmt.Sprint(s.log), s.sent
	}
	log1, sent1 := run()
	log2, sent2 := run()
	if log1 != log2 || sent1 != sent2 {
		t.Fatalf("two runs of one seed differ: %d vs %d messages", sent1, sent2)
	}
}

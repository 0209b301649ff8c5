package gossipsim

import (
	"fmt"
	"math"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
)

// The experiments behind synod sim gossip-bench. Each builds a group on a
// quiet network with the given message loss (links of 5 to 50 ms, up to
// 20 ms of jitter; 1 tick = 100 ms; the default protocol period T is 10
// ticks, one second), waits until every member knows every other, and
// then measures one thing. Times are in protocol periods of the base
// configuration, or in seconds.

// DetectionResult is what Detection measured.
type DetectionResult struct {
	Nodes     int
	Lifeguard bool
	Loss      float64
	// Trials is the number of crashes measured.
	Trials int
	// FirstProbe is the mean time from a crash to the first ping of the
	// crashed member; FirstSuspect to the first member suspecting it
	// (about one period later: a probe fails at the end of its period); FirstDead to the first declaring it
	// dead; AllKnow to every live member holding it dead, with
	// AllKnowMax the worst trial. In protocol periods.
	FirstProbe, FirstSuspect, FirstDead, AllKnow, AllKnowMax float64
	// MessagesPerMemberPeriod is the membership messages each member sent
	// per protocol period, before any crash.
	MessagesPerMemberPeriod float64
	// FalsePositives counts live members declared dead meanwhile.
	FalsePositives int
	// SimTicks is the simulated time covered, all trials together.
	SimTicks int64
}

// Detection crashes members of a group of n, one at a time, trials times
// in all, and measures how long the others take to notice. Groups of 100
// and more crash several members in turn (each once the previous one is
// known dead by all); smaller ones start a new group for each trial.
func Detection(n int, loss float64, lifeguard bool, trials int, seed int64) (DetectionResult, error) {
	res := DetectionResult{Nodes: n, Lifeguard: lifeguard, Loss: loss}
	perWorld := 1
	if n >= 100 {
		perWorld = min(trials, max(1, n/50))
	}
	var sumProbe, sumFirst, sumDead, sumAll float64
	var msgs, msgPeriods float64
	for world := 0; res.Trials < trials; world++ {
		s, err := newScenario(experimentConfig(seed+int64(world), n, loss, lifeguard))
		if err != nil {
			return res, err
		}
		w := s.w
		if err := s.warmUp(); err != nil {
			return res, err
		}
		// Steady state: count the membership messages over 20 periods.
		sent0 := w.gossipSent()
		span := 20 * w.periodTicks
		if err := s.runFor(span); err != nil {
			return res, err
		}
		msgs += float64(w.gossipSent() - sent0)
		msgPeriods += float64(n) * float64(span) / float64(w.periodTicks)
		fp0 := w.members.Deaths().FalsePositives
		for range min(perWorld, trials-res.Trials) {
			// Let the probe timers run into the middle of a period.
			if err := s.runFor(w.rng.Int64N(w.periodTicks) + 1); err != nil {
				return res, err
			}
			var live []*node
			for _, nd := range w.nodes {
				if nd.up {
					live = append(live, nd)
				}
			}
			victim := live[w.rng.IntN(len(live))]
			t0 := w.now
			firstSuspect, firstDead := int64(-1), int64(-1)
			w.observe = func(_ consensus.NodeID, ev gossip.Event) {
				if ev.Member.ID != victim.id {
					return
				}
				if ev.Type == gossip.EventSuspect && firstSuspect < 0 {
					firstSuspect = w.now - t0
				}
				if ev.Type == gossip.EventDead && firstDead < 0 {
					firstDead = w.now - t0
				}
			}
			firstProbe := int64(-1)
			w.onGossipSend = func(_ *node, to int, m *gossip.Message) {
				if to == victim.index && m.Type == gossip.MsgPing && firstProbe < 0 {
					firstProbe = w.now - t0
				}
			}
			w.crash(victim, true)
			allKnow := func() bool {
				for _, o := range w.nodes {
					if o.up && w.members.View(o.id, victim.id) != gossip.StateDead {
						return false
					}
				}
				return true
			}
			m, _ := w.cfg.Bounds()
			took, ok, err := s.runUntil(m, allKnow)
			if err != nil {
				return res, err
			}
			if !ok || firstProbe < 0 || firstSuspect < 0 || firstDead < 0 {
				return res, fmt.Errorf("gossipsim: seed %d: crash of %d among %d not known by all after %d ticks", seed+int64(world), victim.id, n, took)
			}
			period := float64(w.periodTicks * UnitsPerTick)
			sumProbe += float64(firstProbe) / period
			sumFirst += float64(firstSuspect) / period
			sumDead += float64(firstDead) / period
			all := float64(w.now-t0) / period
			sumAll += all
			res.AllKnowMax = math.Max(res.AllKnowMax, all)
			res.Trials++
			w.observe, w.onGossipSend = nil, nil
			if err := s.runFor(5 * w.periodTicks); err != nil {
				return res, err
			}
		}
		res.FalsePositives += w.members.Deaths().FalsePositives - fp0
		res.SimTicks += s.ticks()
	}
	t := float64(res.Trials)
	res.FirstProbe, res.FirstSuspect, res.FirstDead, res.AllKnow = sumProbe/t, sumFirst/t, sumDead/t, sumAll/t
	res.MessagesPerMemberPeriod = msgs / msgPeriods
	return res, nil
}

// gossipSent counts the membership messages sent so far.
func (w *world) gossipSent() int {
	c := 0
	for _, n := range w.nodes {
		c += n.gossipSent
	}
	return c
}

// FalsePositiveResult is what FalsePositives measured.
type FalsePositiveResult struct {
	Nodes     int
	Lifeguard bool
	Loss      float64
	// Alpha is the suspicion multiplier α used (0: gossip's default).
	Alpha int
	// Minutes of simulated time measured.
	Minutes float64
	// Incidents counts live members declared dead (a member's death at
	// one incarnation counts once, however many members hear of it),
	// AboutSlow those of the slow member itself; PerHour is Incidents
	// scaled to a simulated hour.
	Incidents, AboutSlow int
	PerHour              float64
}

// FalsePositives runs a group of n in which one member is slow but alive
// (see FaultConfig.SlowNodes: 30% of its messages, in and out, late by
// up to 3 s, and a 1 s pause about every 30 s) for the given simulated
// minutes, and counts the live members declared dead.
//
// alpha, if not zero, replaces gossip's suspicion multiplier α (default
// 5): a smaller one detects faster and errs more.
func FalsePositives(n int, loss float64, lifeguard bool, alpha int, minutes float64, seed int64) (FalsePositiveResult, error) {
	res := FalsePositiveResult{Nodes: n, Lifeguard: lifeguard, Loss: loss, Alpha: alpha, Minutes: minutes}
	cfg := experimentConfig(seed, n, loss, lifeguard)
	if alpha > 0 {
		cfg.AdjustGossip = func(c *gossip.Config) { c.SuspicionAlpha = alpha }
	}
	s, err := newScenario(cfg)
	if err != nil {
		return res, err
	}
	w := s.w
	if err := s.warmUp(); err != nil {
		return res, err
	}
	slow := w.nodes[w.rng.IntN(n)]
	w.makeSlow(slow)
	seen := map[[2]uint64]bool{}
	w.observe = func(_ consensus.NodeID, ev gossip.Event) {
		m := ev.Member
		key := [2]uint64{uint64(m.ID), m.Incarnation}
		if ev.Type != gossip.EventDead || seen[key] {
			return
		}
		seen[key] = true
		if m.ID == slow.id {
			res.AboutSlow++
		}
	}
	fp0 := w.members.Deaths().FalsePositives
	ticks := int64(minutes * 60 * 1000 / MsPerTick)
	if err := s.runFor(ticks); err != nil {
		return res, err
	}
	res.Incidents = w.members.Deaths().FalsePositives - fp0
	res.PerHour = float64(res.Incidents) * 60 / minutes
	return res, nil
}

// PartitionResult is what PartitionHeal measured.
type PartitionResult struct {
	Nodes int
	Loss  float64
	// PartitionSeconds is how long the halves were apart; Writes the
	// writes clients made on both sides meanwhile.
	PartitionSeconds float64
	Writes           int
	// MembershipSeconds is the time from healing until every member knew
	// every other alive again; StoreSeconds until every replica held the
	// same entries (checked against the model of all writes).
	MembershipSeconds, StoreSeconds float64
	// AntiEntropyIntervals is StoreSeconds in anti-entropy intervals of
	// the store's default configuration (10 s).
	AntiEntropyIntervals float64
}

// PartitionHeal splits a group of n in halves for partitionSeconds, with
// clients writing on both sides (two per side, a write every 2 s each
// on average, over 50 keys), heals the partition and measures how long
// the membership and the store take to converge. The loss goes on
// throughout.
func PartitionHeal(n int, loss float64, partitionSeconds float64, seed int64) (PartitionResult, error) {
	res := PartitionResult{Nodes: n, Loss: loss, PartitionSeconds: partitionSeconds}
	cfg := experimentConfig(seed, n, loss, true)
	cfg.Workload = WorkloadConfig{Keys: 50, PutWeight: 4, DeleteWeight: 1, ThinkTicksMax: 40, Home: 0.5}
	s, err := newScenario(cfg)
	if err != nil {
		return res, err
	}
	w := s.w
	if err := s.warmUp(); err != nil {
		return res, err
	}
	side := make([]bool, n)
	for i, j := range w.rng.Perm(n) {
		side[j] = i < n/2
	}
	w.partitionNow(side, TicksMax)
	for c := range 4 {
		var nodes []int
		for i := range n {
			if side[i] == (c%2 == 0) {
				nodes = append(nodes, i)
			}
		}
		w.addClient(nodes)
	}
	if err := s.runFor(int64(partitionSeconds * 1000 / MsPerTick)); err != nil {
		return res, err
	}
	w.stopClients = true
	w.heal(w.partitions[len(w.partitions)-1])
	res.Writes = w.res.Writes
	t0 := w.now
	membershipAt, storeAt := int64(-1), int64(-1)
	_, storeBound := w.cfg.Bounds()
	_, ok, err := s.runUntil(storeBound, func() bool {
		if membershipAt < 0 && w.members.Accurate() {
			membershipAt = w.now
		}
		// With the writes over, replicas that agree stay so.
		if storeAt < 0 && w.storeConverged() {
			storeAt = w.now
		}
		return membershipAt >= 0 && storeAt >= 0
	})
	if err != nil {
		return res, err
	}
	if !ok {
		return res, fmt.Errorf("gossipsim: seed %d: %d replicas not converged %d ticks after the partition healed", seed, n, storeBound)
	}
	if err := s.checkStore(); err != nil {
		return res, err
	}
	res.MembershipSeconds = float64(membershipAt-t0) / UnitsPerTick * MsPerTick / 1000
	res.StoreSeconds = float64(storeAt-t0) / UnitsPerTick * MsPerTick / 1000
	res.AntiEntropyIntervals = res.StoreSeconds * 1000 / float64(w.cfg.storeConfig().AntiEntropyIntervalMs)
	return res, nil
}

// addClient adds a client limited to the given nodes (all if empty) and
// starts it.
func (w *world) addClient(nodes []int) *client {
	c := &client{index: len(w.clients), home: w.wrng.IntN(len(w.nodes)), nodes: nodes, mine: map[mineKey]mineWrite{}}
	if len(nodes) > 0 {
		c.home = nodes[0]
	}
	w.clients = append(w.clients, c)
	w.schedule(w.now+w.wrng.Int64N(UnitsPerTick)+1, event{kind: evClient, node: int32(c.index)})
	return c
}

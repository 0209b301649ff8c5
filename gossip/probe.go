package gossip

import (
	"maps"
	"slices"
)

// The failure detector: one probe per protocol period (SWIM), with
// Lifeguard's scaling of the period and timeout by the local health.

// nackDelayTicks is how long a helper waits for the target's ack before
// it sends its requester a nack: 4/5 of the probe timeout.
func (n *Node) nackDelayTicks() uint64 { return uint64(max(1, n.cfg.ProbeTimeoutTicks*4/5)) }

func (n *Node) tickProbe() {
	p := n.probe
	if p == nil {
		if n.now >= n.nextProbeTick {
			n.startProbe()
		}
		return
	}
	if !p.acked && !p.indirect && n.now >= p.timeoutTick {
		n.probeIndirectly(p)
	}
	if n.now >= p.endTick {
		n.finishProbe(p)
		n.startProbe()
	}
}

// startProbe pings the next member in probe order. The period lasts
// ProbeIntervalTicks·(health+1), the direct ping's timeout
// ProbeTimeoutTicks·(health+1).
func (n *Node) startProbe() {
	mult := uint64(probeMultiplier(n.health))
	m := n.nextTarget()
	if m == nil {
		n.probe = nil
		n.nextProbeTick = n.now + uint64(n.cfg.ProbeIntervalTicks)*mult
		return
	}
	n.seq++
	n.probe = &probe{
		target:      m.ID,
		seq:         n.seq,
		timeoutTick: n.now + uint64(n.cfg.ProbeTimeoutTicks)*mult,
		endTick:     n.now + uint64(n.cfg.ProbeIntervalTicks)*mult,
	}
	var buddy *Update
	if n.cfg.Lifeguard && m.State == StateSuspect {
		// Buddy system: tell a suspect that it is suspected, so that it
		// can refute at once instead of waiting for the news to reach it.
		buddy = &Update{ID: m.ID, Incarnation: m.Incarnation, State: StateSuspect, From: m.by}
	}
	n.send(m.ID, m.Addr, &Message{Type: MsgPing, Seq: n.seq}, buddy)
}

// probeIndirectly asks k random live members to ping the target for us.
func (n *Node) probeIndirectly(p *probe) {
	p.indirect = true
	target := n.members[p.target]
	if target == nil || !target.State.live() {
		return
	}
	for _, h := range n.randomLive(n.cfg.IndirectProbes, p.target) {
		p.helpers = append(p.helpers, h.ID)
		n.send(h.ID, h.Addr, &Message{Type: MsgPingReq, Seq: p.seq, Target: p.target, TargetAddr: target.Addr}, nil)
	}
}

// finishProbe ends the period: without an ack the target becomes
// suspect. Lifeguard raises the local health multiplier for the failed
// probe, and once more if a helper's nack is missing (this node's own
// links or processing are the likelier culprit).
func (n *Node) finishProbe(p *probe) {
	n.probe = nil
	if p.acked {
		return
	}
	delta := 1
	if len(p.nacked) < len(p.helpers) {
		delta++
	}
	n.adjustHealth(delta)
	m := n.members[p.target]
	if m == nil || !m.State.live() || n.leaving {
		return
	}
	n.cfg.Logger.Debugf("gossip %d: probe of %d failed (%d helpers, %d nacks); suspecting it", n.id, p.target, len(p.helpers), len(p.nacked))
	n.apply(Update{ID: m.ID, Incarnation: m.Incarnation, State: StateSuspect, From: n.id})
}

func (n *Node) onAck(m *Message) {
	if p := n.probe; p != nil && m.Seq == p.seq {
		if !p.acked && (m.From == p.target || slices.Contains(p.helpers, m.From)) {
			p.acked = true
			n.adjustHealth(-1)
		}
		return
	}
	if r := n.relays[m.Seq]; r != nil && m.From == r.target {
		delete(n.relays, m.Seq)
		n.send(r.requester, r.addr, &Message{Type: MsgAck, Seq: r.seq}, nil)
	}
}

func (n *Node) onNack(m *Message) {
	p := n.probe
	if p == nil || m.Seq != p.seq || !slices.Contains(p.helpers, m.From) || slices.Contains(p.nacked, m.From) {
		return
	}
	p.nacked = append(p.nacked, m.From)
}

// onPingReq runs an indirect probe for the requester: ping the target and
// relay its ack; with Lifeguard, nack if the target is silent for 4/5 of
// the probe timeout.
func (n *Node) onPingReq(m *Message) {
	if m.Target == n.id {
		n.send(m.From, m.FromAddr, &Message{Type: MsgAck, Seq: m.Seq}, nil)
		return
	}
	if len(n.relays) >= n.cfg.RelaysMax {
		n.cfg.Logger.Warnf("gossip %d: %d indirect probes running (RelaysMax); dropping ping-req from %d", n.id, len(n.relays), m.From)
		return
	}
	addr := m.TargetAddr
	if t := n.members[m.Target]; addr == "" && t != nil {
		addr = t.Addr
	}
	if addr == "" {
		return
	}
	n.seq++
	nack := n.now + n.nackDelayTicks()
	n.relays[n.seq] = &relay{
		target: m.Target, requester: m.From, addr: m.FromAddr, seq: m.Seq,
		nackTick: nack, expireTick: nack + uint64(n.cfg.ProbeIntervalTicks),
	}
	n.send(m.Target, addr, &Message{Type: MsgPing, Seq: n.seq}, nil)
}

func (n *Node) tickRelays() {
	if len(n.relays) == 0 {
		return
	}
	for _, seq := range slices.Sorted(maps.Keys(n.relays)) {
		r := n.relays[seq]
		if n.cfg.Lifeguard && !r.nacked && n.now >= r.nackTick {
			r.nacked = true
			n.send(r.requester, r.addr, &Message{Type: MsgNack, Seq: r.seq}, nil)
		}
		if n.now >= r.expireTick {
			delete(n.relays, seq)
		}
	}
}

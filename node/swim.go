package node

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/transport"
)

// Membership and failure detection. Every node, whatever its replication
// protocol, runs SWIM with Lifeguard (package gossip) beside its replica,
// over the same peer transport: it tells the operator which members are
// alive, suspect or dead, and how healthy this member itself is (the
// local health multiplier), independently of the consensus protocol's own
// view (a Raft follower cut off from its leader may still be alive).
// The consensus protocols do not act on it: they keep their own timers.

// swimTickInterval is the length of one SWIM tick: gossip's defaults
// (DefaultConfig) are set for 100 ms, giving a 1 s protocol period with a
// 400 ms probe timeout. (A node whose TickInterval is longer ticks SWIM
// once per tick, and its periods grow with it.) A variable only so that
// tests can shrink it.
var swimTickInterval = 100 * time.Millisecond

// incarnationName is the file, in the data directory, that keeps the
// member's SWIM incarnation across restarts.
const incarnationName = "swim-incarnation"

// MembershipStatus is a member's SWIM view of its cluster.
type MembershipStatus struct {
	// Health is this member's local health score (Lifeguard's local
	// health multiplier): 0 when it answers its probes in time, rising to
	// HealthMax as it misses them (a slow or overloaded member). While it
	// is above 0, the member probes more slowly and waits longer before
	// declaring others dead.
	Health, HealthMax int
	// Incarnation is this member's incarnation number: it rises when the
	// member refutes a suspicion of itself, and on every restart.
	Incarnation uint64
	// Members is every configured member as this one sees it (itself
	// included), in configuration order.
	Members []MemberHealth
}

// MemberHealth is one member's SWIM state as another member sees it.
type MemberHealth struct {
	ID   consensus.NodeID
	Name string
	// State is alive, suspect, dead or left; unknown if this member has
	// not heard of it yet (it has not joined the gossip group).
	State       string
	Incarnation uint64
}

// membership runs the SWIM core for a node's loop. It is owned by the
// loop goroutine, except status, which any goroutine may load.
type membership struct {
	core  *gossip.Node
	self  consensus.NodeID
	peers []Peer
	// ids maps a member's gossip address (its first peer URL) to its ID,
	// for a message the core addresses by address only.
	ids map[string]consensus.NodeID
	// every is how many node ticks make one SWIM tick.
	every, ticks int
	healthMax    int
	// rejectedTotal counts gossip messages the keyring refused.
	rejectedTotal uint64
	// dirty is set when the core ticked or stepped since the last flush.
	dirty bool
	// membersChanged is set by a flush that reported membership events;
	// the host clears it once it has acted on them.
	membersChanged bool
	// incPath is the incarnation file; incSaved the incarnation it holds.
	dataDir, incPath string
	incSaved         uint64
	log              *slog.Logger
	status           atomic.Pointer[MembershipStatus]
}

// newMembership starts SWIM for the node configured by cfg (after
// defaults): it raises the incarnation kept in the data directory by
// one, so that this run's alive news overrides whatever the group
// believed of the previous run, and saves it before the node talks.
func newMembership(cfg *Config, log *slog.Logger) (*membership, error) {
	m := &membership{
		self: cfg.ID, peers: cfg.Peers, ids: map[string]consensus.NodeID{},
		every:   max(1, int((swimTickInterval+cfg.TickInterval/2)/cfg.TickInterval)),
		dataDir: cfg.DataDir, incPath: cfg.path(incarnationName),
		log: log.With("component", "swim"),
	}
	inc, err := readIncarnation(m.incPath)
	if err != nil {
		return nil, err
	}
	var addr string
	var seeds []gossip.Seed
	for _, p := range cfg.Peers {
		a := swimAddr(p)
		m.ids[a] = p.ID
		if p.ID == cfg.ID {
			addr = a
			continue
		}
		if len(seeds) < gossip.SeedsMax {
			seeds = append(seeds, gossip.Seed{ID: p.ID, Addr: a})
		}
	}
	gc := gossip.DefaultConfig(cfg.ID, addr, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	gc.Incarnation = inc + 1
	gc.Seeds = seeds
	gc.Logger = slogLogger{m.log}
	m.healthMax = gc.HealthMax
	if m.core, err = gossip.New(gc); err != nil {
		return nil, fmt.Errorf("node: starting SWIM membership: %w", err)
	}
	if err := m.saveIncarnation(gc.Incarnation); err != nil {
		return nil, err
	}
	m.publish()
	return m, nil
}

// swimAddr is a member's address in the gossip group: its first peer
// URL, or, for a node whose transport needs none, its ID.
func swimAddr(p Peer) string {
	if len(p.PeerURLs) > 0 && len(p.PeerURLs[0]) <= gossip.AddrBytesMax {
		return p.PeerURLs[0]
	}
	return "member-" + strconv.FormatUint(uint64(p.ID), 16)
}

// readIncarnation reads the incarnation file; a missing file is 0.
func readIncarnation(p string) (uint64, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("node: reading %s: %w", p, err)
	}
	inc, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("node: %s is damaged (%v); remove it: the member then starts a new incarnation above what its peers remember once it hears them", p, err)
	}
	return inc, nil
}

// saveIncarnation makes inc the incarnation on disk.
func (m *membership) saveIncarnation(inc uint64) error {
	if err := writeFileDurably(m.dataDir, m.incPath, []byte(strconv.FormatUint(inc, 10)+"\n")); err != nil {
		return fmt.Errorf("node: saving the SWIM incarnation in %s: %w", m.incPath, err)
	}
	m.incSaved = inc
	return nil
}

// tick advances SWIM by one node tick.
func (m *membership) tick() {
	m.ticks++
	if m.ticks%m.every == 0 {
		m.core.Tick()
		m.dirty = true
	}
}

// step hands the core a SWIM message from peer from (the transport's
// authenticated sender); one claiming another sender is dropped.
func (m *membership) step(from consensus.NodeID, msg *gossip.Message) {
	if msg.From != from {
		m.log.Debug("dropped a SWIM message whose sender differs from its stream's peer", "from", from, "claimed", msg.From)
		return
	}
	m.dirty = true
	if err := m.core.Step(msg); err != nil {
		m.log.Debug("dropped a SWIM message", "from", msg.From, "err", err)
	}
}

// rejected counts and logs (the first, then every 1024th) a gossip
// message from a peer that the keyring refused.
func (m *membership) rejected(from consensus.NodeID, r *rejectedMessage) {
	m.rejectedTotal++
	if m.rejectedTotal == 1 || m.rejectedTotal%1024 == 0 {
		m.log.Warn("dropped a gossip message that did not pass the keyring", "from", from, "name", m.name(from),
			"err", r.err, "rejected_total", m.rejectedTotal)
	}
}

// flush takes the core's work: it returns the messages to send, logs the
// membership events, saves a raised incarnation and publishes the status.
// An error is fatal (the incarnation could not be saved).
func (m *membership) flush() ([]consensus.Message, error) {
	if !m.dirty {
		return nil, nil
	}
	m.dirty = false
	rd := m.core.Ready()
	var out []consensus.Message
	for _, ob := range rd.Messages {
		to := ob.Message.To
		if to == consensus.None {
			to = m.ids[ob.Addr]
		}
		if to == consensus.None {
			continue // not a configured member: the membership is static
		}
		out = append(out, consensus.Message{From: m.self, To: to, Payload: ob.Message})
	}
	m.membersChanged = m.membersChanged || len(rd.Events) > 0
	for _, ev := range rd.Events {
		m.log.Info("membership: member "+ev.Type.String(), "member", ev.Member.ID, "name", m.name(ev.Member.ID),
			"state", ev.Member.State.String(), "incarnation", ev.Member.Incarnation)
	}
	m.core.Advance(rd)
	if inc := m.core.Status().Incarnation; inc > m.incSaved {
		if err := m.saveIncarnation(inc); err != nil {
			return nil, err // say nothing the next run might contradict
		}
	}
	m.publish()
	return out, nil
}

func (m *membership) name(id consensus.NodeID) string {
	for _, p := range m.peers {
		if p.ID == id {
			return p.Name
		}
	}
	return ""
}

// leave starts SWIM's graceful leave (the member announces it left, at
// once to a few members and then piggybacked) and returns the messages
// that carry it.
func (m *membership) leave() ([]consensus.Message, error) {
	m.core.Leave()
	m.dirty = true
	return m.flush()
}

// leaveWaitPoll is how often awaitSent looks at the transport's queues.
const leaveWaitPoll = 5 * time.Millisecond

// awaitSent waits, for at most timeout, until tr has handed every queued
// message to its streams, so that a leave announcement goes out before
// the transport closes. A transport that reports no queues is not waited
// for.
func awaitSent(tr transport.Transport, timeout time.Duration) {
	s, ok := tr.(interface{ Stats() transport.Stats })
	if !ok || timeout <= 0 {
		return
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		queued := 0
		for _, p := range s.Stats().Peers {
			queued += p.QueueLen
		}
		if queued == 0 {
			return
		}
		time.Sleep(leaveWaitPoll)
	}
}

// liveIDs lists the other configured members SWIM holds alive or suspect.
// (A member some peer's configuration lists but this one's does not may
// be heard of; the transport cannot reach it, so it is left out.)
func (m *membership) liveIDs() []consensus.NodeID {
	var ids []consensus.NodeID
	for _, p := range m.peers {
		if gm, ok := m.core.Member(p.ID); ok && p.ID != m.self && (gm.State == gossip.StateAlive || gm.State == gossip.StateSuspect) {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// publish stores the core's view for Status.
func (m *membership) publish() {
	st := MembershipStatus{Health: m.core.Health(), HealthMax: m.healthMax}
	for _, p := range m.peers {
		mh := MemberHealth{ID: p.ID, Name: p.Name, State: "unknown"}
		if gm, ok := m.core.Member(p.ID); ok {
			mh.State, mh.Incarnation = gm.State.String(), gm.Incarnation
			if p.ID == m.self {
				st.Incarnation = gm.Incarnation
			}
		}
		st.Members = append(st.Members, mh)
	}
	m.status.Store(&st)
}

// snapshot returns the last published status, with its own member slice.
func (m *membership) snapshot() MembershipStatus {
	st := *m.status.Load()
	st.Members = append([]MemberHealth(nil), st.Members...)
	return st
}

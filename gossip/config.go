package gossip

import (
	"errors"
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// Bounds checked by Config.Validate, and by the codec on what a message
// may declare.
const (
	// AddrBytesMax bounds a member's address.
	AddrBytesMax = 255
	// MetaBytesMaxLimit bounds Config.MetaBytesMax, and the metadata an
	// encoded update may carry.
	MetaBytesMaxLimit = 1 << 16
	// MembersMaxLimit bounds Config.MembersMax, and the updates one
	// encoded message may carry.
	MembersMaxLimit = 1 << 16
	// SeedsMax bounds Config.Seeds.
	SeedsMax = 64
	// TicksMax bounds every duration in ticks.
	TicksMax = 1 << 24
	// IndirectProbesMax bounds Config.IndirectProbes.
	IndirectProbesMax = 16
	// HealthMaxLimit bounds Config.HealthMax: probe interval and timeout
	// grow up to (HealthMax+1) times.
	HealthMaxLimit = 64
	// SuspicionMultMax bounds Config.SuspicionAlpha and SuspicionBeta.
	SuspicionMultMax = 100
	// SuspicionConfirmationsMax bounds Config.SuspicionConfirmations.
	SuspicionConfirmationsMax = 16
	// RetransmitMultMax bounds Config.RetransmitMult.
	RetransmitMultMax = 64
	// PiggybackBytesMaxLimit bounds Config.PiggybackBytesMax.
	PiggybackBytesMaxLimit = 1 << 20
	// RelaysMaxLimit bounds Config.RelaysMax.
	RelaysMaxLimit = 1 << 16
)

// Seed is a node to join through: its address, and its ID if known
// (None otherwise).
type Seed struct {
	ID   consensus.NodeID
	Addr string
}

// Config configures one gossip node. Build one with DefaultConfig and
// adjust it; New validates it.
type Config struct {
	// ID is this node's ID, unique in the group and non-zero.
	ID consensus.NodeID
	// Addr is where this node receives messages (opaque to the core).
	Addr string
	// Meta is this node's initial metadata, at most MetaBytesMax bytes.
	Meta []byte
	// Incarnation is the incarnation to start at. A host that remembers
	// the last one across restarts saves a round of refutation; zero is
	// fine (a restarted node refutes the news of its own death).
	Incarnation uint64
	// Seeds are nodes to join through: New sends each a push-pull, and the
	// node sends them again every JoinRetryTicks until a seed answers (or
	// every seed is known dead or left), and whenever it knows no other
	// live member. Entries naming this node are skipped.
	Seeds []Seed

	// ProbeIntervalTicks is the protocol period T: one member is probed
	// per period. Lifeguard scales it by (Health+1).
	ProbeIntervalTicks int
	// ProbeTimeoutTicks is how long a direct ping waits for its ack before
	// the indirect probe starts; less than ProbeIntervalTicks, and more
	// than a round trip. Lifeguard scales it by (Health+1). A helper of an
	// indirect probe sends its nack after 4/5 of it.
	ProbeTimeoutTicks int
	// IndirectProbes is k: how many helpers a failed direct ping asks to
	// ping the target (MsgPingReq).
	IndirectProbes int

	// Lifeguard turns on the three extensions of Dadgar, Phillips and
	// Currey (2018): the local health multiplier, the dynamic suspicion
	// timeout, and the buddy system; and helpers send nacks. Off, the node
	// runs SWIM with suspicion: health stays 0 and the suspicion timeout is
	// fixed at its minimum.
	Lifeguard bool
	// HealthMax is S, the ceiling of the local health multiplier.
	HealthMax int
	// SuspicionAlpha (α) and SuspicionBeta (β) set the suspicion timeout:
	// Min = α·max(1, log10 N)·ProbeIntervalTicks, Max = β·Min.
	SuspicionAlpha int
	SuspicionBeta  int
	// SuspicionConfirmations is K: how many independent confirmations
	// shrink a suspicion timeout from Max to Min (at most N-2 are
	// expected).
	SuspicionConfirmations int

	// RetransmitMult is λ: an update is piggybacked at most
	// λ·⌈log10(N+1)⌉ times.
	RetransmitMult int
	// PiggybackBytesMax bounds the encoded updates piggybacked on one
	// message. It must hold one alive update with the largest address and
	// metadata.
	PiggybackBytesMax int

	// PushPullTicks is the interval of full-state exchanges with one
	// random member, scaled up beyond 32 members by 1+⌈log2(N/32)⌉. Zero
	// turns periodic push-pull off (joining still uses it).
	PushPullTicks int
	// JoinRetryTicks is how often a node that is still joining (see
	// Seeds) sends push-pull to its seeds again.
	JoinRetryTicks int
	// ReapTicks is how long a dead or left member is remembered before
	// it is forgotten. Keep it well above the time an update takes to
	// die out (retransmissions and a few push-pull intervals): a member
	// reaped while stale news of it still circulates can be resurrected
	// by that news.
	ReapTicks int

	// MembersMax bounds the members a node remembers, itself included;
	// news of more is dropped.
	MembersMax int
	// MetaBytesMax bounds a member's metadata.
	MetaBytesMax int
	// RelaysMax bounds the indirect probes this node runs for others at
	// once; further ping-reqs are dropped.
	RelaysMax int

	// Rand draws the probe order, helpers and push-pull partners.
	// Required.
	Rand consensus.Rand
	// Logger receives log lines; nil discards them.
	Logger consensus.Logger
}

// DefaultConfig returns a valid configuration with Lifeguard on: a
// protocol period of 10 ticks with a 4-tick probe timeout (with a
// 100 ms tick: a 1 s period and a 400 ms timeout), k = 3 helpers, S = 8,
// α = 5, β = 6, K = 3, λ = 4, 1 KiB of piggybacked updates per message,
// push-pull every 30 periods, reaping after 300 periods.
func DefaultConfig(id consensus.NodeID, addr string, rand consensus.Rand) Config {
	return Config{
		ID:                     id,
		Addr:                   addr,
		ProbeIntervalTicks:     10,
		ProbeTimeoutTicks:      4,
		IndirectProbes:         3,
		Lifeguard:              true,
		HealthMax:              8,
		SuspicionAlpha:         5,
		SuspicionBeta:          6,
		SuspicionConfirmations: 3,
		RetransmitMult:         4,
		PiggybackBytesMax:      1024,
		PushPullTicks:          300,
		JoinRetryTicks:         20,
		ReapTicks:              3000,
		MembersMax:             4096,
		MetaBytesMax:           512,
		RelaysMax:              256,
		Rand:                   rand,
	}
}

// Validate reports the first field out of range, naming the allowed range.
func (c Config) Validate() error {
	if c.ID == consensus.None {
		return errors.New("gossip: Config.ID must not be 0 (0 means no node)")
	}
	if c.Addr == "" || len(c.Addr) > AddrBytesMax {
		return fmt.Errorf("gossip: Config.Addr has %d bytes; allowed 1..%d", len(c.Addr), AddrBytesMax)
	}
	if len(c.Seeds) > SeedsMax {
		return fmt.Errorf("gossip: Config.Seeds has %d seeds; allowed 0..%d", len(c.Seeds), SeedsMax)
	}
	for i, s := range c.Seeds {
		if s.Addr == "" || len(s.Addr) > AddrBytesMax {
			return fmt.Errorf("gossip: Config.Seeds[%d].Addr has %d bytes; allowed 1..%d", i, len(s.Addr), AddrBytesMax)
		}
	}
	checks := []struct {
		field     string
		v, lo, hi int
	}{
		{"ProbeIntervalTicks", c.ProbeIntervalTicks, 2, TicksMax},
		{"ProbeTimeoutTicks", c.ProbeTimeoutTicks, 1, c.ProbeIntervalTicks - 1},
		{"IndirectProbes", c.IndirectProbes, 0, IndirectProbesMax},
		{"HealthMax", c.HealthMax, 0, HealthMaxLimit},
		{"SuspicionAlpha", c.SuspicionAlpha, 1, SuspicionMultMax},
		{"SuspicionBeta", c.SuspicionBeta, 1, SuspicionMultMax},
		{"SuspicionConfirmations", c.SuspicionConfirmations, 1, SuspicionConfirmationsMax},
		{"RetransmitMult", c.RetransmitMult, 1, RetransmitMultMax},
		{"PushPullTicks", c.PushPullTicks, 0, TicksMax},
		{"JoinRetryTicks", c.JoinRetryTicks, 1, TicksMax},
		{"ReapTicks", c.ReapTicks, c.ProbeIntervalTicks, TicksMax},
		{"MembersMax", c.MembersMax, 2, MembersMaxLimit},
		{"MetaBytesMax", c.MetaBytesMax, 0, MetaBytesMaxLimit},
		{"RelaysMax", c.RelaysMax, 1, RelaysMaxLimit},
	}
	for _, k := range checks {
		if k.v < k.lo || k.v > k.hi {
			return fmt.Errorf("gossip: Config.%s is %d; allowed %d..%d", k.field, k.v, k.lo, k.hi)
		}
	}
	if len(c.Meta) > c.MetaBytesMax {
		return fmt.Errorf("gossip: Config.Meta has %d bytes; MetaBytesMax is %d", len(c.Meta), c.MetaBytesMax)
	}
	// The largest alive update must fit one message's piggyback budget,
	// or it could never be disseminated.
	need := updateSizeMax(c.MetaBytesMax)
	if c.PiggybackBytesMax < need || c.PiggybackBytesMax > PiggybackBytesMaxLimit {
		return fmt.Errorf("gossip: Config.PiggybackBytesMax is %d; allowed %d..%d (it must hold an update with %d bytes of metadata)",
			c.PiggybackBytesMax, need, PiggybackBytesMaxLimit, c.MetaBytesMax)
	}
	if c.Rand == nil {
		return errors.New("gossip: Config.Rand is required (it draws probe order and helpers)")
	}
	return nil
}

// clone returns c with its slices copied, so the node never shares them
// with the caller.
func (c Config) clone() Config {
	c.Meta = slices.Clone(c.Meta)
	c.Seeds = slices.Clone(c.Seeds)
	return c
}

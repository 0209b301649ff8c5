package check

import (
	"fmt"
	"hash/fnv"
	"maps"

	"github.com/synod-io/synod/consensus"
)

// ElectionSafety checks that at most one node leads any term.
type ElectionSafety struct {
	leaders map[uint64]consensus.NodeID
}

// NewElectionSafety returns an empty checker.
func NewElectionSafety() *ElectionSafety {
	return &ElectionSafety{leaders: make(map[uint64]consensus.NodeID)}
}

// ObserveLeader records that node believes it leads term. It returns a
// violation if another node led the same term.
func (c *ElectionSafety) ObserveLeader(node consensus.NodeID, term uint64, tick float64) *Violation {
	prev, ok := c.leaders[term]
	if !ok {
		c.leaders[term] = node
		return nil
	}
	if prev != node {
		return &Violation{Checker: "election-safety", Tick: tick,
			Detail: fmt.Sprintf("nodes %d and %d both lead term %d", prev, node, term)}
	}
	return nil
}

// Leaders returns how many distinct terms had a leader.
func (c *ElectionSafety) Leaders() int { return len(c.leaders) }

// EntryDigest identifies an entry's content compactly.
type EntryDigest struct {
	Term    uint64
	Type    consensus.EntryType
	Session consensus.Session
	Data    uint64 // FNV-1a of the command data
}

// DigestOf computes e's digest.
func DigestOf(e *consensus.Entry) EntryDigest {
	h := fnv.New64a()
	h.Write(e.Command.Data)
	return EntryDigest{Term: e.Term, Type: e.Type, Session: e.Command.Session, Data: h.Sum64()}
}

func (d EntryDigest) String() string {
	return fmt.Sprintf("{term %d %v session %d/%d data %016x}", d.Term, d.Type, d.Session.ClientID, d.Session.Seq, d.Data)
}

// appliedEntry is what Agreement remembers of an index.
type appliedEntry struct {
	digest EntryDigest
	// by is the first node seen applying it.
	by consensus.NodeID
	// termBound is the highest term any node had reached when the entry was
	// first applied: the entry was committed in that term or earlier.
	termBound uint64
}

// Agreement checks state-machine safety: every node applies the same entry
// at each index, in index order without gaps. It also checks leader
// completeness: a leader of a term after the one in which an entry was
// committed holds that entry.
type Agreement struct {
	applied []appliedEntry // applied[i] is index i+1
}

// NewAgreement returns an empty checker.
func NewAgreement() *Agreement { return &Agreement{} }

// Applied records that node applied e, having last applied prevIndex;
// termBound is the highest term any node has reached so far.
func (c *Agreement) Applied(node consensus.NodeID, prevIndex uint64, e *consensus.Entry, termBound uint64, tick float64) *Violation {
	if e.Index != prevIndex+1 {
		return &Violation{Checker: "apply-order", Tick: tick,
			Detail: fmt.Sprintf("node %d applied index %d right after %d", node, e.Index, prevIndex)}
	}
	d := DigestOf(e)
	i := e.Index - 1
	if i < uint64(len(c.applied)) {
		if got := c.applied[i]; got.digest != d {
			return &Violation{Checker: "agreement", Tick: tick,
				Detail: fmt.Sprintf("index %d: node %d applied %v but node %d applied %v", e.Index, node, d, got.by, got.digest)}
		}
		return nil
	}
	// Indexes are applied in order on every node, so a new index is always
	// the next one.
	c.applied = append(c.applied, appliedEntry{digest: d, by: node, termBound: termBound})
	return nil
}

// CommittedIndex returns the highest index any node applied.
func (c *Agreement) CommittedIndex() uint64 { return uint64(len(c.applied)) }

// CheckLeader checks that a node that leads term holds every entry
// committed in an earlier term. entry looks up the leader's log; it returns
// false for an index the log does not hold. firstIndex is the first index the
// log can still show (1 if nothing is compacted); earlier entries are not
// checked.
func (c *Agreement) CheckLeader(node consensus.NodeID, term uint64, firstIndex uint64, entry func(uint64) (consensus.Entry, bool), tick float64) *Violation {
	for i := range c.applied {
		a := &c.applied[i]
		index := uint64(i) + 1
		if index < firstIndex || a.termBound >= term {
			continue
		}
		e, ok := entry(index)
		if !ok {
			return &Violation{Checker: "leader-completeness", Tick: tick,
				Detail: fmt.Sprintf("node %d leads term %d but lacks index %d, committed by term %d", node, term, index, a.termBound)}
		}
		if d := DigestOf(&e); d != a.digest {
			return &Violation{Checker: "leader-completeness", Tick: tick,
				Detail: fmt.Sprintf("node %d leads term %d with %v at index %d, but %v was committed there by term %d", node, term, d, index, a.digest, a.termBound)}
		}
	}
	return nil
}

// KeyOrder checks state-machine safety for a protocol that orders only
// conflicting commands (EPaxos): for every conflict key, every node
// executes the commands that carry it in the same order. Entry indexes
// are local to each node there and are not compared; a node rebuilt from
// its durable state (Restart) executes from the start again and must
// retrace the same order.
//
// A node whose state machine starts from a snapshot (restarted from its
// own, or installed from a peer) cannot retrace the prefix the snapshot
// holds: Snapshot records, when a snapshot is taken, how far along each
// key's order its node was, under a name for the snapshot's content (the
// protocol's state, the same for every snapshot holding the same
// commands), and Resume puts a node there; what it executes after is
// checked as usual.
type KeyOrder struct {
	// order is, per key, the command digests in execution order.
	order map[string][]EntryDigest
	// pos is, per node and key, how many of the key's commands the node
	// has executed, from the start or from the snapshot it resumed at.
	pos map[consensus.NodeID]map[string]int
	// snaps is, per snapshot name, the positions a snapshot holds.
	snaps    map[string]map[string]int
	executed uint64
}

// NewKeyOrder returns an empty checker.
func NewKeyOrder() *KeyOrder {
	return &KeyOrder{order: map[string][]EntryDigest{}, pos: map[consensus.NodeID]map[string]int{}, snaps: map[string]map[string]int{}}
}

// Restart forgets what node executed: it rebuilds its state machine from
// scratch.
func (c *KeyOrder) Restart(node consensus.NodeID) { delete(c.pos, node) }

// Snapshot records that node's state machine, as of now, is saved as the
// snapshot named name. Two snapshots with the same name must hold the same
// number of each key's commands.
func (c *KeyOrder) Snapshot(node consensus.NodeID, name string, tick float64) *Violation {
	pos := maps.Clone(c.pos[node])
	if pos == nil {
		pos = map[string]int{}
	}
	if old, ok := c.snaps[name]; ok {
		if !maps.Equal(old, pos) {
			return &Violation{Checker: "agreement", Tick: tick,
				Detail: fmt.Sprintf("node %d snapshots the same protocol state as another snapshot, holding different commands per key (%v, the other %v)", node, pos, old)}
		}
		return nil
	}
	c.snaps[name] = pos
	return nil
}

// Resume makes node's state machine the snapshot named name: it executes
// on from there. It returns false if no snapshot of that name was
// recorded.
func (c *KeyOrder) Resume(node consensus.NodeID, name string) bool {
	pos, ok := c.snaps[name]
	if !ok {
		return false
	}
	c.pos[node] = maps.Clone(pos)
	return true
}

// Applied records that node executed e (after the entry at prevIndex of
// its local counter).
func (c *KeyOrder) Applied(node consensus.NodeID, prevIndex uint64, e *consensus.Entry, tick float64) *Violation {
	if e.Index != prevIndex+1 {
		return &Violation{Checker: "apply-order", Tick: tick,
			Detail: fmt.Sprintf("node %d executed local index %d right after %d", node, e.Index, prevIndex)}
	}
	pos := c.pos[node]
	if pos == nil {
		pos = map[string]int{}
		c.pos[node] = pos
	}
	d := DigestOf(e)
	for _, k := range e.Command.Keys {
		p, seen := pos[k], c.order[k]
		switch {
		case p < len(seen) && seen[p] != d:
			return &Violation{Checker: "agreement", Tick: tick,
				Detail: fmt.Sprintf("key %q: node %d executed %v as the key's command #%d, but another node executed %v there", k, node, d, p+1, seen[p])}
		case p == len(seen):
			c.order[k] = append(seen, d)
			if k == e.Command.Keys[0] {
				c.executed++
			}
		}
		pos[k] = p + 1
	}
	return nil
}

// Executed returns how many distinct positions in the per-key orders
// have been filled: the commands executed, counted once each.
func (c *KeyOrder) Executed() uint64 { return c.executed }

package store

import (
	"cmp"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// Anti-entropy compares Merkle trees top down. It keeps no state between
// messages: each MsgTree says "these are my hashes of these nodes", and
// the receiver answers from its tree as it is then. So an exchange needs
// no session, survives concurrent writes and exchanges (at worst it
// misses a difference, which the next round finds), and ends after at
// most TreeLevels+3 messages because the level only grows.

// StartAntiEntropy starts a Merkle-tree exchange with peer: it sends the
// root hash; if the peer's differs, the two descend the tree, and finally
// exchange the entries of the leaves that differ. Tick calls it every
// AntiEntropyIntervalMs with a random peer.
func (s *Store) StartAntiEntropy(peer consensus.NodeID) {
	if peer == consensus.None || peer == s.id {
		return
	}
	s.send(&Message{Type: MsgTree, To: peer, TreeLevels: uint8(s.cfg.TreeLevels), Nodes: []NodeHash{{Hash: s.tree.root()}}})
}

// onTree answers a peer's hashes of some nodes at one level: for those
// that differ from this replica's, its hashes of their children, or at
// the leaves its entries.
func (s *Store) onTree(m *Message) {
	d := int(m.Level)
	var diff []uint32
	for _, n := range m.Nodes {
		if s.tree.hash(d, n.Index) != n.Hash {
			diff = append(diff, n.Index)
		}
	}
	if len(diff) == 0 {
		return
	}
	if d == s.cfg.TreeLevels {
		s.sendLeaves(m.From, diff)
		return
	}
	// The children of the differing nodes, as many whole families as fit;
	// when they do not all fit, start at a random one so that every
	// family gets its turn over the rounds.
	budget := s.cfg.MessageBytesMax - MessageHeaderBytesMax
	start := s.rotation(len(diff))
	var nodes []NodeHash
	for k := range diff {
		p := diff[(start+k)%len(diff)]
		family := make([]NodeHash, fanout)
		size := 0
		for c := range uint32(fanout) {
			i := p*fanout + c
			family[c] = NodeHash{Index: i, Hash: s.tree.hash(d+1, i)}
			size += nodeSize(family[c])
		}
		if size > budget {
			break
		}
		budget -= size
		nodes = append(nodes, family...)
	}
	if len(nodes) == 0 {
		return
	}
	slices.SortFunc(nodes, func(a, b NodeHash) int { return cmp.Compare(a.Index, b.Index) })
	s.send(&Message{Type: MsgTree, To: m.From, TreeLevels: m.TreeLevels, Level: m.Level + 1, Nodes: nodes})
}

// rotation draws where to start in a list of n candidates when not all
// may fit in a message.
func (s *Store) rotation(n int) int {
	if n <= 1 {
		return 0
	}
	return s.cfg.Rand.IntN(n)
}

// leafEntries returns this replica's entries of leaf j, by key.
func (s *Store) leafEntries(j uint32) []Entry {
	l := s.tree.leaves[j]
	es := make([]Entry, len(l))
	for i, it := range l {
		es[i] = it.e
	}
	slices.SortFunc(es, func(a, b Entry) int { return cmp.Compare(a.Key, b.Key) })
	return es
}

// sendLeaves sends peer this replica's entries of the given leaves, as
// many whole leaves as fit in a message. If not even the first leaf
// fits, it sends part of it, from a random entry on, so that the rest
// goes in later rounds.
func (s *Store) sendLeaves(peer consensus.NodeID, leaves []uint32) {
	budget := s.cfg.MessageBytesMax - MessageHeaderBytesMax
	start := s.rotation(len(leaves))
	var nodes []NodeHash
	var entries []Entry
	for k := range leaves {
		j := leaves[(start+k)%len(leaves)]
		es := s.leafEntries(j)
		size := nodeSizeMax
		for i := range es {
			size += entrySize(&es[i])
		}
		if size > budget {
			if len(nodes) > 0 {
				continue
			}
			// Not even this one leaf fits: send what fits of it.
			budget -= nodeSizeMax
			off := s.rotation(len(es))
			for i := range es {
				e := &es[(off+i)%len(es)]
				if sz := entrySize(e); sz <= budget {
					budget -= sz
					entries = append(entries, *e)
				}
			}
			nodes = append(nodes, NodeHash{Index: j, Hash: s.tree.hash(s.cfg.TreeLevels, j)})
			continue
		}
		budget -= size
		nodes = append(nodes, NodeHash{Index: j, Hash: s.tree.hash(s.cfg.TreeLevels, j)})
		entries = append(entries, es...)
	}
	slices.SortFunc(nodes, func(a, b NodeHash) int { return cmp.Compare(a.Index, b.Index) })
	s.send(&Message{Type: MsgLeaves, To: peer, TreeLevels: uint8(s.cfg.TreeLevels), Level: uint8(s.cfg.TreeLevels), Nodes: nodes, Entries: entries})
}

// answerLeaves answers a peer's entries of some leaves (already merged)
// with this replica's entries of the same leaves that the peer lacks or
// holds an older version of, as many as fit.
func (s *Store) answerLeaves(m *Message) {
	theirs := make(map[string]*Entry, len(m.Entries))
	for i := range m.Entries {
		theirs[m.Entries[i].Key] = &m.Entries[i]
	}
	var want []Entry
	for _, n := range m.Nodes {
		for _, e := range s.leafEntries(n.Index) {
			if t := theirs[e.Key]; t == nil || e.Compare(t) > 0 {
				want = append(want, e)
			}
		}
	}
	if len(want) == 0 {
		return
	}
	budget := s.cfg.MessageBytesMax - MessageHeaderBytesMax - nodeSizeMax*len(m.Nodes)
	start := s.rotation(len(want))
	var entries []Entry
	for k := range want {
		e := &want[(start+k)%len(want)]
		if sz := entrySize(e); sz <= budget {
			budget -= sz
			entries = append(entries, *e)
		}
	}
	if len(entries) == 0 {
		return
	}
	nodes := make([]NodeHash, len(m.Nodes))
	for i, n := range m.Nodes {
		nodes[i] = NodeHash{Index: n.Index, Hash: s.tree.hash(s.cfg.TreeLevels, n.Index)}
	}
	s.send(&Message{Type: MsgLeaves, To: m.From, Reply: true, TreeLevels: m.TreeLevels, Level: m.Level, Nodes: nodes, Entries: entries})
}

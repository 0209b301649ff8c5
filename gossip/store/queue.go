package store

import (
	"cmp"
	"slices"
)

// The dissemination queue. gossip's broadcast queue is built around
// membership updates keyed by member (and unexported), so the store keeps
// its own, smaller one with the same policy: one write per key (newer
// news replaces older and restarts its count), fewest-sent first within a
// byte budget, dropped after the retransmit limit.

// pending is one write waiting to be sent.
type pending struct {
	e    Entry
	size int
	sent int
	// seq orders writes with equal sent counts: the one that reached its
	// count first goes first. Unique within the queue.
	seq uint64
}

type queue struct {
	byKey map[string]*pending
	seq   uint64
	max   int
}

func newQueue(max int) queue { return queue{byKey: map[string]*pending{}, max: max} }

func (q *queue) len() int { return len(q.byKey) }

// push queues e, replacing any write of the same key. Beyond the bound it
// drops the writes at the back of the line (sent most often, and among
// equals the last to go out), an eighth of the queue at once, so that a
// burst of writes costs O(log n) each.
func (q *queue) push(e Entry) {
	q.seq++
	q.byKey[e.Key] = &pending{e: e, size: entrySize(&e), seq: q.seq}
	if len(q.byKey) <= q.max {
		return
	}
	all := q.sorted()
	for _, p := range all[len(all)-(len(all)-q.max*7/8):] {
		delete(q.byKey, p.e.Key)
	}
}

// sorted returns the queued writes in the order they go out: fewest-sent
// first, then by seq.
func (q *queue) sorted() []*pending {
	all := make([]*pending, 0, len(q.byKey))
	for _, p := range q.byKey {
		all = append(all, p)
	}
	slices.SortFunc(all, func(a, b *pending) int {
		if c := cmp.Compare(a.sent, b.sent); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return all
}

// pick returns writes whose encodings fit in budget bytes, fewest-sent
// first, and counts one transmission for each; a write sent limit times
// leaves the queue.
func (q *queue) pick(budget, limit int) []Entry {
	if len(q.byKey) == 0 || budget < entrySizeMin {
		return nil
	}
	var out []Entry
	for _, p := range q.sorted() {
		if p.sent >= limit { // the limit shrinks when the group does
			delete(q.byKey, p.e.Key)
			continue
		}
		if budget < entrySizeMin {
			break
		}
		if p.size > budget {
			continue
		}
		budget -= p.size
		out = append(out, p.e)
		q.seq++
		p.sent, p.seq = p.sent+1, q.seq
		if p.sent >= limit {
			delete(q.byKey, p.e.Key)
		}
	}
	return out
}

// retransmitLimit is how often a write is sent in a group of n replicas:
// λ·⌈log10(n+1)⌉, λ times the number of decimal digits of n (the rule of
// gossip's membership updates).
func retransmitLimit(mult, n int) int {
	digits := 1
	for v := max(n, 1); v >= 10; v /= 10 {
		digits++
	}
	return mult * digits
}

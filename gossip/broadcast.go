package gossip

import (
	"encoding/binary"

	"github.com/synod-io/synod/consensus"
)

// updateSize is the exact encoded size of u (see MessageCodec).
func updateSize(u *Update) int {
	return uvarintLen(uint64(u.ID)) + uvarintLen(u.Incarnation) + 1 + uvarintLen(uint64(u.From)) +
		uvarintLen(uint64(len(u.Addr))) + len(u.Addr) + uvarintLen(uint64(len(u.Meta))) + len(u.Meta)
}

// updateSizeMax is the largest encoded update with at most metaBytes of
// metadata.
func updateSizeMax(metaBytes int) int {
	const varintMax = binary.MaxVarintLen64
	return 3*varintMax + 1 + uvarintLen(AddrBytesMax) + AddrBytesMax + uvarintLen(uint64(metaBytes)) + metaBytes
}

// updateSizeMin is the smallest encoded update.
const updateSizeMin = 6

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// bcast is one update waiting to be piggybacked.
type bcast struct {
	u    Update
	size int
	// sent counts the messages that carried it.
	sent int
	// live is false once a newer update about the same member replaced
	// it, or it was sent often enough; the bucket that holds it drops it
	// when next scanned.
	live bool
}

// queue holds the updates to disseminate, at most one per member: news
// about a member replaces older news about it, whose retransmissions
// restart from zero. Updates are piggybacked fewest-sent first (oldest
// first among equals) and dropped after the retransmit limit.
type queue struct {
	byID map[consensus.NodeID]*bcast
	// buckets[s] holds the entries sent s times, in the order they got
	// there. Invariant: every live entry is in exactly one bucket, the
	// one its sent count names, and in byID.
	buckets [][]*bcast
	// stale counts the dead entries still held in buckets.
	stale int
}

func newQueue() queue { return queue{byID: map[consensus.NodeID]*bcast{}} }

// len is the number of updates waiting.
func (q *queue) len() int { return len(q.byID) }

// pending reports whether an update about id is waiting.
func (q *queue) pending(id consensus.NodeID) bool { return q.byID[id] != nil }

// push queues u, replacing any update about the same member.
func (q *queue) push(u Update) {
	if old := q.byID[u.ID]; old != nil {
		old.live = false
		q.stale++
	}
	b := &bcast{u: u, size: updateSize(&u), live: true}
	q.byID[u.ID] = b
	if len(q.buckets) == 0 {
		q.buckets = append(q.buckets, nil)
	}
	q.buckets[0] = append(q.buckets[0], b)
	q.compact()
}

// drop forgets any update about id.
func (q *queue) drop(id consensus.NodeID) {
	if old := q.byID[id]; old != nil {
		old.live = false
		q.stale++
		delete(q.byID, id)
	}
}

// pick returns updates whose encodings fit in budget bytes, fewest-sent
// first, counting one transmission for each; an update sent limit times
// leaves the queue.
func (q *queue) pick(budget, limit int) []Update {
	if len(q.byID) == 0 {
		return nil
	}
	// The limit shrinks when the group does: what was sent often enough
	// for the new one is done.
	for s := limit; s < len(q.buckets); s++ {
		for _, b := range q.buckets[s] {
			if b.live {
				b.live = false
				delete(q.byID, b.u.ID)
			} else {
				q.stale--
			}
		}
	}
	if len(q.buckets) > limit {
		clear(q.buckets[limit:])
		q.buckets = q.buckets[:limit]
	}
	if budget < updateSizeMin {
		return nil
	}
	var out []Update
	var picked []*bcast
	for s := 0; s < len(q.buckets); s++ {
		bucket := q.buckets[s]
		if len(bucket) == 0 {
			continue
		}
		keep := bucket[:0]
	scan:
		for i, b := range bucket {
			switch {
			case !b.live:
				q.stale--
				continue
			case budget < updateSizeMin:
				keep = append(keep, bucket[i:]...)
				break scan
			case b.size > budget:
				keep = append(keep, b)
				continue
			}
			budget -= b.size
			out = append(out, b.u)
			picked = append(picked, b)
		}
		clear(bucket[len(keep):])
		q.buckets[s] = keep
		if budget < updateSizeMin {
			break
		}
	}
	for _, b := range picked {
		b.sent++
		if b.sent >= limit {
			b.live = false
			delete(q.byID, b.u.ID)
			continue
		}
		for len(q.buckets) <= b.sent {
			q.buckets = append(q.buckets, nil)
		}
		q.buckets[b.sent] = append(q.buckets[b.sent], b)
	}
	return out
}

// compact rebuilds the buckets once dead entries outnumber live ones, so
// that memory stays proportional to the updates waiting.
func (q *queue) compact() {
	if q.stale < 64 || q.stale < len(q.byID) {
		return
	}
	for s, bucket := range q.buckets {
		keep := bucket[:0]
		for _, b := range bucket {
			if b.live {
				keep = append(keep, b)
			}
		}
		clear(bucket[len(keep):])
		q.buckets[s] = keep
	}
	q.stale = 0
}

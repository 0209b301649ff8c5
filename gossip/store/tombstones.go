package store

import "github.com/synod-io/synod/consensus"

// expiry is a tombstone's purge time, as a min-heap element. The heap
// may hold expiries of tombstones that were overwritten since: purge
// checks that the key still holds this very tombstone.
type expiry struct {
	atMs   uint64
	key    string
	ts     Timestamp
	origin consensus.NodeID
}

// expiryHeap is a binary min-heap by atMs.
type expiryHeap []expiry

func (h *expiryHeap) push(x expiry) {
	*h = append(*h, x)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if a[p].atMs <= a[i].atMs {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

// pop removes and returns the earliest expiry; the heap must not be empty.
func (h *expiryHeap) pop() expiry {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a[last] = expiry{}
	a = a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(a) && a[l].atMs < a[m].atMs {
			m = l
		}
		if r < len(a) && a[r].atMs < a[m].atMs {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}

// expiryOf is when a tombstone stamped ts may be purged: ttlMs after its
// timestamp, saturating.
func expiryOf(ts Timestamp, ttlMs uint64) uint64 {
	if ts.WallMs > ^uint64(0)-ttlMs {
		return ^uint64(0)
	}
	return ts.WallMs + ttlMs
}

package kv

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
)

// entry is a live key's record. The store's map and its ordered index point
// at the same entry, so updating kv in place updates both.
type entry struct {
	kv KeyValue
}

// chunkMax bounds the entries in one chunk of the index. Inserting into a
// chunk moves at most chunkMax pointers; inserting a chunk moves one pointer
// per chunk, so both costs stay small up to millions of keys.
const chunkMax = 512

// index is the ordered set of live entries: a list of sorted chunks, a
// two-level B+tree without the tree.
//
// Invariant: every chunk is non-empty and holds at most chunkMax entries;
// keys strictly increase within a chunk and from each chunk to the next;
// n is the total number of entries.
type index struct {
	chunks [][]*entry
	n      int
}

func (x *index) len() int { return x.n }

// chunkFor returns the first chunk whose last key is >= key, or
// len(x.chunks) if key is beyond every key.
func (x *index) chunkFor(key []byte) int {
	return sort.Search(len(x.chunks), func(i int) bool {
		c := x.chunks[i]
		return bytes.Compare(c[len(c)-1].kv.Key, key) >= 0
	})
}

// posIn returns the position of the first entry in c with key >= key.
func posIn(c []*entry, key []byte) int {
	return sort.Search(len(c), func(i int) bool { return bytes.Compare(c[i].kv.Key, key) >= 0 })
}

// insert adds e, whose key must not be in the index.
func (x *index) insert(e *entry) {
	if len(x.chunks) == 0 {
		x.chunks = append(x.chunks, []*entry{e})
		x.n++
		return
	}
	ci := x.chunkFor(e.kv.Key)
	if ci == len(x.chunks) {
		// Beyond every key (a restore, or ascending keys): fill chunks to
		// 3/4 rather than splitting full ones in halves.
		x.appendSorted(e)
		return
	}
	c := x.chunks[ci]
	p := posIn(c, e.kv.Key)
	if p < len(c) && bytes.Equal(c[p].kv.Key, e.kv.Key) {
		panic("kv: index insert of a key already present: " + string(e.kv.Key))
	}
	x.n++
	c = slices.Insert(c, p, e)
	if len(c) <= chunkMax {
		x.chunks[ci] = c
		return
	}
	// Split in halves; the right half gets its own backing array so the
	// halves never overwrite each other.
	half := len(c) / 2
	right := make([]*entry, len(c)-half, chunkMax)
	copy(right, c[half:])
	clear(c[half:])
	x.chunks[ci] = c[:half]
	x.chunks = slices.Insert(x.chunks, ci+1, right)
}

// remove deletes the entry with key, which must be in the index.
func (x *index) remove(key []byte) {
	ci := x.chunkFor(key)
	if ci == len(x.chunks) {
		panic("kv: index remove of a missing key: " + string(key))
	}
	c := x.chunks[ci]
	p := posIn(c, key)
	if p == len(c) || !bytes.Equal(c[p].kv.Key, key) {
		panic("kv: index remove of a missing key: " + string(key))
	}
	x.n--
	c = slices.Delete(c, p, p+1)
	x.chunks[ci] = c
	switch {
	case len(c) == 0:
		x.chunks = slices.Delete(x.chunks, ci, ci+1)
	case len(c) < chunkMax/4:
		// Merge a small chunk into a neighbour that has room, so that
		// deletions cannot leave many tiny chunks behind.
		if ci+1 < len(x.chunks) && len(c)+len(x.chunks[ci+1]) <= chunkMax {
			x.chunks[ci] = append(c, x.chunks[ci+1]...)
			x.chunks = slices.Delete(x.chunks, ci+1, ci+2)
		} else if ci > 0 && len(c)+len(x.chunks[ci-1]) <= chunkMax {
			x.chunks[ci-1] = append(x.chunks[ci-1], c...)
			x.chunks = slices.Delete(x.chunks, ci, ci+1)
		}
	}
}

// ascend calls fn on each entry with from <= key < to, in key order, until fn
// returns false. A nil to means no upper bound. fn must not modify the index.
func (x *index) ascend(from, to []byte, fn func(*entry) bool) {
	first := x.chunkFor(from)
	for ci := first; ci < len(x.chunks); ci++ {
		c := x.chunks[ci]
		if ci == first {
			// Later chunks hold only keys above this chunk's last key,
			// which is >= from.
			c = c[posIn(c, from):]
		}
		for _, e := range c {
			if to != nil && bytes.Compare(e.kv.Key, to) >= 0 {
				return
			}
			if !fn(e) {
				return
			}
		}
	}
}

// all calls fn on every entry in key order.
func (x *index) all(fn func(*entry)) {
	for _, c := range x.chunks {
		for _, e := range c {
			fn(e)
		}
	}
}

// appendSorted adds e, whose key must be greater than every key in the
// index; used to rebuild an index from a snapshot in one pass.
func (x *index) appendSorted(e *entry) {
	x.n++
	if k := len(x.chunks); k > 0 && len(x.chunks[k-1]) < chunkMax*3/4 {
		x.chunks[k-1] = append(x.chunks[k-1], e)
		return
	}
	c := make([]*entry, 1, chunkMax)
	c[0] = e
	x.chunks = append(x.chunks, c)
}

// check panics if the index invariant does not hold; for tests.
func (x *index) check() {
	n := 0
	var prev []byte
	for i, c := range x.chunks {
		if len(c) == 0 || len(c) > chunkMax {
			panic(fmt.Sprintf("kv: index chunk %d has bad size %d", i, len(c)))
		}
		for _, e := range c {
			if n > 0 && bytes.Compare(prev, e.kv.Key) >= 0 {
				panic("kv: index keys out of order at " + string(e.kv.Key))
			}
			prev = e.kv.Key
			n++
		}
	}
	if n != x.n {
		panic(fmt.Sprintf("kv: index count %d but holds %d", x.n, n))
	}
}

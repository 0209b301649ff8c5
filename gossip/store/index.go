package store

import (
	"slices"
	"sort"
)

// pageMax bounds the items in one page of the key index: an insert moves
// at most pageMax pointers within its page, and a split or a removed page
// moves one pointer per page.
const pageMax = 256

// keyIndex is the set of items in key order, for range reads: a list of
// sorted pages.
//
// Invariant: every page is non-empty and holds at most pageMax items; keys
// strictly increase along the pages and from each page to the next; n
// counts the items.
type keyIndex struct {
	pages [][]*item
	n     int
}

// page returns the first page whose last key is >= key (len(pages) if
// none), and the position in it of the first item with key >= key.
func (x *keyIndex) find(key string) (p, i int) {
	p = sort.Search(len(x.pages), func(j int) bool {
		pg := x.pages[j]
		return pg[len(pg)-1].e.Key >= key
	})
	if p == len(x.pages) {
		return p, 0
	}
	pg := x.pages[p]
	i = sort.Search(len(pg), func(j int) bool { return pg[j].e.Key >= key })
	return p, i
}

// insert adds it, whose key must not be present.
func (x *keyIndex) insert(it *item) {
	x.n++
	if len(x.pages) == 0 {
		x.pages = append(x.pages, append(make([]*item, 0, pageMax), it))
		return
	}
	p, i := x.find(it.e.Key)
	if p == len(x.pages) {
		// Past the last key: append to the last page.
		p = len(x.pages) - 1
		i = len(x.pages[p])
	} else if x.pages[p][i].e.Key == it.e.Key {
		panic("store: key index insert of a present key " + it.e.Key)
	}
	pg := slices.Insert(x.pages[p], i, it)
	if len(pg) <= pageMax {
		x.pages[p] = pg
		return
	}
	// Split: the upper half moves to a page of its own.
	upper := append(make([]*item, 0, pageMax), pg[len(pg)/2:]...)
	clear(pg[len(pg)/2:])
	x.pages[p] = pg[:len(pg)/2]
	x.pages = slices.Insert(x.pages, p+1, upper)
}

// remove deletes the item with key, which must be present.
func (x *keyIndex) remove(key string) {
	p, i := x.find(key)
	if p == len(x.pages) || x.pages[p][i].e.Key != key {
		panic("store: key index remove of an absent key " + key)
	}
	x.n--
	pg := slices.Delete(x.pages[p], i, i+1)
	switch {
	case len(pg) == 0:
		x.pages = slices.Delete(x.pages, p, p+1)
		return
	case p+1 < len(x.pages) && len(pg)+len(x.pages[p+1]) <= pageMax/2:
		// Two thin neighbours become one, so that deletes leave no long
		// tail of nearly empty pages.
		pg = append(pg, x.pages[p+1]...)
		x.pages = slices.Delete(x.pages, p+1, p+2)
	}
	x.pages[p] = pg
}

// ascend calls fn on each item with start <= key < end, in key order (end
// "" means no upper bound), until fn returns false.
func (x *keyIndex) ascend(start, end string, fn func(*item) bool) {
	p, i := x.find(start)
	for ; p < len(x.pages); p, i = p+1, 0 {
		for _, it := range x.pages[p][i:] {
			if end != "" && it.e.Key >= end {
				return
			}
			if !fn(it) {
				return
			}
		}
	}
}

// check panics if the invariant does not hold (tests).
func (x *keyIndex) check() {
	n := 0
	prev := ""
	for _, pg := range x.pages {
		if len(pg) == 0 || len(pg) > pageMax {
			panic("store: key index page of bad size")
		}
		for _, it := range pg {
			if n > 0 && it.e.Key <= prev {
				panic("store: key index out of order at " + it.e.Key)
			}
			prev = it.e.Key
			n++
		}
	}
	if n != x.n {
		panic("store: key index count is off")
	}
}

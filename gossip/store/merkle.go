package store

// tree is the Merkle tree over the key space: a fixed shape, the same on
// every replica of a group, so that two replicas can compare it node by
// node. A key belongs to the leaf named by the top 4·L bits of its hash
// (keyHash); a leaf's hash is the sum (mod 2^64) of its entries' digests,
// so adding, replacing or removing an entry changes it in O(1); an
// interior node's hash is nodeHash of its 16 children. Every change
// rehashes the L interior nodes above its leaf.
//
// Invariant: hashes[d] has 16^d elements for d = 0..levels; hashes[levels]
// [j] is the sum of it.digest over leaves[j]; every other hashes[d][i] is
// nodeHash(hashes[d+1][16i:16i+16]); leaves[j][k].pos == k.
type tree struct {
	levels int
	hashes [][]uint64
	leaves [][]*item
}

func newTree(levels int) *tree {
	t := &tree{levels: levels, hashes: make([][]uint64, levels+1)}
	for d := range t.hashes {
		t.hashes[d] = make([]uint64, 1<<(4*d))
	}
	t.leaves = make([][]*item, len(t.hashes[levels]))
	for d := levels - 1; d >= 0; d-- {
		for i := range t.hashes[d] {
			t.hashes[d][i] = nodeHash(t.hashes[d+1][fanout*i : fanout*i+fanout])
		}
	}
	return t
}

// width is the number of nodes at level d.
func width(d int) uint32 { return 1 << (4 * d) }

// leafOf names the leaf that holds key.
func (t *tree) leafOf(key string) uint32 { return uint32(keyHash(key) >> (64 - 4*t.levels)) }

func (t *tree) root() uint64 { return t.hashes[0][0] }

// hash returns the hash of node i at level d.
func (t *tree) hash(d int, i uint32) uint64 { return t.hashes[d][i] }

// add puts it, whose leaf and digest are set, in its leaf.
func (t *tree) add(it *item) {
	l := t.leaves[it.leaf]
	it.pos = len(l)
	t.leaves[it.leaf] = append(l, it)
	t.hashes[t.levels][it.leaf] += it.digest
	t.rehash(it.leaf)
}

// remove takes it out of its leaf.
func (t *tree) remove(it *item) {
	l := t.leaves[it.leaf]
	last := l[len(l)-1]
	l[it.pos], last.pos = last, it.pos
	l[len(l)-1] = nil
	t.leaves[it.leaf] = l[:len(l)-1]
	t.hashes[t.levels][it.leaf] -= it.digest
	t.rehash(it.leaf)
}

// redigest records that it's digest changed from old.
func (t *tree) redigest(it *item, old uint64) {
	t.hashes[t.levels][it.leaf] += it.digest - old
	t.rehash(it.leaf)
}

// rehash recomputes the interior nodes above leaf j.
func (t *tree) rehash(j uint32) {
	for d := t.levels - 1; d >= 0; d-- {
		j /= fanout
		t.hashes[d][j] = nodeHash(t.hashes[d+1][fanout*j : fanout*j+fanout])
	}
}

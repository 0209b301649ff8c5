package store

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestHashSpreadsKeys: sequential keys (the common case: user/00001,
// user/00002, ...) spread evenly over the leaves, and a one-bit change of
// the input changes about half the output bits, so that sums of digests
// and hashes of children behave like sums and hashes of random values.
func TestHashSpreadsKeys(t *testing.T) {
	tr := newTree(3)
	const keys = 1 << 16
	load := make([]int, len(tr.leaves))
	for i := range keys {
		load[tr.leafOf(fmt.Sprintf("user/%08d", i))]++
	}
	mean := keys / len(load)
	for j, n := range load {
		if n < mean/4 || n > mean*3 {
			t.Fatalf("leaf %d holds %d keys, the mean is %d", j, n, mean)
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	flips, trials := 0, 0
	for range 200 {
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		h0 := keyHash(string(b))
		for bit := range 8 * len(b) {
			b[bit/8] ^= 1 << (bit % 8)
			flips += bits.OnesCount64(h0 ^ keyHash(string(b)))
			trials++
			b[bit/8] ^= 1 << (bit % 8)
		}
	}
	if avg := float64(flips) / float64(trials); avg < 31 || avg > 33 {
		t.Fatalf("a one-bit input change flips %.2f output bits on average, want about 32", avg)
	}
	// Not affine, unlike a bare CRC, for which h(a)⊕h(b)⊕h(c) = h(a⊕b⊕c)
	// for inputs of one length: that would let differences cancel in
	// structured ways (see hash.go).
	for range 100 {
		var in [4][16]byte
		for i := range 16 {
			in[0][i], in[1][i], in[2][i] = byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))
			in[3][i] = in[0][i] ^ in[1][i] ^ in[2][i]
		}
		var x uint64
		for _, b := range in {
			x ^= keyHash(string(b[:]))
		}
		if x == 0 {
			t.Fatal("the hash is affine: h(a)^h(b)^h(c) == h(a^b^c)")
		}
	}
}

// TestExpiryHeapAgainstModel: the heap pops in time order whatever the
// order of pushes.
func TestExpiryHeapAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	var h expiryHeap
	var model []uint64
	for range 5000 {
		if rng.IntN(3) > 0 || len(model) == 0 {
			at := uint64(rng.IntN(1000))
			h.push(expiry{atMs: at})
			model = append(model, at)
			continue
		}
		lo := 0
		for i, v := range model {
			if v < model[lo] {
				lo = i
			}
		}
		if got := h.pop().atMs; got != model[lo] {
			t.Fatalf("popped %d, the earliest is %d", got, model[lo])
		}
		model = append(model[:lo], model[lo+1:]...)
	}
}

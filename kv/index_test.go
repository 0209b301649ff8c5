package kv

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIndexAgainstSortedSlice drives the chunked index through growth past
// many chunk splits, shrinkage through merges, and regrowth, checking its
// invariant and ordered scans against a plain sorted slice.
func TestIndexAgainstSortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var x index
	var ref []string
	present := map[string]bool{}
	key := func() string { return fmt.Sprintf("k%05d", rng.IntN(6000)) }
	step := func(insertBias int) {
		k := key()
		if present[k] {
			if rng.IntN(100) >= insertBias {
				x.remove([]byte(k))
				delete(present, k)
				i, _ := slices.BinarySearch(ref, k)
				ref = slices.Delete(ref, i, i+1)
			}
			return
		}
		if rng.IntN(100) < insertBias {
			x.insert(&entry{kv: KeyValue{Key: []byte(k)}})
			present[k] = true
			i, _ := slices.BinarySearch(ref, k)
			ref = slices.Insert(ref, i, k)
		}
	}
	check := func(phase string) {
		t.Helper()
		x.check()
		if x.len() != len(ref) {
			t.Fatalf("%s: len %d, want %d", phase, x.len(), len(ref))
		}
		for range 20 {
			from, to := key(), key()
			var got []string
			x.ascend([]byte(from), []byte(to), func(e *entry) bool {
				got = append(got, string(e.kv.Key))
				return true
			})
			lo, _ := slices.BinarySearch(ref, from)
			hi, _ := slices.BinarySearch(ref, to)
			want := []string{}
			if lo < hi {
				want = ref[lo:hi]
			}
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("%s: ascend [%s, %s) = %d keys, want %d", phase, from, to, len(got), len(want))
			}
		}
		var all []string
		x.all(func(e *entry) { all = append(all, string(e.kv.Key)) })
		if !slices.Equal(all, ref) && len(ref) > 0 {
			t.Fatalf("%s: full scan differs", phase)
		}
	}
	for range 20000 {
		step(90)
	}
	check("grow")
	if len(x.chunks) < 8 {
		t.Fatalf("only %d chunks; the test should exercise splits", len(x.chunks))
	}
	for range 40000 {
		step(10)
	}
	check("shrink")
	// Merging keeps deletions from leaving a trail of tiny chunks.
	if bound := 2*len(ref)/(chunkMax/4) + 2; len(x.chunks) > bound {
		t.Fatalf("after shrinking to %d keys the index has %d chunks (> %d): small chunks are not merged", len(ref), len(x.chunks), bound)
	}
	for range 10000 {
		step(60)
	}
	check("regrow")

	// Early stop.
	n := 0
	x.ascend(nil, nil, func(*entry) bool { n++; return n < 3 })
	if n != min(3, len(ref)) {
		t.Fatalf("ascend did not stop: %d calls", n)
	}
}

func TestIndexPanicsOnMisuse(t *testing.T) {
	var x index
	x.insert(&entry{kv: KeyValue{Key: []byte("a")}})
	for name, f := range map[string]func(){
		"duplicate insert": func() { x.insert(&entry{kv: KeyValue{Key: []byte("a")}}) },
		"missing remove":   func() { x.remove([]byte("b")) },
		"missing below":    func() { x.remove([]byte("0")) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	x.check()
}

package sim

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestEventQueueOrder checks the heap against sorting: events come out by
// time, and in scheduling order among equal times.
func TestEventQueueOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	var q eventQueue
	var want []event
	var seq uint64
	pushRandom := func() {
		seq++
		e := event{at: r.Int64N(50), seq: seq, node: int32(seq)}
		q.push(e)
		want = append(want, e)
	}
	for round := 0; round < 200; round++ {
		for range r.IntN(20) {
			pushRandom()
		}
		slices.SortFunc(want, func(a, b event) int {
			if a.at != b.at {
				return int(a.at - b.at)
			}
			return int(a.seq) - int(b.seq)
		})
		for range r.IntN(len(want) + 1) {
			got := q.pop()
			if got.seq != want[0].seq || got.node != want[0].node {
				t.Fatalf("round %d: popped (at %d, seq %d), want (at %d, seq %d)", round, got.at, got.seq, want[0].at, want[0].seq)
			}
			want = want[1:]
		}
		if q.len() != len(want) {
			t.Fatalf("len %d, want %d", q.len(), len(want))
		}
	}
}

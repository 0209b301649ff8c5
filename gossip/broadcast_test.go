package gossip

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func TestUpdateSizeIsEncodedSize(t *testing.T) {
	us := []Update{
		{ID: 1, State: StateAlive},
		{ID: 300, Incarnation: 1 << 40, State: StateSuspect, From: 1 << 20},
		{ID: 7, Incarnation: 3, State: StateAlive, Addr: "10.0.0.7:7946", Meta: make([]byte, 200)},
	}
	for _, u := range us {
		got := len(appendUpdate(nil, &u))
		if updateSize(&u) != got {
			t.Errorf("updateSize(%v) = %d, encoding has %d bytes", u, updateSize(&u), got)
		}
		if got < updateSizeMin {
			t.Errorf("%v encodes in %d bytes, below updateSizeMin", u, got)
		}
	}
	big := Update{ID: ^consensus.NodeID(0), Incarnation: ^uint64(0), State: StateAlive, From: ^consensus.NodeID(0),
		Addr: string(make([]byte, AddrBytesMax)), Meta: make([]byte, 512)}
	if updateSize(&big) > updateSizeMax(512) {
		t.Errorf("largest update has %d bytes, updateSizeMax says %d", updateSize(&big), updateSizeMax(512))
	}
}

// TestQueueAgainstModel drives the queue and a plain model (a list of
// updates with send counts, picked by sorting) with the same random
// operations, and compares what each message carries.
func TestQueueAgainstModel(t *testing.T) {
	type entry struct {
		u     Update
		sent  int
		order int // when it reached its current sent count
	}
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		q := newQueue()
		var model []*entry
		clock := 0
		for step := range 3000 {
			clock++
			switch r := rng.IntN(10); {
			case r < 5:
				u := Update{ID: consensus.NodeID(1 + rng.IntN(40)), Incarnation: uint64(step), State: StateAlive, Meta: make([]byte, rng.IntN(60))}
				q.push(u)
				model = slices.DeleteFunc(model, func(e *entry) bool { return e.u.ID == u.ID })
				model = append(model, &entry{u: u, order: clock})
			case r < 6:
				id := consensus.NodeID(1 + rng.IntN(40))
				q.drop(id)
				model = slices.DeleteFunc(model, func(e *entry) bool { return e.u.ID == id })
			default:
				budget, limit := 20+rng.IntN(300), 1+rng.IntN(6)
				got := q.pick(budget, limit)
				// Model: drop what reached the limit, then take fewest-sent
				// first, oldest first among equals, skipping what does not fit.
				model = slices.DeleteFunc(model, func(e *entry) bool { return e.sent >= limit })
				slices.SortStableFunc(model, func(a, b *entry) int {
					if a.sent != b.sent {
						return a.sent - b.sent
					}
					return a.order - b.order
				})
				var want []Update
				left := budget
				for _, e := range model {
					if left < updateSizeMin {
						break
					}
					if sz := updateSize(&e.u); sz <= left {
						left -= sz
						want = append(want, e.u)
					}
				}
				clock++
				for _, e := range model {
					if slices.ContainsFunc(want, func(u Update) bool { return u.ID == e.u.ID }) {
						e.sent++
						e.order = clock
					}
				}
				model = slices.DeleteFunc(model, func(e *entry) bool { return e.sent >= limit })
				if !equalUpdates(got, want) {
					t.Fatalf("seed %d step %d: queue picked %v, model %v", seed, step, ids(got), ids(want))
				}
				size := 0
				for i := range got {
					size += updateSize(&got[i])
				}
				if size > budget {
					t.Fatalf("seed %d step %d: picked %d bytes over a budget of %d", seed, step, size, budget)
				}
			}
			if q.len() != len(model) {
				t.Fatalf("seed %d step %d: queue holds %d, model %d", seed, step, q.len(), len(model))
			}
			held := 0
			for _, b := range q.buckets {
				held += len(b)
			}
			if held > 2*q.len()+64 {
				t.Fatalf("seed %d step %d: buckets hold %d entries for %d live ones", seed, step, held, q.len())
			}
		}
	}
}

func equalUpdates(a, b []Update) bool {
	return slices.EqualFunc(a, b, func(x, y Update) bool { return x.ID == y.ID && x.Incarnation == y.Incarnation })
}

func ids(us []Update) []consensus.NodeID {
	out := make([]consensus.NodeID, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

package store

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// TestHLCRules checks the send and receive rules of Kulkarni et al. case
// by case.
func TestHLCRules(t *testing.T) {
	ts := func(l uint64, c uint32) Timestamp { return Timestamp{WallMs: l, Logical: c} }
	type step struct {
		recv  bool
		m     Timestamp
		ptMs  uint64
		want  Timestamp
		descr string
	}
	steps := []step{
		{ptMs: 10, want: ts(10, 0), descr: "send: physical time ahead, counter resets"},
		{ptMs: 10, want: ts(10, 1), descr: "send: physical time unchanged, counter grows"},
		{ptMs: 9, want: ts(10, 2), descr: "send: physical time went back, counter grows"},
		{recv: true, m: ts(10, 7), ptMs: 10, want: ts(10, 8), descr: "recv: l = l' = l_m: max counter + 1"},
		{recv: true, m: ts(9, 50), ptMs: 10, want: ts(10, 9), descr: "recv: l = l' only: own counter + 1"},
		{recv: true, m: ts(12, 3), ptMs: 11, want: ts(12, 4), descr: "recv: l = l_m only: its counter + 1"},
		{recv: true, m: ts(12, 3), ptMs: 20, want: ts(20, 0), descr: "recv: physical time ahead of both: counter resets"},
		{recv: true, m: ts(25, 0), ptMs: 20, want: ts(25, 1), descr: "recv: a timestamp ahead within the drift bound"},
		{ptMs: 21, want: ts(25, 2), descr: "send: still behind the received wall time"},
		{ptMs: 30, want: ts(30, 0), descr: "send: physical time caught up"},
	}
	c := NewClock(5)
	for _, s := range steps {
		var got Timestamp
		var err error
		if s.recv {
			got, err = c.Update(s.m, s.ptMs)
		} else {
			got, err = c.Now(s.ptMs)
		}
		if err != nil || got != s.want {
			t.Fatalf("%s: got %v, %v; want %v", s.descr, got, err, s.want)
		}
		if c.Last() != got {
			t.Fatalf("%s: Last is %v after returning %v", s.descr, c.Last(), got)
		}
	}
}

// TestHLCDrift: a timestamp more than the bound ahead is refused with
// ErrClockDrift and leaves the clock as it was; one exactly at the bound
// is accepted.
func TestHLCDrift(t *testing.T) {
	c := NewClock(500)
	if _, err := c.Now(1000); err != nil {
		t.Fatal(err)
	}
	before := c.Last()
	_, err := c.Update(Timestamp{WallMs: 1501}, 1000)
	var de *DriftError
	if !errors.Is(err, ErrClockDrift) || !errors.As(err, &de) || de.LocalMs != 1000 || de.DriftMaxMs != 500 {
		t.Fatalf("1 ms past the bound: %v", err)
	}
	if c.Last() != before {
		t.Fatalf("refused timestamp moved the clock from %v to %v", before, c.Last())
	}
	if got, err := c.Update(Timestamp{WallMs: 1500, Logical: 4}, 1000); err != nil || got != (Timestamp{WallMs: 1500, Logical: 5}) {
		t.Fatalf("at the bound: %v, %v", got, err)
	}
	t.Log(de) // the message an operator sees
}

// TestHLCOverflow: the counter never wraps; the clock refuses, unchanged,
// until physical time moves.
func TestHLCOverflow(t *testing.T) {
	c := NewClock(10)
	c.Witness(Timestamp{WallMs: 7, Logical: math.MaxUint32 - 1})
	if got, err := c.Now(7); err != nil || got.Logical != math.MaxUint32 {
		t.Fatalf("last counter value: %v, %v", got, err)
	}
	if _, err := c.Now(7); !errors.Is(err, ErrLogicalOverflow) {
		t.Fatalf("send past the counter: %v", err)
	}
	if _, err := c.Update(Timestamp{WallMs: 7, Logical: 3}, 6); !errors.Is(err, ErrLogicalOverflow) {
		t.Fatalf("receive past the counter: %v", err)
	}
	if c.Last() != (Timestamp{WallMs: 7, Logical: math.MaxUint32}) {
		t.Fatalf("refused events moved the clock to %v", c.Last())
	}
	if got, err := c.Now(8); err != nil || got != (Timestamp{WallMs: 8}) {
		t.Fatalf("after physical time moved: %v, %v", got, err)
	}
}

// TestHLCMonotonicUnderSkew runs clocks whose physical clocks are skewed
// by up to ±skew, advance irregularly and sometimes step back, exchanging
// messages at random. It checks the HLC properties: every node's
// timestamps strictly increase; a receive is after the message; l is at
// least the node's physical reading and never beyond the largest
// physical reading of any node; and the counter stays small (it only
// counts events within one value of l).
func TestHLCMonotonicUnderSkew(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x41c))
		const n, skewMs, driftMs = 5, 300, 1000
		clocks := make([]*Clock, n)
		last := make([]Timestamp, n)
		offset := make([]int64, n)
		back := make([]int64, n) // a node's current backwards step
		for i := range clocks {
			clocks[i] = NewClock(driftMs)
			offset[i] = int64(rng.IntN(2*skewMs+1)) - skewMs
		}
		type msg struct {
			to int
			ts Timestamp
		}
		var inflight []msg
		trueMs := int64(10_000)
		var maxPt uint64
		pt := func(i int) uint64 {
			p := uint64(trueMs + offset[i] - back[i])
			maxPt = max(maxPt, p)
			return p
		}
		maxLogical := uint32(0)
		for step := range 20_000 {
			if rng.IntN(3) == 0 {
				trueMs += int64(rng.IntN(3))
			}
			i := rng.IntN(n)
			if rng.IntN(500) == 0 {
				back[i] = int64(rng.IntN(200)) // an NTP step backwards
			} else if rng.IntN(50) == 0 {
				back[i] = 0
			}
			p := pt(i)
			var got Timestamp
			var err error
			switch r := rng.IntN(3); {
			case r == 0 && len(inflight) > 0:
				k := rng.IntN(len(inflight))
				m := inflight[k]
				inflight = append(inflight[:k], inflight[k+1:]...)
				i, p = m.to, pt(m.to)
				got, err = clocks[i].Update(m.ts, p)
				if err == nil && !m.ts.Less(got) {
					t.Fatalf("seed %d step %d: receive of %v stamped %v", seed, step, m.ts, got)
				}
			default:
				got, err = clocks[i].Now(p)
				if r == 1 {
					inflight = append(inflight, msg{to: rng.IntN(n), ts: got})
				}
			}
			if err != nil {
				t.Fatalf("seed %d step %d: node %d: %v", seed, step, i, err)
			}
			if !last[i].Less(got) {
				t.Fatalf("seed %d step %d: node %d went from %v to %v", seed, step, i, last[i], got)
			}
			if got.WallMs < p || got.WallMs > maxPt {
				t.Fatalf("seed %d step %d: node %d stamped %v with its physical clock at %d, the largest reading %d", seed, step, i, got, p, maxPt)
			}
			last[i] = got
			maxLogical = max(maxLogical, got.Logical)
		}
		if maxLogical > 1000 {
			t.Errorf("seed %d: the logical counter reached %d", seed, maxLogical)
		}
	}
}

// TestStoreRefusesDriftingWrites: a write stamped beyond the drift bound
// is refused (ErrClockDrift) and taken later, once this clock catches up;
// one inside the bound is taken at once and pushes the clock forward, so
// the next local write still wins over it.
func TestStoreRefusesDriftingWrites(t *testing.T) {
	net := newTestNet(t, 1, 2, func(c *Config) { c.ClockDriftMaxMs = 500 })
	net.allowDrift = true
	net.skewMs[0] = 10_000 // replica 1's physical clock runs 10 s ahead
	fast := net.put(1, "k", "from the future")
	a, b := net.store(1), net.store(2)
	err := b.Step(&Message{Type: MsgPush, From: 1, To: 2, Entries: []Entry{fast}}, net.now(2))
	if !errors.Is(err, ErrClockDrift) {
		t.Fatalf("write 10 s ahead: %v", err)
	}
	if _, ok := b.Get("k"); ok || b.Clock().WallMs > net.now(2) {
		t.Fatalf("refused write applied (%v) or moved the clock to %v", ok, b.Clock())
	}
	// Anti-entropy does not sneak it in either.
	a.StartAntiEntropy(2)
	net.collect(a)
	net.deliver()
	if _, ok := b.Get("k"); ok {
		t.Fatal("anti-entropy applied a write beyond the drift bound")
	}
	// Once replica 2's clock is within the bound, the next round takes it.
	net.advance(9_600)
	a.StartAntiEntropy(2)
	net.collect(a)
	net.deliver()
	if kv, ok := b.Get("k"); !ok || string(kv.Value) != "from the future" {
		t.Fatalf("write not taken once within the bound: %v %v", kv, ok)
	}
	// A local write now wins, though replica 2's physical clock is behind
	// the write it took.
	mine := net.put(2, "k", "local")
	if !fast.TS.Less(mine.TS) {
		t.Fatalf("local write at %v does not follow the merged one at %v", mine.TS, fast.TS)
	}
}

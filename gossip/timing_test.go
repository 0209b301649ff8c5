package gossip

import (
	"math"
	"testing"
)

// The integer versions of the formulas against the formulas written
// plainly in floating point.

func TestRetransmitLimitMatchesFormula(t *testing.T) {
	for n := 1; n <= 200000; n = n*3/2 + 1 {
		for _, mult := range []int{1, 4, 7} {
			want := mult * int(math.Ceil(math.Log10(float64(n+1))))
			if got := retransmitLimit(mult, n); got != want {
				t.Fatalf("retransmitLimit(%d, %d) = %d, want λ·⌈log10(n+1)⌉ = %d", mult, n, got, want)
			}
		}
	}
	// The digit boundaries, where float rounding could differ.
	for _, n := range []int{9, 10, 99, 100, 999, 1000, 9999, 10000} {
		want := 4 * int(math.Ceil(math.Log10(float64(n+1))))
		if got := retransmitLimit(4, n); got != want {
			t.Fatalf("retransmitLimit(4, %d) = %d, want %d", n, got, want)
		}
	}
}

func TestPushPullScaleMatchesFormula(t *testing.T) {
	for n := 1; n <= 100000; n++ {
		want := 1
		if n > 32 {
			want = 1 + int(math.Ceil(math.Log2(float64(n)/32)))
		}
		if got := pushPullScale(n); got != want {
			t.Fatalf("pushPullScale(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestSuspicionMinTicks(t *testing.T) {
	cases := []struct{ alpha, n, interval, want int }{
		{5, 1, 10, 50},  // log10 below 1 counts as 1
		{5, 9, 10, 50},  // still below 1
		{5, 10, 10, 50}, // log10(10) = 1
		{5, 100, 10, 100},
		{5, 1000, 10, 150},
		{2, 16, 10, 25}, // 2·1.204·10 = 24.08, rounded up
	}
	for _, c := range cases {
		if got := suspicionMinTicks(c.alpha, c.n, c.interval); got != c.want {
			t.Errorf("suspicionMinTicks(α=%d, n=%d, T=%d) = %d, want %d", c.alpha, c.n, c.interval, got, c.want)
		}
	}
}

func TestSuspicionTimeoutShrinksWithConfirmations(t *testing.T) {
	for _, k := range []int{1, 2, 3, 5, 16} {
		lo, hi := 50, 300
		prev := math.MaxInt
		for c := 0; c <= k+2; c++ {
			got := suspicionTimeoutTicks(lo, hi, c, k)
			naive := hi
			if c >= k {
				naive = lo
			} else if c > 0 {
				naive = int(math.Ceil(math.Max(float64(lo), float64(hi)-float64(hi-lo)*math.Log(float64(c+1))/math.Log(float64(k+1)))))
			}
			if got != naive {
				t.Fatalf("k=%d c=%d: timeout %d, formula gives %d", k, c, got, naive)
			}
			if got > prev || got < lo || got > hi {
				t.Fatalf("k=%d c=%d: timeout %d not in [%d, %d] or not shrinking (was %d)", k, c, got, lo, hi, prev)
			}
			prev = got
		}
		if suspicionTimeoutTicks(lo, hi, 0, k) != hi || suspicionTimeoutTicks(lo, hi, k, k) != lo {
			t.Fatalf("k=%d: timeout must start at max and reach min after k confirmations", k)
		}
	}
	// Nobody else can confirm: the minimum at once.
	if got := suspicionTimeoutTicks(50, 300, 0, 0); got != 50 {
		t.Fatalf("k=0: timeout %d, want the minimum 50", got)
	}
}

func TestOverridesMatchesRules(t *testing.T) {
	// The rules as the package doc states them, one by one.
	naive := func(curInc uint64, cur State, inc uint64, st State) bool {
		switch st {
		case StateAlive:
			return inc > curInc
		case StateSuspect:
			return inc > curInc || (inc == curInc && cur == StateAlive)
		case StateDead, StateLeft:
			return inc > curInc || (inc == curInc && (cur == StateAlive || cur == StateSuspect))
		}
		panic("unknown state")
	}
	states := []State{StateAlive, StateSuspect, StateDead, StateLeft}
	for curInc := uint64(0); curInc < 3; curInc++ {
		for _, cur := range states {
			for inc := uint64(0); inc < 3; inc++ {
				for _, st := range states {
					if got, want := Overrides(curInc, cur, inc, st), naive(curInc, cur, inc, st); got != want {
						t.Errorf("Overrides(%d %v, %d %v) = %v, rules say %v", curInc, cur, inc, st, got, want)
					}
				}
			}
		}
	}
}

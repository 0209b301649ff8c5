package gossip

import "math"

// The formulas of SWIM and Lifeguard, as pure functions of the group size
// and the configuration, in ticks.

// probeMultiplier is the factor Lifeguard applies to the probe interval
// and timeout: the local health multiplier plus one.
func probeMultiplier(health int) int { return health + 1 }

// suspicionMinTicks is the shortest suspicion timeout,
// α·max(1, log10 n)·interval, rounded up: n is the group size (live
// members, this node included).
func suspicionMinTicks(alpha, n, intervalTicks int) int {
	f := math.Max(1, math.Log10(float64(max(n, 1))))
	return int(math.Ceil(float64(alpha) * f * float64(intervalTicks)))
}

// suspicionTimeoutTicks is Lifeguard's dynamic suspicion timeout after c
// independent confirmations, when k are expected:
//
//	max(min, max − (max − min)·log(c+1)/log(k+1))
//
// rounded up. It is maxTicks with no confirmation and minTicks from k
// confirmations on; with k < 1 (nobody else can confirm) it is minTicks.
func suspicionTimeoutTicks(minTicks, maxTicks, c, k int) int {
	if k < 1 || c >= k || maxTicks <= minTicks {
		return minTicks
	}
	frac := math.Log(float64(c+1)) / math.Log(float64(k+1))
	t := float64(maxTicks) - float64(maxTicks-minTicks)*frac
	return max(minTicks, int(math.Ceil(t)))
}

// retransmitLimit is how many times an update is piggybacked in a group
// of n: λ·⌈log10(n+1)⌉, which is λ times the number of decimal digits of
// n.
func retransmitLimit(mult, n int) int {
	digits := 1
	for v := max(n, 1); v >= 10; v /= 10 {
		digits++
	}
	return mult * digits
}

// pushPullScale is the factor applied to the push-pull interval in a group
// of n: 1 up to 32 members, then 1+⌈log2(n/32)⌉, so that the full-state
// traffic a member receives stays about constant as the group grows.
func pushPullScale(n int) int {
	const base = 32
	if n <= base {
		return 1
	}
	e := 0
	for base<<e < n {
		e++
	}
	return 1 + e
}

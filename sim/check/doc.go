// Package check holds the simulator's checkers, kept apart from the code
// they check: linearizability of a key-value history (with porcupine),
// election safety, state-machine safety (agreement on every applied index,
// or per conflict key for a leaderless protocol: KeyOrder), leader
// completeness (no committed entry lost), liveness, and for the gossip
// simulation membership accuracy (Membership) and eventual consistency of
// the store (Eventual).
//
// Checkers know nothing about the simulator's internals. They are fed
// observations (statuses, applied entries, completed client operations) and
// return a *Violation describing the first rule broken.
package check

import "fmt"

// Violation describes one broken rule.
type Violation struct {
	// Checker names the rule: "election-safety", "agreement",
	// "leader-completeness", "linearizability", "liveness", "apply-order".
	Checker string
	// Tick is the simulated time, in ticks, at which the rule was seen broken.
	Tick float64
	// Detail says what was seen, for a human.
	Detail string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("%s violated at tick %.3f: %s", v.Checker, v.Tick, v.Detail)
}

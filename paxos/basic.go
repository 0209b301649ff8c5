package paxos

import (
	"fmt"
	"strconv"

	"github.com/synod-io/synod/consensus"
)

// Ballot numbers a proposal: a round and the node that owns it. Ballots
// are totally ordered, by round and then by node, and a node only ever
// proposes with ballots of its own rounds (see NextRound), so no two
// proposers ever share a ballot — nor even a round. The zero Ballot is
// below every real one and means "none".
type Ballot struct {
	Round uint64
	Node  consensus.NodeID
}

// Less reports whether b orders before o.
func (b Ballot) Less(o Ballot) bool {
	if b.Round != o.Round {
		return b.Round < o.Round
	}
	return b.Node < o.Node
}

// IsZero reports whether b is the zero ballot (no ballot).
func (b Ballot) IsZero() bool { return b == Ballot{} }

// String formats the ballot as "round.node".
func (b Ballot) String() string {
	return strconv.FormatUint(b.Round, 10) + "." + strconv.FormatUint(uint64(b.Node), 10)
}

func maxBallot(a, b Ballot) Ballot {
	if a.Less(b) {
		return b
	}
	return a
}

// NextRound returns the smallest round above after that belongs to the
// node at position pos of n voters: rounds are partitioned among the voters
// by their residue modulo n, which makes ballot rounds (and so the terms the
// replica reports) unique per proposer. Round 0 is never returned.
func NextRound(after uint64, pos, n int) uint64 {
	if n <= 0 || pos < 0 || pos >= n {
		panic(fmt.Sprintf("paxos: NextRound(pos=%d, n=%d)", pos, n))
	}
	nn := uint64(n)
	r := after + 1
	// Move r up to the next value ≡ pos+1 (mod n); position pos owns the
	// rounds pos+1, pos+1+n, pos+1+2n, …
	want := uint64(pos+1) % nn
	r += (want + nn - r%nn) % nn
	return r
}

// ---- Basic Paxos: one decree ----
//
// The types below are the single-decree protocol as separate proposer,
// acceptor and learner state machines. They are pure and do no I/O: every
// method that changes durable state returns the state to persist, and the
// caller must make it durable before it sends the reply the method returns
// (a Replica does this by putting both in the same Ready). Multi-Paxos
// (Replica) runs one acceptor per slot under a single promise, and picks
// phase-2 values with the same SelectValue.

// Promise is an acceptor's answer to a prepare: it will accept nothing
// below Ballot, and it last accepted Value at Accepted (zero: nothing).
type Promise struct {
	From     consensus.NodeID
	Ballot   Ballot
	Accepted Ballot
	Value    []byte
}

// AcceptorState is a single-decree acceptor's durable state: the highest
// ballot promised, and the last value accepted with its ballot.
//
// Invariant: Accepted <= Promised.
type AcceptorState struct {
	Promised Ballot
	Accepted Ballot
	Value    []byte
}

// Acceptor is a single-decree acceptor. Each handler returns whether the
// state changed; if it did, State() must be durable before the reply is
// sent, so that a crash never loses a promise or an acceptance the acceptor
// told anyone about.
type Acceptor struct {
	ID    consensus.NodeID
	state AcceptorState
}

// NewAcceptor rebuilds an acceptor from its last durable state.
func NewAcceptor(id consensus.NodeID, durable AcceptorState) *Acceptor {
	return &Acceptor{ID: id, state: durable}
}

// State returns the acceptor's durable state.
func (a *Acceptor) State() AcceptorState { return a.state }

// Prepare handles a phase-1 request. It promises b if b is not below its
// promise (a retransmitted prepare of the promised ballot is answered
// again), returning the promise; otherwise it refuses and returns its
// promised ballot so the proposer can pick a higher one.
func (a *Acceptor) Prepare(b Ballot) (p Promise, ok bool, persist bool) {
	if b.Less(a.state.Promised) {
		return Promise{From: a.ID, Ballot: a.state.Promised}, false, false
	}
	persist = a.state.Promised != b
	a.state.Promised = b
	return Promise{From: a.ID, Ballot: b, Accepted: a.state.Accepted, Value: a.state.Value}, true, persist
}

// Accept handles a phase-2 request: it accepts v at b unless it promised a
// higher ballot. Accepting raises the promise to b. On refusal it returns
// its promised ballot.
func (a *Acceptor) Accept(b Ballot, v []byte) (promised Ballot, ok bool, persist bool) {
	if b.Less(a.state.Promised) {
		return a.state.Promised, false, false
	}
	a.state.Promised = b
	a.state.Accepted = b
	a.state.Value = v
	return b, true, true
}

// SelectValue is the phase-2 value rule, given the promises of a quorum
// for one ballot: the value of the highest-ballot accepted proposal among
// them, or own if none of them accepted anything. free reports whether the
// proposer may use its own value.
//
// Why the highest: if some value v was chosen at ballot c below the
// proposer's, a majority accepted v at c, and every proposal above c (by
// induction) proposed v; the quorum here intersects that majority, so the
// highest accepted ballot among the promises is at least c and carries v.
// A lower accepted ballot may carry anything.
func SelectValue(promises []Promise, own []byte) (v []byte, free bool) {
	return selectValue(promises, own, false)
}

// selectValue with anyAccepted makes the known-wrong choice of the
// article's Paxos: an accepted value whatever its ballot.
func selectValue(promises []Promise, own []byte, anyAccepted bool) ([]byte, bool) {
	acc := make([]acceptedValue[[]byte], 0, len(promises))
	for _, p := range promises {
		acc = append(acc, acceptedValue[[]byte]{ballot: p.Accepted, value: p.Value})
	}
	v, ok := pickAccepted(acc, anyAccepted)
	if !ok {
		return own, true
	}
	return v, false
}

// acceptedValue is one acceptor's report for one decree (or slot): the
// value it accepted and the ballot it accepted it at (zero: none).
type acceptedValue[T any] struct {
	ballot Ballot
	value  T
}

// pickAccepted returns the value accepted at the highest ballot, and false
// if nothing was accepted. With anyAccepted (a known-wrong variant) it
// returns the one accepted at the lowest ballot instead: "any accepted
// value", chosen so as to be wrong whenever it can be.
func pickAccepted[T any](acc []acceptedValue[T], anyAccepted bool) (T, bool) {
	var best Ballot
	var val T
	found := false
	for _, a := range acc {
		if a.ballot.IsZero() {
			continue
		}
		better := best.Less(a.ballot)
		if anyAccepted {
			better = a.ballot.Less(best)
		}
		if !found || better {
			best, val, found = a.ballot, a.value, true
		}
	}
	return val, found
}

// Proposer is a single-decree proposer. Its ballots are unique to it
// (NextRound) and never reused after a restart: Prepare returns the round
// it is about to use, which the caller must make durable before sending
// the prepare, and NewProposer starts above the durable round.
type Proposer struct {
	ID    consensus.NodeID
	pos   int
	n     int
	tried uint64 // highest round ever used; durable
	// seen is the highest round seen in any refusal.
	seen     uint64
	ballot   Ballot
	promises []Promise
	value    []byte
	bug      bugKind
}

// NewProposer rebuilds a proposer at position pos of the sorted voters
// (n of them) from the highest round it ever tried (durable).
func NewProposer(id consensus.NodeID, pos, n int, tried uint64) *Proposer {
	return &Proposer{ID: id, pos: pos, n: n, tried: tried}
}

// Prepare starts phase 1 with a fresh ballot above every round tried or
// seen, to propose own. tried is the round to persist before sending
// Prepare(ballot) to the acceptors.
func (p *Proposer) Prepare(own []byte) (b Ballot, tried uint64) {
	p.tried = NextRound(max(p.tried, p.seen), p.pos, p.n)
	p.ballot = Ballot{Round: p.tried, Node: p.ID}
	p.promises = p.promises[:0]
	p.value = own
	return p.ballot, p.tried
}

// Ballot is the proposer's current ballot.
func (p *Proposer) Ballot() Ballot { return p.ballot }

// Refused notes an acceptor's refusal carrying its promised ballot.
func (p *Proposer) Refused(promised Ballot) { p.seen = max(p.seen, promised.Round) }

// Promised counts a promise for the current ballot. Once a majority of the
// n voters promised, it returns the value to propose in phase 2 and true.
func (p *Proposer) Promised(pr Promise) ([]byte, bool) {
	if pr.Ballot != p.ballot {
		return nil, false
	}
	for _, q := range p.promises {
		if q.From == pr.From {
			return nil, false // a duplicate
		}
	}
	p.promises = append(p.promises, pr)
	if len(p.promises) != consensus.Majority(p.n) {
		return nil, false
	}
	v, _ := selectValue(p.promises, p.value, p.bug == bugPhase2AnyAccepted)
	return v, true
}

// Learner learns the chosen value from acceptors' acceptances: a value is
// chosen once a majority accepted it at the same ballot.
type Learner struct {
	n      int
	acks   map[Ballot]map[consensus.NodeID]bool
	chosen []byte
	done   bool
}

// NewLearner returns a learner for n acceptors.
func NewLearner(n int) *Learner {
	return &Learner{n: n, acks: map[Ballot]map[consensus.NodeID]bool{}}
}

// Accepted notes that from accepted v at b, and returns the chosen value
// once there is one.
func (l *Learner) Accepted(from consensus.NodeID, b Ballot, v []byte) ([]byte, bool) {
	if l.done {
		return l.chosen, true
	}
	m := l.acks[b]
	if m == nil {
		m = map[consensus.NodeID]bool{}
		l.acks[b] = m
	}
	m[from] = true
	if len(m) >= consensus.Majority(l.n) {
		l.chosen, l.done = v, true
	}
	return l.chosen, l.done
}

package raft

import (
	"fmt"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// linkNet is a small synchronous network with per-direction links, for
// asymmetric-partition tests that the group-based cluster cannot express.
type linkNet struct {
	t       *testing.T
	rs      []*Raft
	blocked map[[2]consensus.NodeID]bool
}

func newLinkNet(t *testing.T, n int, edit func(*Config)) *linkNet {
	return &linkNet{t: t, rs: newTestRafts(t, n, edit), blocked: map[[2]consensus.NodeID]bool{}}
}

func (nw *linkNet) block(from, to consensus.NodeID) {
	nw.blocked[[2]consensus.NodeID{from, to}] = true
}

func (nw *linkNet) settle() {
	for range 1000 {
		var q []consensus.Message
		for _, r := range nw.rs {
			rd := r.Ready()
			if rd.Empty() {
				continue
			}
			r.Advance(rd)
			q = append(q, rd.Messages...)
		}
		if len(q) == 0 {
			return
		}
		for _, m := range q {
			if nw.blocked[[2]consensus.NodeID{m.From, m.To}] {
				continue
			}
			if err := nw.rs[m.To-1].Step(m); err != nil {
				nw.t.Fatal(err)
			}
		}
	}
	nw.t.Fatal("network did not settle")
}

func (nw *linkNet) tick(n int) {
	for range n {
		for _, r := range nw.rs {
			r.Tick()
		}
		nw.settle()
	}
}

func (nw *linkNet) String() string {
	s := ""
	for _, r := range nw.rs {
		st := r.Status()
		s += fmt.Sprintf("[%d %v term=%d leader=%d commit=%d] ", st.ID, st.Role, st.Term, st.Leader, st.Commit)
	}
	return s
}

// TestNoStickinessWithoutCheckQuorum: without check-quorum a leader never
// steps down, so leader stickiness would let a leader that hears from
// no one keep a follower in lease forever. Here leader 1 can still send to
// 2 but hears from nobody, and 3 cannot hear 1: the connected majority
// {2, 3} must elect a new leader and commit.
func TestNoStickinessWithoutCheckQuorum(t *testing.T) {
	for _, preVote := range []bool{true, false} {
		t.Run(fmt.Sprintf("prevote=%v", preVote), func(t *testing.T) {
			nw := newLinkNet(t, 3, func(c *Config) { c.CheckQuorum = false; c.PreVote = preVote })
			nw.rs[0].hup()
			nw.settle()
			if nw.rs[0].role != consensus.RoleLeader {
				t.Fatalf("no leader: %v", nw)
			}
			nw.block(2, 1)
			nw.block(3, 1)
			nw.block(1, 3)
			nw.tick(100)
			var leader *Raft
			for _, r := range nw.rs[1:] {
				if r.role == consensus.RoleLeader {
					leader = r
				}
			}
			if leader == nil {
				t.Fatalf("the connected majority {2, 3} elected no leader: %v", nw)
			}
			if err := leader.Propose(consensus.Command{Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			last := leader.log.lastIndex()
			nw.tick(3)
			if leader.log.committed < last {
				t.Fatalf("new leader %d did not commit %d: %v", leader.id, last, nw)
			}
		})
	}
}

// TestStickinessWithCheckQuorum: the same cut with check-quorum on: leader
// 1 steps down for want of a quorum, and {2, 3} elect and commit.
func TestStickinessWithCheckQuorum(t *testing.T) {
	nw := newLinkNet(t, 3, nil)
	nw.rs[0].hup()
	nw.settle()
	nw.block(2, 1)
	nw.block(3, 1)
	nw.block(1, 3)
	nw.tick(100)
	if nw.rs[0].role == consensus.RoleLeader {
		t.Fatalf("leader 1 hears from no one but still leads: %v", nw)
	}
	if nw.rs[1].role != consensus.RoleLeader && nw.rs[2].role != consensus.RoleLeader {
		t.Fatalf("no leader among {2, 3}: %v", nw)
	}
}

// TestUnknownMessageTypeKeepsTerm: a message of an unknown type is refused
// with an error and does not move the replica to its (higher) term.
func TestUnknownMessageTypeKeepsTerm(t *testing.T) {
	rs := newTestRafts(t, 3, nil)
	for _, typ := range []MsgType{0, msgTypeLast + 1, 255} {
		err := rs[0].Step(consensus.Message{From: 2, To: 1, Payload: &Msg{Type: typ, Term: 7}})
		if err == nil {
			t.Errorf("Step accepted message type %v", typ)
		}
		if rs[0].term != 0 {
			t.Fatalf("message type %v moved the term to %d", typ, rs[0].term)
		}
	}
}

package epaxos

import (
	"fmt"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// The scenarios below each stage one situation the EPaxos papers and
// their critics single out, on the in-test cluster (cluster_test.go).

// TestScenarioSevenReplicasFourRepliesAreNotFast: with N = 7 the fast
// quorum is 5 (F + ⌊(F+1)/2⌋ with F = 3), so the leader plus three
// matching PreAccept replies (a majority of 4) must not commit on the fast
// path. The leader and two of the repliers then crash; the four survivors
// recover the instance, and whatever they decide is decided everywhere,
// the crashed replicas included once they return.
func TestScenarioSevenReplicasFourRepliesAreNotFast(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			c := recoveryCluster(t, 7, seed)
			// A conflicting command the future repliers do not know, so a
			// wrong fast commit and a recovery would pick different deps.
			c.propose(c.nodes[5], put("k", "other"))
			c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To == 7 })
			c.queue = slices.DeleteFunc(c.queue, func(m consensus.Message) bool { return m.Payload.(*Msg).ID.Replica == 6 })

			l := c.nodes[0]
			c.propose(l, put("k", "x"))
			id := InstanceID{1, 1}
			c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To >= 2 && m.To <= 4 })
			c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAcceptOK && p.ID == id })
			in, _ := l.r.Instance(id)
			if in.Status == StatusCommitted {
				t.Fatalf("leader committed with 4 of 7 (fast quorum %d): %v", FastQuorum(7), in)
			}
			for _, nd := range c.nodes[:3] {
				c.crash(nd)
			}
			c.settle()
			c.checkAgree(false)
			for _, nd := range c.nodes[:3] {
				c.restart(nd)
			}
			c.settle()
			c.checkAgree(false)
			got, _ := c.nodes[6].r.Instance(id)
			if got.Status != StatusCommitted {
				t.Fatalf("instance %v not committed after recovery: %v", id, got)
			}
		})
	}
}

// TestScenarioPermutedPreAcceptReplies: the PreAccept replies reach the
// leader in a different order under each seed, some of them changed by
// conflicts only their sender knew. Every replica commits the instance
// with the same attributes as the leader, and when every reply is
// unchanged the committed attributes are the same under every order.
func TestScenarioPermutedPreAcceptReplies(t *testing.T) {
	for _, conflicts := range []bool{false, true} {
		var first *Instance
		for seed := range uint64(40) {
			c := newCluster(t, 5, seed)
			if conflicts {
				// Replicas 4 and 5 each know a conflicting command of
				// their own that nobody else has seen.
				c.propose(c.nodes[3], put("k", "four"))
				c.propose(c.nodes[4], put("k", "five"))
				c.queue = nil
			}
			l := c.nodes[0]
			c.propose(l, put("k", "x"))
			id := InstanceID{1, 1}
			c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && p.ID == id })
			var replies []consensus.Message
			c.queue = slices.DeleteFunc(c.queue, func(m consensus.Message) bool {
				if p := m.Payload.(*Msg); p.Type == MsgPreAcceptOK && p.ID == id {
					replies = append(replies, m)
					return true
				}
				return false
			})
			c.rng.Shuffle(len(replies), func(i, j int) { replies[i], replies[j] = replies[j], replies[i] })
			for _, m := range replies {
				if err := l.r.Step(m); err != nil {
					t.Fatal(err)
				}
				c.process(l)
			}
			c.settle()
			c.checkAgree(true)
			want, _ := l.r.Instance(id)
			for _, nd := range c.nodes {
				got, _ := nd.r.Instance(id)
				if got.Status != StatusCommitted || got.Seq != want.Seq || !slices.Equal(got.Deps, want.Deps) {
					t.Fatalf("conflicts=%t seed %d: node %d committed %v, the leader %v", conflicts, seed, nd.id, got, want)
				}
			}
			if conflicts {
				continue
			}
			if first == nil {
				first = &want
			} else if want.Seq != first.Seq || !slices.Equal(want.Deps, first.Deps) {
				t.Fatalf("seed %d: unchanged replies committed %v, another order %v", seed, want, *first)
			}
		}
	}
}

// TestScenarioEqualSeqInOneComponent: two replicas propose on one key at
// once, each PreAccept reaching the other after its own, so each command
// depends on the other with the same seq: one strongly connected
// component with a tie on seq. Every replica executes the two in the same
// order, broken by replica ID.
func TestScenarioEqualSeqInOneComponent(t *testing.T) {
	ties := 0
	for seed := range uint64(20) {
		c := newCluster(t, 3, seed)
		c.propose(c.nodes[0], put("k", "a"))
		c.propose(c.nodes[1], put("k", "b"))
		// Each PreAccept reaches the other proposer before its replies
		// come back.
		c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To <= 2 })
		c.settle()
		c.checkAgree(true)
		a, _ := c.nodes[2].r.Instance(InstanceID{1, 1})
		b, _ := c.nodes[2].r.Instance(InstanceID{2, 1})
		if !covers(a.Deps, b.ID) || !covers(b.Deps, a.ID) {
			continue // the component did not form under this order
		}
		if a.Seq != b.Seq {
			continue
		}
		ties++
		for _, nd := range c.nodes {
			var order []string
			for _, e := range nd.executed {
				order = append(order, string(e.Command.Data))
			}
			if !slices.Equal(order, []string{"a", "b"}) {
				t.Fatalf("seed %d: node %d executed %v; want a (replica 1) before b (replica 2), seq %d each", seed, nd.id, order, a.Seq)
			}
		}
	}
	if ties == 0 {
		t.Fatal("no seed produced two mutually dependent commands with equal seq")
	}
}

// TestScenarioDependencyLeaderCrashes: replica 1's command reaches one
// other replica before 1 crashes; replicas 2 and 3 then commit commands
// that depend on it. They cannot execute until the crashed leader's
// instance is recovered; after recovery they execute everywhere.
func TestScenarioDependencyLeaderCrashes(t *testing.T) {
	for _, n := range []int{3, 5, 7} {
		t.Run(fmt.Sprint("N=", n), func(t *testing.T) {
			c := recoveryCluster(t, n, uint64(n))
			l := c.nodes[0]
			c.propose(l, put("k", "lost-leader"))
			c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To == 2 })
			c.crash(l)
			c.propose(c.nodes[1], put("k", "dependent-1"))
			c.propose(c.nodes[2], put("k", "dependent-2"))
			c.settle()
			c.checkAgree(false)
			for _, nd := range c.nodes[1:] {
				var got []string
				for _, e := range nd.executed {
					got = append(got, string(e.Command.Data))
				}
				if !slices.Contains(got, "dependent-1") || !slices.Contains(got, "dependent-2") {
					t.Fatalf("node %d executed %v; the dependent commands are missing", nd.id, got)
				}
			}
			in, _ := c.nodes[1].r.Instance(InstanceID{1, 1})
			if in.Status != StatusCommitted {
				t.Fatalf("the crashed leader's instance was not recovered: %v", in)
			}
		})
	}
}

// TestScenarioInterleavedRecoveries (after Sutra, "On the correctness of
// Egalitarian Paxos", 2019): two replicas recover one instance, their
// phases interleaved so that one acceptor promises the second recoverer's
// ballot after accepting the first one's attributes, while conflicting
// commands make the two recoverers compute different deps. Under many
// delivery orders, every replica commits the instance with the same deps.
func TestScenarioInterleavedRecoveries(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			c := recoveryCluster(t, 5, seed)
			id := InstanceID{1, 1}
			c.propose(c.nodes[0], put("k", "x"))
			c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && (m.To == 2 || m.To == 3) })
			c.crash(c.nodes[0])
			// Conflicts known to one side only.
			c.propose(c.nodes[3], put("k", "four"))
			c.deliverWhere(func(m consensus.Message, p *Msg) bool {
				return p.Type == MsgPreAccept && p.ID.Replica == 4 && m.To == 5
			})
			c.propose(c.nodes[1], put("k", "two"))
			c.deliverWhere(func(m consensus.Message, p *Msg) bool {
				return p.Type == MsgPreAccept && p.ID.Replica == 2 && m.To == 3
			})
			// Recoverer 2 goes first; its messages interleave with those
			// of recoverer 5, started a little later.
			c.nodes[1].r.startRecovery(id)
			c.process(c.nodes[1])
			for range 1 + c.rng.IntN(6) {
				if len(c.queue) > 0 {
					c.deliverOne(false)
				}
			}
			c.nodes[4].r.startRecovery(id)
			c.process(c.nodes[4])
			c.loss = 10
			for range 300 {
				if len(c.queue) == 0 {
					break
				}
				c.deliverOne(true)
			}
			c.restart(c.nodes[0])
			c.settle()
			c.checkAgree(false)
			var ref Instance
			for _, nd := range c.nodes {
				got, _ := nd.r.Instance(id)
				if got.Status != StatusCommitted {
					t.Fatalf("node %d: %v not committed", nd.id, got)
				}
				if nd.id == 1 {
					ref = got
				} else if got.NoOp != ref.NoOp || got.Seq != ref.Seq || !slices.Equal(got.Deps, ref.Deps) {
					t.Fatalf("node %d committed %v, node 1 %v", nd.id, got, ref)
				}
			}
		})
	}
}

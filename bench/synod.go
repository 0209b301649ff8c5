package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/raft"
)

// RunSynod runs the loop over synod's raft package: three *raft.Raft driven
// from one goroutine, each Ready handled in the contract's order (persist,
// send, apply) before Advance.
func RunSynod(o Options, h Hooks) (Result, error) {
	c, err := newSynodCluster(o)
	if err != nil {
		return Result{}, fmt.Errorf("synod: %w", err)
	}
	res, err := runMemLoop("synod", c, o, h)
	if err != nil {
		return Result{}, err
	}
	for _, n := range c.nodes {
		if n.persisted < o.N {
			return Result{}, fmt.Errorf("synod: node %d applied %d commands but persisted only %d entries",
				n.id, n.check.count, n.persisted)
		}
	}
	if st := c.nodes[c.lead].r.Status(); st.Role != consensus.RoleLeader || st.Term != c.term {
		return Result{}, fmt.Errorf("synod: node %d is %v, term %d -> %d: %w",
			c.nodes[c.lead].id, st.Role, c.term, st.Term, ErrLeaderLost)
	}
	return res, nil
}

type synodNode struct {
	id    consensus.NodeID
	r     *raft.Raft
	check *checker
	// persisted counts the log entries "made durable": in memory there is
	// nothing to write, but the records are taken (and checked) before any
	// message of the same Ready is sent, as the contract requires.
	persisted int
}

type synodCluster struct {
	nodes []*synodNode // nodes[i] has ID i+1
	lead  int
	term  uint64
	queue []consensus.Message
	spare []consensus.Message
}

func newSynodCluster(o Options) (*synodCluster, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	peers := []consensus.NodeID{1, 2, 3}
	c := &synodCluster{}
	for i, id := range peers {
		cfg := raft.DefaultConfig(id, peers, rand.New(rand.NewPCG(1, uint64(id))))
		// Same flow control as the peers (these are also the defaults).
		cfg.MsgBytesMax = maxSizePerMsg
		cfg.InflightMsgsMax = maxInflightMsgs
		cfg.PreVote, cfg.CheckQuorum = true, true
		// The window must fit in the leader's pending-proposal bound.
		cfg.ProposalsPendingMax = max(cfg.ProposalsPendingMax, o.Window)
		r, err := raft.New(cfg, nil)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &synodNode{id: id, r: r, check: newChecker(i+1, o)})
	}
	return c, nil
}

// elect ticks until some node leads and its first entry is committed and
// applied everywhere. synod has no Campaign call: the election timeout
// (jittered, from the seeded Rand) starts it.
func (c *synodCluster) elect() error {
	for i := 0; i < 10_000; i++ {
		c.tick()
		if err := c.round(); err != nil {
			return err
		}
		for j, n := range c.nodes {
			st := n.r.Status()
			if st.Role != consensus.RoleLeader || st.Commit < st.LastIndex {
				continue
			}
			settled := true
			for _, m := range c.nodes {
				settled = settled && m.r.Status().Applied >= st.LastIndex
			}
			if settled {
				c.lead, c.term = j, st.Term
				return nil
			}
		}
	}
	return errors.New("no settled leader after 10000 ticks")
}

func (c *synodCluster) tick() {
	for _, n := range c.nodes {
		n.r.Tick()
	}
}

func (c *synodCluster) propose(data []byte) error {
	err := c.nodes[c.lead].r.Propose(consensus.Command{Data: data})
	if errors.Is(err, consensus.ErrNotLeader) {
		return fmt.Errorf("%w: %w", err, ErrLeaderLost)
	}
	return err
}

func (c *synodCluster) round() error {
	for _, n := range c.nodes {
		rd := n.r.Ready()
		if rd.Empty() {
			continue
		}
		// 1. Persist: nothing to write in memory; take the records and drop
		// them.
		for _, rec := range rd.Persist {
			switch rec := rec.(type) {
			case raft.Append:
				n.persisted += len(rec.Entries)
			case raft.HardState:
			default:
				return fmt.Errorf("node %d: unexpected record %s", n.id, rec.RecordType())
			}
		}
		// 2. Send: queue the messages for delivery after every node's Ready.
		c.queue = append(c.queue, rd.Messages...)
		// 3. Apply.
		for i := range rd.Committed {
			e := &rd.Committed[i]
			switch e.Type {
			case consensus.EntryNormal:
				n.check.apply(e.Command.Data)
			case consensus.EntryNoOp:
			default:
				return fmt.Errorf("node %d: unexpected %v entry at %d", n.id, e.Type, e.Index)
			}
		}
		n.r.Advance(rd)
	}
	// Deliver.
	msgs := c.queue
	c.queue = c.spare[:0]
	for j, m := range msgs {
		to := int(m.To) - 1
		if to < 0 || to >= len(c.nodes) {
			return fmt.Errorf("message to unknown node %d", m.To)
		}
		if err := c.nodes[to].r.Step(m); err != nil {
			return fmt.Errorf("node %d: step %v: %w", m.To, m.Payload.MessageType(), err)
		}
		msgs[j] = consensus.Message{}
	}
	c.spare = msgs
	return nil
}

func (c *synodCluster) leaderChecker() *checker { return c.nodes[c.lead].check }

func (c *synodCluster) checkers() []*checker {
	cs := make([]*checker, len(c.nodes))
	for i, n := range c.nodes {
		cs[i] = n.check
	}
	return cs
}

package bench

import (
	"errors"
	"fmt"
	"io"
	"log"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Flow-control settings shared, where the library has them, by every
// system: at most 1 MiB of entries per append message and 256 append
// messages in flight per follower.
const (
	maxSizePerMsg   = 1 << 20
	maxInflightMsgs = 256
)

// RunEtcd runs the loop over go.etcd.io/raft/v3: a RawNode per node over a
// MemoryStorage, synchronous storage writes, all three nodes driven from one
// goroutine. The commands proposed in one iteration reach the leader as one
// MsgProp carrying all of them (as CockroachDB's proposal buffer does), so
// etcd-raft has the same chance to batch them into one append as synod,
// whose Propose only appends and sends at the next Ready.
func RunEtcd(o Options, h Hooks) (Result, error) {
	c, err := newEtcdCluster(o, true)
	if err != nil {
		return Result{}, err
	}
	return runMemLoop("etcd-raft", c, o, h)
}

// RunEtcdUnbatched is RunEtcd with one RawNode.Propose per command. etcd-raft
// broadcasts an append for each proposal while it has in-flight room, so this
// measures the per-message cost the batched variant avoids.
func RunEtcdUnbatched(o Options, h Hooks) (Result, error) {
	c, err := newEtcdCluster(o, false)
	if err != nil {
		return Result{}, err
	}
	return runMemLoop("etcd-raft-unbatched", c, o, h)
}

type etcdNode struct {
	rn      *raft.RawNode
	storage *raft.MemoryStorage
	check   *checker
}

type etcdCluster struct {
	nodes  []*etcdNode // nodes[i] has ID i+1
	lead   int         // index of the leader, once elected
	queue  []*pb.Message
	spare  []*pb.Message
	leader bool // lead is set
	// batch: propose buffers commands in pending, and round hands them to
	// the leader as one MsgProp; otherwise propose calls RawNode.Propose.
	batch   bool
	pending []*pb.Entry
}

func newEtcdCluster(o Options, batch bool) (*etcdCluster, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	voters := []uint64{1, 2, 3}
	logger := &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}
	c := &etcdCluster{batch: batch}
	for i := range voters {
		st := raft.NewMemoryStorage()
		// Bootstrap the configuration the way etcd-raft's own tests do: a
		// snapshot carrying only the voters.
		if err := st.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{
			ConfState: &pb.ConfState{Voters: voters},
		}}); err != nil {
			return nil, err
		}
		rn, err := raft.NewRawNode(&raft.Config{
			ID:                        voters[i],
			ElectionTick:              10,
			HeartbeatTick:             1,
			Storage:                   st,
			MaxSizePerMsg:             maxSizePerMsg,
			MaxInflightMsgs:           maxInflightMsgs,
			CheckQuorum:               true,
			PreVote:                   true,
			Logger:                    logger,
			DisableProposalForwarding: true,
		})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &etcdNode{rn: rn, storage: st, check: newChecker(i+1, o)})
	}
	return c, nil
}

func (c *etcdCluster) elect() error {
	if err := c.nodes[0].rn.Campaign(); err != nil {
		return err
	}
	for i := 0; i < 10_000; i++ {
		if i%10 == 9 {
			c.tick()
		}
		if err := c.round(); err != nil {
			return err
		}
		st := c.nodes[0].rn.BasicStatus()
		if st.RaftState != raft.StateLeader {
			continue
		}
		last, _ := c.nodes[0].storage.LastIndex()
		settled := st.GetCommit() == last
		for _, n := range c.nodes {
			settled = settled && n.rn.BasicStatus().Applied >= last
		}
		if settled {
			c.lead, c.leader = 0, true
			return nil
		}
	}
	return errors.New("no settled leader after 10000 rounds")
}

func (c *etcdCluster) tick() {
	for _, n := range c.nodes {
		n.rn.Tick()
	}
}

func (c *etcdCluster) propose(data []byte) error {
	if c.batch {
		c.pending = append(c.pending, &pb.Entry{Data: data})
		return nil
	}
	return c.nodes[c.lead].rn.Propose(data)
}

// flushProposals steps the buffered commands into the leader as one MsgProp,
// which is what RawNode.Propose does for a single command.
func (c *etcdCluster) flushProposals() error {
	if len(c.pending) == 0 {
		return nil
	}
	err := c.nodes[c.lead].rn.Step(&pb.Message{
		Type:    pb.MessageType_MsgProp.Enum(),
		From:    new(uint64(c.lead + 1)),
		Entries: c.pending,
	})
	c.pending = nil // the leader's log keeps the entries; do not reuse
	if err != nil {
		return fmt.Errorf("propose: %w", err)
	}
	return nil
}

func (c *etcdCluster) round() error {
	if err := c.flushProposals(); err != nil {
		return err
	}
	for i, n := range c.nodes {
		if !n.rn.HasReady() {
			continue
		}
		rd := n.rn.Ready()
		if c.leader && i == c.lead && rd.SoftState != nil && rd.SoftState.RaftState != raft.StateLeader {
			return fmt.Errorf("node %d is now %v: %w", i+1, rd.SoftState.RaftState, ErrLeaderLost)
		}
		// 1. Persist: entries and hard state into the in-memory storage.
		if !raft.IsEmptySnap(rd.Snapshot) {
			return fmt.Errorf("node %d: unexpected snapshot", i+1)
		}
		if len(rd.Entries) > 0 {
			if err := n.storage.Append(rd.Entries); err != nil {
				return err
			}
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			if err := n.storage.SetHardState(rd.HardState); err != nil {
				return err
			}
		}
		// 2. Send: queue the messages for delivery after every node's Ready.
		c.queue = append(c.queue, rd.Messages...)
		// 3. Apply.
		for _, e := range rd.CommittedEntries {
			switch e.GetType() {
			case pb.EntryType_EntryNormal:
				if len(e.GetData()) > 0 { // a new leader's empty entry carries none
					n.check.apply(e.GetData())
				}
			default:
				return fmt.Errorf("node %d: unexpected %v entry", i+1, e.GetType())
			}
		}
		n.rn.Advance(rd)
	}
	// Deliver. Stepping a message may not produce new messages directly
	// (they come out of the next Ready), so the queue is stable here.
	msgs := c.queue
	c.queue = c.spare[:0]
	for j, m := range msgs {
		to := int(m.GetTo()) - 1
		if to < 0 || to >= len(c.nodes) {
			return fmt.Errorf("message to unknown node %d", m.GetTo())
		}
		if err := c.nodes[to].rn.Step(m); err != nil {
			return fmt.Errorf("node %d: step %v: %w", to+1, m.GetType(), err)
		}
		msgs[j] = nil
	}
	c.spare = msgs
	return nil
}

func (c *etcdCluster) leaderChecker() *checker { return c.nodes[c.lead].check }

func (c *etcdCluster) checkers() []*checker {
	cs := make([]*checker, len(c.nodes))
	for i, n := range c.nodes {
		cs[i] = n.check
	}
	return cs
}

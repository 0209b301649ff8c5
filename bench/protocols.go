package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/epaxos"
	"github.com/synod-io/synod/paxos"
	"github.com/synod-io/synod/raft"
)

// This file compares synod's own protocols with each other through the
// consensus contract alone: Raft, Multi-Paxos and EPaxos, each a cluster
// of pure replicas in one process, no disk, messages delivered in memory,
// driven by the same loop. Leader-based protocols get every proposal at
// the leader; EPaxos spreads them over every replica (it has no leader),
// each replica keeping its share of the window outstanding. A command
// conflicts with the others with probability ConflictPercent (it then
// writes one shared hot key; otherwise a key of its own), which matters
// only to EPaxos.

// ProtocolOptions describe one run of ProtocolRun.
type ProtocolOptions struct {
	Options
	// Nodes is the cluster size.
	Nodes int
	// ConflictPercent is the share of commands, 0..100, on the hot key.
	ConflictPercent float64
}

// ProtocolNames are the protocols ProtocolRun knows.
var ProtocolNames = []string{"raft", "multipaxos", "epaxos"}

// ProtocolRun runs protocol under o and reports the throughput of
// commands executed at the replica they were proposed to.
func ProtocolRun(protocol string, o ProtocolOptions) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	if o.Nodes < 1 || o.ConflictPercent < 0 || o.ConflictPercent > 100 {
		return Result{}, fmt.Errorf("bench: %d nodes, %.1f%% conflicts: want >= 1 node and 0..100%%", o.Nodes, o.ConflictPercent)
	}
	c, err := newProtoCluster(protocol, o)
	if err != nil {
		return Result{}, err
	}
	return c.run()
}

type protoNode struct {
	r consensus.Replica
	// proposed and done count the commands proposed here and executed
	// here of those.
	proposed, done int
	executed       int
	// hot hashes the sessions of the hot-key commands in execution order:
	// every replica must execute them in the same order.
	hot    uint64
	hotLen int
}

type protoCluster struct {
	name       string
	o          ProtocolOptions
	nodes      []*protoNode
	leaderless bool
	queue      []consensus.Message
	spare      []consensus.Message
	rng        *rand.Rand
}

func newProtoCluster(name string, o ProtocolOptions) (*protoCluster, error) {
	peers := make([]consensus.NodeID, o.Nodes)
	for i := range peers {
		peers[i] = consensus.NodeID(i + 1)
	}
	c := &protoCluster{name: name, o: o, rng: rand.New(rand.NewPCG(7, 7))}
	for _, id := range peers {
		rnd := rand.New(rand.NewPCG(1, uint64(id)))
		var r consensus.Replica
		var err error
		switch name {
		case "raft":
			cfg := raft.DefaultConfig(id, peers, rnd)
			cfg.PreVote, cfg.CheckQuorum = true, true
			cfg.ProposalsPendingMax = max(cfg.ProposalsPendingMax, o.Window)
			r, err = raft.New(cfg, nil)
		case "multipaxos":
			cfg := paxos.DefaultConfig(id, peers, rnd)
			cfg.InflightSlotsMax = max(cfg.InflightSlotsMax, o.Window)
			r, err = paxos.New(cfg, nil)
		case "epaxos":
			cfg := epaxos.DefaultConfig(id, peers)
			cfg.Rand = rnd
			cfg.InflightMax = max(cfg.InflightMax, o.Window)
			r, err = epaxos.New(cfg, nil)
			c.leaderless = true
		default:
			return nil, fmt.Errorf("bench: unknown protocol %q (have %v)", name, ProtocolNames)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		c.nodes = append(c.nodes, &protoNode{r: r, hot: fnvOffset})
	}
	return c, nil
}

const hotKey = "hot"

// command is proposal seq of node i: a session naming the proposer, a
// conflict key, and o.Size bytes of data.
func (c *protoCluster) command(i, seq int) consensus.Command {
	key := hotKey
	if c.rng.Float64()*100 >= c.o.ConflictPercent {
		key = "n" + strconv.Itoa(i) + "." + strconv.Itoa(seq)
	}
	return consensus.Command{Session: consensus.Session{ClientID: uint64(i + 1), Seq: uint64(seq + 1)},
		Keys: []string{key}, Data: payload(seq, c.o.Size)}
}

// leader returns the index of the node that leads (leader-based
// protocols), or -1.
func (c *protoCluster) leader() int {
	for i, n := range c.nodes {
		if n.r.Status().Role == consensus.RoleLeader {
			return i
		}
	}
	return -1
}

func (c *protoCluster) run() (Result, error) {
	deadline := time.Now().Add(c.o.Timeout)
	proposers := []int{}
	if c.leaderless {
		for i := range c.nodes {
			proposers = append(proposers, i)
		}
	} else {
		// Elect, bounded; the no-op of the new term commits on the way.
		for i := 0; c.leader() < 0; i++ {
			if i >= 10_000 {
				return Result{}, fmt.Errorf("%s: no leader after 10000 ticks", c.name)
			}
			c.tick()
			if err := c.round(); err != nil {
				return Result{}, err
			}
		}
		proposers = append(proposers, c.leader())
	}
	window := max(1, c.o.Window/len(proposers))
	share := make([]int, len(c.nodes))
	for k := range c.o.N {
		share[proposers[k%len(proposers)]]++
	}

	m := meter{}
	m.begin()
	lastTick := m.start
	total := 0
	for total < c.o.N {
		now := time.Now()
		if now.After(deadline) {
			m.end()
			return Result{}, fmt.Errorf("%s: timed out after %v with %d/%d executed", c.name, c.o.Timeout, total, c.o.N)
		}
		if now.Sub(lastTick) >= tickInterval {
			c.tick()
			lastTick = now
		}
		for _, i := range proposers {
			n := c.nodes[i]
			for n.proposed < share[i] && n.proposed-n.done < window {
				if err := n.r.Propose(c.command(i, n.proposed)); err != nil {
					m.end()
					if errors.Is(err, consensus.ErrNotLeader) {
						err = fmt.Errorf("%w: %w", err, ErrLeaderLost)
					}
					return Result{}, fmt.Errorf("%s: propose at node %d: %w", c.name, i+1, err)
				}
				n.proposed++
			}
		}
		if err := c.round(); err != nil {
			m.end()
			return Result{}, err
		}
		total = 0
		for _, i := range proposers {
			total += c.nodes[i].done
		}
	}
	m.end()
	// Let every replica execute everything (untimed, bounded), then check
	// that they agree on the hot key.
	for i := 0; ; i++ {
		behind := false
		for _, n := range c.nodes {
			behind = behind || n.executed < c.o.N
		}
		if !behind {
			break
		}
		if i >= 20_000 || time.Now().After(deadline) {
			return Result{}, fmt.Errorf("%s: replicas did not all execute %d commands", c.name, c.o.N)
		}
		c.tick()
		if err := c.round(); err != nil {
			return Result{}, err
		}
	}
	for _, n := range c.nodes[1:] {
		if n.executed != c.o.N || n.hotLen != c.nodes[0].hotLen || n.hot != c.nodes[0].hot {
			return Result{}, fmt.Errorf("%s: replicas disagree: %d vs %d executed, %d vs %d hot-key commands or a different order",
				c.name, n.executed, c.nodes[0].executed, n.hotLen, c.nodes[0].hotLen)
		}
	}
	return m.result(c.name, c.o.N), nil
}

func (c *protoCluster) tick() {
	for _, n := range c.nodes {
		n.r.Tick()
	}
}

// round handles each node's Ready (persist: nothing to write in memory;
// send: queue; apply: count), then delivers every queued message.
func (c *protoCluster) round() error {
	for i, n := range c.nodes {
		for range 64 { // a replica may hold more than one Ready of work
			rd := n.r.Ready()
			if rd.Empty() {
				break
			}
			c.queue = append(c.queue, rd.Messages...)
			for k := range rd.Committed {
				e := &rd.Committed[k]
				if e.Type != consensus.EntryNormal {
					continue
				}
				n.executed++
				if e.Command.Session.ClientID == uint64(i+1) {
					n.done++
				}
				if slices.Contains(e.Command.Keys, hotKey) {
					n.hotLen++
					n.hot = (n.hot ^ e.Command.Session.ClientID<<40 ^ e.Command.Session.Seq) * fnvPrime
				}
			}
			n.r.Advance(rd)
		}
	}
	msgs := c.queue
	c.queue = c.spare[:0]
	for j, m := range msgs {
		to := int(m.To) - 1
		if to < 0 || to >= len(c.nodes) {
			return fmt.Errorf("%s: message to unknown node %d", c.name, m.To)
		}
		if err := c.nodes[to].r.Step(m); err != nil {
			return fmt.Errorf("%s: node %d: step %v: %w", c.name, m.To, m.Payload.MessageType(), err)
		}
		msgs[j] = consensus.Message{}
	}
	c.spare = msgs
	return nil
}

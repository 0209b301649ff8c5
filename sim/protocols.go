package sim

import (
	"fmt"
	"slices"
	"strings"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/epaxos"
	"github.com/synod-io/synod/paxos"
	"github.com/synod-io/synod/raft"
)

// Raft returns the Raft protocol with its default configuration, changed by
// each of adjust in turn (tests use this to tune timeouts or swap in a
// known-wrong variant).
func Raft(adjust ...func(*raft.Config)) Protocol {
	return Protocol{
		Name: "raft",
		New: func(nc NodeConfig) (consensus.Replica, error) {
			cfg := raft.DefaultConfig(nc.ID, nc.Peers, nc.Rand)
			cfg.Snapshots = nc.Snapshots
			if nc.SnapshotEntries > 0 {
				cfg.SnapshotEntries = nc.SnapshotEntries
				cfg.CompactionRetainEntries = min(cfg.CompactionRetainEntries, nc.SnapshotEntries/4)
			}
			if nc.SnapshotChunkBytes > 0 {
				cfg.SnapshotChunkBytes = nc.SnapshotChunkBytes
			}
			for _, f := range adjust {
				f(&cfg)
			}
			return raft.New(cfg, nc.Durable)
		},
		Codec:   raft.Codec,
		Commits: appliedCommits,
	}
}

// MultiPaxos returns the Multi-Paxos protocol with its default
// configuration, changed by each of adjust in turn.
func MultiPaxos(adjust ...func(*paxos.Config)) Protocol {
	return Protocol{
		Name: "multipaxos",
		New: func(nc NodeConfig) (consensus.Replica, error) {
			cfg := paxos.DefaultConfig(nc.ID, nc.Peers, nc.Rand)
			cfg.Snapshots = nc.Snapshots
			if nc.SnapshotEntries > 0 {
				cfg.SnapshotEntries = nc.SnapshotEntries
				cfg.CompactionRetainEntries = min(cfg.CompactionRetainEntries, nc.SnapshotEntries/4)
			}
			if nc.SnapshotChunkBytes > 0 {
				cfg.SnapshotChunkBytes = nc.SnapshotChunkBytes
			}
			for _, f := range adjust {
				f(&cfg)
			}
			return paxos.New(cfg, nc.Durable)
		},
		Codec:   paxos.Codec,
		Commits: appliedCommits,
	}
}

// EPaxos returns the EPaxos protocol with its default configuration,
// changed by each of adjust in turn.
func EPaxos(adjust ...func(*epaxos.Config)) Protocol {
	return Protocol{
		Name: "epaxos",
		New: func(nc NodeConfig) (consensus.Replica, error) {
			cfg := epaxos.DefaultConfig(nc.ID, nc.Peers)
			cfg.Rand = nc.Rand
			cfg.Snapshots = nc.Snapshots
			if nc.SnapshotEntries > 0 {
				cfg.SnapshotEntries = nc.SnapshotEntries
			}
			if nc.SnapshotChunkBytes > 0 {
				cfg.SnapshotChunkBytes = nc.SnapshotChunkBytes
			}
			for _, f := range adjust {
				f(&cfg)
			}
			return epaxos.New(cfg, nc.Durable)
		},
		Codec:      epaxos.Codec,
		Leaderless: true,
		Commits:    epaxosCommits,
	}
}

// appliedCommits is Protocol.Commits for leader-based cores (Raft,
// Multi-Paxos): the commands in Ready.Committed. A leader hands an entry
// to its host in the Ready right after it learns that a majority holds it,
// so at the leader, the node that accepted the proposal, this is the
// commit time. A follower learns later (and its timing is not used).
func appliedCommits(rd *consensus.Ready, committed func(consensus.Session)) {
	for i := range rd.Committed {
		e := &rd.Committed[i]
		if e.Type == consensus.EntryNormal && e.Command.Session.ClientID != 0 {
			committed(e.Command.Session)
		}
	}
}

// epaxosCommits is Protocol.Commits for EPaxos, which commits a command
// before it can execute it (its dependencies must commit and execute
// first): the commands of the committed instances among the records in
// Ready.Persist. An instance's record is persisted whenever its state
// changes, so the first committed record is the moment the replica
// learned the commit; at the command leader (the replica the client sent
// the command to) that is the end of the fast or the slow path.
func epaxosCommits(rd *consensus.Ready, committed func(consensus.Session)) {
	for _, r := range rd.Persist {
		var in *epaxos.Instance
		switch v := r.(type) {
		case epaxos.Instance:
			in = &v
		case *epaxos.Instance:
			in = v
		default:
			continue
		}
		if in.Status != epaxos.StatusCommitted || in.NoOp {
			continue
		}
		for _, cmd := range in.Commands() {
			if cmd.Session.ClientID != 0 {
				committed(cmd.Session)
			}
		}
	}
}

// protocols are the protocols the simulator can run by name.
var protocols = map[string]func() Protocol{
	"raft":       func() Protocol { return Raft() },
	"multipaxos": func() Protocol { return MultiPaxos() },
	"epaxos":     func() Protocol { return EPaxos() },
}

// ProtocolNames lists the protocols ProtocolByName knows, sorted.
func ProtocolNames() []string {
	names := make([]string, 0, len(protocols))
	for n := range protocols {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ProtocolByName returns a protocol by its name.
func ProtocolByName(name string) (Protocol, error) {
	f, ok := protocols[name]
	if !ok {
		return Protocol{}, fmt.Errorf("sim: unknown protocol %q; choose one of %s", name, strings.Join(ProtocolNames(), ", "))
	}
	return f(), nil
}

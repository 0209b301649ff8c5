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
		Codec: raft.Codec,
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
		Codec: paxos.Codec,
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
			for _, f := range adjust {
				f(&cfg)
			}
			return epaxos.New(cfg, nc.Durable)
		},
		Codec:      epaxos.Codec,
		Leaderless: true,
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

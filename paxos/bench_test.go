package paxos

import (
	"testing"

	"github.com/synod-io/synod/consensus"
)

// BenchmarkPropose3Nodes mirrors raft's: committed proposals per second in
// a three-node cluster with 256-byte commands and in-memory delivery. Every
// Ready's messages are stepped straight into their recipients, records are
// kept (as a host would hand them to its WAL), and committed entries are
// counted at the leader, which runs phase 2 only. Up to window proposals
// are outstanding, so the leader batches. One op is one committed proposal.
func BenchmarkPropose3Nodes(b *testing.B) {
	for _, window := range []int{1, 64, 1024} {
		b.Run(windowName(window), func(b *testing.B) { benchPropose(b, 3, window) })
	}
}

func windowName(w int) string {
	switch w {
	case 1:
		return "window=1"
	case 64:
		return "window=64"
	}
	return "window=1024"
}

func benchPropose(b *testing.B, n, window int) {
	rs := make([]*Replica, n)
	for i, id := range ids(n) {
		cfg := DefaultConfig(id, ids(n), zeroRand{})
		r, err := New(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		rs[i] = r
	}
	leader := rs[0]
	committed := 0
	var sink []consensus.Record
	pump := func() {
		for _, r := range rs {
			rd := r.Ready()
			if rd.Empty() {
				continue
			}
			sink = rd.Persist
			if r == leader {
				for i := range rd.Committed {
					if rd.Committed[i].Type == consensus.EntryNormal {
						committed++
					}
				}
			}
			for _, m := range rd.Messages {
				if err := rs[m.To-1].Step(m); err != nil {
					b.Fatal(err)
				}
			}
			r.Advance(rd)
		}
	}
	leader.campaign()
	for leader.role != consensus.RoleLeader {
		pump()
	}
	pump()
	cmd := consensus.Command{Data: make([]byte, 256)}
	b.SetBytes(256)
	b.ReportAllocs()
	b.ResetTimer()
	proposed := 0
	for committed < b.N {
		for proposed < b.N && proposed-committed < window {
			if err := leader.Propose(cmd); err != nil {
				b.Fatal(err)
			}
			proposed++
		}
		pump()
	}
	b.StopTimer()
	_ = sink
}

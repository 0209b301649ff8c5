package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/synod-io/synod/sim"
	"github.com/synod-io/synod/sim/gossipsim"
)

// capFlags are the flags of synod sim cap.
type capFlags struct {
	seed           int64
	nodes          int
	minority       int
	clientsPerSide int
	keys           int
	partitionTicks int64
	afterTicks     int64
}

func newSimCAPCommand() *cobra.Command {
	f := &capFlags{}
	cmd := &cobra.Command{
		Use:   "cap",
		Short: "Run one network partition against Raft and against the gossip store, and compare",
		Long: `Cut a minority of the nodes off from the others, with clients on both sides
reading and writing the same keys at the nodes of their own side, heal the
partition, and print what each side accepted, refused and converged to:

  raft    the CP side of CAP: the majority elects a leader and commits; the
          minority can neither commit a write nor serve a linearizable read,
          so its clients' operations are refused or time out until the
          partition heals. The history is checked for linearizability.
  gossip  the AP side: both sides accept every read and write (reads may be
          stale: not the latest write made anywhere, as the other side's
          writes cannot arrive), and after healing every replica converges
          to the last write of each key by (HLC timestamp, origin), checked
          against the model of all writes.

The table counts the operations the clients started while the partition
lasted; the final values name the side whose client wrote them.

Both runs use the same seed, node count, sides, clients and keys; a tick is
a tick of each simulator (gossip: 100 ms). The exit code is 1 if either run
breaks a rule or an outcome differs from the above.`,
		Example: `  synod sim cap
  synod sim cap --nodes 7 --minority 3 --partition-ticks 1000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSimCAP(cmd, f) },
	}
	fl := cmd.Flags()
	fl.Int64Var(&f.seed, "seed", 1, "seed of both runs")
	fl.IntVar(&f.nodes, "nodes", 5, "nodes")
	fl.IntVar(&f.minority, "minority", 2, "nodes on the minority side (the last ones)")
	fl.IntVar(&f.clientsPerSide, "clients-per-side", 2, "clients on each side")
	fl.IntVar(&f.keys, "keys", 4, "keys the clients share")
	fl.Int64Var(&f.partitionTicks, "partition-ticks", 600, "how long the partition lasts")
	fl.Int64Var(&f.afterTicks, "after-ticks", 600, "how long the runs go on after healing")
	return cmd
}

// capOutcome is both runs of the scenario.
type capOutcome struct {
	raft   *sim.CAPResult
	gossip *gossipsim.CAPResult
	// problems lists outcomes that differ from the expected ones.
	problems []string
}

func runCAP(f *capFlags) (*capOutcome, error) {
	rc := sim.DefaultCAPConfig(f.seed)
	rc.Nodes, rc.Minority, rc.ClientsPerSide, rc.Keys = f.nodes, f.minority, f.clientsPerSide, f.keys
	rc.PartitionTicks, rc.AfterTicks = f.partitionTicks, f.afterTicks
	raft, err := sim.RunCAP(rc)
	if err != nil {
		return nil, err
	}
	gc := gossipsim.DefaultCAPConfig(f.seed)
	gc.Nodes, gc.Minority, gc.ClientsPerSide, gc.Keys = f.nodes, f.minority, f.clientsPerSide, f.keys
	gc.PartitionTicks, gc.AfterTicks = f.partitionTicks, f.afterTicks
	gossip, err := gossipsim.RunCAP(gc)
	if err != nil {
		return nil, err
	}
	o := &capOutcome{raft: raft, gossip: gossip}
	bad := func(format string, args ...any) { o.problems = append(o.problems, fmt.Sprintf(format, args...)) }
	if len(raft.Violations) > 0 {
		bad("raft: %v", raft.Violations[0])
	}
	if raft.Minority.WritesAccepted+raft.Minority.ReadsServed > 0 {
		bad("raft: the minority side completed %d writes and %d reads while cut off", raft.Minority.WritesAccepted, raft.Minority.ReadsServed)
	}
	if raft.Majority.WritesAccepted == 0 {
		bad("raft: the majority side committed no write while the minority was cut off")
	}
	if !raft.Agree {
		bad("raft: the replicas' state machines differ at the end")
	}
	if len(gossip.Violations) > 0 {
		bad("gossip: %v", gossip.Violations[0])
	}
	for name, s := range map[string]gossipsim.CAPSide{"majority": gossip.Majority, "minority": gossip.Minority} {
		if s.WritesAccepted != s.Writes || s.ReadsServed != s.Reads || s.Writes == 0 {
			bad("gossip: the %s side had %d of %d writes and %d of %d reads accepted", name, s.WritesAccepted, s.Writes, s.ReadsServed, s.Reads)
		}
	}
	if !gossip.Converged {
		bad("gossip: the replicas did not converge within %d ticks of healing", f.afterTicks)
	}
	return o, nil
}

func runSimCAP(cmd *cobra.Command, f *capFlags) error {
	o, err := runCAP(f)
	if err != nil {
		return err
	}
	printCAP(cmd.OutOrStdout(), f, o)
	if len(o.problems) > 0 {
		for _, p := range o.problems {
			fmt.Fprintf(cmd.ErrOrStderr(), "unexpected: %s\n", p)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "replay: synod sim cap --seed %d --nodes %d --minority %d --clients-per-side %d --keys %d --partition-ticks %d --after-ticks %d\n",
			f.seed, f.nodes, f.minority, f.clientsPerSide, f.keys, f.partitionTicks, f.afterTicks)
		return &exitError{code: 1}
	}
	return nil
}

func printCAP(w io.Writer, f *capFlags, o *capOutcome) {
	r, g := o.raft, o.gossip
	fmt.Fprintf(w, "synod sim cap: %d nodes, nodes %v cut off from %v for %d ticks, %d clients per side on %d keys, seed %d\n\n",
		f.nodes, r.Minority.Nodes, r.Majority.Nodes, f.partitionTicks, f.clientsPerSide, f.keys, f.seed)
	fmt.Fprintf(w, "operations started while partitioned    %-34s %s\n", "raft (CP)", "gossip store (AP)")
	side := func(name string, rs sim.CAPSide, gs gossipsim.CAPSide) {
		fmt.Fprintf(w, "  %s side %v\n", name, rs.Nodes)
		fmt.Fprintf(w, "    writes accepted / issued             %-34s %d / %d\n", fmt.Sprintf("%d / %d", rs.WritesAccepted, rs.Writes), gs.WritesAccepted, gs.Writes)
		fmt.Fprintf(w, "    reads served / issued                %-34s %s\n", fmt.Sprintf("%d / %d", rs.ReadsServed, rs.Reads),
			fmt.Sprintf("%d / %d (%d stale)", gs.ReadsServed, gs.Reads, gs.StaleReads))
		fmt.Fprintf(w, "    refused / timed out                  %-34s %d / 0\n", fmt.Sprintf("%d / %d", rs.Refused, rs.TimedOut), gs.Refused)
		fmt.Fprintf(w, "    completed only after healing         %-34s 0\n", fmt.Sprint(rs.AfterHeal))
	}
	side("majority", r.Majority, g.Majority)
	side("minority", r.Minority, g.Minority)
	fmt.Fprintf(w, "\nafter healing\n")
	agree := "replicas differ"
	if r.Agree {
		agree = "all replicas agree"
	}
	conv := "NOT converged"
	if g.Converged {
		conv = fmt.Sprintf("converged %.0f ticks after healing", g.ConvergedAfterTicks)
	}
	fmt.Fprintf(w, "  state                                  %-34s %s\n", agree+fmt.Sprintf(", leader %d", r.Leader), conv)
	fmt.Fprintf(w, "  checked                                %-34s %s\n", "linearizable: "+r.Linearizability, "last write wins: "+verdict(len(g.Violations) == 0))
	for _, k := range g.Keys() {
		fmt.Fprintf(w, "  %-38s %-34s %s\n", k, valueBy(r.Final[k], r.Winner[k]), valueBy(g.Final[k], g.Winner[k]))
	}
	if len(o.problems) == 0 {
		fmt.Fprintf(w, "\nverdict: as expected (Raft refuses the minority and stays consistent; gossip accepts both sides and converges)\n")
	}
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "VIOLATED"
}

func valueBy(v, side string) string {
	if v == "" {
		return "(none)"
	}
	return strings.TrimSpace(fmt.Sprintf("%s (%s)", v, side))
}

// Command synod is the synod toolkit's one binary. Today it runs the
// deterministic simulator (synod sim); later it serves a cluster, runs a
// local demo, benchmarks and talks to a cluster.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	if err := newRootCommand().Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "synod:", err)
		os.Exit(2)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "synod",
		Short: "synod: replicated state machines with Raft, Paxos, EPaxos and gossip",
		Long: `synod is a toolkit for distributed consensus.

Run the deterministic simulator over a range of seeds:

  synod sim --protocol raft --seeds 1-100`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newSimCommand())
	root.AddCommand(newServeCommand())
	root.AddCommand(newDemoCommand())
	root.AddCommand(newKVCommand())
	root.AddCommand(newStatusCommand())
	root.AddCommand(newBenchCommand())
	return root
}

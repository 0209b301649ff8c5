package epaxos

import "fmt"

// Known-wrong variants of the protocol, for showing that checkers catch
// them (bugKind in config.go says what each does). Only tests can set
// them: this file is compiled into the package's tests alone, so a
// checker-teeth test that drives the simulator lives in this directory, in
// package epaxos_test, as raft/sim_teeth_test.go does for Raft.
const (
	BugRecoveryReportsPromised   = "recovery-reports-promised"
	BugMajorityFastQuorum        = "majority-fast-quorum"
	BugPreAcceptIgnoresConflicts = "preaccept-ignores-conflicts"
	BugSCCUnordered              = "scc-unordered"
	BugExecuteFullGraph          = "execute-full-graph"
)

// Bugs lists every known-wrong variant.
var Bugs = []string{BugRecoveryReportsPromised, BugMajorityFastQuorum, BugPreAcceptIgnoresConflicts, BugSCCUnordered, BugExecuteFullGraph}

// SetBug makes cfg describe a known-wrong variant of EPaxos ("" or "none"
// for the protocol itself). It panics on an unknown name.
//
// BugMajorityFastQuorum changes nothing for N = 3 and 5, where a simple
// majority is the fast quorum; a test that wants to catch it runs N >= 7.
func SetBug(cfg *Config, bug string) {
	switch bug {
	case BugRecoveryReportsPromised:
		cfg.bug = bugRecoveryReportsPromised
	case BugMajorityFastQuorum:
		cfg.bug = bugMajorityFastQuorum
	case BugPreAcceptIgnoresConflicts:
		cfg.bug = bugPreAcceptIgnoresConflicts
	case BugSCCUnordered:
		cfg.bug = bugSCCUnordered
	case BugExecuteFullGraph:
		cfg.bug = bugExecuteFullGraph
	case "", "none":
		cfg.bug = bugNone
	default:
		panic(fmt.Sprintf("epaxos: unknown bug %q", bug))
	}
}

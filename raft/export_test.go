package raft

import "fmt"

// Known-wrong variants of the protocol, for showing that checkers catch
// them. Only tests can set them.
const (
	BugCommitOldTerm       = "commit-old-term"
	BugVoteWithoutLogCheck = "vote-without-log-check"
	BugReadWithoutQuorum   = "read-without-quorum"
)

// SetBug makes cfg describe a known-wrong variant of Raft. It panics on an
// unknown name.
func SetBug(cfg *Config, bug string) {
	switch bug {
	case BugCommitOldTerm:
		cfg.bug = bugCommitOldTerm
	case BugVoteWithoutLogCheck:
		cfg.bug = bugVoteWithoutLogCheck
	case BugReadWithoutQuorum:
		cfg.bug = bugReadWithoutQuorum
	case "", "none":
		cfg.bug = bugNone
	default:
		panic(fmt.Sprintf("raft: unknown bug %q", bug))
	}
}

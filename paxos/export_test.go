package paxos

import "fmt"

// Known-wrong variants of the protocol, for showing that checkers catch
// them. Only tests can set them.
const (
	BugPhase2AnyAccepted  = "phase2-any-accepted"
	BugReadWithoutBarrier = "read-without-barrier"
)

// SetBug makes cfg describe a known-wrong variant of Multi-Paxos. It panics
// on an unknown name.
func SetBug(cfg *Config, bug string) {
	switch bug {
	case BugPhase2AnyAccepted:
		cfg.bug = bugPhase2AnyAccepted
	case BugReadWithoutBarrier:
		cfg.bug = bugReadWithoutBarrier
	case "", "none":
		cfg.bug = bugNone
	default:
		panic(fmt.Sprintf("paxos: unknown bug %q", bug))
	}
}

// SetProposerBug makes a single-decree proposer use a known-wrong variant.
func SetProposerBug(p *Proposer, bug string) {
	var c Config
	SetBug(&c, bug)
	p.bug = c.bug
}

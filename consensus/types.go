package consensus

import (
	"errors"
	"fmt"
	"strconv"
)

// NodeID names a replica. Zero is never a valid node ID; it means "none"
// (no leader known, no vote cast).
type NodeID uint64

// None is the zero NodeID: no node.
const None NodeID = 0

// String formats the ID as a decimal number.
func (id NodeID) String() string { return strconv.FormatUint(uint64(id), 10) }

// Message is one protocol message between replicas. The envelope is shared;
// the payload is defined by the protocol that sent it.
type Message struct {
	From    NodeID
	To      NodeID
	Payload Payload
}

// String formats the message for traces.
func (m Message) String() string {
	return fmt.Sprintf("%d->%d %v", m.From, m.To, m.Payload)
}

// A Payload is a protocol-specific message body.
type Payload interface {
	// MessageType names the kind of message for traces and metrics, as
	// "protocol.Kind" (for example "raft.Append").
	MessageType() string
}

// Session identifies a client command for exactly-once application: a
// client numbers its commands 1, 2, 3, … and retries a command with the same
// number, so the state machine can recognise and skip a retry that was
// already applied. A zero ClientID means the command has no session.
type Session struct {
	ClientID uint64
	Seq      uint64
}

// Command is a client command to replicate.
type Command struct {
	// Session makes a retried command apply exactly once.
	Session Session
	// Keys are the command's conflict keys: EPaxos orders only commands
	// that share a key; Raft and Paxos ignore them. A command with no keys
	// conflicts with nothing; one whose keys include ConflictAll conflicts
	// with every command.
	Keys []string
	// Data is the opaque command, interpreted by the state machine.
	Data []byte
}

// ConflictAll, as one of Command.Keys, makes the command conflict with
// every other command (a read or delete over a key range, whose keys are
// not known in advance). It is the empty string, which is never a key of
// the key-value API.
const ConflictAll = ""

// EntryType says what an Entry carries.
type EntryType uint8

const (
	// EntryNormal carries a client command.
	EntryNormal EntryType = iota
	// EntryNoOp is appended by a new leader (or fills a gap) and changes no
	// state-machine state.
	EntryNoOp
)

// String names the entry type.
func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "normal"
	case EntryNoOp:
		return "noop"
	}
	return "EntryType(" + strconv.Itoa(int(t)) + ")"
}

// Entry is a command at a position in the replicated order.
type Entry struct {
	// Index is the entry's position in apply order, starting at 1.
	Index uint64
	// Term is the term (or ballot round) in which the entry was proposed;
	// protocols without terms leave it zero.
	Term    uint64
	Type    EntryType
	Command Command
}

// Size is an estimate of the entry's encoded size in bytes, used to bound
// batches.
func (e *Entry) Size() int {
	n := 24 + len(e.Command.Data)
	for _, k := range e.Command.Keys {
		n += len(k) + 2
	}
	return n
}

// Role is a replica's role in its protocol.
type Role uint8

const (
	RoleFollower Role = iota
	RolePreCandidate
	RoleCandidate
	RoleLeader
	// RolePeer is a replica in a leaderless protocol (EPaxos, gossip).
	RolePeer
)

// String names the role.
func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RolePreCandidate:
		return "pre-candidate"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	case RolePeer:
		return "peer"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// Status is a replica's view of itself and, if it leads, of its peers.
type Status struct {
	ID     NodeID
	Role   Role
	Term   uint64
	Leader NodeID
	// Commit is the highest index known committed; Applied the highest
	// index handed to the host in Ready.Committed and advanced past.
	Commit  uint64
	Applied uint64
	// LastIndex is the index of the last entry in the local log.
	LastIndex uint64
	// Progress is set on a leader: what it knows of each voter's log,
	// including its own.
	Progress map[NodeID]Progress
}

// Progress is a leader's view of one follower's log.
type Progress struct {
	Match uint64 // highest index known replicated on the follower
	Next  uint64 // next index to send
	State string
}

// ErrNotLeader is matched (with errors.Is) by the *NotLeaderError a replica
// returns when it cannot order commands itself.
var ErrNotLeader = errors.New("consensus: not the leader")

// NotLeaderError reports that a replica is not the leader. Leader is the
// leader it knows of (a hint: send the request there), or None.
type NotLeaderError struct {
	Leader NodeID
}

func (e *NotLeaderError) Error() string {
	if e.Leader == None {
		return "consensus: not the leader, and no leader is known; retry later"
	}
	return fmt.Sprintf("consensus: not the leader; retry at node %d", e.Leader)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// ErrProposalDropped is returned when a replica cannot accept a proposal now
// (for example during leadership transfer, or when its queue is full).
// Retrying later may succeed.
var ErrProposalDropped = errors.New("consensus: proposal dropped; retry later")

// Rand is the source of randomness a core uses (election jitter, back-off).
// The host supplies it: a seeded generator in the simulator, a real one in
// production. *math/rand/v2.Rand satisfies it.
type Rand interface {
	// IntN returns a value in [0, n). It panics if n <= 0.
	IntN(n int) int
}

// Logger receives a core's log lines. The host supplies it; cores never log
// through a global logger.
type Logger interface {
	Debugf(format string, args ...any)
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
}

// DiscardLogger drops every line.
var DiscardLogger Logger = discardLogger{}

type discardLogger struct{}

func (discardLogger) Debugf(string, ...any) {}
func (discardLogger) Infof(string, ...any)  {}
func (discardLogger) Warnf(string, ...any)  {}

package epaxos

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// InstanceID names an instance: the replica that leads it (owns its
// instance space) and its number in that space, starting at 1.
type InstanceID struct {
	Replica  consensus.NodeID
	Instance uint64
}

// String formats the ID as "replica.instance".
func (id InstanceID) String() string {
	return id.Replica.String() + "." + strconv.FormatUint(id.Instance, 10)
}

// Compare orders IDs by replica, then instance number.
func (id InstanceID) Compare(o InstanceID) int {
	switch {
	case id.Replica < o.Replica:
		return -1
	case id.Replica > o.Replica:
		return 1
	case id.Instance < o.Instance:
		return -1
	case id.Instance > o.Instance:
		return 1
	}
	return 0
}

// Ballot orders attempts to decide one instance. The initial ballot of an
// instance is {0, leader}; a recovering replica would use a higher Round.
// Ballots compare by Round, then Node. The zero ballot means "none".
type Ballot struct {
	Round uint64
	Node  consensus.NodeID
}

// IsZero reports whether b is the zero ballot.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// Less reports whether b orders before o.
func (b Ballot) Less(o Ballot) bool {
	return b.Round < o.Round || (b.Round == o.Round && b.Node < o.Node)
}

// String formats the ballot as "round.node".
func (b Ballot) String() string {
	return strconv.FormatUint(b.Round, 10) + "." + b.Node.String()
}

// Status is how far an instance has progressed at one replica.
type Status uint8

const (
	// StatusNone: nothing is known of the instance.
	StatusNone Status = iota
	// StatusPreAccepted: the replica pre-accepted attributes for it.
	StatusPreAccepted
	// StatusAccepted: the replica accepted attributes (slow path, phase 2).
	StatusAccepted
	// StatusCommitted: the command and its attributes are decided.
	StatusCommitted
)

const statusLast = StatusCommitted

// String names the status.
func (s Status) String() string {
	switch s {
	case StatusNone:
		return "none"
	case StatusPreAccepted:
		return "preaccepted"
	case StatusAccepted:
		return "accepted"
	case StatusCommitted:
		return "committed"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// normDeps sorts deps and removes duplicates, in place.
func normDeps(deps []InstanceID) []InstanceID {
	slices.SortFunc(deps, InstanceID.Compare)
	return slices.Compact(deps)
}

// unionDeps merges two sorted, duplicate-free dependency lists into a new one.
func unionDeps(a, b []InstanceID) []InstanceID {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]InstanceID, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	return normDeps(out)
}

func formatDeps(deps []InstanceID) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range deps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(d.String())
	}
	b.WriteByte(']')
	return b.String()
}

// Instance is the durable record of one instance's state at one replica,
// emitted in Ready.Persist whenever that state changes, before any message
// that reveals the change. Replaying records, the last one for an instance
// wins (a record never moves an instance backwards: status and ballots
// only grow).
//
// Promised is the highest ballot the replica promised for the instance (it
// refuses PreAccept and Accept below it); Accepted is the ballot under which
// it last pre-accepted or accepted the attributes held here. They are kept
// apart because recovery must report Accepted, not Promised (Sutra 2019).
// Invariant: Accepted <= Promised. A record with StatusNone is a bare
// promise: a replica asked by a recoverer (Prepare) about an instance it
// never saw records the ballot it promised and nothing else.
type Instance struct {
	ID       InstanceID
	Status   Status
	Promised Ballot
	Accepted Ballot
	// NoOp marks an instance decided to do nothing (only recovery creates
	// them); Command and Batched are then empty.
	NoOp bool
	// Command is the instance's first command and Batched the commands
	// packed into the instance after it (batching, see Propose), in the
	// order they were proposed; they execute in that order, one
	// Ready.Committed entry each, every one with its own Session, Keys and
	// Data. The instance conflicts as one command whose keys are the union
	// of theirs. An instance of one command, the common case, has no
	// Batched; the split keeps it stored and encoded as a single command.
	// Invariant: len(Batched) < BatchCommandsMaxLimit.
	Command consensus.Command
	Batched []consensus.Command
	Seq     uint64
	Deps    []InstanceID
	// Changed is set by an acceptor whose pre-accepted attributes differ
	// from the ones the leader proposed at the initial ballot (it merged
	// conflicts of its own). Such an acceptor cannot be part of a fast
	// quorum, so recovery does not count it as evidence of a fast commit
	// (see decideRecovery). Meaningful only while pre-accepted at the
	// initial ballot.
	Changed bool
}

// RecordType implements consensus.Record.
func (Instance) RecordType() string { return "epaxos.Instance" }

// Commands returns the instance's commands in execution order: Command,
// then Batched. It returns none for a no-op or a bare promise.
func (in *Instance) Commands() []consensus.Command {
	return commandsOf(in.Status != StatusNone && !in.NoOp, &in.Command, in.Batched)
}

// conflictKeys is conflictKeys(in.Commands()), possibly sharing the
// command's Keys (see keysOf); callers must not modify it.
func (in *Instance) conflictKeys() []string {
	return keysOf(in.Status != StatusNone && !in.NoOp, &in.Command, in.Batched)
}

// String formats the record for traces.
func (in Instance) String() string {
	return fmt.Sprintf("Instance %v %v promised=%v accepted=%v noop=%t seq=%d deps=%s changed=%t commands=%d keys=%q",
		in.ID, in.Status, in.Promised, in.Accepted, in.NoOp, in.Seq, formatDeps(in.Deps), in.Changed, 1+len(in.Batched), in.conflictKeys())
}

// commandsOf is the command list of an instance or message whose first
// command is first and whose others are batched; none unless hasCommands.
func commandsOf(hasCommands bool, first *consensus.Command, batched []consensus.Command) []consensus.Command {
	if !hasCommands {
		return nil
	}
	out := make([]consensus.Command, 0, 1+len(batched))
	out = append(out, *first)
	return append(out, batched...)
}

// splitCommands is the inverse of commandsOf: the first command and the
// others (nil if there are none).
func splitCommands(cmds []consensus.Command) (first consensus.Command, batched []consensus.Command) {
	if len(cmds) == 0 {
		return consensus.Command{}, nil
	}
	if len(cmds) > 1 {
		batched = slices.Clone(cmds[1:])
	}
	return cmds[0], batched
}

// eachCommand calls f with the instance's commands in execution order
// (those Commands returns) without building a slice; it stops early if f
// returns false.
func (in *Instance) eachCommand(f func(*consensus.Command) bool) {
	if in.Status == StatusNone || in.NoOp {
		return
	}
	if !f(&in.Command) {
		return
	}
	for i := range in.Batched {
		if !f(&in.Batched[i]) {
			return
		}
	}
}

// keysOf is conflictKeys(commandsOf(hasCommands, first, batched)) without
// building the command list. An unbatched command whose keys are sorted
// and duplicate-free already (as Propose makes them) has its own Keys
// returned: callers only read conflict keys, never modify them.
func keysOf(hasCommands bool, first *consensus.Command, batched []consensus.Command) []string {
	if !hasCommands {
		return nil
	}
	if len(batched) == 0 {
		if len(first.Keys) == 0 {
			return nil
		}
		if sortedUnique(first.Keys) {
			return first.Keys
		}
	}
	n := len(first.Keys)
	for i := range batched {
		n += len(batched[i].Keys)
	}
	if n == 0 {
		return nil
	}
	keys := make([]string, 0, n)
	keys = append(keys, first.Keys...)
	for i := range batched {
		keys = append(keys, batched[i].Keys...)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// sortedUnique reports whether keys are strictly increasing.
func sortedUnique(keys []string) bool {
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			return false
		}
	}
	return true
}

// conflictKeys is the union of the commands' keys, sorted and without
// duplicates: the keys an instance holding them conflicts on.
func conflictKeys(cmds []consensus.Command) []string {
	var keys []string
	for _, c := range cmds {
		keys = append(keys, c.Keys...)
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func isZeroCommand(c *consensus.Command) bool {
	return c.Keys == nil && c.Data == nil && c.Session == consensus.Session{}
}

func (in *Instance) validate() error {
	switch {
	case in.ID.Replica == consensus.None || in.ID.Instance == 0:
		return fmt.Errorf("instance record with invalid ID %v", in.ID)
	case in.Status > statusLast:
		return fmt.Errorf("instance record %v with status %v", in.ID, in.Status)
	case in.Status == StatusNone && (in.Promised.IsZero() || !in.Accepted.IsZero() || in.NoOp || in.Seq != 0 || len(in.Deps) != 0 ||
		!isZeroCommand(&in.Command) || in.Batched != nil):
		return fmt.Errorf("instance record %v with status none is not a bare promise", in.ID)
	case in.Promised.Less(in.Accepted):
		return fmt.Errorf("instance record %v accepted at %v above its promise %v", in.ID, in.Accepted, in.Promised)
	case in.NoOp && (!isZeroCommand(&in.Command) || in.Batched != nil):
		return fmt.Errorf("no-op instance record %v carries a command", in.ID)
	case len(in.Batched) >= BatchCommandsMaxLimit:
		return fmt.Errorf("instance record %v batches %d commands; at most %d", in.ID, 1+len(in.Batched), BatchCommandsMaxLimit)
	}
	for i, d := range in.Deps {
		if d.Replica == consensus.None || d.Instance == 0 || d == in.ID {
			return fmt.Errorf("instance record %v has invalid dependency %v", in.ID, d)
		}
		if i > 0 && in.Deps[i-1].Compare(d) >= 0 {
			return fmt.Errorf("instance record %v has unsorted dependencies", in.ID)
		}
	}
	return nil
}

// MsgType says what a Msg is.
type MsgType uint8

const (
	// MsgPreAccept: leader → all, phase 1 with the leader's attributes.
	MsgPreAccept MsgType = iota + 1
	// MsgPreAcceptOK: reply with the replier's (possibly updated)
	// attributes; Changed says they differ from the leader's.
	MsgPreAcceptOK
	// MsgAccept: leader → all, slow-path phase 2 with the final attributes.
	MsgAccept
	// MsgAcceptOK: reply to MsgAccept.
	MsgAcceptOK
	// MsgCommit: leader → all, the decided command and attributes.
	MsgCommit
	// MsgCommitOK: acknowledges MsgCommit, so the leader stops resending.
	MsgCommitOK
	// MsgPrepare: recoverer → all, explicit prepare at a higher ballot.
	MsgPrepare
	// MsgPrepareOK: the replier's state of the instance: Status, the
	// attributes, and Accepted, the ballot they were last (pre-)accepted
	// under (never the promised ballot).
	MsgPrepareOK
	// MsgNack: refusal of a message below the replier's promise; Ballot is
	// the promised ballot.
	MsgNack
	// MsgTryPreAccept: recoverer → replicas that do not hold the
	// attributes that may have been fast-committed.
	MsgTryPreAccept
	// MsgTryPreAcceptOK: reply to MsgTryPreAccept; Changed says the
	// replier refused (a conflict, or it holds a later phase).
	MsgTryPreAcceptOK
	// MsgLearn: a replica whose executor waits for an instance asks the
	// others for its commit; one that holds it committed answers with
	// MsgCommit, one that compacted it with MsgCompacted, one that does
	// not know it ignores it. It carries no ballot and changes no promise.
	MsgLearn
	// MsgCompacted: the answer to any message about instance ID from a
	// replica that executed ID and compacted it away behind a snapshot:
	// ID is committed, and the sender's snapshots cover it (see
	// snapshot.go). It carries no ballot.
	MsgCompacted
	// MsgSnapRequest: a replica that needs instances a peer compacted
	// asks it for a chunk of its newest snapshot: Snapshot.Index and
	// Snapshot.Term name the snapshot being received (zero: the newest),
	// Offset the chunk. At offset 0, ID is the instance the requester
	// needs and Deps its executed frontier (one ID per space: the
	// highest instance it executed there).
	MsgSnapRequest
	// MsgSnap: one chunk of a snapshot, Data at Offset, Last if it ends
	// it; Snapshot names it, with its Protocol state only at offset 0.
	// Snapshot.Index 0: the sender has no snapshot that would do.
	MsgSnap
)

const msgTypeLast = MsgSnap

// String names the type.
func (t MsgType) String() string {
	switch t {
	case MsgPreAccept:
		return "PreAccept"
	case MsgPreAcceptOK:
		return "PreAcceptOK"
	case MsgAccept:
		return "Accept"
	case MsgAcceptOK:
		return "AcceptOK"
	case MsgCommit:
		return "Commit"
	case MsgCommitOK:
		return "CommitOK"
	case MsgPrepare:
		return "Prepare"
	case MsgPrepareOK:
		return "PrepareOK"
	case MsgNack:
		return "Nack"
	case MsgTryPreAccept:
		return "TryPreAccept"
	case MsgTryPreAcceptOK:
		return "TryPreAcceptOK"
	case MsgLearn:
		return "Learn"
	case MsgCompacted:
		return "Compacted"
	case MsgSnapRequest:
		return "SnapRequest"
	case MsgSnap:
		return "Snap"
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// Msg is the payload of every EPaxos message. Fields a type does not use
// are zero.
type Msg struct {
	Type   MsgType
	Ballot Ballot
	ID     InstanceID
	NoOp   bool
	// Command and Batched are the instance's commands, as in Instance.
	Command consensus.Command
	Batched []consensus.Command
	Seq     uint64
	Deps    []InstanceID
	// Changed (MsgPreAcceptOK): the replier's attributes differ from the
	// ones in the PreAccept; (MsgTryPreAcceptOK): the replier refused.
	Changed bool
	// Status and Accepted (MsgPrepareOK): the replier's status of the
	// instance and the ballot under which it last pre-accepted or accepted
	// the attributes it reports.
	Status   Status
	Accepted Ballot
	// Snapshot, Offset, Data and Last describe a snapshot chunk (MsgSnap)
	// or the chunk asked for (MsgSnapRequest: Snapshot.Index, Term and
	// Offset); other types leave them zero.
	Snapshot consensus.SnapshotMeta
	Offset   int64
	Data     []byte
	Last     bool
}

// isSnapshotMsg reports whether t is a snapshot-transfer message, the only
// types that carry the snapshot fields and need no instance ID.
func isSnapshotMsg(t MsgType) bool { return t == MsgSnapRequest || t == MsgSnap }

// MessageType implements consensus.Payload.
func (m *Msg) MessageType() string { return "epaxos." + m.Type.String() }

// commands returns the instance's commands the message carries, in order
// (none for a no-op). Only types that carry commands (PreAccept, Accept,
// Commit, TryPreAccept, and PrepareOK from a replica that knows them)
// have any.
func (m *Msg) commands() []consensus.Command {
	return commandsOf(!m.NoOp, &m.Command, m.Batched)
}

// conflictKeys is conflictKeys(m.commands()), possibly sharing the
// command's Keys (see keysOf); callers must not modify it.
func (m *Msg) conflictKeys() []string {
	return keysOf(!m.NoOp, &m.Command, m.Batched)
}

// setCommands makes the message carry cmds.
func (m *Msg) setCommands(cmds []consensus.Command) {
	m.Command, m.Batched = splitCommands(cmds)
}

// String formats the message for traces.
func (m *Msg) String() string {
	if isSnapshotMsg(m.Type) {
		return fmt.Sprintf("%v snapshot=%d/%d offset=%d bytes=%d last=%t id=%v frontier=%s", m.Type, m.Snapshot.Index, m.Snapshot.Term, m.Offset, len(m.Data), m.Last, m.ID, formatDeps(m.Deps))
	}
	return fmt.Sprintf("%v %v b=%v seq=%d deps=%s changed=%t status=%v accepted=%v", m.Type, m.ID, m.Ballot, m.Seq, formatDeps(m.Deps), m.Changed, m.Status, m.Accepted)
}

package gossip

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// State is what a node believes of a member's liveness.
type State uint8

const (
	// StateAlive: the member answers, or refuted the last suspicion.
	StateAlive State = iota + 1
	// StateSuspect: a probe of the member failed; it is declared dead
	// unless it refutes (with a higher incarnation) before the suspicion
	// timeout.
	StateSuspect
	// StateDead: the suspicion timed out. Final for that incarnation.
	StateDead
	// StateLeft: the member said it was leaving. Final for that
	// incarnation.
	StateLeft

	stateLast = StateLeft
)

// String names the state.
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// live reports whether s counts the member as part of the group: alive
// or suspect. Dead and left members are only remembered until reaped.
func (s State) live() bool { return s == StateAlive || s == StateSuspect }

// rank orders states within one incarnation: alive < suspect < dead =
// left. See Overrides.
func (s State) rank() int {
	switch s {
	case StateAlive:
		return 0
	case StateSuspect:
		return 1
	}
	return 2
}

// Overrides reports whether news that a member is in state st at
// incarnation inc replaces what is known of it, state cur at incarnation
// curInc. It is the whole precedence rule of SWIM with suspicion: the pair
// (incarnation, rank) must grow, where rank orders alive < suspect <
// dead = left. So alive at a higher incarnation overrides anything of a
// lower one; suspect overrides alive of the same incarnation; dead or left
// overrides alive and suspect of the same incarnation and is final for
// it (another dead or left of that incarnation changes nothing); and news
// of the same incarnation and state is not news (for a suspicion it is a
// confirmation, which the caller counts).
func Overrides(curInc uint64, cur State, inc uint64, st State) bool {
	if inc != curInc {
		return inc > curInc
	}
	return st.rank() > cur.rank()
}

// Member is one node's view of a member of the group.
type Member struct {
	ID consensus.NodeID
	// Addr is where the member receives messages. It is opaque to the
	// core: the host's transport interprets it.
	Addr string
	// Meta is the member's metadata, at most Config.MetaBytesMax bytes.
	// Treat it as read-only: it may be shared with the core.
	Meta []byte
	// Incarnation is the member's own counter: only the member raises it,
	// to refute a suspicion or to publish new metadata.
	Incarnation uint64
	State       State
}

// String formats the member for traces.
func (m Member) String() string {
	return fmt.Sprintf("%d@%s inc=%d %v meta=%q", m.ID, m.Addr, m.Incarnation, m.State, m.Meta)
}

// Update is one piece of membership news: member ID is in State at
// Incarnation. Updates are piggybacked on probe messages and carried in
// full by push-pull.
type Update struct {
	ID          consensus.NodeID
	Incarnation uint64
	State       State
	// From is the node that accused the member, for StateSuspect and
	// StateDead: distinct accusers of one suspicion are the independent
	// confirmations Lifeguard counts. None for alive and left.
	From consensus.NodeID
	// Addr and Meta travel with alive updates and with every entry of a
	// push-pull; piggybacked suspect, dead and left updates leave them
	// empty.
	Addr string
	Meta []byte
}

// String formats the update for traces.
func (u Update) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %d inc=%d", u.State, u.ID, u.Incarnation)
	if u.From != consensus.None {
		fmt.Fprintf(&b, " by %d", u.From)
	}
	if u.Addr != "" {
		fmt.Fprintf(&b, " @%s", u.Addr)
	}
	if len(u.Meta) > 0 {
		fmt.Fprintf(&b, " meta=%q", u.Meta)
	}
	return b.String()
}

// MsgType says what a Message is.
type MsgType uint8

const (
	// MsgPing: a probe. The receiver answers MsgAck with the same Seq, to
	// From at FromAddr.
	MsgPing MsgType = iota + 1
	// MsgAck: the answer to a ping, from the probed member or relayed by
	// a helper of an indirect probe.
	MsgAck
	// MsgPingReq: asks a helper to ping Target (at TargetAddr) and relay
	// its ack, for an indirect probe.
	MsgPingReq
	// MsgNack: a helper's report that Target did not answer its ping in
	// time (Lifeguard). It tells the requester that its own link to the
	// helper works.
	MsgNack
	// MsgPushPull: a full-state exchange (anti-entropy, and joining):
	// Updates holds every member the sender knows, itself included. The
	// receiver of a request (Reply unset) answers with its own state.
	MsgPushPull
	// MsgGossip: a bare carrier of piggybacked updates (used by Leave).
	MsgGossip

	msgTypeLast = MsgGossip
)

// String names the type.
func (t MsgType) String() string {
	switch t {
	case MsgPing:
		return "Ping"
	case MsgAck:
		return "Ack"
	case MsgPingReq:
		return "PingReq"
	case MsgNack:
		return "Nack"
	case MsgPushPull:
		return "PushPull"
	case MsgGossip:
		return "Gossip"
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one gossip message between nodes. Every message carries the
// sender's ID and address, so that a receiver can answer a node it does
// not know yet (a joiner, a prober).
type Message struct {
	Type     MsgType
	From     consensus.NodeID
	FromAddr string
	// To is the member the message is meant for, or None when the sender
	// knows only an address (a seed). A node refuses a message whose To
	// names another node: the address has changed hands.
	To consensus.NodeID
	// Seq pairs a ping or ping-req with its ack or nack.
	Seq uint64
	// Target and TargetAddr name the member to probe (MsgPingReq).
	Target     consensus.NodeID
	TargetAddr string
	// Reply marks the answer to a push-pull request.
	Reply bool
	// Updates are the piggybacked updates, or the sender's full state in
	// a push-pull.
	Updates []Update
}

// MessageType implements consensus.Payload.
func (m *Message) MessageType() string { return "gossip." + m.Type.String() }

// String formats the message for traces.
func (m *Message) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %d@%s->%d seq=%d", m.Type, m.From, m.FromAddr, m.To, m.Seq)
	if m.Type == MsgPingReq {
		fmt.Fprintf(&b, " target=%d@%s", m.Target, m.TargetAddr)
	}
	if m.Reply {
		b.WriteString(" reply")
	}
	if len(m.Updates) > 0 {
		fmt.Fprintf(&b, " updates=%v", m.Updates)
	}
	return b.String()
}

// Outbound is a message to send: to Message.To (None for a seed known
// only by address) at Addr.
type Outbound struct {
	Addr    string
	Message *Message
}

// EventType says what changed about a member.
type EventType uint8

const (
	// EventJoined: a member not known before (or reaped since) appeared.
	EventJoined EventType = iota + 1
	// EventSuspect: a member became suspect.
	EventSuspect
	// EventDead: a member was declared dead.
	EventDead
	// EventLeft: a member left gracefully.
	EventLeft
	// EventAlive: a suspect, dead or left member is alive again (it
	// refuted, or came back with a higher incarnation).
	EventAlive
	// EventUpdated: an alive member published a new address or metadata.
	EventUpdated
)

// String names the event type.
func (t EventType) String() string {
	switch t {
	case EventJoined:
		return "joined"
	case EventSuspect:
		return "suspect"
	case EventDead:
		return "dead"
	case EventLeft:
		return "left"
	case EventAlive:
		return "alive"
	case EventUpdated:
		return "updated"
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// Event is a change of a member, with its state after the change.
type Event struct {
	Type   EventType
	Member Member
}

// String formats the event for traces.
func (e Event) String() string { return e.Type.String() + " " + e.Member.String() }

// Ready is the work a Node hands to its host: messages to send (in any
// order; the network may lose, duplicate, delay or reorder them) and
// membership events to report, in the order they happened. Gossip has no
// durable state in this slice, so there is nothing to persist. Messages
// and events may share metadata slices with the node: treat them as
// read-only.
type Ready struct {
	Messages []Outbound
	Events   []Event
}

// Empty reports whether rd carries no work.
func (rd Ready) Empty() bool { return len(rd.Messages) == 0 && len(rd.Events) == 0 }

// Status is a node's view of the group.
type Status struct {
	ID          consensus.NodeID
	Incarnation uint64
	// Health is this node's Local Health Multiplier (0 = healthy, up to
	// Config.HealthMax); always 0 with Lifeguard off.
	Health int
	// Leaving is set once Leave was called.
	Leaving bool
	// Members lists every member this node remembers, itself included,
	// dead and left ones until they are reaped, sorted by ID.
	Members []Member
}

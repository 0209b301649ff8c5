package paxos

import (
	"strconv"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// MsgType is the kind of a Paxos message.
type MsgType uint8

const (
	// MsgPrepare is phase 1a for every slot from Index on, at Ballot.
	MsgPrepare MsgType = iota + 1
	// MsgPromise is phase 1b. Granted: Ballot is the prepared ballot;
	// Entries are the values the acceptor holds for slots >= the prepare's
	// Index, with Ballots[i] the ballot at which it accepted Entries[i];
	// entries at or below Commit are known chosen. Rejected: Ballot is the
	// acceptor's higher promise.
	MsgPromise
	// MsgAccept is phase 2a: accept Entries (each at its Index, a slot) at
	// Ballot. Commit is the leader's commit index (a commit notification).
	MsgAccept
	// MsgAccepted is phase 2b: Slots were accepted at Ballot; Commit is
	// the acceptor's commit index. Rejected: Ballot is its higher promise.
	MsgAccepted
	// MsgHeartbeat carries the leader's Commit and its read round ReadSeq.
	MsgHeartbeat
	// MsgHeartbeatResp acknowledges a heartbeat at Ballot (the acceptor
	// has promised nothing higher), echoing ReadSeq, with the acceptor's
	// Commit. Rejected: Ballot is its higher promise.
	MsgHeartbeatResp
	// MsgLearn carries chosen Entries (catch-up of a lagging learner).
	MsgLearn
	// MsgLearnResp reports the learner's Commit after a MsgLearn.
	MsgLearnResp
	// MsgSnap carries one chunk of the snapshot Snapshot: Data at Offset,
	// Last if it ends the snapshot. Ballot is the sender's ballot (see
	// Replica.Ballot); a chunk holds at most Config.SnapshotChunkBytes.
	MsgSnap
	// MsgSnapResp answers a MsgSnap about snapshot Index: Offset is the
	// offset the receiver expects next (Reject: it refused the chunk and
	// wants the transfer resumed from Offset), and Commit is its commit
	// index (at or above Index once the snapshot is installed).
	MsgSnapResp
)

const msgTypeLast = MsgSnapResp

var msgTypeNames = [...]string{
	MsgPrepare:       "Prepare",
	MsgPromise:       "Promise",
	MsgAccept:        "Accept",
	MsgAccepted:      "Accepted",
	MsgHeartbeat:     "Heartbeat",
	MsgHeartbeatResp: "HeartbeatResp",
	MsgLearn:         "Learn",
	MsgLearnResp:     "LearnResp",
	MsgSnap:          "Snap",
	MsgSnapResp:      "SnapResp",
}

var msgTypeQualified = [...]string{
	MsgPrepare:       "paxos.Prepare",
	MsgPromise:       "paxos.Promise",
	MsgAccept:        "paxos.Accept",
	MsgAccepted:      "paxos.Accepted",
	MsgHeartbeat:     "paxos.Heartbeat",
	MsgHeartbeatResp: "paxos.HeartbeatResp",
	MsgLearn:         "paxos.Learn",
	MsgLearnResp:     "paxos.LearnResp",
	MsgSnap:          "paxos.Snap",
	MsgSnapResp:      "paxos.SnapResp",
}

// String names the message type.
func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) && msgTypeNames[t] != "" {
		return msgTypeNames[t]
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// Msg is the payload of every Paxos message; which fields matter depends on
// Type. A Msg is never modified after it is handed to the host.
type Msg struct {
	Type    MsgType
	Ballot  Ballot
	Index   uint64
	Commit  uint64
	ReadSeq uint64
	Reject  bool
	Entries []consensus.Entry
	// Ballots parallels Entries in a MsgPromise.
	Ballots []Ballot
	// Slots lists the slots a MsgAccepted acknowledges.
	Slots []uint64
	// Snapshot, Offset, Data and Last describe a snapshot chunk (MsgSnap);
	// a MsgSnapResp uses Offset.
	Snapshot consensus.SnapshotMeta
	Offset   int64
	Data     []byte
	Last     bool
}

// MessageType implements consensus.Payload.
func (m *Msg) MessageType() string {
	if int(m.Type) < len(msgTypeQualified) && msgTypeQualified[m.Type] != "" {
		return msgTypeQualified[m.Type]
	}
	return "paxos." + m.Type.String()
}

// String formats the message for traces, for example
// "Accept b=4.1 commit=2 [3/4 \"x\"]".
func (m *Msg) String() string {
	var b strings.Builder
	b.WriteString(m.Type.String())
	b.WriteString(" b=")
	b.WriteString(m.Ballot.String())
	if m.Reject {
		b.WriteString(" rejected")
	}
	switch m.Type {
	case MsgPrepare:
		b.WriteString(" from=")
		b.WriteString(strconv.FormatUint(m.Index, 10))
	case MsgPromise:
		if m.Reject {
			break
		}
		b.WriteString(" from=")
		b.WriteString(strconv.FormatUint(m.Index, 10))
		b.WriteString(" commit=")
		b.WriteString(strconv.FormatUint(m.Commit, 10))
		if len(m.Entries) > 0 {
			b.WriteString(" ")
			writeEntries(&b, m.Entries, m.Ballots)
		}
	case MsgAccept:
		b.WriteString(" commit=")
		b.WriteString(strconv.FormatUint(m.Commit, 10))
		b.WriteString(" ")
		writeEntries(&b, m.Entries, nil)
	case MsgAccepted:
		if !m.Reject {
			b.WriteString(" slots=")
			b.WriteString(formatSlots(m.Slots))
		}
		b.WriteString(" commit=")
		b.WriteString(strconv.FormatUint(m.Commit, 10))
	case MsgHeartbeat, MsgHeartbeatResp:
		b.WriteString(" commit=")
		b.WriteString(strconv.FormatUint(m.Commit, 10))
		if m.ReadSeq != 0 {
			b.WriteString(" read=")
			b.WriteString(strconv.FormatUint(m.ReadSeq, 10))
		}
	case MsgLearn:
		b.WriteString(" ")
		writeEntries(&b, m.Entries, nil)
	case MsgLearnResp:
		b.WriteString(" commit=")
		b.WriteString(strconv.FormatUint(m.Commit, 10))
	case MsgSnap:
		b.WriteString(" snap=")
		b.WriteString(strconv.FormatUint(m.Snapshot.Index, 10))
		b.WriteByte('/')
		b.WriteString(strconv.FormatUint(m.Snapshot.Term, 10))
		b.WriteString(" off=")
		b.WriteString(strconv.FormatInt(m.Offset, 10))
		b.WriteString(" len=")
		b.WriteString(strconv.Itoa(len(m.Data)))
		if m.Last {
			b.WriteString(" last")
		}
	case MsgSnapResp:
		b.WriteString(" snap=")
		b.WriteString(strconv.FormatUint(m.Index, 10))
		b.WriteString(" off=")
		b.WriteString(strconv.FormatInt(m.Offset, 10))
		b.WriteString(" commit=")
		b.WriteString(strconv.FormatUint(m.Commit, 10))
	}
	return b.String()
}

func formatSlots(s []uint64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		if i == entriesShownMax && len(s) > entriesShownMax+1 {
			b.WriteString("… ")
			b.WriteString(strconv.FormatUint(s[len(s)-1], 10))
			break
		}
		b.WriteString(strconv.FormatUint(x, 10))
	}
	b.WriteByte(']')
	return b.String()
}

const entriesShownMax = 8

func writeEntries(b *strings.Builder, ents []consensus.Entry, ballots []Ballot) {
	b.WriteByte('[')
	for i := range ents {
		if i == entriesShownMax && len(ents) > entriesShownMax+1 {
			b.WriteString(", … ")
			b.WriteString(strconv.Itoa(len(ents) - entriesShownMax - 1))
			b.WriteString(" more …, ")
			writeEntry(b, &ents[len(ents)-1])
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		writeEntry(b, &ents[i])
		if i < len(ballots) {
			b.WriteString("@")
			b.WriteString(ballots[i].String())
		}
	}
	b.WriteByte(']')
}

func writeEntry(b *strings.Builder, e *consensus.Entry) {
	b.WriteString(strconv.FormatUint(e.Index, 10))
	b.WriteByte('/')
	b.WriteString(strconv.FormatUint(e.Term, 10))
	b.WriteByte(' ')
	if e.Type == consensus.EntryNoOp {
		b.WriteString("noop")
		return
	}
	const dataShownMax = 32
	d := e.Command.Data
	if len(d) > dataShownMax {
		b.WriteString(strconv.Quote(string(d[:dataShownMax])))
		b.WriteString("…")
		return
	}
	b.WriteString(strconv.Quote(string(d)))
}

// FormatEntry formats one entry as in traces: "slot/term data".
func FormatEntry(e consensus.Entry) string {
	var b strings.Builder
	writeEntry(&b, &e)
	return b.String()
}

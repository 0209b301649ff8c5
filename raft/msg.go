package raft

import (
	"strconv"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// MsgType is the kind of a Raft message.
type MsgType uint8

const (
	// MsgPreVote asks for a pre-vote for Term (the sender's term + 1)
	// without anyone changing term. Index/LogTerm: the sender's last entry.
	MsgPreVote MsgType = iota + 1
	// MsgPreVoteResp answers MsgPreVote. A grant carries the requested
	// term; a refusal carries the responder's term.
	MsgPreVoteResp
	// MsgVote asks for a vote in Term. Index/LogTerm: the candidate's last
	// entry.
	MsgVote
	// MsgVoteResp answers MsgVote.
	MsgVoteResp
	// MsgApp carries Entries following the entry at Index (whose term is
	// LogTerm), and the leader's commit index.
	MsgApp
	// MsgAppResp answers MsgApp. Accepted: Index is the highest index the
	// follower now knows matches the leader. Rejected: Index is the
	// rejected MsgApp.Index, and HintIndex/HintTerm locate the follower's
	// last entry that might match.
	MsgAppResp
	// MsgHeartbeat carries the commit index the follower may adopt and the
	// leader's current read round ReadSeq.
	MsgHeartbeat
	// MsgHeartbeatResp acknowledges a heartbeat, echoing its ReadSeq.
	MsgHeartbeatResp
	// MsgSnap carries one chunk of the snapshot Snapshot: Data at Offset,
	// Last if it ends the snapshot. A snapshot is sent in chunks of at
	// most Config.SnapshotChunkBytes, never whole.
	MsgSnap
	// MsgSnapResp answers a MsgSnap that is not the last chunk (the last
	// one, once installed, is answered with a MsgAppResp at the snapshot's
	// index). Index is the snapshot's index; Offset the offset the follower
	// expects next. Reject marks an out-of-order chunk or a failure to
	// store one (Offset 0: start over); a reject from a replica of a later
	// term carries only its term.
	MsgSnapResp
)

// msgTypeLast is the highest MsgType.
const msgTypeLast = MsgSnapResp

var msgTypeNames = [...]string{
	MsgPreVote:       "PreVote",
	MsgPreVoteResp:   "PreVoteResp",
	MsgVote:          "Vote",
	MsgVoteResp:      "VoteResp",
	MsgApp:           "App",
	MsgAppResp:       "AppResp",
	MsgHeartbeat:     "Heartbeat",
	MsgHeartbeatResp: "HeartbeatResp",
	MsgSnap:          "Snap",
	MsgSnapResp:      "SnapResp",
}

var msgTypeQualified = [...]string{
	MsgPreVote:       "raft.PreVote",
	MsgPreVoteResp:   "raft.PreVoteResp",
	MsgVote:          "raft.Vote",
	MsgVoteResp:      "raft.VoteResp",
	MsgApp:           "raft.App",
	MsgAppResp:       "raft.AppResp",
	MsgHeartbeat:     "raft.Heartbeat",
	MsgHeartbeatResp: "raft.HeartbeatResp",
	MsgSnap:          "raft.Snap",
	MsgSnapResp:      "raft.SnapResp",
}

// String names the message type.
func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) && msgTypeNames[t] != "" {
		return msgTypeNames[t]
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// Msg is the payload of every Raft message. Which fields are meaningful
// depends on Type (see the MsgType constants). A Msg is never modified after
// it is handed to the host, and neither are its Entries, Snapshot.Voters
// and Data.
type Msg struct {
	Type MsgType
	// Term is the sender's term, except in a pre-vote request and its
	// grant, where it is the term the pre-candidate would campaign in.
	Term    uint64
	Index   uint64
	LogTerm uint64
	Commit  uint64
	Entries []consensus.Entry
	Reject  bool
	// HintIndex and HintTerm accompany a rejected MsgAppResp: the follower's
	// largest index at or below the rejected one whose term is at most the
	// rejected LogTerm, and that term.
	HintIndex uint64
	HintTerm  uint64
	// ReadSeq numbers the leader's read-confirmation rounds (heartbeats and
	// their responses).
	ReadSeq uint64
	// Snapshot, Offset, Data and Last describe a snapshot chunk (MsgSnap);
	// MsgSnapResp uses Index and Offset.
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
	return "raft." + m.Type.String()
}

// String formats the message compactly for traces, for example
// "App term=2 prev=1/1 commit=1 [2/2 noop, 3/2 \"x\"]".
func (m *Msg) String() string {
	var b strings.Builder
	b.WriteString(m.Type.String())
	b.WriteString(" term=")
	b.WriteString(strconv.FormatUint(m.Term, 10))
	switch m.Type {
	case MsgPreVote, MsgVote:
		b.WriteString(" last=")
		writeIndexTerm(&b, m.Index, m.LogTerm)
	case MsgPreVoteResp, MsgVoteResp:
		if m.Reject {
			b.WriteString(" rejected")
		} else {
			b.WriteString(" granted")
		}
	case MsgApp:
		b.WriteString(" prev=")
		writeIndexTerm(&b, m.Index, m.LogTerm)
		b.WriteString(" commit=")
		b.WriteString(strconv.FormatUint(m.Commit, 10))
		if len(m.Entries) > 0 {
			b.WriteString(" ")
			writeEntries(&b, m.Entries)
		}
	case MsgAppResp:
		if m.Reject {
			b.WriteString(" rejected index=")
			b.WriteString(strconv.FormatUint(m.Index, 10))
			b.WriteString(" hint=")
			writeIndexTerm(&b, m.HintIndex, m.HintTerm)
		} else {
			b.WriteString(" index=")
			b.WriteString(strconv.FormatUint(m.Index, 10))
		}
	case MsgHeartbeat:
		b.WriteString(" commit=")
		b.WriteString(strconv.FormatUint(m.Commit, 10))
		if m.ReadSeq != 0 {
			b.WriteString(" read=")
			b.WriteString(strconv.FormatUint(m.ReadSeq, 10))
		}
	case MsgHeartbeatResp:
		if m.ReadSeq != 0 {
			b.WriteString(" read=")
			b.WriteString(strconv.FormatUint(m.ReadSeq, 10))
		}
	case MsgSnap:
		b.WriteString(" snap=")
		writeIndexTerm(&b, m.Snapshot.Index, m.Snapshot.Term)
		b.WriteString(" offset=")
		b.WriteString(strconv.FormatInt(m.Offset, 10))
		b.WriteString(" bytes=")
		b.WriteString(strconv.Itoa(len(m.Data)))
		if m.Last {
			b.WriteString(" last")
		}
	case MsgSnapResp:
		if m.Reject {
			b.WriteString(" rejected")
		}
		b.WriteString(" snap=")
		b.WriteString(strconv.FormatUint(m.Index, 10))
		b.WriteString(" offset=")
		b.WriteString(strconv.FormatInt(m.Offset, 10))
	}
	return b.String()
}

func writeIndexTerm(b *strings.Builder, index, term uint64) {
	b.WriteString(strconv.FormatUint(index, 10))
	b.WriteByte('/')
	b.WriteString(strconv.FormatUint(term, 10))
}

// entriesShownMax bounds how many entries String prints in full.
const entriesShownMax = 8

func writeEntries(b *strings.Builder, ents []consensus.Entry) {
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
	}
	b.WriteByte(']')
}

func writeEntry(b *strings.Builder, e *consensus.Entry) {
	writeIndexTerm(b, e.Index, e.Term)
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

// FormatEntry formats one entry as in message traces: "index/term data".
func FormatEntry(e consensus.Entry) string {
	var b strings.Builder
	writeEntry(&b, &e)
	return b.String()
}

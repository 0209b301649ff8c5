package raft

import (
	"fmt"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// HardState is the durable record of a replica's term, vote and commit
// index. Replaying records, the last HardState wins.
type HardState struct {
	Term   uint64
	Vote   consensus.NodeID
	Commit uint64
}

// RecordType implements consensus.Record.
func (HardState) RecordType() string { return "raft.HardState" }

// String formats the record for traces.
func (hs HardState) String() string {
	return fmt.Sprintf("HardState term=%d vote=%d commit=%d", hs.Term, hs.Vote, hs.Commit)
}

// Append is the durable record of log entries: Entries start at Index and
// are contiguous; replaying it first truncates every entry at Index or
// above, then appends Entries.
//
// Invariant: len(Entries) > 0 and Entries[i].Index == Index+i.
type Append struct {
	Index   uint64
	Entries []consensus.Entry
}

// RecordType implements consensus.Record.
func (Append) RecordType() string { return "raft.Append" }

// String formats the record for traces.
func (a Append) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Append index=%d ", a.Index)
	writeEntries(&b, a.Entries)
	return b.String()
}

// Checkpoint is the durable record that supersedes every record before it:
// the replica's HardState, the snapshot its log builds on, and its whole
// log after the compacted prefix. Replaying starts at the newest
// Checkpoint, so once one is durable the host may discard every older
// record. It implements consensus.Checkpoint.
//
// The log it describes starts after the entry at LogIndex (whose term is
// LogTerm) and holds Entries. LogIndex may lie below Snapshot.Index: the
// replica keeps Config.CompactionRetainEntries entries behind its snapshot
// so that slightly lagging followers can still be sent appends.
//
// Invariants (checked when encoding, decoding and replaying):
// LogIndex <= Snapshot.Index <= LogIndex+len(Entries);
// Entries[i].Index == LogIndex+1+i, with terms non-decreasing from LogTerm;
// Snapshot.Term is the term of the entry at Snapshot.Index;
// Snapshot.Index <= HardState.Commit <= LogIndex+len(Entries).
type Checkpoint struct {
	Snapshot  consensus.SnapshotMeta
	HardState HardState
	LogIndex  uint64
	LogTerm   uint64
	Entries   []consensus.Entry
}

var _ consensus.Checkpoint = Checkpoint{}

// RecordType implements consensus.Record.
func (Checkpoint) RecordType() string { return "raft.Checkpoint" }

// SnapshotIndex implements consensus.Checkpoint.
func (cp Checkpoint) SnapshotIndex() uint64 { return cp.Snapshot.Index }

// String formats the record for traces.
func (cp Checkpoint) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Checkpoint snapshot=%d/%d voters=%v term=%d vote=%d commit=%d log=%d/%d ",
		cp.Snapshot.Index, cp.Snapshot.Term, cp.Snapshot.Voters, cp.HardState.Term, cp.HardState.Vote, cp.HardState.Commit, cp.LogIndex, cp.LogTerm)
	writeEntries(&b, cp.Entries)
	return b.String()
}

// lastIndex is the index of the last entry of the log the checkpoint holds.
func (cp *Checkpoint) lastIndex() uint64 { return cp.LogIndex + uint64(len(cp.Entries)) }

// validate checks the invariants above.
func (cp *Checkpoint) validate() error {
	s := &cp.Snapshot
	if len(s.Voters) > PeersMax {
		return fmt.Errorf("checkpoint snapshot names %d voters; at most %d", len(s.Voters), PeersMax)
	}
	if s.Index < cp.LogIndex || s.Index > cp.lastIndex() {
		return fmt.Errorf("checkpoint snapshot index %d outside its log %d..%d", s.Index, cp.LogIndex, cp.lastIndex())
	}
	if cp.LogIndex == 0 && cp.LogTerm != 0 {
		return fmt.Errorf("checkpoint log starts at index 0 with term %d", cp.LogTerm)
	}
	prev := cp.LogTerm
	for i := range cp.Entries {
		e := &cp.Entries[i]
		if e.Index != cp.LogIndex+1+uint64(i) {
			return fmt.Errorf("checkpoint log after %d holds entry %d at position %d", cp.LogIndex, e.Index, i)
		}
		if e.Term < prev {
			return fmt.Errorf("checkpoint entry %d has term %d, below the previous term %d", e.Index, e.Term, prev)
		}
		prev = e.Term
	}
	snapTerm := cp.LogTerm
	if s.Index > cp.LogIndex {
		snapTerm = cp.Entries[s.Index-cp.LogIndex-1].Term
	}
	if s.Term != snapTerm {
		return fmt.Errorf("checkpoint snapshot %d/%d, but its log has term %d there", s.Index, s.Term, snapTerm)
	}
	if hs := &cp.HardState; hs.Commit < s.Index || hs.Commit > cp.lastIndex() {
		return fmt.Errorf("checkpoint commit %d outside %d..%d (snapshot..last index)", hs.Commit, s.Index, cp.lastIndex())
	}
	if prev > cp.HardState.Term {
		return fmt.Errorf("checkpoint log ends in term %d, after its term %d", prev, cp.HardState.Term)
	}
	return nil
}

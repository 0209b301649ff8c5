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

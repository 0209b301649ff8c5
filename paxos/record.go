package paxos

import (
	"fmt"
	"strings"

	"github.com/synod-io/synod/consensus"
)

// HardState is the durable record of a replica's promise, the highest
// round it ever proposed with, and its commit index. Replaying records,
// the last HardState wins.
//
// Invariants: Promised never decreases; Tried never decreases; every slot
// at or below Commit is chosen and its value is in an earlier (or the same
// Ready's) Accept or Learn record.
type HardState struct {
	Promised Ballot
	Tried    uint64
	Commit   uint64
}

// RecordType implements consensus.Record.
func (HardState) RecordType() string { return "paxos.HardState" }

// String formats the record for traces.
func (hs HardState) String() string {
	return fmt.Sprintf("HardState promised=%v tried=%d commit=%d", hs.Promised, hs.Tried, hs.Commit)
}

// Accept is the durable record of an acceptor accepting Entries (each at
// its own slot, Entry.Index) at Ballot. Replaying it overwrites the
// accepted ballot and value of each slot not already known chosen.
//
// Invariant: len(Entries) > 0, no entry has Index 0, Ballot is not zero.
type Accept struct {
	Ballot  Ballot
	Entries []consensus.Entry
}

// RecordType implements consensus.Record.
func (Accept) RecordType() string { return "paxos.Accept" }

// String formats the record for traces.
func (a Accept) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Accept b=%v ", a.Ballot)
	writeEntries(&b, a.Entries, nil)
	return b.String()
}

// Learn is the durable record of values learned to be chosen (from a
// leader's catch-up or from promises): replaying it sets each slot's value
// and marks it chosen.
//
// Invariant: len(Entries) > 0, no entry has Index 0.
type Learn struct {
	Entries []consensus.Entry
}

// RecordType implements consensus.Record.
func (Learn) RecordType() string { return "paxos.Learn" }

// String formats the record for traces.
func (l Learn) String() string {
	var b strings.Builder
	b.WriteString("Learn ")
	writeEntries(&b, l.Entries, nil)
	return b.String()
}

func validateEntries(kind string, ents []consensus.Entry) error {
	if len(ents) == 0 {
		return fmt.Errorf("%s record without entries", kind)
	}
	for i := range ents {
		e := &ents[i]
		if e.Index == 0 {
			return fmt.Errorf("%s record holds an entry at slot 0 (position %d)", kind, i)
		}
		if e.Type > consensus.EntryNoOp {
			return fmt.Errorf("%s record holds an entry of unknown type %d", kind, e.Type)
		}
	}
	return nil
}

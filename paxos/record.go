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

// Checkpoint is the durable record that supersedes every record before it:
// the snapshot the log builds on, the replica's HardState, and every slot
// it holds after the compacted prefix, with the ballot at which it
// accepted each. Replaying starts at the newest Checkpoint, so once one is
// durable the host may discard every older record. It implements
// consensus.Checkpoint.
//
// Slots at or below LogIndex are compacted: they are chosen, and their
// effect is in the snapshot (LogIndex <= Snapshot.Index; the replica keeps
// Config.CompactionRetainEntries chosen slots behind its snapshot, for
// catching up peers that lag a little). Entries are the values of the
// slots after LogIndex that hold one, in increasing slot order (later,
// unchosen slots may have gaps); Ballots[i] is the ballot at which this
// acceptor accepted Entries[i], zero if it only learned the value as
// chosen. Replaying marks chosen every slot up to HardState.Commit and
// every slot with a zero ballot, exactly as replaying Accept and Learn
// records would.
//
// Invariants (checked when encoding, decoding and replaying):
// LogIndex <= Snapshot.Index <= HardState.Commit; len(Ballots) ==
// len(Entries); entry slots are increasing and above LogIndex, and every
// slot from LogIndex+1 to HardState.Commit holds an entry; if
// Snapshot.Index > LogIndex, the entry at Snapshot.Index has term
// Snapshot.Term; no ballot is above HardState.Promised.
type Checkpoint struct {
	Snapshot  consensus.SnapshotMeta
	HardState HardState
	LogIndex  uint64
	Entries   []consensus.Entry
	Ballots   []Ballot
}

var _ consensus.Checkpoint = Checkpoint{}

// RecordType implements consensus.Record.
func (Checkpoint) RecordType() string { return "paxos.Checkpoint" }

// SnapshotIndex implements consensus.Checkpoint.
func (cp Checkpoint) SnapshotIndex() uint64 { return cp.Snapshot.Index }

// String formats the record for traces.
func (cp Checkpoint) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Checkpoint snapshot=%d/%d voters=%v promised=%v tried=%d commit=%d log=%d ",
		cp.Snapshot.Index, cp.Snapshot.Term, cp.Snapshot.Voters, cp.HardState.Promised, cp.HardState.Tried, cp.HardState.Commit, cp.LogIndex)
	writeEntries(&b, cp.Entries, cp.Ballots)
	return b.String()
}

// validate checks the invariants above.
func (cp *Checkpoint) validate() error {
	s := &cp.Snapshot
	hs := &cp.HardState
	if len(s.Voters) > PeersMax {
		return fmt.Errorf("checkpoint snapshot names %d voters; at most %d", len(s.Voters), PeersMax)
	}
	if s.Index < cp.LogIndex || s.Index > hs.Commit {
		return fmt.Errorf("checkpoint snapshot index %d outside log index %d .. commit %d", s.Index, cp.LogIndex, hs.Commit)
	}
	if len(cp.Ballots) != len(cp.Entries) {
		return fmt.Errorf("checkpoint has %d entries but %d ballots", len(cp.Entries), len(cp.Ballots))
	}
	if hs.Commit-cp.LogIndex > uint64(len(cp.Entries)) {
		return fmt.Errorf("checkpoint commit %d, but only %d entries after log index %d", hs.Commit, len(cp.Entries), cp.LogIndex)
	}
	prev := cp.LogIndex
	for i := range cp.Entries {
		e := &cp.Entries[i]
		if e.Index <= prev {
			return fmt.Errorf("checkpoint entry at position %d has slot %d, not above %d", i, e.Index, prev)
		}
		if e.Index <= hs.Commit && e.Index != cp.LogIndex+1+uint64(i) {
			return fmt.Errorf("checkpoint lacks slot %d below its commit index %d", cp.LogIndex+1+uint64(i), hs.Commit)
		}
		if e.Type > consensus.EntryNoOp {
			return fmt.Errorf("checkpoint entry %d has unknown type %d", e.Index, e.Type)
		}
		if e.Index == s.Index && e.Term != s.Term {
			return fmt.Errorf("checkpoint snapshot %d has term %d, but its entry there has term %d", s.Index, s.Term, e.Term)
		}
		if hs.Promised.Less(cp.Ballots[i]) {
			return fmt.Errorf("checkpoint slot %d accepted at %v, above the promise %v", e.Index, cp.Ballots[i], hs.Promised)
		}
		prev = e.Index
	}
	return nil
}

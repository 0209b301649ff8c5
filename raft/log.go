package raft

import (
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// raftLog is the in-memory log: a slice of entries with an offset.
//
// entries[0] is a sentinel standing for the entry at index offset, the last
// entry of the compacted prefix: it carries only that entry's index and term
// (index 0, term 0 before any compaction). entries[i] is the entry at
// offset+i. The log holds the entries offset+1..lastIndex().
//
// Slices of entries are handed to the host (in Persist, Messages and
// Committed) and must never change afterwards. So the log never writes into
// a position of its backing array that is below len(entries): truncation
// clips the capacity, and the next append copies into a new array. Every
// slice handed out is capacity-clipped too, so a host append cannot write
// into the log.
type raftLog struct {
	entries []consensus.Entry
	offset  uint64
	// committed is the highest index known committed.
	// Invariant: offset <= committed <= lastIndex().
	committed uint64
}

func newLog() raftLog {
	return raftLog{entries: make([]consensus.Entry, 1, 64)}
}

func (l *raftLog) lastIndex() uint64 { return l.offset + uint64(len(l.entries)) - 1 }

func (l *raftLog) lastTerm() uint64 { return l.entries[len(l.entries)-1].Term }

// term returns the term of the entry at i, and false if the log does not
// hold i.
func (l *raftLog) term(i uint64) (uint64, bool) {
	if i < l.offset || i > l.lastIndex() {
		return 0, false
	}
	return l.entries[i-l.offset].Term, true
}

// mustTerm is term for an index the caller knows is present.
func (l *raftLog) mustTerm(i uint64) uint64 {
	t, ok := l.term(i)
	if !ok {
		panic(fmt.Sprintf("raft: log has no entry %d (range %d..%d)", i, l.offset, l.lastIndex()))
	}
	return t
}

func (l *raftLog) matchTerm(i, term uint64) bool {
	t, ok := l.term(i)
	return ok && t == term
}

// at returns the entry at i, which must be present.
func (l *raftLog) at(i uint64) *consensus.Entry { return &l.entries[i-l.offset] }

// isUpToDate reports whether a log ending at (index, term) is at least as up
// to date as this one (Raft §5.4.1): a later last term wins, and with equal
// last terms the longer log.
func (l *raftLog) isUpToDate(index, term uint64) bool {
	lt := l.lastTerm()
	return term > lt || (term == lt && index >= l.lastIndex())
}

// slice returns the entries in [lo, hi), capacity-clipped. The caller must
// not modify them.
func (l *raftLog) slice(lo, hi uint64) []consensus.Entry {
	if lo <= l.offset || hi > l.lastIndex()+1 || lo > hi {
		panic(fmt.Sprintf("raft: slice [%d, %d) out of log range (%d, %d]", lo, hi, l.offset, l.lastIndex()))
	}
	a, b := lo-l.offset, hi-l.offset
	return l.entries[a:b:b]
}

// append adds entries that follow the last one.
func (l *raftLog) append(ents ...consensus.Entry) {
	l.entries = append(l.entries, ents...)
}

// truncateAndAppend removes every entry at ents[0].Index or above and then
// appends ents. Committed entries are never removed.
func (l *raftLog) truncateAndAppend(ents []consensus.Entry) {
	first := ents[0].Index
	switch {
	case first == l.lastIndex()+1:
		l.entries = append(l.entries, ents...)
	case first <= l.committed || first <= l.offset:
		panic(fmt.Sprintf("raft: truncating at %d would remove committed entries (commit %d)", first, l.committed))
	case first > l.lastIndex()+1:
		panic(fmt.Sprintf("raft: appending at %d leaves a gap after %d", first, l.lastIndex()))
	default:
		k := first - l.offset
		// Clip so the append copies into a fresh array: the entries being
		// replaced may already be held by the host.
		l.entries = append(l.entries[:k:k], ents...)
	}
}

// findConflict returns the index of the first entry in ents that is missing
// from the log or has a different term, or 0 if the log holds them all.
// ents must be contiguous.
func (l *raftLog) findConflict(ents []consensus.Entry) uint64 {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index at or below index whose term
// is at most term, and that term. Every entry in the log between the result
// and index has a larger term, so cannot match a log whose entry at index
// has a term at most term. Used for fast back-off on rejected appends.
func (l *raftLog) findConflictByTerm(index, term uint64) (uint64, uint64) {
	if last := l.lastIndex(); index > last {
		index = last
	}
	for index > l.offset {
		t := l.entries[index-l.offset].Term
		if t <= term {
			return index, t
		}
		index--
	}
	return l.offset, l.entries[0].Term
}

// compact discards the entries up to and including i, which must be
// committed, keeping the term of i in the sentinel. The remaining entries
// move to a fresh array, so slices handed out earlier stay untouched and the
// discarded prefix can be freed.
func (l *raftLog) compact(i uint64) {
	if i < l.offset || i > l.committed {
		panic(fmt.Sprintf("raft: compacting to %d outside the committed log (%d..%d)", i, l.offset, l.committed))
	}
	l.discardTo(i)
}

// discardTo is compact without the check that i is committed.
func (l *raftLog) discardTo(i uint64) {
	rest := l.entries[i-l.offset+1:]
	ents := make([]consensus.Entry, 1, 1+len(rest)+64)
	ents[0] = consensus.Entry{Index: i, Term: l.mustTerm(i)}
	l.entries = append(ents, rest...)
	l.offset = i
}

// restore makes the log start after the entry at index with the given term,
// committed. If the log holds that entry, the entries after it stay (Raft
// §7); otherwise the log becomes empty after it.
func (l *raftLog) restore(index, term uint64) {
	if l.matchTerm(index, term) {
		l.discardTo(index)
	} else {
		l.entries = make([]consensus.Entry, 1, 64)
		l.entries[0] = consensus.Entry{Index: index, Term: term}
		l.offset = index
	}
	l.committed = index
}

// commitTo raises the commit index to i.
func (l *raftLog) commitTo(i uint64) bool {
	if i <= l.committed {
		return false
	}
	if i > l.lastIndex() {
		panic(fmt.Sprintf("raft: commit %d beyond last index %d", i, l.lastIndex()))
	}
	l.committed = i
	return true
}

package store

import (
	"bytes"
	"cmp"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// Entry is one replicated write: the latest version of a key that a
// replica holds. Entries travel in messages and durable records; reads
// return KeyValues.
//
// Invariant: Key is not empty; Origin is not None; a tombstone has no
// value.
type Entry struct {
	Key   string
	Value []byte
	// TS is the hybrid-logical-clock time of the write on its origin.
	TS Timestamp
	// Origin is the node that accepted the write.
	Origin consensus.NodeID
	// Tombstone marks a delete. It is kept TombstoneTTLMs after TS, so
	// that it can override older versions still in flight, then purged.
	Tombstone bool
}

// Compare orders two versions of one key, last writer wins: by TS, then
// by Origin; a node never issues one TS twice, so these two decide
// between any two distinct writes. Two further rules make the order total
// even for a node that lost its state and reused a timestamp: a tombstone
// beats a value, and a greater value (bytewise) beats a smaller one.
// Compare returns 0 only for equal versions, so merging by it is
// commutative, associative and idempotent.
func (e *Entry) Compare(f *Entry) int {
	if c := e.TS.Compare(f.TS); c != 0 {
		return c
	}
	if c := cmp.Compare(e.Origin, f.Origin); c != 0 {
		return c
	}
	if e.Tombstone != f.Tombstone {
		if e.Tombstone {
			return 1
		}
		return -1
	}
	return bytes.Compare(e.Value, f.Value)
}

// String formats the entry for traces.
func (e Entry) String() string {
	if e.Tombstone {
		return fmt.Sprintf("%q deleted @%v by %d", e.Key, e.TS, e.Origin)
	}
	return fmt.Sprintf("%q=%q @%v by %d", e.Key, e.Value, e.TS, e.Origin)
}

// KeyValue is a live key as reads return it. Value is shared with the
// store: treat it as read-only.
type KeyValue struct {
	Key   string
	Value []byte
	// TS and Origin are the version of the write that set the value; the
	// same on every replica.
	TS     Timestamp
	Origin consensus.NodeID
	// Revision is local to this replica: the value of Store.Revision when
	// this replica last changed the key. It orders the key's history as
	// this replica saw it, and means nothing to another replica.
	Revision uint64
}

// validEntry checks the invariant of Entry against the hard limits; a
// Config may set tighter ones. Its errors match consensus.ErrMalformed.
func validEntry(e *Entry) error {
	switch {
	case e.Key == "" || len(e.Key) > KeyBytesMaxLimit:
		return fmt.Errorf("%w: store: entry key of %d bytes (allowed 1..%d)", consensus.ErrMalformed, len(e.Key), KeyBytesMaxLimit)
	case len(e.Value) > ValueBytesMaxLimit:
		return fmt.Errorf("%w: store: entry %q with a value of %d bytes (allowed %d)", consensus.ErrMalformed, e.Key, len(e.Value), ValueBytesMaxLimit)
	case e.Origin == consensus.None:
		return fmt.Errorf("%w: store: entry %q from node 0", consensus.ErrMalformed, e.Key)
	case e.Tombstone && len(e.Value) > 0:
		return fmt.Errorf("%w: store: tombstone for %q with a value", consensus.ErrMalformed, e.Key)
	}
	return nil
}

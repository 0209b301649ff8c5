package store

import (
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// Ready returns the work for the host: records to persist, then messages
// to send. It must be handled and passed to Advance before Ready is
// called again.
func (s *Store) Ready() Ready {
	return Ready{Persist: slices.Clone(s.persist), Messages: slices.Clone(s.msgs)}
}

// Advance drops the work of rd, which the host has done.
func (s *Store) Advance(rd Ready) {
	s.persist = s.persist[len(rd.Persist):]
	s.msgs = s.msgs[len(rd.Messages):]
	if len(s.persist) == 0 {
		s.persist = nil
	}
	if len(s.msgs) == 0 {
		s.msgs = nil
	}
}

// Status reports the replica's state. It does not change the replica.
func (s *Store) Status() Status {
	return Status{
		ID: s.id, Keys: s.Len(), Tombstones: s.tombstones, Revision: s.rev, Clock: s.clock.Last(),
		Root: s.tree.root(), Queued: s.queue.len(), Peers: len(s.peers),
	}
}

// Snapshot returns the replica's whole durable state as one record. The
// record shares values with the store: treat it as read-only.
func (s *Store) Snapshot() *SnapshotRecord {
	r := &SnapshotRecord{Clock: s.clock.Last(), Revision: s.rev, Entries: make([]Entry, 0, len(s.items))}
	s.index.ascend("", "", func(it *item) bool {
		r.Entries = append(r.Entries, it.e)
		return true
	})
	return r
}

// Restate returns the replica's whole state as records for a log that
// holds at most chunkBytes of encoded records per write: a RestateRecord,
// then an EntryRecord per entry (tombstones included), split into chunks
// whose encodings (RecordCodec) add up to at most chunkBytes each (one
// entry larger than that goes alone). Write the chunks in order and make
// them durable together; then the records before the first may go (see
// RestateRecord). The records share values with the store: treat them as
// read-only.
func (s *Store) Restate(chunkBytes int) [][]consensus.Record {
	var chunks [][]consensus.Record
	cur := []consensus.Record{&RestateRecord{Clock: s.clock.Last(), Revision: s.rev}}
	size := RecordBytes(cur[0])
	s.index.ascend("", "", func(it *item) bool {
		r := &EntryRecord{Entry: it.e}
		n := RecordBytes(r)
		if size+n > chunkBytes && len(cur) > 0 {
			chunks, cur, size = append(chunks, cur), nil, 0
		}
		cur, size = append(cur, r), size+n
		return true
	})
	return append(chunks, cur)
}

// RecordBytes is the size of r's encoding by RecordCodec (0 for a record
// of another package).
func RecordBytes(r consensus.Record) int {
	switch r := r.(type) {
	case *EntryRecord:
		return 2 + entrySize(&r.Entry)
	case *RestateRecord:
		return 2 + uvarintLen(r.Clock.WallMs) + uvarintLen(uint64(r.Clock.Logical)) + uvarintLen(r.Revision)
	case *SnapshotRecord:
		n := 2 + uvarintLen(r.Clock.WallMs) + uvarintLen(uint64(r.Clock.Logical)) + uvarintLen(r.Revision) + uvarintLen(uint64(len(r.Entries)))
		for i := range r.Entries {
			n += entrySize(&r.Entries[i])
		}
		return n
	}
	return 0
}

// Recover rebuilds the replica from its durable records, replayed in the
// order they were persisted, from the newest SnapshotRecord on: call it
// on a new Store for each record before any other method. A snapshot
// replaces the whole state; an entry record is merged (it was this
// replica's own write or a merge it accepted, so no drift check). The
// clock resumes above every timestamp recovered, so the replica never
// stamps two writes alike across a restart. Recovery emits nothing;
// tombstones past their TTL go at the next Tick.
func (s *Store) Recover(r consensus.Record) error {
	switch r := r.(type) {
	case *SnapshotRecord:
		if r == nil {
			break
		}
		if err := r.validate(); err != nil {
			return err
		}
		s.reset()
		s.clock.Witness(r.Clock)
		s.rev = max(s.rev, r.Revision)
		for _, e := range r.Entries {
			e.Value = slices.Clone(e.Value)
			s.setItem(nil, e)
			s.items[e.Key].rev = s.rev
		}
		return nil
	case *RestateRecord:
		if r == nil {
			break
		}
		s.clock.Witness(r.Clock)
		s.rev = max(s.rev, r.Revision)
		return nil
	case *EntryRecord:
		if r == nil {
			break
		}
		e := r.Entry
		if err := validEntry(&e); err != nil {
			return err
		}
		s.clock.Witness(e.TS)
		if it := s.items[e.Key]; it == nil || it.e.Compare(&e) < 0 {
			e.Value = slices.Clone(e.Value)
			s.apply(it, e, 0, false)
		}
		return nil
	}
	return fmt.Errorf("store: cannot recover from record %T", r)
}

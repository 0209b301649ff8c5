package store

import (
	"fmt"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// recovered returns a new replica with id's config, rebuilt from records.
func recovered(t *testing.T, net *testNet, id consensus.NodeID, records []consensus.Record) *Store {
	t.Helper()
	s, err := New(net.store(id).cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if err := s.Recover(r); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestRecoverFromRecords: a replica rebuilt from the records it persisted
// (every one, or the newest snapshot and those after it) holds the same
// entries and revision, and its clock resumes above every timestamp it
// issued or merged, so its next write wins over all of them.
func TestRecoverFromRecords(t *testing.T) {
	net := newTestNet(t, 21, 3, func(c *Config) { c.GossipIntervalMs = 30 })
	var snapAt int
	var snap *SnapshotRecord
	for i := range 600 {
		id := consensus.NodeID(1 + net.rng.IntN(3))
		key := fmt.Sprintf("k%02d", net.rng.IntN(40))
		if net.rng.IntN(4) == 0 {
			net.del(id, key)
		} else {
			net.put(id, key, fmt.Sprintf("v%d", i))
		}
		net.advance(uint64(net.rng.IntN(10)))
		if i == 300 {
			snapAt, snap = len(net.records[0]), net.store(1).Snapshot()
		}
		if i%50 == 0 {
			net.antiEntropyRound()
		}
	}
	orig := net.store(1)
	for name, recs := range map[string][]consensus.Record{
		"every record":           net.records[0],
		"snapshot and the rest":  append([]consensus.Record{snap}, net.records[0][snapAt:]...),
		"old records + snapshot": append(append(append([]consensus.Record{}, net.records[0][:snapAt/2]...), snap), net.records[0][snapAt:]...),
	} {
		s := recovered(t, net, 1, recs)
		if !equalEntries(state(s), state(orig)) || s.tree.root() != orig.tree.root() {
			t.Fatalf("%s: recovered state differs", name)
		}
		if s.Revision() != orig.Revision() {
			t.Fatalf("%s: revision %d, was %d", name, s.Revision(), orig.Revision())
		}
		checkTree(t, s)
		// The host's clock may lag after a restart; the replica's may not.
		ts, err := s.Put("k00", []byte("after restart"), 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range state(orig) {
			if !e.TS.Less(ts) {
				t.Fatalf("%s: write after recovery at %v does not follow %v", name, ts, e)
			}
		}
		if rd := s.Ready(); len(rd.Persist) != 1 || len(rd.Messages) != 0 {
			t.Fatalf("%s: recovery emitted work: %d records, %d messages", name, len(rd.Persist), len(rd.Messages))
		}
	}
}

// TestRestateChunksAndPrefixes: a restatement splits the whole state into
// chunks within the bound; replayed after the records it restates (or
// instead of them), it gives the same entries with a revision no lower
// than the replica's; and a crash that keeps only a prefix of it on top of
// the older records still gives the replica's state, because restated
// entries merge and replace nothing.
func TestRestateChunksAndPrefixes(t *testing.T) {
	net := newTestNet(t, 22, 2, func(c *Config) { c.GossipIntervalMs = 30 })
	for i := range 400 {
		key := fmt.Sprintf("k%03d", net.rng.IntN(150))
		if net.rng.IntN(5) == 0 {
			net.del(1, key)
		} else {
			net.put(1, key, fmt.Sprintf("value-%d", i))
		}
		net.advance(uint64(net.rng.IntN(5)))
	}
	orig := net.store(1)
	const chunkBytes = 512
	chunks := orig.Restate(chunkBytes)
	if len(chunks) < 4 {
		t.Fatalf("%d chunks of %d bytes for %d entries", len(chunks), chunkBytes, len(orig.items))
	}
	if _, ok := chunks[0][0].(*RestateRecord); !ok {
		t.Fatalf("the restatement starts with a %T", chunks[0][0])
	}
	entries := 0
	for i, c := range chunks {
		size := 0
		for _, r := range c {
			buf, err := RecordCodec.AppendRecord(nil, r)
			if err != nil {
				t.Fatal(err)
			}
			if len(buf) != RecordBytes(r) {
				t.Fatalf("RecordBytes(%v) = %d, encodes to %d", r, RecordBytes(r), len(buf))
			}
			size += len(buf)
			if _, ok := r.(*EntryRecord); ok {
				entries++
			}
		}
		if size > chunkBytes {
			t.Fatalf("chunk %d holds %d bytes, over %d", i, size, chunkBytes)
		}
	}
	if entries != len(orig.items) {
		t.Fatalf("restated %d entries of %d", entries, len(orig.items))
	}
	flat := func(cs [][]consensus.Record) []consensus.Record {
		var out []consensus.Record
		for _, c := range cs {
			out = append(out, c...)
		}
		return out
	}
	old := net.records[0]
	cases := map[string][]consensus.Record{
		"restatement alone":             flat(chunks),
		"old records, then restatement": append(append([]consensus.Record{}, old...), flat(chunks)...),
	}
	for k := 1; k < len(chunks); k++ {
		cases[fmt.Sprintf("old records, then %d of %d chunks", k, len(chunks))] = append(append([]consensus.Record{}, old...), flat(chunks[:k])...)
	}
	for name, recs := range cases {
		s := recovered(t, net, 1, recs)
		if !equalEntries(state(s), state(orig)) || s.tree.root() != orig.tree.root() {
			t.Fatalf("%s: recovered state differs", name)
		}
		if s.Revision() < orig.Revision() {
			t.Fatalf("%s: revision %d went back from %d", name, s.Revision(), orig.Revision())
		}
		checkTree(t, s)
	}
}

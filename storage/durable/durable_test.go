package durable

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/raft"
	"github.com/synod-io/synod/storage/snap"
	"github.com/synod-io/synod/storage/vfs"
	"github.com/synod-io/synod/storage/wal"
)

func entries(from, to, term uint64) []consensus.Entry {
	var out []consensus.Entry
	for i := from; i <= to; i++ {
		out = append(out, consensus.Entry{Index: i, Term: term, Command: consensus.Command{Data: []byte{byte(i)}}})
	}
	return out
}

func TestLogPersistAndRecover(t *testing.T) {
	fs := vfs.NewMem()
	opts := wal.Options{SegmentBytes: 4 << 10}
	l, recs, err := Open(fs, "wal", opts, raft.Codec)
	if err != nil || len(recs) != 0 {
		t.Fatalf("fresh log: %v, %d records", err, len(recs))
	}
	want := []consensus.Record{
		raft.Append{Index: 1, Entries: entries(1, 3, 1)},
		raft.HardState{Term: 1, Vote: 1, Commit: 0},
	}
	if err := l.Persist(want, false); err != nil {
		t.Fatal(err)
	}
	// A commit-index-only record written without sync is lost in a crash;
	// the synced ones survive.
	if err := l.Persist([]consensus.Record{raft.HardState{Term: 1, Vote: 1, Commit: 3}}, true); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone()
	_, got, err := Open(crashed, "wal", opts, raft.Codec)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after a crash: %v, want %v", got, want)
	}
	// A later synced batch makes the earlier unsynced one durable too.
	if err := l.Persist([]consensus.Record{raft.Append{Index: 4, Entries: entries(4, 4, 1)}}, false); err != nil {
		t.Fatal(err)
	}
	_, got, err = Open(fs.CrashClone(), "wal", opts, raft.Codec)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("after a synced batch: %d records, want 4", len(got))
	}
}

func TestCheckpointReleasesOlderRecords(t *testing.T) {
	fs := vfs.NewMem()
	opts := wal.Options{SegmentBytes: 4 << 10}
	l, _, err := Open(fs, "wal", opts, raft.Codec)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 500)
	for i := uint64(1); i <= 40; i++ {
		e := consensus.Entry{Index: i, Term: 1, Command: consensus.Command{Data: big}}
		if err := l.Persist([]consensus.Record{raft.Append{Index: i, Entries: []consensus.Entry{e}}}, false); err != nil {
			t.Fatal(err)
		}
	}
	before := l.Stats().Segments
	cp := raft.Checkpoint{Snapshot: consensus.SnapshotMeta{Index: 40, Term: 1}, HardState: raft.HardState{Term: 1, Commit: 40}, LogIndex: 40, LogTerm: 1}
	if err := l.Persist([]consensus.Record{cp}, true); err != nil { // a checkpoint is synced regardless
		t.Fatal(err)
	}
	if after := l.Stats().Segments; after >= before {
		t.Fatalf("segments %d before the checkpoint, %d after: nothing released", before, after)
	}
	_, got, err := Open(fs.CrashClone(), "wal", opts, raft.Codec)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[len(got)-1].(consensus.Checkpoint); !ok {
		t.Fatalf("the checkpoint did not survive a crash: last record %T", got[len(got)-1])
	}
}

func TestSnapshotsChunkedTransfer(t *testing.T) {
	fs := vfs.NewMem()
	src, err := snap.Open(fs, "a", snap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := snap.Open(fs, "b", snap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("state"), 3000)
	if _, err := src.Save(snap.Meta{Index: 9, Term: 2, Voters: []consensus.NodeID{1, 2, 3}}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	from, to := NewSnapshots(src, []consensus.NodeID{1, 2, 3}), NewSnapshots(dst, []consensus.NodeID{1, 2, 3})
	meta, ok := from.Newest()
	if !ok || meta.Index != 9 || meta.Term != 2 {
		t.Fatalf("Newest = %+v, %v", meta, ok)
	}
	var off int64
	chunks := 0
	for {
		chunk, last, err := from.ReadChunk(9, off, 1000)
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		if err := to.ReceiveChunk(meta, off, chunk, last); err != nil {
			t.Fatal(err)
		}
		off += int64(len(chunk))
		if last {
			break
		}
	}
	if chunks < 10 {
		t.Fatalf("%d chunks for %d bytes in 1000-byte chunks", chunks, len(data))
	}
	got, err := to.ReadAll(9)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("installed snapshot differs (%v)", err)
	}
	if _, _, err := from.ReadChunk(7, 0, 10); err == nil {
		t.Fatal("reading a snapshot that is not stored succeeded")
	}
}

// TestSnapshotsCarryProtocolState: the protocol state a snapshot was saved
// with comes back from Newest, travels with a chunked transfer, and a
// receiver refuses a snapshot whose state differs from what the sender
// named. Of two snapshots with one index, the newer term is the newest.
func TestSnapshotsCarryProtocolState(t *testing.T) {
	fs := vfs.NewMem()
	src, err := snap.Open(fs, "a", snap.Options{Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := snap.Open(fs, "b", snap.Options{Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	state := []byte("protocol state")
	for _, term := range []uint64{3, 5} {
		if _, err := src.Save(snap.Meta{Index: 9, Term: term, Protocol: append(state, byte(term))}, bytes.NewReader([]byte("data"))); err != nil {
			t.Fatal(err)
		}
	}
	from, to := NewSnapshots(src, nil), NewSnapshots(dst, nil)
	meta, ok := from.Newest()
	if !ok || meta.Index != 9 || meta.Term != 5 || !bytes.Equal(meta.Protocol, append(state, 5)) {
		t.Fatalf("Newest = %+v, %v", meta, ok)
	}
	chunk, last, err := from.ReadChunk(9, 0, 1<<20)
	if err != nil || !last {
		t.Fatalf("ReadChunk: %v, last %v", err, last)
	}
	wrong := meta
	wrong.Protocol = []byte("other")
	if err := to.ReceiveChunk(wrong, 0, chunk, true); err == nil {
		t.Fatal("received a snapshot whose protocol state differs from the named one")
	}
	if err := to.ReceiveChunk(meta, 0, chunk, true); err != nil {
		t.Fatal(err)
	}
	got, ok := to.Newest()
	if !ok || got.Term != 5 || !bytes.Equal(got.Protocol, meta.Protocol) {
		t.Fatalf("received snapshot: %+v", got)
	}
}

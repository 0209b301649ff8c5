package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/storage/kvstore"
)

// testClusterLeaderless is the cluster suite for a protocol without a
// leader: every node reports role peer and no leader, takes writes and
// linearizable reads (through the log), refuses what its kv options
// refuse before replicating it, and a stopped node catches up after a
// restart while the others go on without an election.
func testClusterLeaderless(t *testing.T, protocol string) {
	c := newCluster(t, 3, withProtocol(protocol, nil))
	ctx := ctxT(t)
	for i, n := range c.nodes {
		st := n.Status()
		if st.Protocol != protocol || st.Replica.Role != consensus.RolePeer || st.Replica.Leader != consensus.None {
			t.Errorf("node %d status: protocol %q role %v leader %d; want %s, peer, none", i+1, st.Protocol, st.Replica.Role, st.Replica.Leader, protocol)
		}
	}
	for i, n := range c.nodes {
		res, err := n.Propose(ctx, kv.Put(fmt.Sprintf("k%d", i), "1"))
		if err != nil {
			t.Fatalf("propose on node %d: %v", i+1, err)
		}
		if res.Revision < 2 {
			t.Errorf("node %d: revision %d after a put", i+1, res.Revision)
		}
	}
	// A linearizable read on any node sees the write another node
	// acknowledged just before, with no wait: it is ordered through the
	// log after that write.
	const rounds = 20
	for round := range rounds {
		w, r := c.nodes[round%3], c.nodes[(round+1)%3]
		val := fmt.Sprint(round)
		if _, err := w.Propose(ctx, kv.Put("x", val)); err != nil {
			t.Fatalf("round %d: put: %v", round, err)
		}
		got, err := r.Read(ctx, kv.Get("x"), true)
		if err != nil || len(got.KVs) != 1 || string(got.KVs[0].Value) != val || got.KVs[0].Version != int64(round+1) {
			t.Fatalf("round %d: linearizable read on another node: %+v, %v; want x=%s at version %d", round, got.KVs, err, val, round+1)
		}
	}
	// A range (a command that conflicts with everything) sees every key.
	res, err := c.nodes[2].Read(ctx, kv.RangePrefix("k"), true)
	if err != nil || res.Count != 3 {
		t.Fatalf("linearizable range: %+v, %v", res, err)
	}
	cas, err := c.nodes[1].Propose(ctx, kv.CompareAndSwap("x", fmt.Sprint(rounds-1), "cas"))
	if err != nil || !cas.Succeeded {
		t.Fatalf("compare-and-swap on value: %+v, %v", cas, err)
	}
	// Revisions are local: a compare on one is refused, on writes and on
	// reads, before anything is replicated.
	cmp := kv.Compare{Key: []byte("x"), Target: kv.CompareMod, Result: kv.CompareEqual, ModRevision: 3}
	if _, err := c.nodes[0].Propose(ctx, kv.Request{Txn: &kv.TxnRequest{Compare: cmp, Success: []kv.Request{kv.Put("x", "no")}}}); !errors.Is(err, kv.ErrRevisionCompare) {
		t.Fatalf("revision compare in a write: %v, want kv.ErrRevisionCompare", err)
	}
	if _, err := c.nodes[0].Read(ctx, kv.Request{Txn: &kv.TxnRequest{Compare: cmp, Success: []kv.Request{kv.Get("x")}}}, true); !errors.Is(err, kv.ErrRevisionCompare) {
		t.Fatalf("revision compare in a read: %v, want kv.ErrRevisionCompare", err)
	}
	for i := range c.nodes {
		c.waitValue(i, "x", "cas")
	}

	// A node stops: the others take writes at once (no election).
	c.stop(0)
	if _, err := c.nodes[1].Propose(ctx, kv.Put("x", "after")); err != nil {
		t.Fatalf("put with a node down: %v", err)
	}
	c.start(0)
	c.waitValue(0, "x", "after")
	got, err := c.nodes[0].Read(ctx, kv.Get("x"), true)
	if err != nil || len(got.KVs) != 1 || string(got.KVs[0].Value) != "after" || got.KVs[0].Version != rounds+2 {
		t.Fatalf("restarted node, linearizable read: %+v, %v; want after at version %d", got.KVs, err, rounds+2)
	}
}

// waitVersion waits until node i's local state holds key=value at version.
func (c *cluster) waitVersion(i int, key, value string, version int64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		res, err := c.nodes[i].Read(ctxT(c.t), kv.Get(key), false)
		if err == nil && len(res.KVs) == 1 && string(res.KVs[0].Value) == value && res.KVs[0].Version == version {
			return
		}
		last = fmt.Sprint(res.KVs, err)
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("node %d never read %s=%q at version %d (last: %s)", i+1, key, value, version, last)
}

// TestRebuildOnRestart: under a protocol whose replicas order commands
// locally (EPaxos), whose log here builds on no snapshot, data written
// before the members stop is there after they start again, with the same
// values and versions, and the key-value store is rebuilt from the log,
// not resumed: a key the log never wrote, slipped into one member's store
// while it was down, is gone after its restart.
func TestRebuildOnRestart(t *testing.T) {
	const protocol = "epaxos"
	if !protocols[protocol].localOrder {
		t.Fatalf("%s is expected to re-execute its log in its own order on start", protocol)
	}
	c := newCluster(t, 3, withProtocol(protocol, nil))
	const writes, keys = 30, 10
	for i := range writes {
		if _, err := c.nodes[i%3].Propose(ctxT(t), kv.Put(fmt.Sprintf("k%d", i%keys), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.nodes {
		c.waitVersion(i, "k9", "29", writes/keys)
	}
	c.stopAll()

	// Slip a key into node 2's store behind the log's back.
	st, err := kvstore.Open(c.dirs[1]+"/"+kvDirName, kvstore.Options{KV: protocols[protocol].kv})
	if err != nil {
		t.Fatal(err)
	}
	next := st.AppliedIndex() + 1
	bogus := kv.Put("bogus", "x")
	if _, err := st.ApplyBatch([]consensus.Entry{{Index: next, Command: bogus.Command(consensus.Session{})}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range c.nodes {
		c.start(i)
	}
	for i := range c.nodes {
		for k := range keys {
			c.waitVersion(i, fmt.Sprintf("k%d", k), fmt.Sprint(writes-keys+k), writes/keys)
		}
		if rev := c.nodes[i].Status().Revision; rev != 1+writes {
			t.Errorf("node %d: revision %d after the rebuild, want %d (one per write)", i+1, rev, 1+writes)
		}
	}
	if res, err := c.nodes[1].Read(ctxT(t), kv.Get("bogus"), false); err != nil || len(res.KVs) != 0 {
		t.Fatalf("node 2 still holds a key its log never wrote (%+v, %v): the store was resumed, not rebuilt", res.KVs, err)
	}
	// And the cluster goes on.
	if _, err := c.nodes[2].Propose(ctxT(t), kv.Put("k0", "new")); err != nil {
		t.Fatal(err)
	}
	for i := range c.nodes {
		c.waitVersion(i, "k0", "new", writes/keys+1)
	}
}

// TestLongRebuildSpansLoops: re-executing a long log on start takes more
// Readys in a row than readyLoopsMax; the node must keep going (between
// its other inputs) instead of taking that for a runaway replica.
func TestLongRebuildSpansLoops(t *testing.T) {
	old := readyLoopsMax
	readyLoopsMax = 2
	t.Cleanup(func() { readyLoopsMax = old })
	c := newCluster(t, 1, withProtocol("epaxos", nil))
	const writers, each = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := c.nodes[0].Propose(ctxT(t), kv.Put(fmt.Sprintf("w%02d/%d", w, i%20), fmt.Sprint(i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.stop(0)
	c.start(0)
	for w := range writers {
		c.waitVersion(0, fmt.Sprintf("w%02d/19", w), fmt.Sprint(each-1), each/20)
	}
	if err := c.nodes[0].Err(); err != nil {
		t.Fatalf("node stopped: %v", err)
	}
	// The keys are back once their commands re-execute; the status the
	// node reports may trail by a loop iteration.
	deadline := time.Now().Add(10 * time.Second)
	for c.nodes[0].Status().Replica.Applied < writers*each && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.nodes[0].Status().Replica.Applied; got < writers*each {
		t.Fatalf("applied %d after the restart, want %d", got, writers*each)
	}
}

// TestLeaderlessWatch: under local revisions each member's watch history
// is numbered by that member's own revisions (an event's revision is the
// ModRevision the member's own state shows for the key), a start revision
// selects from that member's history, and every member sees each key's
// changes in the same order.
func TestLeaderlessWatch(t *testing.T) {
	c := newCluster(t, 3, withProtocol("epaxos", nil))
	// Concurrent writers on every member, on shared and separate keys, so
	// that members apply independent writes in different orders.
	const perWriter = 20
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for w := range 3 {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("own%d", w)
				if i%2 == 0 {
					key = "shared"
				}
				if _, err := c.nodes[w].Propose(ctxT(t), kv.Put(key, fmt.Sprintf("%d.%d", w, i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const writes = 3 * perWriter
	// Wait until every member has applied every write.
	for i := range c.nodes {
		deadline := time.Now().Add(10 * time.Second)
		for c.nodes[i].Status().Revision < 1+writes {
			if time.Now().After(deadline) {
				t.Fatalf("node %d: revision %d, want %d", i+1, c.nodes[i].Status().Revision, 1+writes)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	perKey := make([]map[string][]string, 3) // values in event order, per member
	for i, n := range c.nodes {
		b, err := n.Watch([]byte{0}, []byte{0}, 2, 10*writes)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Events) != writes || b.More {
			t.Fatalf("node %d: %d events from revision 2 (more %v), want %d", i+1, len(b.Events), b.More, writes)
		}
		perKey[i] = map[string][]string{}
		for j, ev := range b.Events {
			if ev.KV.ModRevision != int64(j+2) {
				t.Fatalf("node %d: event %d at revision %d, want %d (one write per local revision)", i+1, j, ev.KV.ModRevision, j+2)
			}
			perKey[i][string(ev.KV.Key)] = append(perKey[i][string(ev.KV.Key)], string(ev.KV.Value))
		}
		// The last event of each key carries the revision the member's own
		// state holds for it.
		for key := range perKey[i] {
			res, err := n.Read(ctxT(t), kv.Get(key), false)
			if err != nil || len(res.KVs) != 1 {
				t.Fatalf("node %d: get %s: %+v, %v", i+1, key, res.KVs, err)
			}
			var last kv.Event
			for _, ev := range b.Events {
				if string(ev.KV.Key) == key {
					last = ev
				}
			}
			if last.KV.ModRevision != res.KVs[0].ModRevision {
				t.Errorf("node %d: %s's last event at revision %d, but its state says %d", i+1, key, last.KV.ModRevision, res.KVs[0].ModRevision)
			}
		}
		// A start revision is this member's: from its last revision, only
		// the last write.
		tail, err := n.Watch([]byte{0}, []byte{0}, 1+writes, 10)
		if err != nil || len(tail.Events) != 1 || tail.Events[0].KV.ModRevision != 1+writes ||
			string(tail.Events[0].KV.Value) != string(b.Events[writes-1].KV.Value) {
			t.Errorf("node %d: watch from its revision %d: %+v, %v; want its last event", i+1, 1+writes, tail.Events, err)
		}
	}
	for i := 1; i < 3; i++ {
		for key, vals := range perKey[0] {
			if fmt.Sprint(perKey[i][key]) != fmt.Sprint(vals) {
				t.Errorf("key %s: node 1 saw %v, node %d saw %v", key, vals, i+1, perKey[i][key])
			}
		}
	}
}

// logCounter is a slog handler that counts the records whose message
// contains want.
type logCounter struct {
	want string
	n    *atomic.Int64
}

func (h logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h logCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.want) {
		h.n.Add(1)
	}
	return nil
}
func (h logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logCounter) WithGroup(string) slog.Handler      { return h }

// TestLeaderlessSnapshots: under EPaxos the members snapshot their state
// machines and compact their logs: after many writes the WAL holds a
// checkpoint and little else, a restarted member starts from its newest
// snapshot (its replica's execution counter starts there, and the store is
// restored from it rather than rebuilt from the whole history), and a
// member that was down while the others compacted past it installs a
// peer's snapshot and catches up.
func TestLeaderlessSnapshots(t *testing.T) {
	var installs atomic.Int64
	c := newCluster(t, 3, withProtocol("epaxos", func(cfg *Config) {
		cfg.SnapshotEntries = 20
		cfg.SnapshotChunkBytes = 256
		cfg.WALSegmentBytes = 16 << 10
		if cfg.ID == 3 {
			cfg.Logger = slog.New(logCounter{want: "installed snapshot from a peer", n: &installs})
		}
	}))
	c.stop(2)
	const writes, keys = 300, 25
	for i := range writes {
		if _, err := c.nodes[i%2].Propose(ctxT(t), kv.Put(fmt.Sprintf("k%02d", i%keys), strings.Repeat("v", 40)+fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		c.waitVersion(i, fmt.Sprintf("k%02d", keys-1), strings.Repeat("v", 40)+fmt.Sprint(writes-1), writes/keys)
	}
	walBytes := func(i int) int64 {
		var total int64
		files, _ := filepath.Glob(filepath.Join(c.dirs[i], walDirName, "*"))
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				total += fi.Size()
			}
		}
		return total
	}
	// Every write's record is about 100 bytes: without compaction the log
	// would hold several times the segment size.
	if b := walBytes(0); b > 3*(16<<10) {
		t.Errorf("node 1's WAL holds %d bytes after %d writes", b, writes)
	} else {
		t.Logf("node 1's WAL holds %d bytes after %d writes", b, writes)
	}

	// The member that was down catches up by installing a snapshot.
	c.start(2)
	if _, err := c.nodes[2].Propose(ctxT(t), kv.Put("k00", "after")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c.waitVersion(i, "k00", "after", writes/keys+1)
		c.waitVersion(i, fmt.Sprintf("k%02d", keys-1), strings.Repeat("v", 40)+fmt.Sprint(writes-1), writes/keys)
	}
	if installs.Load() == 0 {
		t.Fatal("node 3 caught up without installing a snapshot")
	}

	// A restarted member starts from its newest snapshot.
	c.stop(0)
	snaps, _ := filepath.Glob(filepath.Join(c.dirs[0], snapDirName, "*.snap"))
	if len(snaps) == 0 {
		t.Fatal("node 1 took no snapshot")
	}
	c.start(0)
	if st := c.nodes[0].Status().Replica; st.Applied < writes/2 {
		t.Fatalf("node 1 restarted at execution counter %d: not from its snapshot", st.Applied)
	} else {
		t.Logf("node 1 restarted at execution counter %d (%d snapshot files)", st.Applied, len(snaps))
	}
	c.waitVersion(0, "k00", "after", writes/keys+1)
	for k := 1; k < keys; k++ {
		c.waitVersion(0, fmt.Sprintf("k%02d", k), strings.Repeat("v", 40)+fmt.Sprint(writes-keys+k), writes/keys)
	}
	if _, err := c.nodes[0].Propose(ctxT(t), kv.Put("k01", "last")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c.waitVersion(i, "k01", "last", writes/keys+1)
	}
}

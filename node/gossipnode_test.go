package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/storage/durable"
	"github.com/synod-io/synod/storage/wal"
)

// gossipCluster is an in-process gossip-mode cluster over a memNet, with
// SWIM and the store's rounds sped up.
type gossipCluster struct {
	t     *testing.T
	net   *memNet
	dirs  []string
	peers []Peer
	nodes []*GossipNode
	tune  func(*Config)
}

func newGossipCluster(t *testing.T, size int, tune func(*Config)) *gossipCluster {
	swimTick, tuned := swimTickInterval, tuneStore
	swimTickInterval = 10 * time.Millisecond
	tuneStore = func(c *store.Config) { c.GossipIntervalMs, c.AntiEntropyIntervalMs = 20, 100 }
	t.Cleanup(func() { swimTickInterval, tuneStore = swimTick, tuned })
	c := &gossipCluster{t: t, net: newMemNet(), tune: tune}
	root := t.TempDir()
	for i := range size {
		id := consensus.NodeID(i + 1)
		c.peers = append(c.peers, Peer{ID: id, Name: fmt.Sprintf("g%d", id)})
		c.dirs = append(c.dirs, filepath.Join(root, fmt.Sprintf("g%d", id)))
	}
	c.nodes = make([]*GossipNode, size)
	for i := range size {
		c.start(i)
	}
	t.Cleanup(func() {
		for i, n := range c.nodes {
			if n != nil {
				c.stop(i)
			}
		}
	})
	return c
}

func (c *gossipCluster) start(i int) {
	c.t.Helper()
	cfg := Config{
		Name: c.peers[i].Name, ID: c.peers[i].ID, ClusterID: 0x90, DataDir: c.dirs[i], Protocol: Gossip,
		Peers: c.peers, TickInterval: 10 * time.Millisecond,
		Transport: c.net.factory(c.peers[i].ID), Logger: testLogger(c.t),
		RequestTimeout: 5 * time.Second,
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	g, err := StartGossip(cfg)
	if err != nil {
		c.t.Fatalf("starting member %d: %v", i+1, err)
	}
	c.nodes[i] = g
}

func (c *gossipCluster) stop(i int) {
	c.t.Helper()
	if err := c.nodes[i].Stop(); err != nil {
		c.t.Errorf("stopping member %d: %v", i+1, err)
	}
	c.nodes[i] = nil
}

func (c *gossipCluster) put(i int, key, value string) {
	c.t.Helper()
	if _, err := c.nodes[i].Propose(context.Background(), kv.Put(key, value)); err != nil {
		c.t.Fatalf("put %s=%s on member %d: %v", key, value, i+1, err)
	}
}

// contents is member i's whole state as key=value lines.
func (c *gossipCluster) contents(i int) string {
	c.t.Helper()
	res, err := c.nodes[i].Read(context.Background(), kv.Request{Range: &kv.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}}, true)
	if err != nil {
		c.t.Fatalf("reading member %d: %v", i+1, err)
	}
	var lines []string
	for _, p := range res.KVs {
		lines = append(lines, string(p.Key)+"="+string(p.Value))
	}
	return strings.Join(lines, " ")
}

// waitConverged waits until the running members in on hold want.
func (c *gossipCluster) waitConverged(on []int, want string, limit time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		same := true
		for _, i := range on {
			if got := c.contents(i); got != want {
				same = false
				if time.Now().After(deadline) {
					c.t.Fatalf("member %d holds %q after %v; want %q", i+1, got, limit, want)
				}
			}
		}
		if same {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGossipNodeAcceptsWritesUnderPartitionAndConverges is the AP side of
// CAP on real members: a member cut off from the rest still takes writes
// at once, both sides write the same key, and after healing every member
// holds the same state, the later write winning.
func TestGossipNodeAcceptsWritesUnderPartitionAndConverges(t *testing.T) {
	c := newGossipCluster(t, 3, nil)
	c.put(0, "a", "1")
	c.waitConverged([]int{0, 1, 2}, "a=1", 10*time.Second)

	c.net.setCut(3, true)
	c.put(2, "minority", "yes") // accepted with no peer reachable
	c.put(2, "k", "old")
	time.Sleep(5 * time.Millisecond)
	c.put(0, "k", "new") // later: wins
	c.put(1, "majority", "yes")
	if got := c.contents(2); got != "a=1 k=old minority=yes" {
		t.Fatalf("cut-off member reads %q; want its own writes (read-your-writes)", got)
	}
	c.net.setCut(3, false)
	c.waitConverged([]int{0, 1, 2}, "a=1 k=new majority=yes minority=yes", 20*time.Second)

	// A delete spreads as a tombstone.
	if _, err := c.nodes[1].Propose(context.Background(), kv.Delete("a")); err != nil {
		t.Fatal(err)
	}
	c.waitConverged([]int{0, 1, 2}, "k=new majority=yes minority=yes", 10*time.Second)
}

// TestGossipNodeRestartKeepsState: a member's writes survive its restart,
// through checkpoints that release the records before them, and it
// catches up with writes made while it was down.
func TestGossipNodeRestartKeepsState(t *testing.T) {
	c := newGossipCluster(t, 2, func(cfg *Config) { cfg.SnapshotEntries = 4 })
	for i := range 10 {
		c.put(1, fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	want := c.contents(1)
	c.stop(1)
	c.put(0, "while-down", "x")
	c.start(1)
	if got := c.contents(1); got != want {
		t.Fatalf("after restart member 2 holds %q; want %q", got, want)
	}
	c.waitConverged([]int{0, 1}, want+" while-down=x", 10*time.Second)
	c.stop(1)
	// Every SnapshotEntries changes the log restated the whole state (the
	// WAL releases what precedes a restatement a segment at a time): the
	// last restatement's 11 entries and at most 4 changes follow it.
	l, recs, err := durable.Open(vfsDefault, filepath.Join(c.dirs[1], walDirName), wal.Options{}, store.RecordCodec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	last := -1
	for i, r := range recs {
		if _, ok := r.(*store.RestateRecord); ok {
			last = i
		}
	}
	if last < 0 || len(recs)-1-last > 11+4 {
		t.Fatalf("the log holds %d records; the last checkpoint is at %d", len(recs), last)
	}
}

// TestGossipNodeRefusesCompares: a Txn with a compare cannot be honoured
// by one replica and is refused; the state is unchanged.
func TestGossipNodeRefusesCompares(t *testing.T) {
	c := newGossipCluster(t, 1, nil)
	c.put(0, "k", "v")
	_, err := c.nodes[0].Propose(context.Background(), kv.CompareAndSwap("k", "v", "w"))
	if !errors.Is(err, kv.ErrInvalidRequest) || !strings.Contains(err.Error(), "gossip") {
		t.Fatalf("compare-and-swap: %v; want a refusal naming gossip mode", err)
	}
	if got := c.contents(0); got != "k=v" {
		t.Fatalf("state after a refused txn: %q", got)
	}
}

// TestGossipNodeWatchSeesLocalAndMergedChanges: a watcher on one member
// sees its own writes and those merged from another member, in its local
// revision order.
func TestGossipNodeWatchSeesLocalAndMergedChanges(t *testing.T) {
	c := newGossipCluster(t, 2, nil)
	from := c.nodes[0].Status().Revision + 1
	c.put(0, "w/local", "1")
	c.put(1, "w/remote", "2")
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	for len(got) < 2 {
		wb, err := c.nodes[0].Watch([]byte("w/"), kv.PrefixEnd([]byte("w/")), from, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range wb.Events {
			got = append(got, fmt.Sprintf("%s %s=%s", ev.Type, ev.KV.Key, ev.KV.Value))
		}
		from = wb.Next
		if time.Now().After(deadline) {
			t.Fatalf("watch saw %v", got)
		}
		select {
		case <-wb.Changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
	slices.Sort(got)
	if want := []string{"PUT w/local=1", "PUT w/remote=2"}; !slices.Equal(got, want) {
		t.Fatalf("watch saw %v; want %v", got, want)
	}
}

// TestGossipNodeStatus reports the role peer and every member alive.
func TestGossipNodeStatus(t *testing.T) {
	c := newGossipCluster(t, 3, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := c.nodes[0].Status()
		alive := 0
		for _, m := range st.Membership.Members {
			if m.State == "alive" {
				alive++
			}
		}
		if st.Protocol != Gossip || st.Replica.Role != consensus.RolePeer {
			t.Fatalf("status %+v", st)
		}
		if alive == 3 && c.nodes[0].StoreStatus().Peers == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d alive in %+v, store peers %d", alive, st.Membership, c.nodes[0].StoreStatus().Peers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGossipNodeLargeBatchesAndCheckpoints: writes and checkpoints far
// larger than one WAL record are split across records, so concurrent
// large puts, a delete of every key and restatements of a state many
// records long neither stop the member nor lose anything across a
// restart.
func TestGossipNodeLargeBatchesAndCheckpoints(t *testing.T) {
	segment := int64(2*gossipEntryBytesMax() + 8192) // the least Validate allows
	c := newGossipCluster(t, 1, func(cfg *Config) { cfg.WALSegmentBytes, cfg.SnapshotEntries = segment, 8 })
	value := strings.Repeat("v", 512<<10)
	errc := make(chan error, 24)
	for i := range 24 {
		go func() {
			_, err := c.nodes[0].Propose(context.Background(), kv.Put(fmt.Sprintf("big/%02d", i), value))
			errc <- err
		}()
	}
	for range 24 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.nodes[0].Read(context.Background(), kv.Request{Range: &kv.RangeRequest{Key: []byte("big/"), RangeEnd: kv.PrefixEnd([]byte("big/")), CountOnly: true}}, false)
	if err != nil || res.Count != 24 {
		t.Fatalf("count %d, %v", res.Count, err)
	}
	c.stop(0)
	c.start(0)
	res, err = c.nodes[0].Read(context.Background(), kv.Request{Range: &kv.RangeRequest{Key: []byte("big/"), RangeEnd: kv.PrefixEnd([]byte("big/"))}}, false)
	if err != nil || len(res.KVs) != 24 || string(res.KVs[23].Value) != value {
		t.Fatalf("after restart: %d keys, %v", len(res.KVs), err)
	}
	if _, err := c.nodes[0].Propose(context.Background(), kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("big/"), RangeEnd: kv.PrefixEnd([]byte("big/"))}}); err != nil {
		t.Fatal(err)
	}
	c.stop(0)
	c.start(0)
	if got := c.contents(0); got != "" {
		t.Fatalf("after deleting everything and restarting: %q", got)
	}
}

// TestGossipNodeRefusesStaleRejoin: a member down for longer than deletes
// are remembered must not rejoin with its old data; the error says what to
// remove, and once the WAL is gone the member starts (empty, to refill).
func TestGossipNodeRefusesStaleRejoin(t *testing.T) {
	c := newGossipCluster(t, 1, nil)
	c.put(0, "k", "v")
	c.stop(0)
	old := nowMs() - 48*3600*1000
	if err := os.WriteFile(filepath.Join(c.dirs[0], lastAliveName), []byte(strconv.FormatUint(old, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: "g1", ID: 1, ClusterID: 0x90, DataDir: c.dirs[0], Protocol: Gossip, Peers: c.peers,
		Transport: c.net.factory(1), TickInterval: 10 * time.Millisecond}
	_, err := StartGossip(cfg)
	if err == nil || !strings.Contains(err.Error(), "longer than deletes are remembered") || !strings.Contains(err.Error(), filepath.Join(c.dirs[0], walDirName)) {
		t.Fatalf("start after 48 h away: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(c.dirs[0], walDirName)); err != nil {
		t.Fatal(err)
	}
	c.start(0)
	if got := c.contents(0); got != "" {
		t.Fatalf("a wiped member holds %q", got)
	}
}

// TestGossipConfigNeedsRoomForTheLargestWrite: a WAL segment too small
// for the store's largest write is refused up front.
func TestGossipConfigNeedsRoomForTheLargestWrite(t *testing.T) {
	cfg := Config{Name: "a", ID: 1, ClusterID: 1, DataDir: "/tmp/x", Protocol: Gossip, Peers: []Peer{{ID: 1, Name: "a"}},
		Transport: newMemNet().factory(1)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.WALSegmentBytes = 1 << 20
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "largest write") {
		t.Fatalf("1 MiB segments: %v", err)
	}
}

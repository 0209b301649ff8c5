package store

import (
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// testNet is a deterministic network of store replicas in virtual time:
// one goroutine, one seeded generator for the network and one per replica
// for its Config.Rand. Every message goes through MessageCodec (so the
// byte counts are real) and every record through RecordCodec. Messages
// are delivered in send order, instantly, unless lost or cut by a
// partition; each replica may read a skewed physical clock.
type testNet struct {
	tb  testing.TB
	rng *rand.Rand
	// nowMs is the true time; replica i reads nowMs + skewMs[i].
	nowMs  uint64
	skewMs []int64
	stores []*Store // by ID-1
	down   []bool
	// records are what each replica persisted, decoded again.
	records [][]consensus.Record

	inflight []delivery
	// cut, if set, loses every message from one replica to another for
	// which it returns true (partitions); loss is the probability that
	// any message is lost.
	cut  func(from, to consensus.NodeID) bool
	loss float64
	// allowDrift lets Step report ErrClockDrift without failing the test.
	allowDrift bool
	// trace is a checksum of every message sent, in order: equal runs
	// have equal traces.
	trace uint32

	stats netStats
}

type delivery struct {
	from, to consensus.NodeID
	data     []byte
}

// netStats counts what the network carried, by message type.
type netStats struct {
	msgs, bytes, entries [msgTypeLast + 1]int
}

func (st netStats) totalBytes() (n int) {
	for _, b := range st.bytes {
		n += b
	}
	return n
}

func (st netStats) totalEntries() (n int) {
	for _, e := range st.entries {
		n += e
	}
	return n
}

func (st netStats) String() string {
	return fmt.Sprintf("push %d msgs/%d B/%d entries, tree %d msgs/%d B, leaves %d msgs/%d B/%d entries",
		st.msgs[MsgPush], st.bytes[MsgPush], st.entries[MsgPush], st.msgs[MsgTree], st.bytes[MsgTree],
		st.msgs[MsgLeaves], st.bytes[MsgLeaves], st.entries[MsgLeaves])
}

// testConfig is a small configuration for tests: 256 leaves, no automatic
// rounds unless a test turns them on.
func testConfig(id consensus.NodeID, r consensus.Rand) Config {
	cfg := DefaultConfig(id, r)
	cfg.TreeLevels = 2
	cfg.AntiEntropyIntervalMs = 0
	cfg.GossipIntervalMs = 0
	cfg.TombstoneTTLMs = 1 << 30
	cfg.KeyBytesMax = 64
	cfg.ValueBytesMax = 256
	cfg.MessageBytesMax = 64 << 10
	return cfg
}

// newTestNet starts n replicas that all know each other; edit adjusts
// each one's config.
func newTestNet(tb testing.TB, seed uint64, n int, edit func(*Config)) *testNet {
	net := &testNet{tb: tb, rng: rand.New(rand.NewPCG(seed, 0x5709e)), nowMs: 1_000_000}
	ids := make([]consensus.NodeID, n)
	for i := range ids {
		ids[i] = consensus.NodeID(i + 1)
	}
	for _, id := range ids {
		cfg := testConfig(id, rand.New(rand.NewPCG(net.rng.Uint64(), uint64(id))))
		if edit != nil {
			edit(&cfg)
		}
		s, err := New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		if err := s.SetPeers(ids); err != nil {
			tb.Fatal(err)
		}
		net.stores = append(net.stores, s)
	}
	net.skewMs = make([]int64, n)
	net.down = make([]bool, n)
	net.records = make([][]consensus.Record, n)
	return net
}

func (net *testNet) store(id consensus.NodeID) *Store { return net.stores[id-1] }

// now is the physical time replica id reads.
func (net *testNet) now(id consensus.NodeID) uint64 {
	return uint64(int64(net.nowMs) + net.skewMs[id-1])
}

// collect takes a replica's Ready: records are encoded and kept, messages
// enter the network.
func (net *testNet) collect(s *Store) {
	rd := s.Ready()
	for _, r := range rd.Persist {
		buf, err := RecordCodec.AppendRecord(nil, r)
		if err != nil {
			net.tb.Fatalf("replica %d persisted a record that does not encode: %v", s.id, err)
		}
		back, err := RecordCodec.DecodeRecord(buf)
		if err != nil || !reflect.DeepEqual(back, r) {
			net.tb.Fatalf("replica %d: record %v round-trips to %v, %v", s.id, r, back, err)
		}
		net.records[s.id-1] = append(net.records[s.id-1], back)
	}
	for _, m := range rd.Messages {
		net.send(m)
	}
	s.Advance(rd)
}

func (net *testNet) send(m *Message) {
	buf, err := MessageCodec.AppendMessage(nil, m)
	if err != nil {
		net.tb.Fatalf("replica %d sent a message that does not encode: %v: %v", m.From, m, err)
	}
	if len(buf) > net.store(m.From).cfg.MessageBytesMax {
		net.tb.Fatalf("replica %d sent %d bytes, over MessageBytesMax %d: %v", m.From, len(buf), net.store(m.From).cfg.MessageBytesMax, m)
	}
	net.trace = crc32.Update(net.trace, crc32.IEEETable, buf)
	net.stats.msgs[m.Type]++
	net.stats.bytes[m.Type] += len(buf)
	net.stats.entries[m.Type] += len(m.Entries)
	if net.loss > 0 && net.rng.Float64() < net.loss {
		return
	}
	if net.cut != nil && net.cut(m.From, m.To) {
		return
	}
	net.inflight = append(net.inflight, delivery{from: m.From, to: m.To, data: buf})
}

// deliver hands out messages until none is in flight.
func (net *testNet) deliver() {
	for steps := 0; len(net.inflight) > 0; steps++ {
		if steps > 10_000_000 {
			net.tb.Fatal("messages keep flowing: an exchange does not end")
		}
		d := net.inflight[0]
		net.inflight = net.inflight[1:]
		if net.down[d.to-1] {
			continue
		}
		p, err := MessageCodec.DecodeMessage(d.data)
		if err != nil {
			net.tb.Fatalf("message %d->%d does not decode: %v", d.from, d.to, err)
		}
		dst := net.store(d.to)
		if err := dst.Step(p.(*Message), net.now(d.to)); err != nil && !(net.allowDrift && errors.Is(err, ErrClockDrift)) {
			net.tb.Fatalf("replica %d: Step(%v): %v", d.to, p, err)
		}
		net.collect(dst)
	}
}

// advance moves true time by ms, ticks every running replica, and
// delivers what they send.
func (net *testNet) advance(ms uint64) {
	net.nowMs += ms
	for _, s := range net.stores {
		if net.down[s.id-1] {
			continue
		}
		s.Tick(net.now(s.id))
		net.collect(s)
	}
	net.deliver()
}

// put and del write on replica id at its physical time and collect.
func (net *testNet) put(id consensus.NodeID, key, value string) Entry {
	s := net.store(id)
	ts, err := s.Put(key, []byte(value), net.now(id))
	if err != nil {
		net.tb.Fatal(err)
	}
	net.collect(s)
	return Entry{Key: key, Value: []byte(value), TS: ts, Origin: id}
}

func (net *testNet) del(id consensus.NodeID, key string) Entry {
	s := net.store(id)
	if _, err := s.Delete(key, net.now(id)); err != nil {
		net.tb.Fatal(err)
	}
	net.collect(s)
	it := s.items[key]
	return it.e
}

// antiEntropyRound has every running replica start one exchange with a
// random peer, and delivers until quiet.
func (net *testNet) antiEntropyRound() {
	for _, s := range net.stores {
		if net.down[s.id-1] {
			continue
		}
		var peers []consensus.NodeID
		for _, p := range s.peers {
			if !net.down[p-1] {
				peers = append(peers, p)
			}
		}
		if len(peers) == 0 {
			continue
		}
		s.StartAntiEntropy(peers[net.rng.IntN(len(peers))])
		net.collect(s)
	}
	net.deliver()
}

// state is a replica's entries, tombstones included, by key.
func state(s *Store) []Entry { return s.Snapshot().Entries }

// converged reports whether every running replica holds the same entries
// (compared entry by entry, not by the Merkle root), and checks that
// equal entries mean equal roots.
func (net *testNet) converged() bool {
	var first *Store
	for _, s := range net.stores {
		if net.down[s.id-1] {
			continue
		}
		if first == nil {
			first = s
			continue
		}
		if !equalEntries(state(first), state(s)) {
			return false
		}
		if first.tree.root() != s.tree.root() {
			net.tb.Fatalf("replicas %d and %d hold equal entries but their Merkle roots differ", first.id, s.id)
		}
	}
	return true
}

func equalEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool { return x.Compare(&y) == 0 && x.Key == y.Key })
}

// model is the naive reference: every write ever made, and the state they
// imply, the latest version of each key by Entry.Compare.
type model map[string]Entry

func (m model) add(e Entry) {
	if cur, ok := m[e.Key]; !ok || cur.Compare(&e) < 0 {
		m[e.Key] = e
	}
}

// entries returns the model's state by key, dropping tombstones that
// expired at nowMs with the given TTL (0: keep all).
func (m model) entries(nowMs, ttlMs uint64) []Entry {
	var out []Entry
	for _, e := range m {
		if ttlMs > 0 && e.Tombstone && expiryOf(e.TS, ttlMs) <= nowMs {
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out
}

package check

import (
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
)

func TestMembershipAccuracy(t *testing.T) {
	m := NewMembership(3)
	for id := consensus.NodeID(1); id <= 3; id++ {
		m.Start(id, 0)
	}
	if m.Accurate() || m.Wrong() != 6 {
		t.Fatalf("fresh nodes know nobody: want 6 wrong views, got %d", m.Wrong())
	}
	for o := consensus.NodeID(1); o <= 3; o++ {
		for s := consensus.NodeID(1); s <= 3; s++ {
			if o != s {
				m.Observe(o, s, gossip.StateAlive, 0, CauseNone)
			}
		}
	}
	if !m.Accurate() || m.Check(1, "") != nil {
		t.Fatalf("everyone sees everyone alive: want accurate, got %s", m.Example(3))
	}
	// Node 3 crashes: the others' views of it are wrong until they hold
	// it dead; its own row no longer counts.
	m.Crash(3)
	if m.Wrong() != 2 {
		t.Fatalf("after a crash: want 2 wrong views, got %d", m.Wrong())
	}
	m.Observe(1, 3, gossip.StateSuspect, 0, CauseNone)
	m.Observe(1, 3, gossip.StateDead, 0, CauseNone)
	m.Observe(2, 3, gossip.StateDead, 0, CauseNone)
	if !m.Accurate() {
		t.Fatalf("the crashed node is dead everywhere: want accurate, got %s", m.Example(3))
	}
	if d := m.Deaths(); d.True != 1 || d.FalsePositives != 0 {
		t.Fatalf("one crash declared twice counts once as true: %+v", d)
	}
	// It restarts at a higher incarnation: a stale death of the old one is
	// true, a death of the new one a false positive, counted by cause.
	m.Start(3, 1)
	if m.Wrong() != 4 {
		t.Fatalf("after a restart: want 4 wrong views (2 of it, 2 by it), got %d", m.Wrong())
	}
	m.Observe(1, 2, gossip.StateDead, 0, CauseSlow)
	m.Observe(2, 3, gossip.StateDead, 1, CausePartition)
	if d := m.Deaths(); d.True != 1 || d.FalsePositives != 1 || d.Slow != 1 || d.Partition != 1 {
		t.Fatalf("deaths: %+v", d)
	}
	if m.recount() != m.Wrong() {
		t.Fatalf("incremental count %d, recount %d", m.Wrong(), m.recount())
	}
	if v := m.Check(7, "context"); v == nil || v.Checker != "membership-accuracy" || !strings.Contains(v.Detail, "context") {
		t.Fatalf("Check: %v", v)
	}
}

func sput(key, value string, wall uint64, origin consensus.NodeID) store.Entry {
	return store.Entry{Key: key, Value: []byte(value), TS: store.Timestamp{WallMs: wall}, Origin: origin}
}

func tomb(key string, wall uint64, origin consensus.NodeID) store.Entry {
	return store.Entry{Key: key, Tombstone: true, TS: store.Timestamp{WallMs: wall}, Origin: origin}
}

func kvOf(e store.Entry) store.KeyValue {
	return store.KeyValue{Key: e.Key, Value: e.Value, TS: e.TS, Origin: e.Origin}
}

func all(consensus.NodeID) bool { return true }

func TestEventualModel(t *testing.T) {
	const ttl = 1000
	c := NewEventual(2, ttl)
	put := sput("k", "a", 10, 1)
	del := tomb("k", 20, 2)
	must := func(v *Violation) {
		t.Helper()
		if v != nil {
			t.Fatal(v)
		}
	}
	must(c.Wrote(1, put, 0))
	must(c.Held(1, put, 10, 0))
	must(c.Read(1, "k", kvOf(put), true, &put, 0))
	must(c.Wrote(2, del, 0))
	must(c.Held(2, del, 20, 0))
	must(c.Held(1, del, 25, 0))
	must(c.Read(1, "k", store.KeyValue{}, false, &put, 0))
	if c.RYWChecked != 2 {
		t.Fatalf("RYWChecked = %d", c.RYWChecked)
	}
	if e, ok := c.Expected("k", all); !ok || !e.Tombstone {
		t.Fatalf("Expected = %v, %v; want the tombstone", e, ok)
	}
	// Within the TTL both hold the tombstone; after it, nothing.
	must(c.Final(1, []store.Entry{del}, 500, 0, all, 0))
	must(c.Final(2, nil, 2000, 0, all, 0))
	if v := c.Final(2, nil, 500, 0, all, 0); v == nil || v.Checker != "store-lww" {
		t.Fatalf("a replica missing an unexpired delete: %v", v)
	}
	// Near the expiry, either is fine.
	must(c.Final(2, nil, 1015, 10, all, 0))
	must(c.Final(2, []store.Entry{del}, 1015, 10, all, 0))
}

func TestEventualFindsBugs(t *testing.T) {
	const ttl = 1000
	setup := func() *Eventual {
		c := NewEventual(3, ttl)
		for _, w := range []struct {
			r consensus.NodeID
			e store.Entry
		}{{1, sput("k", "a", 10, 1)}, {2, tomb("k", 20, 2)}, {3, sput("k", "b", 30, 3)}} {
			if v := c.Wrote(w.r, w.e, 0); v != nil {
				t.Fatal(v)
			}
			if v := c.Held(w.r, w.e, w.e.TS.WallMs, 0); v != nil {
				t.Fatal(v)
			}
		}
		return c
	}
	tests := []struct {
		name    string
		run     func(c *Eventual) *Violation
		checker string
	}{
		{"invented write", func(c *Eventual) *Violation { return c.Held(1, sput("k", "zzz", 30, 3), 40, 0) }, "store-invented"},
		{"read of a version nobody wrote", func(c *Eventual) *Violation {
			return c.Read(1, "k", kvOf(sput("k", "a", 11, 1)), true, nil, 0)
		}, "store-invented"},
		{"resurrection within the TTL", func(c *Eventual) *Violation {
			if v := c.Held(1, tomb("k", 20, 2), 25, 0); v != nil {
				return v
			}
			return c.Held(1, sput("k", "a", 10, 1), 500, 0)
		}, "store-monotonic"},
		{"going back in time", func(c *Eventual) *Violation { return c.Held(3, sput("k", "a", 10, 1), 40, 0) }, "store-monotonic"},
		{"read disagrees with the change feed", func(c *Eventual) *Violation {
			return c.Read(3, "k", store.KeyValue{}, false, nil, 0)
		}, "store-read"},
		{"read misses the client's own write", func(c *Eventual) *Violation {
			mine := sput("k", "b", 30, 3)
			// Replica 1 claims to serve it, but holds the older value.
			return c.Read(1, "k", kvOf(sput("k", "a", 10, 1)), true, &mine, 0)
		}, "read-your-writes"},
		{"duplicate timestamp", func(c *Eventual) *Violation { return c.Wrote(1, sput("k", "x", 10, 1), 0) }, "store-write"},
		{"final state not the last write", func(c *Eventual) *Violation {
			return c.Final(1, []store.Entry{sput("k", "a", 10, 1)}, 40, 0, all, 0)
		}, "store-lww"},
		{"final state holds an unknown key", func(c *Eventual) *Violation {
			return c.Final(3, []store.Entry{sput("k", "b", 30, 3), sput("j", "b", 30, 3)}, 40, 0, all, 0)
		}, "store-invented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.run(setup())
			if v == nil || v.Checker != tt.checker {
				t.Fatalf("got %v; want a %s violation", v, tt.checker)
			}
		})
	}
}

func TestEventualCaveatAndLoss(t *testing.T) {
	const ttl = 1000
	c := NewEventual(2, ttl)
	put, del := sput("k", "a", 10, 1), tomb("k", 20, 2)
	for _, v := range []*Violation{c.Wrote(1, put, 0), c.Held(1, put, 10, 0), c.Wrote(2, del, 0), c.Held(2, del, 20, 0)} {
		if v != nil {
			t.Fatal(v)
		}
	}
	// After the TTL, replica 2 purged the delete and took the old value
	// back: the documented caveat, counted, not a violation.
	if v := c.Held(2, put, 20+ttl, 0); v != nil {
		t.Fatal(v)
	}
	if c.Resurrections != 1 {
		t.Fatalf("Resurrections = %d", c.Resurrections)
	}
	// A write held only by a replica that is gone is lost, and not
	// expected.
	only1 := func(id consensus.NodeID) bool { return id == 1 }
	w := sput("j", "x", 50, 2)
	if v := c.Wrote(2, w, 0); v != nil {
		t.Fatal(v)
	}
	if v := c.Held(2, w, 50, 0); v != nil {
		t.Fatal(v)
	}
	if _, ok := c.Expected("j", only1); ok {
		t.Fatal("a write only replica 2 held is expected without it")
	}
	if n := c.Lost(only1); n != 2 {
		t.Fatalf("Lost = %d; want 2 (the delete and j)", n)
	}
	c.Wiped(2)
	if n := c.Lost(all); n != 2 {
		t.Fatalf("after wiping replica 2, Lost = %d; want 2", n)
	}
}

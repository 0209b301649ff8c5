package check

import (
	"fmt"
	"math/bits"
	"slices"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip/store"
)

// Eventual checks an eventually consistent store (package gossip/store)
// against a model of every write: replicas 1..n, each reporting the
// writes it accepts from clients (Wrote), every change it persists (Held,
// its change feed), and the reads it serves (Read). It finds:
//
//   - invented data: a replica holds or returns a version nobody wrote;
//   - going back in time: a replica's version of a key shrinks. Only a
//     tombstone past its TTL may be replaced by an older version (the
//     store's documented resurrection caveat); that is counted
//     (Resurrections), and anything else, in particular an older value
//     replacing a delete within its TTL, is a violation;
//   - a read that disagrees with what the replica holds, or that misses
//     the client's own earlier write on the same replica
//     (read-your-writes);
//   - once converged (Final), a replica whose state is not the last
//     write by (HLC timestamp, origin) over every write that survives:
//     those held at some time by a replica still running with its data
//     (a write held only by replicas that crashed for good, or were
//     wiped, is lost, as the store's durability is per replica).
type Eventual struct {
	n     int
	ttlMs uint64
	// writes indexes every write accepted by any replica.
	writes map[version]*write
	byKey  map[string][]*write
	// highest[r][key] is the latest version replica r+1 has held of key
	// since its data was last wiped: what it holds, except that a
	// tombstone in it may have been purged.
	highest []map[string]*write
	// resurrected are the keys an older version came back to after a
	// tombstone expired.
	resurrected map[string]bool
	// Resurrections counts the times it happened.
	Resurrections int
	// RYWChecked counts reads checked for read-your-writes.
	RYWChecked int
}

// version identifies a write.
type version struct {
	key    string
	ts     store.Timestamp
	origin consensus.NodeID
}

type write struct {
	e store.Entry
	// holders has bit r set if replica r+1 held this write (or a newer
	// version of its key) in its current data.
	holders []uint64
}

// NewEventual returns a checker for replicas 1..n whose tombstones live
// ttlMs.
func NewEventual(n int, ttlMs uint64) *Eventual {
	c := &Eventual{n: n, ttlMs: ttlMs, writes: map[version]*write{}, byKey: map[string][]*write{},
		highest: make([]map[string]*write, n), resurrected: map[string]bool{}}
	for i := range c.highest {
		c.highest[i] = map[string]*write{}
	}
	return c
}

func versionOf(e *store.Entry) version { return version{key: e.Key, ts: e.TS, origin: e.Origin} }

func (c *Eventual) replica(id consensus.NodeID) int {
	i := int(id) - 1
	if i < 0 || i >= c.n {
		panic(fmt.Sprintf("check: replica %d outside 1..%d", id, c.n))
	}
	return i
}

// Writes is the number of writes accepted.
func (c *Eventual) Writes() int { return len(c.writes) }

// Wrote records that replica accepted e from a client (a put, or a
// delete's tombstone). It returns a violation if the replica stamped a
// version it had stamped before, or in another replica's name.
func (c *Eventual) Wrote(replica consensus.NodeID, e store.Entry, tick float64) *Violation {
	c.replica(replica)
	if e.Origin != replica {
		return &Violation{Checker: "store-write", Tick: tick, Detail: fmt.Sprintf("replica %d stamped a write with origin %d: %v", replica, e.Origin, e)}
	}
	v := versionOf(&e)
	if old, ok := c.writes[v]; ok {
		return &Violation{Checker: "store-write", Tick: tick, Detail: fmt.Sprintf("replica %d issued version %v of %q twice: %v and %v", replica, e.TS, e.Key, old.e, e)}
	}
	w := &write{e: e, holders: make([]uint64, (c.n+63)/64)}
	c.writes[v] = w
	c.byKey[e.Key] = append(c.byKey[e.Key], w)
	return nil
}

// sameEntry reports whether two entries are the same version with the
// same contents.
func sameEntry(a, b *store.Entry) bool {
	return a.Compare(b) == 0 && a.Key == b.Key
}

// lookup returns the write e claims to be, or a violation.
func (c *Eventual) lookup(replica consensus.NodeID, e *store.Entry, what string, tick float64) (*write, *Violation) {
	w := c.writes[versionOf(e)]
	if w == nil || !sameEntry(&w.e, e) {
		return nil, &Violation{Checker: "store-invented", Tick: tick, Detail: fmt.Sprintf("replica %d %s %v, which no replica wrote", replica, what, *e)}
	}
	return w, nil
}

func expired(e *store.Entry, ttlMs, nowMs uint64) bool {
	return e.Tombstone && e.TS.WallMs+ttlMs <= nowMs
}

// Held records that replica persisted e (a store.EntryRecord) at its
// physical time nowMs: its own write, or a merged one that won.
func (c *Eventual) Held(replica consensus.NodeID, e store.Entry, nowMs uint64, tick float64) *Violation {
	r := c.replica(replica)
	w, v := c.lookup(replica, &e, "persisted", tick)
	if v != nil {
		return v
	}
	if prev := c.highest[r][e.Key]; prev != nil && prev.e.Compare(&e) >= 0 {
		if !expired(&prev.e, c.ttlMs, nowMs) {
			what := "went back in time"
			if prev.e.Tombstone {
				what = "resurrected a deleted key within the tombstone TTL"
			}
			return &Violation{Checker: "store-monotonic", Tick: tick,
				Detail: fmt.Sprintf("replica %d %s: it held %v and now persists the older %v", replica, what, prev.e, e)}
		}
		// The documented caveat: the tombstone was purged, and an older
		// version came back.
		c.Resurrections++
		c.resurrected[e.Key] = true
	}
	c.highest[r][e.Key] = w
	w.holders[r/64] |= 1 << (r % 64)
	return nil
}

// Wiped records that replica lost or dropped all its data (it restarts
// empty): what only it held is lost.
func (c *Eventual) Wiped(replica consensus.NodeID) {
	r := c.replica(replica)
	clear(c.highest[r])
	for _, w := range c.writes {
		w.holders[r/64] &^= 1 << (r % 64)
	}
}

// Read checks a read of key served by replica: found and kv are what Get
// returned. mine, if not nil, is the reading client's own latest write of
// key accepted by this replica since its data was last wiped: the read
// must return it or a newer version (read-your-writes).
func (c *Eventual) Read(replica consensus.NodeID, key string, kv store.KeyValue, found bool, mine *store.Entry, tick float64) *Violation {
	r := c.replica(replica)
	held := c.highest[r][key]
	var got *write
	if found {
		e := store.Entry{Key: key, Value: kv.Value, TS: kv.TS, Origin: kv.Origin}
		w, v := c.lookup(replica, &e, "returned", tick)
		if v != nil {
			return v
		}
		got = w
		if held != w {
			return &Violation{Checker: "store-read", Tick: tick, Detail: fmt.Sprintf("replica %d returned %v for %q but its change feed says it holds %v", replica, e, key, entryOrNone(held))}
		}
	} else if held != nil && !held.e.Tombstone {
		return &Violation{Checker: "store-read", Tick: tick, Detail: fmt.Sprintf("replica %d found no %q but its change feed says it holds %v", replica, key, held.e)}
	}
	if mine == nil || c.resurrected[key] {
		return nil
	}
	c.RYWChecked++
	// The replica's version (for an absent key, the tombstone it held, if
	// any) must be at least the client's write.
	cur := held
	if got != nil {
		cur = got
	}
	if cur == nil || cur.e.Compare(mine) < 0 {
		return &Violation{Checker: "read-your-writes", Tick: tick,
			Detail: fmt.Sprintf("a client wrote %v at replica %d, then read %q there and got %s", *mine, replica, key, readString(found, kv))}
	}
	return nil
}

func entryOrNone(w *write) string {
	if w == nil {
		return "nothing"
	}
	return w.e.String()
}

func readString(found bool, kv store.KeyValue) string {
	if !found {
		return "nothing"
	}
	return fmt.Sprintf("%q @%v by %d", kv.Value, kv.TS, kv.Origin)
}

// Expected returns the model's version of key: the last write by (HLC
// timestamp, origin) among those held, now or before, by a replica for
// which live returns true (running, with its data). It reports false if
// no such write exists.
func (c *Eventual) Expected(key string, live func(consensus.NodeID) bool) (store.Entry, bool) {
	var best *write
	for _, w := range c.byKey[key] {
		if best != nil && w.e.Compare(&best.e) <= 0 {
			continue
		}
		if c.heldByLive(w, live) {
			best = w
		}
	}
	if best == nil {
		return store.Entry{}, false
	}
	return best.e, true
}

func (c *Eventual) heldByLive(w *write, live func(consensus.NodeID) bool) bool {
	for i, word := range w.holders {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			if live(consensus.NodeID(i*64 + b + 1)) {
				return true
			}
		}
	}
	return false
}

// Lost counts the writes that no live replica ever held: lost with
// replicas that crashed for good or were wiped.
func (c *Eventual) Lost(live func(consensus.NodeID) bool) int {
	n := 0
	for _, w := range c.writes {
		if !c.heldByLive(w, live) {
			n++
		}
	}
	return n
}

// Keys returns every key written, sorted.
func (c *Eventual) Keys() []string {
	keys := make([]string, 0, len(c.byKey))
	for k := range c.byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Final checks the whole state of one converged replica, entries as its
// Snapshot lists them (tombstones included, by key), at its physical
// time nowMs, against the model (Expected, with live as there). A
// tombstone within marginMs of its expiry may be present or purged; keys
// resurrected after their tombstone expired are skipped (the caveat).
func (c *Eventual) Final(replica consensus.NodeID, entries []store.Entry, nowMs, marginMs uint64, live func(consensus.NodeID) bool, tick float64) *Violation {
	have := make(map[string]*store.Entry, len(entries))
	for i := range entries {
		have[entries[i].Key] = &entries[i]
	}
	for _, key := range c.Keys() {
		got := have[key]
		delete(have, key)
		if c.resurrected[key] {
			continue
		}
		want, ok := c.Expected(key, live)
		if ok && want.Tombstone {
			switch exp := want.TS.WallMs + c.ttlMs; {
			case exp+marginMs <= nowMs:
				ok = false // purged everywhere by now
			case exp <= nowMs+marginMs:
				if got == nil {
					continue // purged here already, or not yet: both fine
				}
			}
		}
		switch {
		case !ok && got == nil:
		case !ok:
			return &Violation{Checker: "store-lww", Tick: tick, Detail: fmt.Sprintf("replica %d holds %v, but the model holds nothing for %q", replica, *got, key)}
		case got == nil:
			return &Violation{Checker: "store-lww", Tick: tick, Detail: fmt.Sprintf("replica %d holds nothing for %q, but the last write is %v", replica, key, want)}
		case !sameEntry(got, &want):
			return &Violation{Checker: "store-lww", Tick: tick, Detail: fmt.Sprintf("replica %d holds %v, but the last write is %v", replica, *got, want)}
		}
	}
	if len(have) > 0 {
		keys := make([]string, 0, len(have))
		for k := range have {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return &Violation{Checker: "store-invented", Tick: tick, Detail: fmt.Sprintf("replica %d holds %v, a key nobody wrote", replica, *have[keys[0]])}
	}
	return nil
}

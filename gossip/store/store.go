package store

import (
	"errors"
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// ErrInvalidWrite is matched (with errors.Is) by the errors Put, Delete
// and DeleteRange return for a write they refuse: an empty or too long
// key, a too large value.
var ErrInvalidWrite = errors.New("store: invalid write")

// ErrWrongNode is matched by the error Step returns for a message meant
// for another node.
var ErrWrongNode = errors.New("store: message addressed to another node")

// ErrTreeShape is matched by the error Step returns for a tree message
// from a replica whose tree has another depth: every replica of a group
// must use the same Config.TreeLevels.
var ErrTreeShape = errors.New("store: Merkle tree shape differs between replicas")

// ErrRefused is matched by the error Step and Merge return for entries
// beyond this replica's key or value bounds: every replica of a group
// must use the same Config.KeyBytesMax and ValueBytesMax.
var ErrRefused = errors.New("store: entry beyond this replica's bounds refused")

// item is a key's record in the store: its latest entry and where it sits
// in the tree. The map, the key index and the tree's leaf lists point at
// the same item.
type item struct {
	e Entry
	// rev is the store revision when this replica last changed the entry.
	rev uint64
	// digest is digest(&e). Invariant: kept equal on every change.
	digest uint64
	// leaf is tree.leafOf(e.Key); pos is the item's place in the leaf list.
	leaf uint32
	pos  int
}

func (it *item) kv() KeyValue {
	return KeyValue{Key: it.e.Key, Value: it.e.Value, TS: it.e.TS, Origin: it.e.Origin, Revision: it.rev}
}

// Store is one replica of the eventually consistent key-value store. It
// is a pure, deterministic state machine: physical time arrives as the
// nowMs argument, messages as Step, writes as Put and Delete, and what it
// wants done comes out of Ready. It is not safe for concurrent use.
type Store struct {
	cfg   Config
	id    consensus.NodeID
	clock Clock
	// rev counts the changes to entries this replica applied. Invariant:
	// every item's rev is at most rev.
	rev uint64

	// items holds every key with a live value or an unpurged tombstone;
	// index and tree hold the same items. Invariant: tombstones counts the
	// items that are tombstones; every tombstone has an expiry in
	// expiries.
	items      map[string]*item
	index      keyIndex
	tree       *tree
	tombstones int
	expiries   expiryHeap

	peers []consensus.NodeID
	queue queue
	// The next gossip and anti-entropy rounds; zero until the first Tick.
	nextGossipMs, nextAntiEntropyMs uint64

	persist []consensus.Record
	msgs    []*Message
}

// New returns an empty replica configured by cfg.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = consensus.DiscardLogger
	}
	s := &Store{cfg: cfg, id: cfg.ID, clock: Clock{driftMaxMs: cfg.ClockDriftMaxMs}, queue: newQueue(cfg.QueueMax)}
	s.reset()
	return s, nil
}

func (s *Store) reset() {
	s.items = map[string]*item{}
	s.index = keyIndex{}
	s.tree = newTree(s.cfg.TreeLevels)
	s.tombstones = 0
	s.expiries = nil
}

// ID is this replica's node ID.
func (s *Store) ID() consensus.NodeID { return s.id }

// Revision is the local change counter: it grows by one for each change
// this replica applies to its entries, its own writes and merged ones
// alike. It orders this replica's history only; the same write has
// different revisions on different replicas.
func (s *Store) Revision() uint64 { return s.rev }

// Clock is the latest hybrid-logical-clock timestamp this replica issued
// or received.
func (s *Store) Clock() Timestamp { return s.clock.Last() }

// --- local writes and reads ---

func (s *Store) checkKey(key string) error {
	if key == "" || len(key) > s.cfg.KeyBytesMax {
		return fmt.Errorf("%w: key of %d bytes (allowed 1..%d)", ErrInvalidWrite, len(key), s.cfg.KeyBytesMax)
	}
	return nil
}

// CheckWrite reports whether Put(key, value) would be refused for its
// sizes (ErrInvalidWrite): a host checks every write of a batch before
// applying any. A nil value checks a key for Delete.
func (s *Store) CheckWrite(key string, value []byte) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if len(value) > s.cfg.ValueBytesMax {
		return fmt.Errorf("%w: value of %d bytes for %q (allowed %d)", ErrInvalidWrite, len(value), key, s.cfg.ValueBytesMax)
	}
	return nil
}

// Put sets key to value at physical time nowMs, and returns the write's
// timestamp. The write is visible to reads on this replica at once; it
// is durable once the Ready that carries its record is persisted, and
// reaches the other replicas by gossip and anti-entropy. It wins over
// every version this replica has seen of the key. The store keeps its own
// copy of value.
func (s *Store) Put(key string, value []byte, nowMs uint64) (Timestamp, error) {
	if err := s.CheckWrite(key, value); err != nil {
		return Timestamp{}, err
	}
	return s.write(Entry{Key: key, Value: slices.Clone(value)}, nowMs)
}

// Delete deletes key at physical time nowMs by writing a tombstone, and
// reports whether this replica held a live value for it. The tombstone is
// written even if it did not: a put of the key may be on its way, and the
// delete must win over it if it is older.
func (s *Store) Delete(key string, nowMs uint64) (bool, error) {
	if err := s.checkKey(key); err != nil {
		return false, err
	}
	it := s.items[key]
	existed := it != nil && !it.e.Tombstone
	_, err := s.write(Entry{Key: key, Tombstone: true}, nowMs)
	return existed && err == nil, err
}

// DeleteRange deletes every key with start <= key < end (end "" means no
// upper bound) that this replica holds a live value for, and returns how
// many. Keys this replica has not heard of yet are not deleted: there are
// no range tombstones.
func (s *Store) DeleteRange(start, end string, nowMs uint64) (int, error) {
	var keys []string
	s.index.ascend(start, end, func(it *item) bool {
		if !it.e.Tombstone {
			keys = append(keys, it.e.Key)
		}
		return true
	})
	for i, k := range keys {
		if _, err := s.write(Entry{Key: k, Tombstone: true}, nowMs); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

// write stamps e as this replica's write, applies it and queues it for
// dissemination.
func (s *Store) write(e Entry, nowMs uint64) (Timestamp, error) {
	ts, err := s.clock.Now(nowMs)
	if err != nil {
		return Timestamp{}, err
	}
	e.TS, e.Origin = ts, s.id
	it := s.items[e.Key]
	if it != nil && it.e.Compare(&e) >= 0 {
		panic(fmt.Sprintf("store %d: own write %v does not win over %v: the clock is behind an entry it held", s.id, e, it.e))
	}
	s.apply(it, e, nowMs, true)
	s.queue.push(e)
	return ts, nil
}

// Get returns the live value of key, or false if this replica holds none
// (never written, deleted, or not heard of yet).
func (s *Store) Get(key string) (KeyValue, bool) {
	it := s.items[key]
	if it == nil || it.e.Tombstone {
		return KeyValue{}, false
	}
	return it.kv(), true
}

// Ascend calls fn on each live key with start <= key < end (end "" means
// no upper bound), in key order, until fn returns false. fn must not
// change the store.
func (s *Store) Ascend(start, end string, fn func(KeyValue) bool) {
	s.index.ascend(start, end, func(it *item) bool {
		if it.e.Tombstone {
			return true
		}
		return fn(it.kv())
	})
}

// Range returns the live keys with start <= key < end (end "" means no
// upper bound) in key order, at most limit of them if limit > 0, and
// whether the limit cut the answer short.
func (s *Store) Range(start, end string, limit int) (kvs []KeyValue, more bool) {
	s.Ascend(start, end, func(kv KeyValue) bool {
		if limit > 0 && len(kvs) == limit {
			more = true
			return false
		}
		kvs = append(kvs, kv)
		return true
	})
	return kvs, more
}

// PrefixEnd returns the end of the range of keys that start with prefix:
// Range(prefix, PrefixEnd(prefix), 0) reads them. For an empty prefix, or
// one of only 0xff bytes, it returns "" (no upper bound).
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// Len returns the number of live keys.
func (s *Store) Len() int { return len(s.items) - s.tombstones }

// --- merging ---

// Merge merges entries from elsewhere (a peer, a bulk import) at physical
// time nowMs, last writer wins, and returns those that changed this
// replica, which is what a peer that sent them would want passed on. An
// entry is refused if its timestamp is more than ClockDriftMaxMs ahead of
// nowMs (the error matches ErrClockDrift; it is taken once this clock
// catches up) or if it exceeds this replica's bounds (ErrRefused); the
// rest are merged all the same. A tombstone already past its TTL deletes
// what it overrides and is not kept. The store keeps its own copies.
func (s *Store) Merge(entries []Entry, nowMs uint64) ([]Entry, error) {
	var drift *DriftError
	refused, late := 0, 0
	var newest Timestamp
	ok := make([]bool, len(entries))
	for i := range entries {
		e := &entries[i]
		if err := validEntry(e); err != nil {
			return nil, err
		}
		if len(e.Key) > s.cfg.KeyBytesMax || len(e.Value) > s.cfg.ValueBytesMax {
			refused++
			continue
		}
		if err := s.clock.Check(e.TS, nowMs); err != nil {
			late++
			if drift == nil || drift.Remote.Less(e.TS) {
				drift = err.(*DriftError)
			}
			continue
		}
		ok[i] = true
		if newest.Less(e.TS) {
			newest = e.TS
		}
	}
	// One receive event for the whole batch: the clock passes every entry
	// accepted, so a later local write wins over each of them.
	if !newest.IsZero() {
		if _, err := s.clock.Update(newest, nowMs); err != nil {
			return nil, err
		}
	}
	var news []Entry
	for i := range entries {
		if !ok[i] {
			continue
		}
		e := entries[i]
		it := s.items[e.Key]
		if it != nil && it.e.Compare(&e) >= 0 {
			continue
		}
		e.Value = slices.Clone(e.Value)
		if s.apply(it, e, nowMs, true) {
			news = append(news, e)
		}
	}
	var errs []error
	if late > 0 {
		s.cfg.Logger.Warnf("store %d: refused %d entries stamped too far ahead: %v", s.id, late, drift)
		errs = append(errs, fmt.Errorf("%d entries refused: %w", late, drift))
	}
	if refused > 0 {
		s.cfg.Logger.Warnf("store %d: refused %d entries beyond KeyBytesMax %d or ValueBytesMax %d", s.id, refused, s.cfg.KeyBytesMax, s.cfg.ValueBytesMax)
		errs = append(errs, fmt.Errorf("%w: %d entries beyond KeyBytesMax %d or ValueBytesMax %d; every replica must use the same bounds",
			ErrRefused, refused, s.cfg.KeyBytesMax, s.cfg.ValueBytesMax))
	}
	return news, errors.Join(errs...)
}

// apply makes e, which wins over it (the key's item, or nil), the key's
// entry, and reports whether that changed anything: a tombstone already
// expired at nowMs removes the item instead of being kept, and changes
// nothing if there was none. record asks for an EntryRecord in Ready.
func (s *Store) apply(it *item, e Entry, nowMs uint64, record bool) bool {
	if e.Tombstone && expiryOf(e.TS, s.cfg.TombstoneTTLMs) <= nowMs {
		if it == nil {
			return false
		}
		s.removeItem(it)
	} else {
		s.setItem(it, e)
	}
	s.rev++
	if it := s.items[e.Key]; it != nil {
		it.rev = s.rev
	}
	if record {
		s.persist = append(s.persist, &EntryRecord{Entry: e})
	}
	return true
}

// setItem makes e the entry of key e.Key, it being its item or nil.
func (s *Store) setItem(it *item, e Entry) {
	if it == nil {
		it = &item{e: e, digest: digest(&e), leaf: s.tree.leafOf(e.Key)}
		s.items[e.Key] = it
		s.index.insert(it)
		s.tree.add(it)
	} else {
		if it.e.Tombstone {
			s.tombstones--
		}
		old := it.digest
		it.e, it.digest = e, digest(&e)
		s.tree.redigest(it, old)
	}
	if e.Tombstone {
		s.tombstones++
		s.expiries.push(expiry{atMs: expiryOf(e.TS, s.cfg.TombstoneTTLMs), key: e.Key, ts: e.TS, origin: e.Origin})
	}
}

func (s *Store) removeItem(it *item) {
	if it.e.Tombstone {
		s.tombstones--
	}
	delete(s.items, it.e.Key)
	s.index.remove(it.e.Key)
	s.tree.remove(it)
}

// purge forgets the tombstones whose TTL has passed at nowMs. Purging
// changes no value a read can see, so it is not a change: no revision, no
// record (replaying the records and ticking purges them again).
func (s *Store) purge(nowMs uint64) {
	for len(s.expiries) > 0 && s.expiries[0].atMs <= nowMs {
		x := s.expiries.pop()
		if it := s.items[x.key]; it != nil && it.e.Tombstone && it.e.TS == x.ts && it.e.Origin == x.origin {
			s.removeItem(it)
		}
	}
	// Expiries of tombstones overwritten since stay until their time;
	// rebuild when they outnumber the tombstones.
	if len(s.expiries) > 2*s.tombstones+64 {
		s.expiries = s.expiries[:0]
		for _, it := range s.items {
			if it.e.Tombstone {
				s.expiries.push(expiry{atMs: expiryOf(it.e.TS, s.cfg.TombstoneTTLMs), key: it.e.Key, ts: it.e.TS, origin: it.e.Origin})
			}
		}
	}
}

// --- time, peers and dissemination ---

// SetPeers tells the replica who the other replicas are (the live
// members of the gossip group): gossip and anti-entropy pick among them.
// This replica's own ID and None are ignored.
func (s *Store) SetPeers(ids []consensus.NodeID) error {
	if len(ids) > PeersMax {
		return fmt.Errorf("store: %d peers; allowed %d", len(ids), PeersMax)
	}
	peers := make([]consensus.NodeID, 0, len(ids))
	for _, id := range ids {
		if id != consensus.None && id != s.id {
			peers = append(peers, id)
		}
	}
	slices.Sort(peers)
	s.peers = slices.Compact(peers)
	return nil
}

// Tick advances physical time to nowMs: it purges expired tombstones, and
// when their intervals have passed sends a gossip round and starts an
// anti-entropy exchange. Call it regularly (every few hundred
// milliseconds); nowMs may stand still or go backwards.
func (s *Store) Tick(nowMs uint64) {
	s.purge(nowMs)
	if s.nextGossipMs == 0 && s.nextAntiEntropyMs == 0 {
		// First tick: start the rounds at random points of their
		// intervals, so that replicas started together do not run in
		// lockstep.
		if g := s.cfg.GossipIntervalMs; g > 0 {
			s.nextGossipMs = nowMs + 1 + s.randMs(g)
		}
		if a := s.cfg.AntiEntropyIntervalMs; a > 0 {
			s.nextAntiEntropyMs = nowMs + 1 + s.randMs(a)
		}
	}
	if g := s.cfg.GossipIntervalMs; g > 0 {
		s.nextGossipMs = min(s.nextGossipMs, nowMs+g) // the clock went back
		if nowMs >= s.nextGossipMs {
			s.nextGossipMs = nowMs + g
			s.gossip()
		}
	}
	if a := s.cfg.AntiEntropyIntervalMs; a > 0 {
		s.nextAntiEntropyMs = min(s.nextAntiEntropyMs, nowMs+a)
		if nowMs >= s.nextAntiEntropyMs {
			s.nextAntiEntropyMs = nowMs + a
			if len(s.peers) > 0 {
				s.StartAntiEntropy(s.peers[s.cfg.Rand.IntN(len(s.peers))])
			}
		}
	}
}

// randMs draws a value in [0, n) for n up to DurationMsMax.
func (s *Store) randMs(n uint64) uint64 { return uint64(s.cfg.Rand.IntN(int(min(n, 1<<30)))) }

// gossip sends the queued writes to GossipFanout random peers.
func (s *Store) gossip() {
	if s.queue.len() == 0 {
		return
	}
	for _, p := range s.randomPeers(s.cfg.GossipFanout) {
		es := s.PickUpdates(s.cfg.MessageBytesMax - MessageHeaderBytesMax)
		if len(es) == 0 {
			return
		}
		s.send(&Message{Type: MsgPush, To: p, Entries: es})
	}
}

// randomPeers returns up to k distinct random peers.
func (s *Store) randomPeers(k int) []consensus.NodeID {
	ps := slices.Clone(s.peers)
	k = min(k, len(ps))
	for i := range k {
		j := i + s.cfg.Rand.IntN(len(ps)-i)
		ps[i], ps[j] = ps[j], ps[i]
	}
	return ps[:k]
}

// PickUpdates returns recent writes to piggyback on a message the host
// sends anyway (a SWIM probe), whose encodings fit in budgetBytes,
// fewest-sent first, and counts them as sent once more; a write sent
// λ·⌈log10(N+1)⌉ times (see Config.RetransmitMult) is not picked again.
// Wrap them in a MsgPush to the receiver, which takes MessageHeaderBytesMax
// more bytes at most.
func (s *Store) PickUpdates(budgetBytes int) []Entry {
	return s.queue.pick(budgetBytes, retransmitLimit(s.cfg.RetransmitMult, len(s.peers)+1))
}

func (s *Store) send(m *Message) {
	m.From = s.id
	s.msgs = append(s.msgs, m)
}

// --- messages ---

// Step hands the replica a message received at physical time nowMs. It
// returns an error for a message that is malformed, meant for another
// node (ErrWrongNode) or from a tree of another shape (ErrTreeShape), and
// for entries it refused (ErrClockDrift, ErrRefused) while merging the
// rest; anything else, stale or duplicated, is absorbed. The store keeps
// no reference to m.
func (s *Store) Step(m *Message, nowMs uint64) error {
	if m == nil {
		return errors.New("store: nil message")
	}
	if err := m.validate(); err != nil {
		return err
	}
	if m.To != s.id {
		return fmt.Errorf("%w: %v is for %d, this is %d", ErrWrongNode, m.Type, m.To, s.id)
	}
	if m.Type != MsgPush && int(m.TreeLevels) != s.cfg.TreeLevels {
		return fmt.Errorf("%w: %v from %d has %d levels, this replica %d", ErrTreeShape, m.Type, m.From, m.TreeLevels, s.cfg.TreeLevels)
	}
	switch m.Type {
	case MsgPush:
		news, err := s.Merge(m.Entries, nowMs)
		// Rumour mongering: what was news here is news to others too.
		for _, e := range news {
			s.queue.push(e)
		}
		return err
	case MsgTree:
		s.onTree(m)
	case MsgLeaves:
		_, err := s.Merge(m.Entries, nowMs)
		if !m.Reply {
			s.answerLeaves(m)
		}
		return err
	}
	return nil
}

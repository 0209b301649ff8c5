package kvstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

var (
	// ErrCorrupt is matched (with errors.Is) by every error that reports
	// stored state that is not what this package wrote: a damaged file, a
	// record that does not decode, counts that disagree with the data.
	ErrCorrupt = errors.New("kvstore: corrupt store")
	// ErrClosed is returned by calls on a closed Store.
	ErrClosed = errors.New("kvstore: store is closed")
	// ErrAlreadyApplied is the Err of the Result ApplyBatch returns for an
	// entry at or below the applied index: it was applied before (by an
	// earlier run, before a crash) and was skipped.
	ErrAlreadyApplied = errors.New("kvstore: entry already applied; skipped")
)

// formatVersion is the on-disk layout version (see layout below).
const formatVersion = 1

// Options configures a Store.
type Options struct {
	// NoSync skips the fsync that makes each ApplyBatch durable: after a
	// machine crash the store may have lost its most recent applied
	// batches (never torn one). Safe when the entries are durable
	// elsewhere and the host replays those after AppliedIndex on restart,
	// as a node does from its write-ahead log.
	NoSync bool
	// Logf receives the store engine's error messages (background
	// compaction or flush failures). If nil they go to standard error.
	Logf func(format string, args ...any)
	// KV are the state machine's options (kv.Options), which ApplyBatch
	// and Read apply. They are settings, not state: they are not stored,
	// and the host passes the same ones on every Open.
	KV kv.Options
}

// restoreBatchBytesMax bounds the writes RestoreSnapshot buffers before it
// commits them (unsynced) to the new generation.
var restoreBatchBytesMax = 4 << 20

// The layout. The engine keeps keys in spaces (numbered key ranges, see
// engine). Space 0 is the root; every other space is a generation that
// holds one whole state:
//
//	root:       "format" -> u8 formatVersion, "gen" -> u64be current generation
//	generation: 'k' key            -> record    a live key
//	            's' clientID:u64be -> session   a client's session
//	            'l' index:u64be    -> clientID:u64be   sessions by recency
//	            'm'                -> meta
//	record  = createRevision:uvarint modRevision:uvarint version:uvarint value crc:u32le
//	session = kv.AppendSession encoding, crc:u32le
//	meta    = applied:uvarint revision:uvarint sessionsMax:uvarint keys:uvarint sessions:uvarint crc:u32le
//
// Each CRC is the CRC-32C of the bytes before it (for a record, with the
// key in front), so damage that gets past the engine's own block checksums
// still surfaces as ErrCorrupt. The meta counts keys and sessions, for the
// snapshot header. A restore writes a fresh generation and switches "gen"
// in one batch.
const (
	rootSpace = 0
	prefixKey = 'k'
	prefixSes = 's'
	prefixLRU = 'l'
	prefixMet = 'm'
)

var (
	rootFormat = []byte("format")
	rootGen    = []byte("gen")
	metaKey    = []byte{prefixMet}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// Store is the key-value state machine (package kv's semantics) on disk.
// It is safe for concurrent use: ApplyBatch, RestoreSnapshot and Close are
// serialized; Read, WriteSnapshot and Hash run on consistent views beside
// them.
type Store struct {
	eng engine
	kv  kv.Options

	mu sync.Mutex // serializes writers and Close
	// closeMu is held shared by views and exclusively by Close, so that
	// the engine never closes under an open view.
	closeMu sync.RWMutex
	// gen is the current generation, for writers (under mu); views read
	// it from their own point-in-time view of the root.
	gen atomic.Uint64
	// applied mirrors the committed applied index, for AppliedIndex.
	applied atomic.Uint64
	closed  atomic.Bool
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	eng, err := openEngine(dir, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{eng: eng, kv: opts.KV}
	if err := s.init(); err != nil {
		eng.close()
		return nil, err
	}
	return s, nil
}

// init reads the root, creating an empty state in a new store, drops a
// generation left by a restore that did not finish, and loads the meta.
func (s *Store) init() error {
	t, err := s.eng.begin(modeWrite)
	if err != nil {
		return err
	}
	defer t.rollback()
	f, err := t.get(rootSpace, rootFormat)
	if err != nil {
		return err
	}
	var gen uint64
	switch {
	case f == nil:
		gen = 1
		if err := t.put(rootSpace, rootFormat, []byte{formatVersion}); err != nil {
			return err
		}
		if err := t.put(rootSpace, rootGen, binary.BigEndian.AppendUint64(nil, gen)); err != nil {
			return err
		}
		b := newBackend(t, gen)
		b.meta = kv.Meta{Revision: 1, SessionsMax: kv.SessionsMax}
		if err := b.flushMeta(); err != nil {
			return err
		}
	case len(f) != 1 || f[0] != formatVersion:
		return fmt.Errorf("%w: unknown format %x (this build knows %d)", ErrCorrupt, f, formatVersion)
	default:
		g, err := t.get(rootSpace, rootGen)
		if err != nil {
			return err
		}
		if len(g) != 8 || binary.BigEndian.Uint64(g) == 0 {
			return fmt.Errorf("%w: bad generation %x", ErrCorrupt, g)
		}
		gen = binary.BigEndian.Uint64(g)
	}
	if err := t.dropSpace(gen + 1); err != nil {
		return err
	}
	b := newBackend(t, gen)
	if err := b.loadMeta(); err != nil {
		return err
	}
	if err := t.commit(true); err != nil {
		return err
	}
	s.gen.Store(gen)
	s.applied.Store(b.meta.Applied)
	return nil
}

// Close closes the store. Entries applied by a successful ApplyBatch are
// durable whether or not Close is called.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Swap(true) {
		return ErrClosed
	}
	return s.eng.close()
}

// AppliedIndex returns the index of the last applied entry (0 if none).
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// ApplyBatch applies committed entries in one store transaction, made
// durable (fsync) before it returns unless Options.NoSync, together with
// the applied index, revision and session table: after a crash the store
// holds exactly the batches whose ApplyBatch returned, or also the one in
// flight.
//
// Entries must be consecutive. Those at or below AppliedIndex (a replay
// after a restart) are skipped and get a Result with Err
// ErrAlreadyApplied; the first other one must be AppliedIndex+1, or
// ApplyBatch panics (a bug in the host, as for kv.Store.Apply). Results are
// those kv.Store.Apply would return, one per entry. On an error nothing of
// the batch is applied.
func (s *Store) ApplyBatch(entries []consensus.Entry) ([]kv.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Index != entries[i-1].Index+1 {
			panic(fmt.Sprintf("kvstore: batch entries %d and %d are not consecutive", entries[i-1].Index, entries[i].Index))
		}
	}
	results := make([]kv.Result, len(entries))
	applied := s.applied.Load()
	skip := 0
	for skip < len(entries) && entries[skip].Index <= applied {
		results[skip] = kv.Result{Err: ErrAlreadyApplied}
		skip++
	}
	if skip == len(entries) {
		return results, nil
	}
	t, err := s.eng.begin(modeWrite)
	if err != nil {
		return nil, err
	}
	defer t.rollback()
	b := newBackend(t, s.gen.Load())
	if err := b.loadMeta(); err != nil {
		return nil, err
	}
	for i := skip; i < len(entries); i++ {
		results[i] = s.kv.Apply(b, entries[i])
		if b.err != nil {
			return nil, b.err
		}
	}
	if err := b.flushMeta(); err != nil {
		return nil, err
	}
	if err := t.commit(true); err != nil {
		return nil, err
	}
	s.applied.Store(b.meta.Applied)
	return results, nil
}

// Read serves a read-only request as kv.Store.Read does, on a consistent
// view of the last applied batch. A store error comes back in Result.Err.
func (s *Store) Read(r kv.Request) kv.Result {
	var res kv.Result
	err := s.view(func(b *backend) error {
		res = s.kv.Read(b, r)
		return b.err
	})
	if err != nil {
		return kv.Result{Err: err}
	}
	return res
}

// Hash returns the digest kv.Store.Hash returns for an equal state.
func (s *Store) Hash() (uint64, error) {
	var h uint64
	err := s.view(func(b *backend) error {
		if err := b.checkCounts(); err != nil {
			return err
		}
		var err error
		h, err = kv.Hash(b)
		if b.err != nil {
			return b.err // also the root cause of a count mismatch
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return nil
	})
	return h, err
}

// WriteSnapshot writes a consistent point-in-time snapshot of the state to
// w in kv's snapshot format: the bytes kv.Store.Snapshot returns for an
// equal state, so kv.Restore and any backend's RestoreSnapshot read it.
// It streams from the store, holding about 32 KiB in memory.
func (s *Store) WriteSnapshot(w io.Writer) error {
	return s.view(func(b *backend) error {
		var werr error
		err := kv.WriteSnapshot(b, func(p []byte) error {
			_, werr = w.Write(p)
			return werr
		})
		switch {
		case b.err != nil:
			return b.err // also the root cause of a count mismatch
		case werr != nil:
			return werr
		case err != nil:
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return nil
	})
}

// RestoreSnapshot replaces the whole state with the snapshot read from r
// (from WriteSnapshot or kv.Store.Snapshot), atomically: it streams the
// snapshot into a new generation in bounded batches, checks it (checksum
// and every invariant, as kv.Restore), and only then switches to it in one
// durable transaction. On any error the old state is untouched. An error
// about the snapshot's content matches kv.ErrCorruptSnapshot.
func (s *Store) RestoreSnapshot(r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	old := s.gen.Load()
	gen := old + 1
	l := &loader{s: s, gen: gen, clients: map[uint64]bool{}}
	if err := l.begin(); err != nil {
		return err
	}
	defer func() {
		if l.t != nil {
			l.t.rollback()
		}
	}()
	if err := l.t.dropSpace(gen); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	next := func() ([]byte, error) {
		for {
			n, err := r.Read(buf)
			if n > 0 {
				return buf[:n], nil
			}
			if err == io.EOF {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
		}
	}
	err := kv.ReadSnapshot(next, l)
	if err == nil {
		err = l.err
	}
	if err == nil {
		err = l.finish(old)
	}
	if err != nil {
		l.abandon()
		return err
	}
	s.gen.Store(gen)
	s.applied.Store(l.meta.Applied)
	return nil
}

// Reset replaces the whole state with an empty one (nothing applied,
// revision 1, no sessions), atomically and durably, as RestoreSnapshot of
// an empty store's snapshot does. A host whose protocol re-emits every
// committed entry from index 1 on restart, in an order of its own (EPaxos
// before its first snapshot), calls it before applying them again.
func (s *Store) Reset() error {
	return s.RestoreSnapshot(bytes.NewReader(kv.New().Snapshot()))
}

// view runs fn on a read-only backend over a consistent view.
func (s *Store) view(fn func(b *backend) error) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	t, err := s.eng.begin(modeRead)
	if err != nil {
		return err
	}
	defer t.rollback()
	// The generation comes from the view itself: a restore may switch
	// generations between reading s.gen and taking the view.
	g, err := t.get(rootSpace, rootGen)
	if err != nil {
		return err
	}
	if len(g) != 8 {
		return fmt.Errorf("%w: bad generation %x", ErrCorrupt, g)
	}
	b := newBackend(t, binary.BigEndian.Uint64(g))
	if err := b.loadMeta(); err != nil {
		return err
	}
	return fn(b)
}

// backend is kv.Backend over one engine transaction in one generation.
// Its first error sticks (see kv.Backend); reads after it return nothing.
type backend struct {
	t        tx
	space    uint64
	meta     kv.Meta
	keys     int
	sessions int
	err      error
	kbuf     []byte // scratch for engine keys
	vbuf     []byte // scratch for values
}

func newBackend(t tx, gen uint64) *backend { return &backend{t: t, space: gen} }

func (b *backend) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *backend) corrupt(format string, args ...any) {
	b.fail(fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...)))
}

func (b *backend) key(prefix byte, k []byte) []byte {
	b.kbuf = append(append(b.kbuf[:0], prefix), k...)
	return b.kbuf
}

func (b *backend) idKey(prefix byte, id uint64) []byte {
	b.kbuf = binary.BigEndian.AppendUint64(append(b.kbuf[:0], prefix), id)
	return b.kbuf
}

func (b *backend) loadMeta() error {
	v, err := b.t.get(b.space, metaKey)
	if err != nil {
		return err
	}
	if v == nil {
		return fmt.Errorf("%w: generation %d has no meta record", ErrCorrupt, b.space)
	}
	body, ok := checkCRC(nil, v)
	var f [5]uint64
	for i := range f {
		if !ok {
			break
		}
		var n int
		f[i], n = binary.Uvarint(body)
		ok = n > 0
		body = body[max(n, 0):]
	}
	if !ok || len(body) != 0 || f[1] < 1 || f[1] > 1<<62 || f[2] < 1 || f[2] > 1<<30 || f[3] > 1<<40 || f[4] > f[2] {
		return fmt.Errorf("%w: bad meta record %x", ErrCorrupt, v)
	}
	b.meta = kv.Meta{Applied: f[0], Revision: int64(f[1]), SessionsMax: int(f[2])}
	b.keys, b.sessions = int(f[3]), int(f[4])
	return nil
}

func (b *backend) flushMeta() error {
	if b.err != nil {
		return b.err
	}
	v := binary.AppendUvarint(nil, b.meta.Applied)
	v = binary.AppendUvarint(v, uint64(b.meta.Revision))
	v = binary.AppendUvarint(v, uint64(b.meta.SessionsMax))
	v = binary.AppendUvarint(v, uint64(b.keys))
	v = binary.AppendUvarint(v, uint64(b.sessions))
	v = binary.LittleEndian.AppendUint32(v, crc32.Checksum(v, castagnoli))
	return b.t.put(b.space, metaKey, v)
}

// checkCRC splits v into body and a trailing CRC-32C of prefix+body.
func checkCRC(prefix, v []byte) ([]byte, bool) {
	if len(v) < 4 {
		return nil, false
	}
	body := v[:len(v)-4]
	c := crc32.Update(crc32.Checksum(prefix, castagnoli), castagnoli, body)
	return body, c == binary.LittleEndian.Uint32(v[len(v)-4:])
}

func appendRecord(buf []byte, kv *kv.KeyValue) []byte {
	buf = binary.AppendUvarint(buf, uint64(kv.CreateRevision))
	buf = binary.AppendUvarint(buf, uint64(kv.ModRevision))
	buf = binary.AppendUvarint(buf, uint64(kv.Version))
	buf = append(buf, kv.Value...)
	c := crc32.Update(crc32.Checksum(kv.Key, castagnoli), castagnoli, buf)
	return binary.LittleEndian.AppendUint32(buf, c)
}

// decodeRecord decodes key's record v into a KeyValue that shares no
// memory with key or v.
func (b *backend) decodeRecord(key, v []byte) (kv.KeyValue, bool) {
	body, ok := checkCRC(key, v)
	var f [3]uint64
	for i := range f {
		if !ok {
			break
		}
		var n int
		f[i], n = binary.Uvarint(body)
		ok = n > 0 && f[i] <= 1<<62
		body = body[max(n, 0):]
	}
	if !ok {
		b.corrupt("bad record for key %q", key)
		return kv.KeyValue{}, false
	}
	// One allocation for key and value.
	kb := make([]byte, len(key)+len(body))
	copy(kb, key)
	copy(kb[len(key):], body)
	rec := kv.KeyValue{Key: kb[:len(key):len(key)], CreateRevision: int64(f[0]), ModRevision: int64(f[1]), Version: int64(f[2])}
	if len(body) > 0 {
		rec.Value = kb[len(key):]
	}
	return rec, true
}

func (b *backend) Get(key []byte) (kv.KeyValue, bool) {
	if b.err != nil {
		return kv.KeyValue{}, false
	}
	v, err := b.t.get(b.space, b.key(prefixKey, key))
	if err != nil {
		b.fail(err)
		return kv.KeyValue{}, false
	}
	if v == nil {
		return kv.KeyValue{}, false
	}
	return b.decodeRecord(key, v)
}

func (b *backend) Ascend(from, to []byte, fn func(kv.KeyValue) bool) {
	if b.err != nil {
		return
	}
	lo := append([]byte{prefixKey}, from...)
	hi := []byte{prefixKey + 1}
	if to != nil {
		hi = append([]byte{prefixKey}, to...)
	}
	err := b.t.ascend(b.space, lo, hi, func(k, v []byte) bool {
		rec, ok := b.decodeRecord(k[1:], v)
		return ok && fn(rec)
	})
	if err != nil {
		b.fail(err)
	}
}

func (b *backend) Len() int      { return b.keys }
func (b *backend) Meta() kv.Meta { return b.meta }
func (b *backend) Sessions() int { return b.sessions }

func (b *backend) Session(clientID uint64) (kv.SessionRecord, bool) {
	if b.err != nil {
		return kv.SessionRecord{}, false
	}
	v, err := b.t.get(b.space, b.idKey(prefixSes, clientID))
	if err != nil {
		b.fail(err)
		return kv.SessionRecord{}, false
	}
	if v == nil {
		return kv.SessionRecord{}, false
	}
	return b.decodeSession(clientID, v)
}

func (b *backend) decodeSession(clientID uint64, v []byte) (kv.SessionRecord, bool) {
	body, ok := checkCRC(nil, v)
	var s kv.SessionRecord
	var err error
	if ok {
		s, err = kv.DecodeSession(body)
	}
	if !ok || err != nil || s.ClientID != clientID {
		b.corrupt("bad session record for client %d (%v)", clientID, err)
		return kv.SessionRecord{}, false
	}
	return s, true
}

func (b *backend) AscendSessions(fn func(kv.SessionRecord) bool) {
	if b.err != nil {
		return
	}
	var ids []uint64
	err := b.t.ascend(b.space, []byte{prefixLRU}, []byte{prefixLRU + 1}, func(k, v []byte) bool {
		if len(v) != 8 {
			b.corrupt("bad session index entry %x", k)
			return false
		}
		ids = append(ids, binary.BigEndian.Uint64(v))
		return true
	})
	if err != nil {
		b.fail(err)
	}
	for _, id := range ids {
		s, ok := b.Session(id)
		if !ok {
			if b.err == nil {
				b.corrupt("session index names client %d, which has no session", id)
			}
			return
		}
		if !fn(s) {
			return
		}
	}
}

func (b *backend) Put(rec kv.KeyValue) {
	if b.err != nil {
		return
	}
	b.vbuf = appendRecord(b.vbuf[:0], &rec)
	if err := b.t.put(b.space, b.key(prefixKey, rec.Key), b.vbuf); err != nil {
		b.fail(err)
		return
	}
	if rec.Version == 1 {
		b.keys++
	}
}

func (b *backend) Delete(key []byte) {
	if b.err != nil {
		return
	}
	if err := b.t.delete(b.space, b.key(prefixKey, key)); err != nil {
		b.fail(err)
		return
	}
	b.keys--
}

func (b *backend) SetMeta(m kv.Meta) { b.meta = m }

// sessionIndex reads the Index of clientID's session without decoding
// its result: the encoding starts with clientID, seq and index.
func (b *backend) sessionIndex(clientID uint64) (uint64, bool) {
	v, err := b.t.get(b.space, b.idKey(prefixSes, clientID))
	if err != nil {
		b.fail(err)
		return 0, false
	}
	if v == nil {
		return 0, false
	}
	var f [3]uint64
	p := v
	for i := range f {
		var n int
		f[i], n = binary.Uvarint(p)
		if n <= 0 {
			b.corrupt("bad session record for client %d", clientID)
			return 0, false
		}
		p = p[n:]
	}
	return f[2], true
}

func (b *backend) PutSession(s kv.SessionRecord) {
	if b.err != nil {
		return
	}
	if old, ok := b.sessionIndex(s.ClientID); ok {
		b.fail(b.t.delete(b.space, b.idKey(prefixLRU, old)))
	} else {
		b.sessions++
	}
	v := kv.AppendSession(b.vbuf[:0], &s)
	b.vbuf = binary.LittleEndian.AppendUint32(v, crc32.Checksum(v, castagnoli))
	b.fail(b.t.put(b.space, b.idKey(prefixSes, s.ClientID), b.vbuf))
	b.fail(b.t.put(b.space, b.idKey(prefixLRU, s.Index), binary.BigEndian.AppendUint64(nil, s.ClientID)))
}

func (b *backend) DeleteSession(clientID uint64) {
	if b.err != nil {
		return
	}
	old, ok := b.sessionIndex(clientID)
	if !ok {
		b.corrupt("deleting client %d, which has no session", clientID)
		return
	}
	b.fail(b.t.delete(b.space, b.idKey(prefixLRU, old)))
	b.fail(b.t.delete(b.space, b.idKey(prefixSes, clientID)))
	b.sessions--
}

// checkCounts checks the meta's key and session counts against the data
// (a full scan of the keys).
func (b *backend) checkCounts() error {
	n := 0
	err := b.t.ascend(b.space, []byte{prefixKey}, []byte{prefixKey + 1}, func(k, v []byte) bool { n++; return true })
	if err != nil {
		return err
	}
	m := 0
	err = b.t.ascend(b.space, []byte{prefixLRU}, []byte{prefixLRU + 1}, func(k, v []byte) bool { m++; return true })
	if err != nil {
		return err
	}
	if n != b.keys || m != b.sessions {
		return fmt.Errorf("%w: meta counts %d keys and %d sessions, data holds %d and %d", ErrCorrupt, b.keys, b.sessions, n, m)
	}
	return nil
}

// loader is the kv.Backend RestoreSnapshot decodes into: it writes a new
// generation in unsynced batches of about restoreBatchBytesMax.
// kv.ReadSnapshot calls only SetMeta, Put, Session and PutSession.
type loader struct {
	backend
	s       *Store
	gen     uint64
	pending int
	clients map[uint64]bool // client IDs loaded, for ReadSnapshot's duplicate check
}

func (l *loader) begin() error {
	t, err := l.s.eng.begin(modeLoad)
	if err != nil {
		return err
	}
	l.t, l.space = t, l.gen
	return nil
}

func (l *loader) maybeCommit() {
	if l.err != nil || l.pending < restoreBatchBytesMax {
		return
	}
	l.pending = 0
	if err := l.t.commit(false); err != nil {
		l.t = nil
		l.fail(err)
		return
	}
	l.t = nil
	if err := l.begin(); err != nil {
		l.fail(err)
	}
}

func (l *loader) Put(rec kv.KeyValue) {
	l.backend.Put(rec)
	if rec.Version != 1 {
		l.keys++ // a restored key is new whatever its version
	}
	l.pending += len(rec.Key) + len(rec.Value) + 16
	l.maybeCommit()
}

func (l *loader) Session(clientID uint64) (kv.SessionRecord, bool) {
	return kv.SessionRecord{}, l.clients[clientID]
}

func (l *loader) PutSession(s kv.SessionRecord) {
	if l.err != nil {
		return
	}
	l.clients[s.ClientID] = true
	l.sessions++
	v := kv.AppendSession(l.vbuf[:0], &s)
	l.vbuf = binary.LittleEndian.AppendUint32(v, crc32.Checksum(v, castagnoli))
	l.fail(l.t.put(l.space, l.idKey(prefixSes, s.ClientID), l.vbuf))
	l.fail(l.t.put(l.space, l.idKey(prefixLRU, s.Index), binary.BigEndian.AppendUint64(nil, s.ClientID)))
	l.pending += len(l.vbuf) + 32
	l.maybeCommit()
}

// finish writes the new generation's meta, switches the root to it and
// drops the old one, in one durable transaction.
func (l *loader) finish(old uint64) error {
	if err := l.flushMeta(); err != nil {
		return err
	}
	if err := l.t.put(rootSpace, rootGen, binary.BigEndian.AppendUint64(nil, l.gen)); err != nil {
		return err
	}
	if err := l.t.dropSpace(old); err != nil {
		return err
	}
	err := l.t.commit(true)
	l.t = nil
	return err
}

// abandon drops what was written of the new generation (Open would too).
func (l *loader) abandon() {
	if l.t != nil {
		l.t.rollback()
		l.t = nil
	}
	if t, err := l.s.eng.begin(modeWrite); err == nil {
		if t.dropSpace(l.gen) == nil {
			t.commit(false)
		}
		t.rollback()
	}
}

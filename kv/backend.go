package kv

// View is read access to a key-value state: the live keys in order, the
// metadata and the session table. The semantics (revisions, txns, sessions)
// live in this package and reach the state only through View and Backend, so
// the in-memory Store and a durable store (storage/kvstore) apply the same
// entries to the same results and the same Hash and snapshot bytes.
//
// A View is used from one goroutine. Records it returns must stay valid and
// unchanged after the call returns (copy them out of any buffer the store
// reuses); callers treat their byte slices as read-only.
type View interface {
	// Get returns key's live record, or false if key is not live.
	Get(key []byte) (KeyValue, bool)
	// Ascend calls fn on each live record with from <= Key < to, in
	// ascending byte order of Key, until fn returns false. A nil from starts
	// at the first key; a nil to means no upper bound. fn must not modify
	// the state.
	Ascend(from, to []byte, fn func(KeyValue) bool)
	// Len returns the number of live keys.
	Len() int
	// Meta returns the state's applied index, revision and session bound.
	Meta() Meta
	// Session returns the session of clientID, or false if there is none.
	Session(clientID uint64) (SessionRecord, bool)
	// AscendSessions calls fn on each session from least to most recently
	// used (ascending Index) until fn returns false. fn must not modify the
	// state.
	AscendSessions(fn func(SessionRecord) bool)
	// Sessions returns the number of sessions.
	Sessions() int
}

// Backend is a View that can be written. Apply and ReadSnapshot write
// through it; they keep every invariant of the state (see KeyValue, Meta
// and SessionRecord), so a Backend only stores what it is given and never
// has to check semantics. Writes cannot fail: a backend that can (a disk
// store) remembers its first error, and its caller checks it after Apply
// and discards the whole batch of writes.
type Backend interface {
	View
	// Put stores kv as Key's live record. kv.Version == 1 exactly when
	// Key was not live (a create), so a backend can count keys without
	// reading first. The backend may retain kv's byte slices; nobody
	// modifies them.
	Put(kv KeyValue)
	// Delete removes key, which is live.
	Delete(key []byte)
	// SetMeta replaces the metadata.
	SetMeta(m Meta)
	// PutSession stores s, replacing s.ClientID's session if it has one.
	// s.Index is above the Index of every other stored session, so s
	// becomes the most recently used.
	PutSession(s SessionRecord)
	// DeleteSession removes clientID's session, which exists.
	DeleteSession(clientID uint64)
}

// Meta is a state's metadata.
//
// Invariant: Revision >= 1 and >= every live key's ModRevision;
// SessionsMax >= 1; every session's Index <= Applied.
type Meta struct {
	// Applied is the index of the last applied entry; 0 before any.
	Applied uint64
	// Revision is the store revision (see the package doc).
	Revision int64
	// SessionsMax bounds the session table (SessionsMax for a new store).
	SessionsMax int
}

// SessionRecord is what a state remembers about one client: its last
// applied sequence number and that command's result.
//
// Invariant: ClientID != 0, Seq > 0, Result.Err == nil, and Index is the
// log index of the client's last command (applied or retried).
type SessionRecord struct {
	ClientID uint64
	Seq      uint64
	Index    uint64
	Result   Result
}

// memBackend is the in-memory Store seen as a Backend. It is a separate
// type so that Store's method set does not grow Put, Delete and the rest.
type memBackend Store

func (s *Store) backend() *memBackend { return (*memBackend)(s) }

func (m *memBackend) Get(key []byte) (KeyValue, bool) {
	if e := m.kvs[string(key)]; e != nil {
		return e.kv, true
	}
	return KeyValue{}, false
}

func (m *memBackend) Ascend(from, to []byte, fn func(KeyValue) bool) {
	m.idx.ascend(from, to, func(e *entry) bool { return fn(e.kv) })
}

func (m *memBackend) Len() int { return len(m.kvs) }

func (m *memBackend) Meta() Meta {
	return Meta{Applied: m.applied, Revision: m.rev, SessionsMax: m.sessions.max}
}

func (m *memBackend) Session(clientID uint64) (SessionRecord, bool) {
	s := m.sessions.get(clientID)
	if s == nil {
		return SessionRecord{}, false
	}
	return SessionRecord{ClientID: s.clientID, Seq: s.seq, Index: s.index, Result: s.result}, true
}

func (m *memBackend) AscendSessions(fn func(SessionRecord) bool) {
	for s := m.sessions.head; s != nil; s = s.next {
		if !fn(SessionRecord{ClientID: s.clientID, Seq: s.seq, Index: s.index, Result: s.result}) {
			return
		}
	}
}

func (m *memBackend) Sessions() int { return m.sessions.len() }

func (m *memBackend) Put(kv KeyValue) {
	if e := m.kvs[string(kv.Key)]; e != nil {
		e.kv = kv
		return
	}
	e := &entry{kv: kv}
	m.kvs[string(kv.Key)] = e
	m.idx.insert(e)
}

func (m *memBackend) Delete(key []byte) {
	if m.kvs[string(key)] == nil {
		panic("kv: delete of a key that is not live: " + string(key))
	}
	delete(m.kvs, string(key))
	m.idx.remove(key)
}

func (m *memBackend) SetMeta(meta Meta) {
	m.applied, m.rev, m.sessions.max = meta.Applied, meta.Revision, meta.SessionsMax
}

func (m *memBackend) PutSession(s SessionRecord) {
	m.sessions.record(s.ClientID, s.Seq, s.Index, s.Result)
}

func (m *memBackend) DeleteSession(clientID uint64) { m.sessions.remove(clientID) }

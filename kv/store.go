package kv

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// ErrNotReadOnly is returned by Store.Read for a request that writes.
var ErrNotReadOnly = errors.New("kv: request is not read-only; propose it through the log")

// Result is the outcome of a request, shaped so that etcd's RangeResponse,
// PutResponse, DeleteRangeResponse and TxnResponse map onto it.
//
// The byte slices in a Result are shared with the store and must not be
// modified.
type Result struct {
	// Revision is the store revision after the request.
	Revision int64
	// KVs are a Range's keys, in key order (at most Limit; none if
	// CountOnly; without values if KeysOnly).
	KVs []KeyValue
	// Count is the number of keys in a Range's range, regardless of Limit.
	Count int64
	// More reports that Limit cut a Range's KVs short.
	More bool
	// Succeeded reports whether a Txn's compare held (its Success branch ran).
	Succeeded bool
	// Deleted is the number of keys a DeleteRange deleted.
	Deleted int64
	// PrevKVs are the previous KeyValue of a Put (at most one) or the
	// deleted KeyValues of a DeleteRange, when PrevKV was asked for.
	PrevKVs []KeyValue
	// Responses are a Txn's results, one per operation of the branch that ran.
	Responses []Result
	// Events are the changes the request made, in the order it made them,
	// all at Revision; set only on the top-level Result of a request that
	// Apply applied and that changed data. A session retry returns the
	// cached Result without Events (it changed nothing), and Read never
	// sets them. The host feeds them to watchers.
	Events []Event
	// Err is set when the request was not applied: it could not be decoded,
	// was invalid, or was a stale session retry. Such a request changed
	// nothing.
	Err error
}

// Store is the key-value state machine. The zero value is not usable; call
// New or Restore.
//
// Apply must be deterministic: replicas that apply the same entries hold
// equal state (equal Hash and Snapshot). Nothing in Store depends on map
// iteration order, time or randomness.
type Store struct {
	// opts are the store's settings, fixed at creation.
	opts Options
	// applied is the index of the last applied entry; 0 before any.
	applied uint64
	// rev is the store revision. Invariant: rev >= 1, and rev >= the
	// ModRevision of every live key.
	rev int64
	// kvs and idx hold the same live entries. Invariant: kvs[k].kv.Key == k.
	kvs map[string]*entry
	idx index
	// sessions remembers each client's last command (see SessionsMax).
	sessions sessionTable
}

// New returns an empty store at revision 1 with nothing applied, with the
// default Options.
func New() *Store { return NewWith(Options{}) }

// NewWith returns an empty store at revision 1 with nothing applied, with
// options o.
func NewWith(o Options) *Store {
	return &Store{opts: o, rev: 1, kvs: make(map[string]*entry), sessions: newSessionTable(SessionsMax)}
}

// Options returns the store's options.
func (s *Store) Options() Options { return s.opts }

// AppliedIndex returns the index of the last applied entry (0 if none).
func (s *Store) AppliedIndex() uint64 { return s.applied }

// Revision returns the store revision: 1 for an empty store, plus one for
// each applied request that changed data.
func (s *Store) Revision() int64 { return s.rev }

// Len returns the number of live keys.
func (s *Store) Len() int { return len(s.kvs) }

// Apply applies a committed entry and returns its result.
//
// The host must apply entries in index order, each exactly once, starting
// right after AppliedIndex; Apply panics on a gap or a repeat, or on an
// unknown entry type, since each is a bug in the host or protocol. A no-op
// entry changes nothing but the applied index.
//
// For a normal entry, if e.Command.Session has a client ID (and the
// store's Options are not PerKeyOrder, which ignores sessions), the store
// applies each of the client's sequence numbers at most once: a command
// whose Seq equals the client's last applied Seq returns that command's
// cached Result without applying anything; an older Seq returns
// ErrSessionExpired. (Sessions are bounded; see SessionsMax.) Otherwise the
// command is decoded and applied; a command that fails to decode or
// validate, or that the store's Options refuse (ErrRevisionCompare),
// returns a Result with Err set, changes no data and is not recorded in
// the session table. The applied index advances in every case.
func (s *Store) Apply(e consensus.Entry) Result { return s.opts.Apply(s.backend(), e) }

// Read serves a read-only request (a Range, or a Txn whose branches only
// read) against the current state without changing it. For a linearizable
// read, call it once AppliedIndex has reached a confirmed read index. A
// request that writes returns ErrNotReadOnly; an invalid one (or one the
// store's Options refuse) the error Options.Check returns.
func (s *Store) Read(r Request) Result { return s.opts.Read(s.backend(), r) }

// Apply applies a committed entry to the state in b, with exactly the
// semantics of Store.Apply for a store with the default Options (it is
// Options{}.Apply).
func Apply(b Backend, e consensus.Entry) Result { return Options{}.Apply(b, e) }

func (o Options) applyCommand(b Backend, m *Meta, e consensus.Entry) Result {
	sess := e.Command.Session
	if o.PerKeyOrder {
		sess = consensus.Session{} // see Options.PerKeyOrder
	}
	known := false
	if sess.ClientID != 0 {
		if sess.Seq == 0 {
			return Result{Revision: m.Revision, Err: fmt.Errorf("%w (client %d)", ErrInvalidSession, sess.ClientID)}
		}
		c, ok := b.Session(sess.ClientID)
		if ok && sess.Seq <= c.Seq {
			c.Index = e.Index // a retry counts as use
			b.PutSession(c)
			if sess.Seq == c.Seq {
				return c.Result
			}
			return Result{Revision: m.Revision, Err: fmt.Errorf("%w (client %d: seq %d, last applied %d)",
				ErrSessionExpired, sess.ClientID, sess.Seq, c.Seq)}
		}
		known = ok
	}
	req, err := DecodeRequest(e.Command.Data)
	if err == nil {
		err = o.checkRevisions(&req)
	}
	if err != nil {
		return Result{Revision: m.Revision, Err: err}
	}
	res := apply(b, b, m, &req)
	if sess.ClientID != 0 {
		if res.Err != nil {
			panic(fmt.Sprintf("kv: caching an error result for client %d: %v", sess.ClientID, res.Err))
		}
		if !known && b.Sessions() >= m.SessionsMax {
			// Forget the least recently used client.
			var oldest uint64
			b.AscendSessions(func(s SessionRecord) bool { oldest = s.ClientID; return false })
			b.DeleteSession(oldest)
		}
		cached := res
		cached.Events = nil // a retry changes nothing
		b.PutSession(SessionRecord{ClientID: sess.ClientID, Seq: sess.Seq, Index: e.Index, Result: cached})
	}
	return res
}

// Read serves a read-only request against the state in v, with exactly
// the semantics of Store.Read for a store with the default Options (it is
// Options{}.Read).
func Read(v View, r Request) Result { return Options{}.Read(v, r) }

// apply applies a valid request: reads through v, writes through b (nil
// for a read-only request). Every write uses revision m.Revision+1; if any
// write changed data the revision is then bumped once, and every result
// (including a Txn's nested ones) reports the final revision.
func apply(v View, b Backend, m *Meta, r *Request) Result {
	a := applier{v: v, b: b, rev: m.Revision + 1}
	var res Result
	if r.Txn != nil {
		res = a.txn(r.Txn)
	} else {
		res = a.op(r)
	}
	if a.changed {
		m.Revision = a.rev
		res.Events = a.events
	}
	setRevision(&res, m.Revision)
	return res
}

func setRevision(res *Result, rev int64) {
	res.Revision = rev
	for i := range res.Responses {
		setRevision(&res.Responses[i], rev)
	}
}

// applier applies one request's operations.
type applier struct {
	v       View
	b       Backend // nil for a read-only request
	rev     int64   // the revision this request's writes get
	changed bool    // whether any write changed data
	events  []Event // the changes made, in order
}

// op applies a Range, Put or DeleteRange; a Txn is handled by txn.
func (a *applier) op(r *Request) Result {
	switch {
	case r.Range != nil:
		return rangeOp(a.v, r.Range)
	case r.Put != nil:
		return a.put(r.Put)
	case r.DeleteRange != nil:
		return a.deleteRange(r.DeleteRange)
	}
	return Result{}
}

func (a *applier) txn(t *TxnRequest) Result {
	ok := compare(a.v, &t.Compare)
	branch := t.Failure
	if ok {
		branch = t.Success
	}
	res := Result{Succeeded: ok}
	if len(branch) > 0 {
		res.Responses = make([]Result, len(branch))
		for i := range branch {
			res.Responses[i] = a.op(&branch[i])
		}
	}
	return res
}

func (a *applier) put(p *PutRequest) Result {
	var res Result
	a.changed = true
	kv := KeyValue{Key: p.Key, Value: p.Value, CreateRevision: a.rev, ModRevision: a.rev, Version: 1}
	old, ok := a.b.Get(p.Key)
	if ok {
		if p.PrevKV {
			res.PrevKVs = []KeyValue{old}
		}
		kv.Key, kv.CreateRevision, kv.Version = old.Key, old.CreateRevision, old.Version+1
	}
	a.b.Put(kv)
	a.events = append(a.events, Event{Type: EventPut, KV: kv, PrevKV: old})
	return res
}

func (a *applier) deleteRange(d *DeleteRangeRequest) Result {
	var res Result
	var doomed []KeyValue
	visit(a.v, d.Key, d.RangeEnd, func(kv KeyValue) bool {
		doomed = append(doomed, kv)
		return true
	})
	for _, kv := range doomed {
		a.b.Delete(kv.Key)
		a.events = append(a.events, Event{Type: EventDelete, KV: KeyValue{Key: kv.Key, ModRevision: a.rev}, PrevKV: kv})
	}
	if d.PrevKV {
		res.PrevKVs = doomed
	}
	res.Deleted = int64(len(doomed))
	if len(doomed) > 0 {
		a.changed = true
	}
	return res
}

func rangeOp(v View, r *RangeRequest) Result {
	var res Result
	visit(v, r.Key, r.RangeEnd, func(kv KeyValue) bool {
		res.Count++
		if r.CountOnly {
			return true
		}
		if r.Limit > 0 && int64(len(res.KVs)) >= r.Limit {
			res.More = true
			return true // keep counting
		}
		if r.KeysOnly {
			kv.Value = nil
		}
		res.KVs = append(res.KVs, kv)
		return true
	})
	return res
}

// visit calls fn on each live record selected by (key, end) under the
// RangeRequest rules, in key order, until fn returns false.
func visit(v View, key, end []byte, fn func(KeyValue) bool) {
	switch {
	case len(end) == 0:
		if kv, ok := v.Get(key); ok {
			fn(kv)
		}
	case isNoEnd(end):
		v.Ascend(key, nil, fn)
	case bytes.Compare(end, key) > 0:
		v.Ascend(key, end, fn)
	}
}

// compare evaluates a Txn's compare against the current state.
func compare(v View, c *Compare) bool {
	kv, ok := v.Get(c.Key)
	if !ok && c.Target == CompareValue {
		return false // a missing key has no value to compare (as in etcd)
	}
	var r int
	switch c.Target {
	case CompareValue:
		r = bytes.Compare(kv.Value, c.Value)
	case CompareVersion:
		r = cmp.Compare(kv.Version, c.Version)
	case CompareCreate:
		r = cmp.Compare(kv.CreateRevision, c.CreateRevision)
	case CompareMod:
		r = cmp.Compare(kv.ModRevision, c.ModRevision)
	default:
		panic(fmt.Sprintf("kv: compare target %v passed validation", c.Target))
	}
	switch c.Result {
	case CompareEqual:
		return r == 0
	case CompareNotEqual:
		return r != 0
	case CompareLess:
		return r < 0
	case CompareGreater:
		return r > 0
	}
	panic(fmt.Sprintf("kv: compare result %v passed validation", c.Result))
}

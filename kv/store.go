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

// New returns an empty store at revision 1 with nothing applied.
func New() *Store {
	return &Store{rev: 1, kvs: make(map[string]*entry), sessions: newSessionTable(SessionsMax)}
}

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
// For a normal entry, if e.Command.Session has a client ID, the store
// applies each of the client's sequence numbers at most once: a command
// whose Seq equals the client's last applied Seq returns that command's
// cached Result without applying anything; an older Seq returns
// ErrSessionExpired. (Sessions are bounded; see SessionsMax.) Otherwise the
// command is decoded and applied; a command that fails to decode or
// validate returns a Result with Err set, changes no data and is not
// recorded in the session table. The applied index advances in every case.
func (s *Store) Apply(e consensus.Entry) Result {
	if e.Index != s.applied+1 {
		panic(fmt.Sprintf("kv: applying entry %d, but the last applied entry is %d (entries must be applied in order, each once)", e.Index, s.applied))
	}
	switch e.Type {
	case consensus.EntryNormal:
	case consensus.EntryNoOp:
		s.applied = e.Index
		return Result{Revision: s.rev}
	default:
		panic(fmt.Sprintf("kv: entry %d has unknown type %v", e.Index, e.Type))
	}
	s.applied = e.Index

	sess := e.Command.Session
	if sess.ClientID != 0 {
		if sess.Seq == 0 {
			return Result{Revision: s.rev, Err: fmt.Errorf("%w (client %d)", ErrInvalidSession, sess.ClientID)}
		}
		if c := s.sessions.get(sess.ClientID); c != nil && sess.Seq <= c.seq {
			s.sessions.touch(c, e.Index)
			if sess.Seq == c.seq {
				return c.result
			}
			return Result{Revision: s.rev, Err: fmt.Errorf("%w (client %d: seq %d, last applied %d)",
				ErrSessionExpired, sess.ClientID, sess.Seq, c.seq)}
		}
	}
	req, err := DecodeRequest(e.Command.Data)
	if err != nil {
		return Result{Revision: s.rev, Err: err}
	}
	res := s.apply(&req)
	if sess.ClientID != 0 {
		s.sessions.record(sess.ClientID, sess.Seq, e.Index, res)
	}
	return res
}

// Read serves a read-only request (a Range, or a Txn whose branches only
// read) against the current state without changing it. For a linearizable
// read, call it once AppliedIndex has reached a confirmed read index. A
// request that writes returns ErrNotReadOnly; an invalid one its validation
// error.
func (s *Store) Read(r Request) Result {
	if err := r.Validate(); err != nil {
		return Result{Revision: s.rev, Err: err}
	}
	if !r.ReadOnly() {
		return Result{Revision: s.rev, Err: ErrNotReadOnly}
	}
	return s.apply(&r)
}

// apply applies a valid request. Every write uses revision s.rev+1; if any
// write changed data the revision is then bumped once, and every result
// (including a Txn's nested ones) reports the final revision.
func (s *Store) apply(r *Request) Result {
	a := applier{s: s, rev: s.rev + 1}
	var res Result
	if r.Txn != nil {
		res = a.txn(r.Txn)
	} else {
		res = a.op(r)
	}
	if a.changed {
		s.rev = a.rev
	}
	setRevision(&res, s.rev)
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
	s       *Store
	rev     int64 // the revision this request's writes get
	changed bool  // whether any write changed data
}

// op applies a Range, Put or DeleteRange; a Txn is handled by txn.
func (a *applier) op(r *Request) Result {
	switch {
	case r.Range != nil:
		return a.s.rangeOp(r.Range)
	case r.Put != nil:
		return a.put(r.Put)
	case r.DeleteRange != nil:
		return a.deleteRange(r.DeleteRange)
	}
	return Result{}
}

func (a *applier) txn(t *TxnRequest) Result {
	ok := a.s.compare(&t.Compare)
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
	if e := a.s.kvs[string(p.Key)]; e != nil {
		if p.PrevKV {
			res.PrevKVs = []KeyValue{e.kv}
		}
		e.kv = KeyValue{
			Key:            e.kv.Key,
			Value:          p.Value,
			CreateRevision: e.kv.CreateRevision,
			ModRevision:    a.rev,
			Version:        e.kv.Version + 1,
		}
		return res
	}
	e := &entry{kv: KeyValue{Key: p.Key, Value: p.Value, CreateRevision: a.rev, ModRevision: a.rev, Version: 1}}
	a.s.kvs[string(p.Key)] = e
	a.s.idx.insert(e)
	return res
}

func (a *applier) deleteRange(d *DeleteRangeRequest) Result {
	var res Result
	var doomed []*entry
	a.s.visit(d.Key, d.RangeEnd, func(e *entry) bool {
		doomed = append(doomed, e)
		return true
	})
	for _, e := range doomed {
		delete(a.s.kvs, string(e.kv.Key))
		a.s.idx.remove(e.kv.Key)
		if d.PrevKV {
			res.PrevKVs = append(res.PrevKVs, e.kv)
		}
	}
	res.Deleted = int64(len(doomed))
	if len(doomed) > 0 {
		a.changed = true
	}
	return res
}

func (s *Store) rangeOp(r *RangeRequest) Result {
	var res Result
	s.visit(r.Key, r.RangeEnd, func(e *entry) bool {
		res.Count++
		if r.CountOnly {
			return true
		}
		if r.Limit > 0 && int64(len(res.KVs)) >= r.Limit {
			res.More = true
			return true // keep counting
		}
		kv := e.kv
		if r.KeysOnly {
			kv.Value = nil
		}
		res.KVs = append(res.KVs, kv)
		return true
	})
	return res
}

// visit calls fn on each live entry selected by (key, end) under the
// RangeRequest rules, in key order, until fn returns false.
func (s *Store) visit(key, end []byte, fn func(*entry) bool) {
	switch {
	case len(end) == 0:
		if e := s.kvs[string(key)]; e != nil {
			fn(e)
		}
	case isNoEnd(end):
		s.idx.ascend(key, nil, fn)
	case bytes.Compare(end, key) > 0:
		s.idx.ascend(key, end, fn)
	}
}

// compare evaluates a Txn's compare against the current state.
func (s *Store) compare(c *Compare) bool {
	e := s.kvs[string(c.Key)]
	var kv KeyValue
	if e != nil {
		kv = e.kv
	} else if c.Target == CompareValue {
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

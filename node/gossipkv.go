package node

import (
	"errors"
	"fmt"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/kv"
)

// This file translates etcd-style requests (package kv) to the eventually
// consistent gossip store (package gossip/store) and back. It is pure: the
// host owns the *store.Store on one goroutine, passes its clock reading as
// nowMs, and calls these functions from that goroutine.
//
// Revisions follow the store's package doc ("Serving the etcd API in this
// mode"): a Result's Revision is the store's local Revision, a key's
// ModRevision its local KeyValue.Revision, CreateRevision repeats
// ModRevision and Version is 1 (neither is tracked). Two consequences
// differ from kv's numbering, where revision 1 is the empty store:
//
//   - an empty replica (store revision 0) reports revision 1, so that
//     kv.Meta's invariant Revision >= 1 holds; its first change then also
//     has revision 1, so a Result's Revision may repeat across that
//     first write;
//   - that first change gives its key CreateRevision = ModRevision = 1,
//     below kv.KeyValue's documented lower bound of 2. kv.Read never
//     relies on that bound (ranges only copy records out, and a compare
//     is refused or always true here), and "create revision > 0" still
//     means "the key exists".
//
// Watchers are fed from the store's Ready.Persist only (gossipEvents), for
// local and merged changes alike, so every change is published exactly
// once: gossipWrite returns no Events. The WatchHub must start at the raw
// store revision, int64(s.Revision()), not at the clamped revision above.

// errGossipCompare refuses a Txn whose compare tests something, in the
// words the store's package doc recommends.
var errGossipCompare = gossipRefusal("transactions with compares are not supported in eventually consistent mode (gossip): " +
	"a compare would be checked against one replica only and could not guard the write; " +
	"use a consensus protocol (raft, multipaxos, epaxos) for compare-and-swap")

// gossipRefusal is a request gossip mode cannot honour. It matches
// kv.ErrInvalidRequest (the server answers InvalidArgument) while its text
// is only the reason, so the server's "etcdserver: " prefix reads well.
type gossipRefusal string

func (e gossipRefusal) Error() string { return string(e) }

// Is makes errors.Is(e, kv.ErrInvalidRequest) true.
func (gossipRefusal) Is(target error) bool { return target == kv.ErrInvalidRequest }

// gossipRevision is the revision a Result reports for s: its local
// revision, at least 1 (kv.Meta's invariant).
func gossipRevision(s *store.Store) int64 { return max(1, int64(s.Revision())) }

// gossipView is a kv.View of a store replica's live keys (tombstones are
// invisible), with no sessions and nothing applied. Records are built per
// call; their Values are shared with the store and read-only (the store
// never modifies a value in place, so they stay valid).
type gossipView struct{ s *store.Store }

var _ kv.View = gossipView{}

// gossipKeyValue converts a live store key to kv's shape: ModRevision is
// the local revision of its last change, CreateRevision the same, Version 1.
func gossipKeyValue(kvp store.KeyValue) kv.KeyValue {
	rev := int64(kvp.Revision)
	return kv.KeyValue{Key: []byte(kvp.Key), Value: kvp.Value, CreateRevision: rev, ModRevision: rev, Version: 1}
}

// Get implements kv.View.
func (v gossipView) Get(key []byte) (kv.KeyValue, bool) {
	kvp, ok := v.s.Get(string(key))
	if !ok {
		return kv.KeyValue{}, false
	}
	return gossipKeyValue(kvp), true
}

// Ascend implements kv.View. A nil or empty from starts at the first key;
// a nil or empty to means no upper bound (the store's "" end).
func (v gossipView) Ascend(from, to []byte, fn func(kv.KeyValue) bool) {
	v.s.Ascend(string(from), string(to), func(kvp store.KeyValue) bool { return fn(gossipKeyValue(kvp)) })
}

// Len implements kv.View.
func (v gossipView) Len() int { return v.s.Len() }

// Meta implements kv.View: the revision is gossipRevision; nothing is
// applied (there is no log) and the session bound is the least allowed.
func (v gossipView) Meta() kv.Meta {
	return kv.Meta{Revision: gossipRevision(v.s), SessionsMax: 1}
}

// Session implements kv.View: gossip mode keeps no sessions.
func (gossipView) Session(uint64) (kv.SessionRecord, bool) { return kv.SessionRecord{}, false }

// AscendSessions implements kv.View: there are none.
func (gossipView) AscendSessions(func(kv.SessionRecord) bool) {}

// Sessions implements kv.View: there are none.
func (gossipView) Sessions() int { return 0 }

// gossipCompareHolds reports whether c holds for every key, live or
// missing, whatever its value: a version, create or mod revision (0 for a
// missing key, never negative) "> n" or "!= n" with n < 0. That is how
// server/convert.go encodes an etcd Txn with no compare (create_revision
// > -1); any other compare tests something.
func gossipCompareHolds(c *kv.Compare) bool {
	var operand int64
	switch c.Target {
	case kv.CompareVersion:
		operand = c.Version
	case kv.CompareCreate:
		operand = c.CreateRevision
	case kv.CompareMod:
		operand = c.ModRevision
	default:
		return false
	}
	return operand < 0 && (c.Result == kv.CompareGreater || c.Result == kv.CompareNotEqual)
}

// gossipCheck validates req and refuses a Txn whose compare tests
// something (errGossipCompare). Its errors match kv.ErrInvalidRequest.
func gossipCheck(req *kv.Request) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if req.Txn != nil && !gossipCompareHolds(&req.Txn.Compare) {
		return fmt.Errorf("%w; refused: %s(%q) %s", errGossipCompare, req.Txn.Compare.Target, req.Txn.Compare.Key, req.Txn.Compare.Result)
	}
	return nil
}

// gossipRead serves a read-only request (a Range, or a Txn without compare
// whose branches only read) from the local replica: a serializable
// read that may miss writes other replicas accepted. It changes nothing.
// Errors go in Result.Err, as with kv.Read: an invalid request or a Txn
// with a compare (both match kv.ErrInvalidRequest), or a request that
// writes (kv.ErrNotReadOnly).
func gossipRead(s *store.Store, req kv.Request) kv.Result {
	if err := gossipCheck(&req); err != nil {
		return kv.Result{Revision: gossipRevision(s), Err: err}
	}
	return kv.Read(gossipView{s}, req)
}

// gossipWrite applies req to the local replica at physical time nowMs and
// returns its result; a read-only request is served as gossipRead would.
//
//   - Put: PrevKVs holds the key's local value before the write, if live
//     and PrevKV was asked for.
//   - DeleteRange of one key writes a tombstone even if the key is not
//     live here (as store.Delete does: a put of it may be on its way and
//     must lose if older), so the revision grows; Deleted counts it only
//     if it was live. A DeleteRange of a range (kv's rules: "\x00" end is
//     no end, an end <= Key nothing) deletes the live keys this replica
//     knows of, one tombstone each (there are no range tombstones).
//     PrevKVs holds the deleted records if PrevKV was asked for.
//   - Txn: only one without compare (see gossipCompareHolds) is served, as
//     its Success operations applied one by one, each its own write that
//     reaches other replicas separately; Succeeded is true and Responses
//     has one result per operation. A Txn with a compare is refused.
//
// Errors go in Result.Err, never elsewhere: an invalid or refused request
// (matching kv.ErrInvalidRequest) changed nothing; a write the store
// refuses (a key or value beyond its bounds: matching kv.ErrInvalidRequest
// and store.ErrInvalidWrite) or fails (a logical clock overflow) changed
// nothing for that operation; a Txn checks every write's bounds before
// applying any, but one that fails later (a clock overflow) leaves the
// operations before it applied (Responses holds their results; there is
// no atomicity here).
//
// Revision is gossipRevision after the request, also in every Response.
// Events are never set: every change, local or merged, reaches watchers
// once, through gossipEvents over the store's Ready.Persist.
func gossipWrite(s *store.Store, req kv.Request, nowMs uint64) kv.Result {
	if err := gossipCheck(&req); err != nil {
		return kv.Result{Revision: gossipRevision(s), Err: err}
	}
	if req.ReadOnly() {
		return kv.Read(gossipView{s}, req)
	}
	var res kv.Result
	if req.Txn != nil {
		res = gossipTxn(s, req.Txn.Success, nowMs)
	} else {
		res = gossipOp(s, &req, nowMs)
	}
	gossipSetRevision(&res, gossipRevision(s))
	return res
}

// gossipOp applies one valid Range, Put or DeleteRange.
func gossipOp(s *store.Store, r *kv.Request, nowMs uint64) kv.Result {
	switch {
	case r.Put != nil:
		return gossipPut(s, r.Put, nowMs)
	case r.DeleteRange != nil:
		return gossipDeleteRange(s, r.DeleteRange, nowMs)
	}
	return kv.Read(gossipView{s}, *r)
}

// gossipTxn applies ops in order, each its own write. It first checks
// every write's key and value against the store's bounds, so that a Txn
// refused for them changes nothing; an operation that still fails (a
// logical clock overflow) stops it, and the error is returned with the
// results so far.
func gossipTxn(s *store.Store, ops []kv.Request, nowMs uint64) kv.Result {
	for i := range ops {
		var err error
		switch op := &ops[i]; {
		case op.Put != nil:
			err = s.CheckWrite(string(op.Put.Key), op.Put.Value)
		case op.DeleteRange != nil && len(op.DeleteRange.RangeEnd) == 0:
			err = s.CheckWrite(string(op.DeleteRange.Key), nil)
		}
		if err != nil {
			return kv.Result{Err: fmt.Errorf("txn operation %d of %d (nothing applied): %w", i+1, len(ops), gossipWriteError(gossipOpKey(&ops[i]), err))}
		}
	}
	res := kv.Result{Succeeded: true}
	if len(ops) > 0 {
		res.Responses = make([]kv.Result, 0, len(ops))
	}
	for i := range ops {
		r := gossipOp(s, &ops[i], nowMs)
		if r.Err != nil {
			res.Err = fmt.Errorf("txn operation %d of %d (the %d before it are applied; transactions are not atomic in gossip mode): %w",
				i+1, len(ops), i, r.Err)
			return res
		}
		res.Responses = append(res.Responses, r)
	}
	return res
}

// gossipOpKey is the key an operation writes (its start key for a range).
func gossipOpKey(r *kv.Request) []byte {
	if r.Put != nil {
		return r.Put.Key
	}
	return r.DeleteRange.Key
}

func gossipPut(s *store.Store, p *kv.PutRequest, nowMs uint64) kv.Result {
	var res kv.Result
	old, live := gossipView{s}.Get(p.Key)
	if _, err := s.Put(string(p.Key), p.Value, nowMs); err != nil {
		res.Err = gossipWriteError(p.Key, err)
		return res
	}
	if p.PrevKV && live {
		res.PrevKVs = []kv.KeyValue{old}
	}
	return res
}

func gossipDeleteRange(s *store.Store, d *kv.DeleteRangeRequest, nowMs uint64) kv.Result {
	var res kv.Result
	var doomed []kv.KeyValue
	if len(d.RangeEnd) == 0 {
		old, live := gossipView{s}.Get(d.Key)
		if _, err := s.Delete(string(d.Key), nowMs); err != nil {
			res.Err = gossipWriteError(d.Key, err)
			return res
		}
		if live {
			doomed = append(doomed, old)
		}
	} else {
		// kv's range rules, from kv itself.
		doomed = kv.Read(gossipView{s}, kv.Request{Range: &kv.RangeRequest{Key: d.Key, RangeEnd: d.RangeEnd}}).KVs
		for i := range doomed {
			if _, err := s.Delete(string(doomed[i].Key), nowMs); err != nil {
				res.Err = fmt.Errorf("after deleting %d of %d keys: %w", i, len(doomed), gossipWriteError(doomed[i].Key, err))
				return res
			}
		}
	}
	res.Deleted = int64(len(doomed))
	if d.PrevKV {
		res.PrevKVs = doomed
	}
	return res
}

// gossipWriteError wraps an error of a store write to key: a refused
// write (store.ErrInvalidWrite) also matches kv.ErrInvalidRequest.
func gossipWriteError(key []byte, err error) error {
	if errors.Is(err, store.ErrInvalidWrite) {
		return fmt.Errorf("%w: gossip store refused the write of %.64q: %w", kv.ErrInvalidRequest, key, err)
	}
	return fmt.Errorf("gossip store: write of %.64q failed: %w", key, err)
}

func gossipSetRevision(res *kv.Result, rev int64) {
	res.Revision = rev
	for i := range res.Responses {
		gossipSetRevision(&res.Responses[i], rev)
	}
}

// gossipEvents turns the records of a store's Ready.Persist into results
// for WatchHub.Publish: one Result per record, in order, record i at
// revision base+i+1 with one Event at that revision, base being the raw
// store revision before those changes (the store adds one revision and one
// record per change). After rd := s.Ready(), and before s changes again,
// base is int64(s.Revision()) - int64(len(rd.Persist)); gossipReadyEvents
// computes it.
//
// A record is a local write or a merged write from another replica that
// won; both are reported alike. A put's KV has CreateRevision =
// ModRevision and Version 1; a delete's KV only Key and ModRevision.
// PrevKV is always empty: a record does not say what it replaced (for a
// merged change nothing here knows), so watchers asking for prev_kv get
// none in gossip mode, and a delete of a key this replica did not hold is
// reported too. Persist holds only *store.EntryRecord; any other record
// is a host bug and panics.
func gossipEvents(base int64, recs []consensus.Record) []kv.Result {
	if len(recs) == 0 {
		return nil
	}
	out := make([]kv.Result, len(recs))
	for i, r := range recs {
		rec, ok := r.(*store.EntryRecord)
		if !ok || rec == nil {
			panic(fmt.Sprintf("node: gossip Ready.Persist holds a %T; only *store.EntryRecord is expected", r))
		}
		rev := base + int64(i) + 1
		e := &rec.Entry
		ev := kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte(e.Key), ModRevision: rev}}
		if e.Tombstone {
			ev.Type = kv.EventDelete
		} else {
			ev.KV.Value, ev.KV.CreateRevision, ev.KV.Version = e.Value, rev, 1
		}
		out[i] = kv.Result{Revision: rev, Events: []kv.Event{ev}}
	}
	return out
}

// gossipReadyEvents is gossipEvents for rd, the Ready just taken from s:
// s must not have changed since s.Ready() (no write, merge or Step), or
// the revisions would be wrong.
func gossipReadyEvents(s *store.Store, rd store.Ready) []kv.Result {
	base := int64(s.Revision()) - int64(len(rd.Persist))
	if base < 0 {
		panic(fmt.Sprintf("node: gossip Ready holds %d records but the store is at revision %d: the Ready is not the store's latest", len(rd.Persist), s.Revision()))
	}
	return gossipEvents(base, rd.Persist)
}

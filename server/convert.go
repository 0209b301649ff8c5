package server

import (
	"bytes"
	"cmp"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/synod-io/synod/kv"
)

// This file translates etcd's request messages into kv.Requests and kv's
// Results back into etcd's responses. It only translates: running the
// request is the caller's business.

// rangePlan is how one etcd RangeRequest runs on kv: the kv request to run,
// and what the server does to its result afterwards.
//
// kv returns keys in ascending key order and knows no revision filters. When
// the request sorts otherwise or filters, the plan fetches the whole range
// (no limit) and filters, sorts and limits here, as etcd's own applier
// does. As in etcd, Count is the number of keys in the range before the
// filters.
type rangePlan struct {
	req *pb.RangeRequest
	kv  kv.RangeRequest
	// order is the sort order to apply here (NONE: kv's ascending key
	// order is already right).
	order pb.RangeRequest_SortOrder
	// post reports that the plan fetched without limit and must filter,
	// sort and limit here.
	post bool
}

func planRange(r *pb.RangeRequest) (*rangePlan, error) {
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return nil, rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return nil, rpctypes.ErrGRPCInvalidSortOption
	}
	p := &rangePlan{
		req: r,
		kv: kv.RangeRequest{
			Key:       r.Key,
			RangeEnd:  r.RangeEnd,
			Limit:     max(r.Limit, 0), // etcd: a limit <= 0 means none
			CountOnly: r.CountOnly,
			KeysOnly:  r.KeysOnly,
		},
	}
	// etcd's rule: sorting by a target other than the key defaults to
	// ascending; ascending by key is kv's natural order.
	p.order = r.SortOrder
	switch {
	case r.SortTarget != pb.RangeRequest_KEY && p.order == pb.RangeRequest_NONE:
		p.order = pb.RangeRequest_ASCEND
	case r.SortTarget == pb.RangeRequest_KEY && p.order == pb.RangeRequest_ASCEND:
		p.order = pb.RangeRequest_NONE
	}
	filters := r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
	if (p.order != pb.RangeRequest_NONE || filters) && !r.CountOnly {
		p.post = true
		p.kv.Limit = 0
		if r.SortTarget == pb.RangeRequest_VALUE {
			p.kv.KeysOnly = false // need the values to sort; dropped after
		}
	}
	return p, nil
}

// response builds the RangeResponse from kv's result.
func (p *rangePlan) response(res *kv.Result, hdr *pb.ResponseHeader) *pb.RangeResponse {
	out := &pb.RangeResponse{Header: hdr, Count: res.Count, More: res.More}
	kvs := res.KVs
	if p.post {
		kvs = p.filterSortLimit(kvs)
		out.More = p.req.Limit > 0 && int64(len(kvs)) > p.req.Limit
		if out.More {
			kvs = kvs[:p.req.Limit]
		}
	}
	if len(kvs) > 0 {
		out.Kvs = make([]*mvccpb.KeyValue, len(kvs))
		for i := range kvs {
			out.Kvs[i] = toPBKeyValue(&kvs[i])
			if p.req.KeysOnly {
				out.Kvs[i].Value = nil
			}
		}
	}
	return out
}

// filterSortLimit returns a new slice holding the keys that pass the
// request's revision filters, in the requested order. It never modifies
// kvs, whose memory kv shares.
func (p *rangePlan) filterSortLimit(kvs []kv.KeyValue) []kv.KeyValue {
	r := p.req
	out := make([]kv.KeyValue, 0, len(kvs))
	for _, e := range kvs {
		if (r.MinModRevision != 0 && e.ModRevision < r.MinModRevision) ||
			(r.MaxModRevision != 0 && e.ModRevision > r.MaxModRevision) ||
			(r.MinCreateRevision != 0 && e.CreateRevision < r.MinCreateRevision) ||
			(r.MaxCreateRevision != 0 && e.CreateRevision > r.MaxCreateRevision) {
			continue
		}
		out = append(out, e)
	}
	if p.order == pb.RangeRequest_NONE {
		return out
	}
	var by func(a, b *kv.KeyValue) int
	switch r.SortTarget {
	case pb.RangeRequest_KEY:
		by = func(a, b *kv.KeyValue) int { return bytes.Compare(a.Key, b.Key) }
	case pb.RangeRequest_VERSION:
		by = func(a, b *kv.KeyValue) int { return cmp.Compare(a.Version, b.Version) }
	case pb.RangeRequest_CREATE:
		by = func(a, b *kv.KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) }
	case pb.RangeRequest_MOD:
		by = func(a, b *kv.KeyValue) int { return cmp.Compare(a.ModRevision, b.ModRevision) }
	case pb.RangeRequest_VALUE:
		by = func(a, b *kv.KeyValue) int { return bytes.Compare(a.Value, b.Value) }
	}
	desc := p.order == pb.RangeRequest_DESCEND
	// Stable, so that ties stay in ascending key order.
	slices.SortStableFunc(out, func(a, b kv.KeyValue) int {
		if desc {
			return by(&b, &a)
		}
		return by(&a, &b)
	})
	return out
}

// checkRevision answers a Range that names a revision. synod keeps no
// revision history, so only the revision the read was served at can be
// read: an older one is reported compacted and a newer one future, with
// etcd's errors. Checking after the read makes the decision atomic with it.
func checkRevision(want, served int64) error {
	switch {
	case want <= 0 || want == served:
		return nil
	case want > served:
		return rpctypes.ErrGRPCFutureRev
	}
	return rpctypes.ErrGRPCCompacted
}

func toPBKeyValue(e *kv.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            e.Key,
		Value:          e.Value,
		CreateRevision: e.CreateRevision,
		ModRevision:    e.ModRevision,
		Version:        e.Version,
	}
}

func toPBKeyValues(kvs []kv.KeyValue) []*mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*mvccpb.KeyValue, len(kvs))
	for i := range kvs {
		out[i] = toPBKeyValue(&kvs[i])
	}
	return out
}

// putRequest translates a Put that is not inside a Txn. ignore_lease is
// supported there: with no leases it is a plain put that, as in etcd,
// requires the key to exist, so it becomes a Txn guarded by version > 0
// (and the caller reports etcd's "key not found" when the guard fails).
func putRequest(r *pb.PutRequest) (req kv.Request, ignoreLease bool, err error) {
	if err := checkPut(r); err != nil {
		return kv.Request{}, false, err
	}
	p := &kv.PutRequest{Key: r.Key, Value: r.Value, PrevKV: r.PrevKv}
	if !r.IgnoreLease {
		return kv.Request{Put: p}, false, nil
	}
	return kv.Request{Txn: &kv.TxnRequest{
		Compare: kv.Compare{Key: r.Key, Target: kv.CompareVersion, Result: kv.CompareGreater, Version: 0},
		Success: []kv.Request{{Put: p}},
	}}, true, nil
}

func checkPut(r *pb.PutRequest) error {
	switch {
	case len(r.Key) == 0:
		return rpctypes.ErrGRPCEmptyKey
	case r.IgnoreLease && r.Lease != 0:
		return rpctypes.ErrGRPCLeaseProvided // etcd's answer
	case r.Lease != 0:
		return errLeasesUnsupported
	case r.IgnoreValue:
		return errIgnoreValueUnsupported
	}
	return nil
}

func deleteRequest(r *pb.DeleteRangeRequest) (kv.Request, error) {
	if len(r.Key) == 0 {
		return kv.Request{}, rpctypes.ErrGRPCEmptyKey
	}
	return kv.Request{DeleteRange: &kv.DeleteRangeRequest{Key: r.Key, RangeEnd: r.RangeEnd, PrevKV: r.PrevKv}}, nil
}

// alwaysTrueCreateRevision makes the guard of a Txn without compares: every
// key, live or missing, has CreateRevision > -1 (missing keys have 0).
const alwaysTrueCreateRevision = -1

// txnPlan is an etcd Txn translated to kv, with the range plans needed to
// build the responses of whichever branch runs.
type txnPlan struct {
	kv kv.Request
	// success[i] and failure[i] are the plans of the branches' Range
	// operations (nil for other operations).
	success, failure []*rangePlan
	// revisions reports that some Range names a revision; see
	// checkRevision.
	revisions bool
}

// planTxn translates an etcd Txn. kv's Txn has exactly one compare, so:
//
//   - one compare maps directly (a compare with range_end, or on a lease,
//     is refused);
//   - no compare becomes a compare that always holds, "create_revision >
//     -1", on the first key the success branch touches (or "\x00" if it
//     is empty), so that the success branch runs, as in etcd, and the
//     compare adds no conflict key that the operations don't already have;
//   - more than one compare is refused with InvalidArgument.
//
// Branch operations are Range, Put and DeleteRange; a nested Txn is refused.
func planTxn(r *pb.TxnRequest) (*txnPlan, error) {
	if len(r.Success) > kv.TxnOpsMax || len(r.Failure) > kv.TxnOpsMax {
		return nil, rpctypes.ErrGRPCTooManyOps
	}
	t := &kv.TxnRequest{}
	switch len(r.Compare) {
	case 0:
		key := []byte{0}
		if len(r.Success) > 0 {
			if k := opKey(r.Success[0]); len(k) > 0 {
				key = k
			}
		}
		t.Compare = kv.Compare{Key: key, Target: kv.CompareCreate, Result: kv.CompareGreater, CreateRevision: alwaysTrueCreateRevision}
	case 1:
		c, err := toKVCompare(r.Compare[0])
		if err != nil {
			return nil, err
		}
		t.Compare = c
	default:
		return nil, errTooManyCompares
	}
	p := &txnPlan{}
	var err error
	if t.Success, p.success, err = p.branch(r.Success); err != nil {
		return nil, err
	}
	if t.Failure, p.failure, err = p.branch(r.Failure); err != nil {
		return nil, err
	}
	p.kv = kv.Request{Txn: t}
	if p.revisions && !p.kv.ReadOnly() {
		return nil, errRevisionInWriteTxn
	}
	return p, nil
}

func (p *txnPlan) branch(ops []*pb.RequestOp) ([]kv.Request, []*rangePlan, error) {
	if len(ops) == 0 {
		return nil, nil, nil
	}
	reqs := make([]kv.Request, len(ops))
	plans := make([]*rangePlan, len(ops))
	for i, op := range ops {
		switch o := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			rp, err := planRange(o.RequestRange)
			if err != nil {
				return nil, nil, err
			}
			p.revisions = p.revisions || o.RequestRange.Revision > 0
			plans[i] = rp
			reqs[i] = kv.Request{Range: &rp.kv}
		case *pb.RequestOp_RequestPut:
			if err := checkPut(o.RequestPut); err != nil {
				return nil, nil, err
			}
			if o.RequestPut.IgnoreLease {
				return nil, nil, errIgnoreLeaseInTxn
			}
			reqs[i] = kv.Request{Put: &kv.PutRequest{Key: o.RequestPut.Key, Value: o.RequestPut.Value, PrevKV: o.RequestPut.PrevKv}}
		case *pb.RequestOp_RequestDeleteRange:
			d, err := deleteRequest(o.RequestDeleteRange)
			if err != nil {
				return nil, nil, err
			}
			reqs[i] = d
		case *pb.RequestOp_RequestTxn:
			return nil, nil, errNestedTxn
		default:
			return nil, nil, errEmptyRequestOp
		}
	}
	return reqs, plans, nil
}

// opKey returns the key an operation starts at, or nil.
func opKey(op *pb.RequestOp) []byte {
	switch o := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return o.RequestRange.GetKey()
	case *pb.RequestOp_RequestPut:
		return o.RequestPut.GetKey()
	case *pb.RequestOp_RequestDeleteRange:
		return o.RequestDeleteRange.GetKey()
	}
	return nil
}

func toKVCompare(c *pb.Compare) (kv.Compare, error) {
	if len(c.Key) == 0 {
		return kv.Compare{}, rpctypes.ErrGRPCEmptyKey
	}
	if len(c.RangeEnd) > 0 {
		return kv.Compare{}, errCompareRangeEnd
	}
	out := kv.Compare{Key: c.Key}
	switch c.Result {
	case pb.Compare_EQUAL:
		out.Result = kv.CompareEqual
	case pb.Compare_GREATER:
		out.Result = kv.CompareGreater
	case pb.Compare_LESS:
		out.Result = kv.CompareLess
	case pb.Compare_NOT_EQUAL:
		out.Result = kv.CompareNotEqual
	default:
		return kv.Compare{}, errUnknownCompareResult
	}
	// As etcd, read the operand with the union's getters: a missing or
	// mismatched operand is the zero value.
	switch c.Target {
	case pb.Compare_VERSION:
		out.Target, out.Version = kv.CompareVersion, c.GetVersion()
	case pb.Compare_CREATE:
		out.Target, out.CreateRevision = kv.CompareCreate, c.GetCreateRevision()
	case pb.Compare_MOD:
		out.Target, out.ModRevision = kv.CompareMod, c.GetModRevision()
	case pb.Compare_VALUE:
		out.Target, out.Value = kv.CompareValue, c.GetValue()
	case pb.Compare_LEASE:
		return kv.Compare{}, errCompareLease
	default:
		return kv.Compare{}, errUnknownCompareTarget
	}
	return out, nil
}

// response builds the TxnResponse from kv's result. Each operation's
// response carries a header too (clientv3 ignores them; etcd sets the
// revision in them).
func (p *txnPlan) response(res *kv.Result, hdr *pb.ResponseHeader) *pb.TxnResponse {
	out := &pb.TxnResponse{Header: hdr, Succeeded: res.Succeeded}
	reqs, plans := p.kv.Txn.Failure, p.failure
	if res.Succeeded {
		reqs, plans = p.kv.Txn.Success, p.success
	}
	if len(res.Responses) != len(reqs) {
		panic("server: kv returned a txn result that does not match its branch")
	}
	out.Responses = make([]*pb.ResponseOp, len(reqs))
	for i := range reqs {
		sub := &res.Responses[i]
		h := cloneHeader(hdr)
		switch {
		case reqs[i].Range != nil:
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: plans[i].response(sub, h)}}
		case reqs[i].Put != nil:
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: putResponse(sub, h)}}
		case reqs[i].DeleteRange != nil:
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: deleteResponse(sub, h)}}
		}
	}
	return out
}

// checkRevisions applies checkRevision to each Range of the branch that ran.
func (p *txnPlan) checkRevisions(res *kv.Result) error {
	if !p.revisions {
		return nil
	}
	plans := p.failure
	if res.Succeeded {
		plans = p.success
	}
	for _, rp := range plans {
		if rp != nil {
			if err := checkRevision(rp.req.Revision, res.Revision); err != nil {
				return err
			}
		}
	}
	return nil
}

func putResponse(res *kv.Result, hdr *pb.ResponseHeader) *pb.PutResponse {
	out := &pb.PutResponse{Header: hdr}
	if len(res.PrevKVs) > 0 {
		out.PrevKv = toPBKeyValue(&res.PrevKVs[0])
	}
	return out
}

func deleteResponse(res *kv.Result, hdr *pb.ResponseHeader) *pb.DeleteRangeResponse {
	return &pb.DeleteRangeResponse{Header: hdr, Deleted: res.Deleted, PrevKvs: toPBKeyValues(res.PrevKVs)}
}

func cloneHeader(h *pb.ResponseHeader) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: h.ClusterId, MemberId: h.MemberId, Revision: h.Revision, RaftTerm: h.RaftTerm}
}

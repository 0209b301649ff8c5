package server

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// kvService is etcd's KV service over the backend.
type kvService struct {
	pb.UnimplementedKVServer
	s *Server
}

// response is what every KV response is: a message with a header.
type response interface {
	proto.Message
	GetHeader() *pb.ResponseHeader
}

// run serves req on the backend (Propose if write, else Read) and builds
// the response with local; if the backend is not the leader and names one,
// it forwards the original request to the leader with remote instead
// (never in eventually consistent mode: see eventual.go).
func run[R response](s *Server, ctx context.Context, req kv.Request, write, linearizable bool,
	local func(res *kv.Result) (R, error),
	remote func(ctx context.Context, c pb.KVClient) (R, error),
) (R, error) {
	var zero R
	tctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	var (
		res kv.Result
		err error
	)
	if write {
		res, err = s.cfg.Backend.Propose(tctx, req)
	} else {
		res, err = s.cfg.Backend.Read(tctx, req, linearizable)
	}
	if err == nil {
		if res.Err != nil {
			return zero, toGRPCError(ctx, tctx, res.Err)
		}
		return local(&res)
	}
	var nl *consensus.NotLeaderError
	if !errors.As(err, &nl) || nl.Leader == consensus.None || s.noForward(ctx) {
		return zero, toGRPCError(ctx, tctx, err)
	}
	t, err := s.fwd.to(tctx, ctx, nl.Leader)
	if err != nil {
		return zero, err
	}
	defer t.release()
	resp, err := remote(t.ctx, t.kv)
	if err != nil {
		return zero, s.fwd.remoteError(ctx, tctx, t, err)
	}
	// The header names the member that answered the client: this one.
	if h := resp.GetHeader(); h != nil {
		h.MemberId = uint64(s.cfg.Backend.Status().MemberID)
	}
	return resp, nil
}

// Range reads keys. Serializable reads are served from this member's state;
// others are linearizable (forwarded to the leader when this member cannot
// confirm a read point; under EPaxos ordered through the log by this
// member). See checkRevision for Range.revision. In eventually consistent
// mode every read is served from this member's replica, linearizable or
// not, and a Range with a revision is refused (eventual.go).
func (k *kvService) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := k.s.checkEventualRange(r); err != nil {
		return nil, err
	}
	p, err := planRange(r)
	if err != nil {
		return nil, err
	}
	return run(k.s, ctx, kv.Request{Range: &p.kv}, false, !r.Serializable,
		func(res *kv.Result) (*pb.RangeResponse, error) {
			if err := checkRevision(r.Revision, res.Revision); err != nil {
				return nil, err
			}
			return p.response(res, k.s.header(res.Revision)), nil
		},
		func(ctx context.Context, c pb.KVClient) (*pb.RangeResponse, error) { return c.Range(ctx, r) })
}

// RangeStream serves a Range and sends its keys in chunks of at most
// rangeStreamChunkKVsMax, the last carrying header, count and more (etcd
// 3.7's contract). The whole answer is built in memory first: kv has no
// cursor.
func (k *kvService) RangeStream(r *pb.RangeRequest, ss grpc.ServerStreamingServer[pb.RangeStreamResponse]) error {
	resp, err := k.Range(ss.Context(), r)
	if err != nil {
		return err
	}
	kvs := resp.Kvs
	for len(kvs) > rangeStreamChunkKVsMax {
		chunk := &pb.RangeResponse{Kvs: kvs[:rangeStreamChunkKVsMax]}
		if err := ss.Send(&pb.RangeStreamResponse{RangeResponse: chunk}); err != nil {
			return err
		}
		kvs = kvs[rangeStreamChunkKVsMax:]
	}
	resp.Kvs = kvs
	return ss.Send(&pb.RangeStreamResponse{RangeResponse: resp})
}

// Put sets a key. Leases are refused; ignore_lease (without a lease) is a
// plain put that requires the key to exist; ignore_value is refused.
func (k *kvService) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	req, ignoreLease, err := putRequest(r)
	if err != nil {
		return nil, err
	}
	return run(k.s, ctx, req, true, true,
		func(res *kv.Result) (*pb.PutResponse, error) {
			if !ignoreLease {
				return putResponse(res, k.s.header(res.Revision)), nil
			}
			if !res.Succeeded || len(res.Responses) != 1 {
				return nil, rpctypes.ErrGRPCKeyNotFound
			}
			return putResponse(&res.Responses[0], k.s.header(res.Revision)), nil
		},
		func(ctx context.Context, c pb.KVClient) (*pb.PutResponse, error) { return c.Put(ctx, r) })
}

// DeleteRange deletes one key or a range.
func (k *kvService) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	req, err := deleteRequest(r)
	if err != nil {
		return nil, err
	}
	return run(k.s, ctx, req, true, true,
		func(res *kv.Result) (*pb.DeleteRangeResponse, error) {
			return deleteResponse(res, k.s.header(res.Revision)), nil
		},
		func(ctx context.Context, c pb.KVClient) (*pb.DeleteRangeResponse, error) {
			return c.DeleteRange(ctx, r)
		})
}

// Txn runs a transaction with at most one compare (see planTxn). A Txn
// whose branches only read is served as a read: serializable if all its
// ranges are, else linearizable. In eventually consistent mode a Txn with
// a compare, or with a Range at a revision, is refused; one without is
// passed to the backend, which applies its operations one by one on this
// member's replica (eventual.go).
func (k *kvService) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := k.s.checkEventualTxn(r); err != nil {
		return nil, err
	}
	p, err := planTxn(r)
	if err != nil {
		return nil, err
	}
	write := !p.kv.ReadOnly()
	linearizable := write || !txnSerializable(r)
	return run(k.s, ctx, p.kv, write, linearizable,
		func(res *kv.Result) (*pb.TxnResponse, error) {
			if err := p.checkRevisions(res); err != nil {
				return nil, err
			}
			return p.response(res, k.s.header(res.Revision)), nil
		},
		func(ctx context.Context, c pb.KVClient) (*pb.TxnResponse, error) { return c.Txn(ctx, r) })
}

// txnSerializable reports whether every operation of both branches is a
// serializable Range (etcd's rule for serving a Txn without consensus).
func txnSerializable(r *pb.TxnRequest) bool {
	for _, branch := range [2][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range branch {
			rr := op.GetRequestRange()
			if rr == nil || !rr.Serializable {
				return false
			}
		}
	}
	return true
}

// Compact succeeds for any revision up to the current one: synod keeps no
// history, so everything before the current revision is already gone. A
// future revision gets etcd's "future revision". The current revision is
// read linearizably (forwarded to the leader if need be). Under a protocol
// with local revisions (EPaxos) the current revision is the serving
// member's own; Compact then only checks the revision against it, and
// removes nothing on any member, since no member keeps older revisions.
// In eventually consistent mode Compact is refused, whatever the revision
// (eventual.go).
func (k *kvService) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if k.s.eventual() {
		return nil, errEventualCompact
	}
	probe := kv.Request{Range: &kv.RangeRequest{Key: []byte{0}, CountOnly: true}}
	return run(k.s, ctx, probe, false, true,
		func(res *kv.Result) (*pb.CompactionResponse, error) {
			if r.Revision > res.Revision {
				return nil, rpctypes.ErrGRPCFutureRev
			}
			return &pb.CompactionResponse{Header: k.s.header(res.Revision)}, nil
		},
		func(ctx context.Context, c pb.KVClient) (*pb.CompactionResponse, error) { return c.Compact(ctx, r) })
}

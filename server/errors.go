package server

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// ErrStopped may be returned (or wrapped) by a Backend that is shutting
// down; clients get etcd's "server stopped" (codes.Unavailable) and retry
// elsewhere.
var ErrStopped = errors.New("server: backend stopped")

// Errors for the parts of etcd's API that synod refuses. Each is
// codes.InvalidArgument (the request asks for something this server does
// not do, and retrying will not help) or codes.Unimplemented (a whole RPC).
var (
	errLeasesUnsupported      = status.Error(codes.InvalidArgument, "etcdserver: leases are not supported by synod")
	errIgnoreValueUnsupported = status.Error(codes.InvalidArgument, "etcdserver: ignore_value is not supported by synod")
	errIgnoreLeaseInTxn       = status.Error(codes.InvalidArgument, "etcdserver: ignore_lease inside a transaction is not supported by synod")
	errTooManyCompares        = status.Error(codes.InvalidArgument, "etcdserver: synod supports at most one compare per transaction")
	errCompareRangeEnd        = status.Error(codes.InvalidArgument, "etcdserver: compare with a range_end is not supported by synod")
	errCompareLease           = status.Error(codes.InvalidArgument, "etcdserver: compare on a key's lease is not supported by synod (no leases)")
	errNestedTxn              = status.Error(codes.InvalidArgument, "etcdserver: nested transactions are not supported by synod")
	errEmptyRequestOp         = status.Error(codes.InvalidArgument, "etcdserver: transaction operation sets no request")
	errUnknownCompareResult   = status.Error(codes.InvalidArgument, "etcdserver: unknown compare result")
	errUnknownCompareTarget   = status.Error(codes.InvalidArgument, "etcdserver: unknown compare target")
	errRevisionInWriteTxn     = status.Error(codes.InvalidArgument, "etcdserver: a range with a revision inside a writing transaction is not supported by synod (no revision history)")
)

// Refusals of eventually consistent mode (ProtocolGossip; see eventual.go),
// codes.InvalidArgument like the others. The watch refusals are cancel
// reasons (errWatchEventualRevision and the prev_kv one in watch.go).
var (
	errEventualCompare = status.Error(codes.InvalidArgument, "etcdserver: transactions with compares are not supported in eventually consistent mode (gossip): "+
		"a compare would be checked against one replica only and could not guard the write; use a consensus protocol (raft, multipaxos, epaxos) for compare-and-swap")
	errEventualRevision = status.Error(codes.InvalidArgument, "etcdserver: reads at a revision are not supported in eventually consistent mode (gossip): "+
		"revisions are local to each replica and there is no history; read without a revision")
	errEventualCompact = status.Error(codes.InvalidArgument, "etcdserver: compaction is not supported in eventually consistent mode (gossip): there is no revision history")
)

// toGRPCError maps an error from the backend or the kv state machine to the
// error etcd returns in the same situation, so that clientv3 reacts to it
// as it would to etcd (retrying Unavailable reads, surfacing the rest).
// parent is the RPC's context and ctx the one bounded by RequestTimeout:
// when ctx expired but parent did not, the server's own timeout fired.
// NotLeader errors are handled by the caller (forwarding) before this.
func toGRPCError(parent, ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a gRPC status (from a forwarded call, or ours)
	}
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		switch {
		case errors.Is(parent.Err(), context.Canceled):
			return rpctypes.ErrGRPCCanceled
		case parent.Err() != nil:
			return rpctypes.ErrGRPCDeadlineExceeded
		case ctx.Err() != nil:
			return rpctypes.ErrGRPCTimeout
		}
		// The backend's own timeout.
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, consensus.ErrNotLeader):
		return rpctypes.ErrGRPCNoLeader
	case errors.Is(err, consensus.ErrProposalDropped):
		return status.Error(codes.Unavailable, "etcdserver: proposal dropped; retry later")
	case errors.Is(err, ErrStopped):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, kv.ErrEmptyKey):
		return rpctypes.ErrGRPCEmptyKey
	case errors.Is(err, kv.ErrDuplicateKey):
		return rpctypes.ErrGRPCDuplicateKey
	case errors.Is(err, kv.ErrTooManyOps):
		return rpctypes.ErrGRPCTooManyOps
	case errors.Is(err, kv.ErrNestedTxn):
		return errNestedTxn
	case errors.Is(err, kv.ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, "etcdserver: "+err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

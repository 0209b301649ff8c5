package server

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Eventually consistent mode.
//
// Under ProtocolGossip the backend is an eventually consistent store
// (gossip/store): every member serves reads and writes from its own
// replica, replicas converge by gossip, and nothing is ordered across
// members. The server then serves etcd's API without consensus and
// refuses, as codes.InvalidArgument ("etcdserver: … (gossip)"), what the
// store cannot honour, rather than answer with numbers that look like
// etcd's and mean something else:
//
//   - a Txn with any compare: it would be checked against one replica
//     only and could not guard the write. A Txn without compares is
//     passed to the backend, which applies its operations one by one on
//     the local replica (each its own write, not atomic with the others
//     as seen from other members);
//   - a Range with a revision, also inside a Txn: revisions are this
//     replica's change count and there is no history;
//   - a Watch with a start revision (a created and canceled response with
//     the reason, as for the other refused creates): there is no history
//     to replay. A watch from now is served;
//   - a Watch with prev_kv (refused the same way): a change merged from
//     another member does not say what it replaced, so its event would
//     come without the previous value that prev_kv promises;
//   - Compact, whatever the revision.
//
// Every read is local, hence serializable: a linearizable Range (etcd's
// default) is served by the backend from this member's replica, and may
// miss writes acknowledged by other members. A response header's
// revision counts this replica's changes only. Nothing is ever forwarded:
// the backend, whose role is consensus.RolePeer, serves every request
// itself, and a NotLeader error from it is answered with etcd's "no
// leader" instead of being forwarded.

// ProtocolGossip is NodeStatus.Protocol of a backend in eventually
// consistent mode (synod --protocol gossip).
const ProtocolGossip = "gossip"

// eventual reports whether the backend is in eventually consistent mode
// (ProtocolGossip). It reads Status, so it is as cheap as Status is.
func (s *Server) eventual() bool {
	return s.cfg.Backend.Status().Protocol == ProtocolGossip
}

// checkEventualRange refuses, in eventually consistent mode, a Range at a
// revision.
func (s *Server) checkEventualRange(r *pb.RangeRequest) error {
	if r.Revision != 0 && s.eventual() {
		return errEventualRevision
	}
	return nil
}

// checkEventualTxn refuses, in eventually consistent mode, a Txn with a
// compare or with a Range at a revision in either branch.
func (s *Server) checkEventualTxn(r *pb.TxnRequest) error {
	if !s.eventual() {
		return nil
	}
	if len(r.Compare) > 0 {
		return errEventualCompare
	}
	for _, branch := range [2][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range branch {
			if rr := op.GetRequestRange(); rr != nil && rr.Revision != 0 {
				return errEventualRevision
			}
		}
	}
	return nil
}

// noForward reports, for a backend error naming a leader, that the
// request must not be forwarded: in eventually consistent mode every
// member serves its requests itself, so a NotLeader error is the
// backend's mistake, logged and answered with "no leader".
func (s *Server) noForward(ctx context.Context) bool {
	if !s.eventual() {
		return false
	}
	s.log.ErrorContext(ctx, "not forwarding: the backend is in eventually consistent mode (gossip) but refused a request as not leader")
	return true
}

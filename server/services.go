package server

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unsupported is the codes.Unimplemented error of an RPC synod does not
// serve, with the reason.
func unsupported(rpc, why string) error {
	return status.Errorf(codes.Unimplemented, "synod: %s is not supported: %s", rpc, why)
}

// maintenanceService serves Maintenance.Status; the other Maintenance RPCs
// are refused.
type maintenanceService struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

// Status describes this member: etcd version (StatusVersion, naming the
// protocol), state size, leader, commit and applied index, and term. It is
// served locally, never forwarded. A member of a leaderless protocol names
// no leader (0) and term 0; its commit and applied indexes are its own
// counts (for EPaxos, instances known committed and commands executed
// here), not positions in a shared log. The member's SWIM view, which
// etcd's answer has no field for, travels in the header metadata
// (MembershipHeader; etcd's clients ignore it).
func (m *maintenanceService) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	st := m.s.cfg.Backend.Status()
	if st.Membership != nil {
		// The answer is useful without it: log and go on.
		if err := grpc.SetHeader(ctx, MembershipHeader(*st.Membership)); err != nil {
			m.s.log.Debug("Maintenance.Status: cannot send the SWIM header metadata", "err", err)
		}
	}
	return &pb.StatusResponse{
		Header: &pb.ResponseHeader{
			ClusterId: st.ClusterID,
			MemberId:  uint64(st.MemberID),
			Revision:  st.Revision,
			RaftTerm:  st.Replica.Term,
		},
		Version:          StatusVersion(st.Protocol),
		DbSize:           st.DBSizeBytes,
		DbSizeInUse:      st.DBSizeBytes,
		Leader:           uint64(st.Replica.Leader),
		RaftIndex:        st.Replica.Commit,
		RaftTerm:         st.Replica.Term,
		RaftAppliedIndex: st.Replica.Applied,
	}, nil
}

// Alarm lists alarms: synod raises none (a full disk or a corrupt log stops
// the member instead), so the list is always empty. That is what etcdctl
// endpoint health asks. Raising or clearing alarms is refused.
func (m *maintenanceService) Alarm(_ context.Context, req *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if req.Action != pb.AlarmRequest_GET {
		return nil, unsupported("Maintenance.Alarm", "synod raises no alarms, so there are none to activate or deactivate")
	}
	st := m.s.cfg.Backend.Status()
	return &pb.AlarmResponse{Header: m.s.header(st.Revision)}, nil
}

func (*maintenanceService) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return nil, unsupported("Maintenance.Defragment", "not implemented")
}

func (*maintenanceService) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	return nil, unsupported("Maintenance.Hash", "not implemented")
}

func (*maintenanceService) HashKV(context.Context, *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	return nil, unsupported("Maintenance.HashKV", "no revision history")
}

func (*maintenanceService) Snapshot(*pb.SnapshotRequest, grpc.ServerStreamingServer[pb.SnapshotResponse]) error {
	return unsupported("Maintenance.Snapshot", "not implemented; use synod's own snapshot tooling")
}

func (*maintenanceService) MoveLeader(context.Context, *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	return nil, unsupported("Maintenance.MoveLeader", "not implemented")
}

func (*maintenanceService) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, unsupported("Maintenance.Downgrade", "not an etcd cluster")
}

// clusterService serves Cluster.MemberList; membership changes are refused.
type clusterService struct {
	pb.UnimplementedClusterServer
	s *Server
}

// MemberList lists the backend's members. It is served from this member's
// view; the linearizable flag is not honoured.
func (c *clusterService) MemberList(context.Context, *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	st := c.s.cfg.Backend.Status()
	ms := c.s.cfg.Backend.Members()
	out := &pb.MemberListResponse{
		Header: &pb.ResponseHeader{
			ClusterId: st.ClusterID,
			MemberId:  uint64(st.MemberID),
			Revision:  st.Revision,
			RaftTerm:  st.Replica.Term,
		},
		Members: make([]*pb.Member, len(ms)),
	}
	for i, m := range ms {
		out.Members[i] = &pb.Member{
			ID:         uint64(m.ID),
			Name:       m.Name,
			PeerURLs:   append([]string(nil), m.PeerURLs...),
			ClientURLs: append([]string(nil), m.ClientURLs...),
		}
	}
	return out, nil
}

func (*clusterService) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, unsupported("Cluster.MemberAdd", "membership changes are not available through the etcd API")
}

func (*clusterService) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, unsupported("Cluster.MemberRemove", "membership changes are not available through the etcd API")
}

func (*clusterService) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, unsupported("Cluster.MemberUpdate", "membership changes are not available through the etcd API")
}

func (*clusterService) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, unsupported("Cluster.MemberPromote", "synod has no learners")
}

// leaseService refuses every Lease RPC: synod has no leases.
type leaseService struct {
	pb.UnimplementedLeaseServer
}

const noLeases = "synod has no leases"

func (leaseService) LeaseGrant(context.Context, *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return nil, unsupported("Lease.LeaseGrant", noLeases)
}

func (leaseService) LeaseRevoke(context.Context, *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return nil, unsupported("Lease.LeaseRevoke", noLeases)
}

func (leaseService) LeaseKeepAlive(grpc.BidiStreamingServer[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse]) error {
	return unsupported("Lease.LeaseKeepAlive", noLeases)
}

func (leaseService) LeaseTimeToLive(context.Context, *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return nil, unsupported("Lease.LeaseTimeToLive", noLeases)
}

func (leaseService) LeaseLeases(context.Context, *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	return nil, unsupported("Lease.LeaseLeases", noLeases)
}

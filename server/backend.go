// Package server puts a synod node behind etcd's v3 gRPC API (KV,
// Maintenance.Status, Cluster.MemberList, later Watch), so that etcdctl,
// etcd's Go client and etcd's benchmark tool work against it, and serves
// HTTP /metrics, /health and /status on a separate port.
package server

import (
	"context"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// Backend is what the server needs from the node it fronts. The node
// package implements it; tests may use a fake. Its methods are called
// concurrently, one goroutine per RPC.
type Backend interface {
	// Propose replicates a write request (kv.Request.ReadOnly() is false)
	// and returns its result once the local node has applied it. On a node
	// that does not lead, it returns an error matching
	// consensus.ErrNotLeader (a *consensus.NotLeaderError naming the
	// leader, if known); the server then forwards the request to the
	// leader's client URL.
	Propose(ctx context.Context, req kv.Request) (kv.Result, error)
	// Read serves a read-only request. A linearizable read waits for a
	// confirmed read index and the local apply to reach it (and returns
	// ErrNotLeader on a node that cannot confirm one); a serializable read
	// is served from local state at once.
	Read(ctx context.Context, req kv.Request, linearizable bool) (kv.Result, error)
	// Status describes this node for Maintenance.Status, /status and
	// response headers. The server calls it for every response (for the
	// header's term), so it must be cheap: no disk walks per call.
	Status() NodeStatus
	// Members lists the cluster's members.
	Members() []Member
}

// NodeStatus is a node's view of itself and its cluster.
type NodeStatus struct {
	ClusterID uint64
	MemberID  consensus.NodeID
	Name      string
	Protocol  string
	// Replica is the protocol core's status (role, term, leader, commit,
	// applied, progress of followers on a leader).
	Replica consensus.Status
	// Revision is the key-value store's current revision.
	Revision int64
	// DBSizeBytes is the size of the state on disk; WALSizeBytes the
	// write-ahead log's.
	DBSizeBytes, WALSizeBytes int64
}

// Member is one member of the cluster.
type Member struct {
	ID         consensus.NodeID
	Name       string
	PeerURLs   []string
	ClientURLs []string
}

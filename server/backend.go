// Package server puts a synod node behind etcd's v3 gRPC API (KV, Watch,
// Maintenance.Status, Cluster.MemberList), so that etcdctl,
// etcd's Go client and etcd's benchmark tool work against it, and serves
// HTTP /metrics, /health and /status on a separate port.
//
// Under a consensus protocol (raft, multipaxos, epaxos) the server offers
// etcd's guarantees, forwarding to the leader what a follower cannot
// serve. Under ProtocolGossip, an eventually consistent store, every
// member serves its requests from its own replica, reads included, and
// the server refuses what that mode cannot honour: compares, reads and
// watches at a revision, and Compact (see eventual.go).
package server

import (
	"context"
	"fmt"

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
	// leader's client URL. A node of a leaderless protocol (Status'
	// Replica.Role is consensus.RolePeer) serves every proposal itself.
	Propose(ctx context.Context, req kv.Request) (kv.Result, error)
	// Read serves a read-only request. A linearizable read waits for a
	// confirmed read index and the local apply to reach it (and returns
	// ErrNotLeader on a node that cannot confirm one), or, under a
	// protocol without a read index, is ordered through the log and
	// answered when applied; a serializable read is served from local
	// state at once.
	Read(ctx context.Context, req kv.Request, linearizable bool) (kv.Result, error)
	// Status describes this node for Maintenance.Status, /status and
	// response headers. The server calls it for every response (for the
	// header's term), so it must be cheap: no disk walks per call.
	Status() NodeStatus
	// Members lists the cluster's members.
	Members() []Member
	// Watch reads this member's recent changes to the keys in [key, end)
	// (kv.RangeRequest's range rules) at revisions >= from, in revision
	// order, as this member applies them (whatever its role: watches are
	// never forwarded). from 0 means "from now": nothing is returned, and
	// the batch's Next is the next revision. It returns at most about
	// maxEvents events, in whole revisions. If changes at from are no
	// longer kept it returns a *CompactedError. It must not block: a
	// watcher waits on WatchBatch.Changed.
	Watch(key, end []byte, from int64, maxEvents int) (WatchBatch, error)
}

// WatchBatch is one read of a member's recent changes (Backend.Watch).
type WatchBatch struct {
	// Events are the matching changes at revisions from..Next-1, in
	// revision order, a request's events together in the order it made
	// them. Read-only.
	Events []kv.Event
	// Next is where the next read starts: every matching change before it
	// (from from on) is in Events.
	Next int64
	// Revision is the member's revision at the read; Next-1 <= Revision
	// unless from was beyond it.
	Revision int64
	// More reports that maxEvents cut the read short: read again at once.
	More bool
	// Changed is closed when the member's revision passes Revision (or
	// the member stops). Wait on it when More is false.
	Changed <-chan struct{}
}

// CompactedError is Backend.Watch's error for a revision whose changes
// are no longer kept. Revision is the oldest revision a watch can start
// from (etcd's compact_revision).
type CompactedError struct{ Revision int64 }

func (e *CompactedError) Error() string {
	return fmt.Sprintf("server: required revision has been compacted (oldest kept: %d)", e.Revision)
}

// NodeStatus is a node's view of itself and its cluster.
type NodeStatus struct {
	ClusterID uint64
	MemberID  consensus.NodeID
	Name      string
	// Protocol names the replication protocol ("raft", "epaxos", …);
	// ProtocolGossip puts the server in eventually consistent mode.
	Protocol string
	// Replica is the protocol core's status (role, term, leader, commit,
	// applied, progress of followers on a leader).
	Replica consensus.Status
	// Revision is the key-value store's current revision.
	Revision int64
	// DBSizeBytes is the size of the state on disk; WALSizeBytes the
	// write-ahead log's.
	DBSizeBytes, WALSizeBytes int64
	// Membership is the member's SWIM view of its cluster, nil if the
	// backend runs no membership protocol. Read-only.
	Membership *Membership
}

// Member is one member of the cluster.
type Member struct {
	ID         consensus.NodeID
	Name       string
	PeerURLs   []string
	ClientURLs []string
}

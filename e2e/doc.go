// Package e2e holds end-to-end tests that run real "synod serve" processes
// on loopback ports: a fault test that kill -9s members under a concurrent
// workload driven through etcd's Go client and checks the history for
// linearizability, and a test that drives a cluster with etcd's own etcdctl.
//
// The tests build the synod binary once per run (go build ./cmd/synod into
// a temporary directory); the etcdctl test also builds etcdctl from the
// module proxy into a cache directory outside the repository. Both are
// skipped under -short.
//
//	go test ./e2e                                # all, about a minute and a half
//	go test ./e2e -run Fault -e2e.duration 2m    # a longer fault run
//	go test ./e2e -run Fault -v -e2e.seed 42     # replay a kill schedule
//	go test ./e2e -run 'Restart$' -e2e.protocol multipaxos  # the full fault run with Multi-Paxos
//	go test ./e2e -run 'Restart$' -e2e.protocol epaxos      # the full fault run with EPaxos
//
// The fault test runs -e2e.protocol (raft by default); shorter variants
// with Multi-Paxos and with EPaxos members run by default too. The etcdctl
// test runs against a Raft cluster and against an EPaxos one.
package e2e

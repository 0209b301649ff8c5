package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-io/synod/server"
)

// TestStatusTable: the status table names roles, health and lag for a
// cluster with a leader, and for a leaderless one (every member a healthy
// peer, no term, lag against the member that executed the most).
func TestStatusTable(t *testing.T) {
	st := func(protocol string, id, leader, term, commit, applied uint64) *clientv3.StatusResponse {
		return &clientv3.StatusResponse{Header: &pb.ResponseHeader{MemberId: id}, Version: server.StatusVersion(protocol),
			Leader: leader, RaftTerm: term, RaftIndex: commit, RaftAppliedIndex: applied}
	}
	table := func(rows []memberRow) string {
		for i := range rows {
			rows[i].judge()
		}
		var b bytes.Buffer
		printStatus(&b, rows)
		return b.String()
	}

	raft := table([]memberRow{
		{name: "n1", id: 1, st: st("raft", 1, 1, 4, 100, 100)},
		{name: "n2", id: 2, st: st("raft", 2, 1, 4, 100, 90)},
		{name: "n3", id: 3, st: st("raft", 3, 0, 4, 50, 50)},
		{name: "n4", id: 4, err: errors.New("connection refused")},
	})
	for _, want := range []string{"leader  4     100     100      0    true", "follower  4     100     90       10   true",
		"follower  4     50      50       50   false: no leader", "-     -       -        -    false: connection refused"} {
		if !strings.Contains(squeeze(raft), squeeze(want)) {
			t.Errorf("raft table lacks %q:\n%s", want, raft)
		}
	}

	ep := table([]memberRow{
		{name: "n1", id: 1, st: st("epaxos", 1, 0, 0, 120, 110)},
		{name: "n2", id: 2, st: st("epaxos", 2, 0, 0, 118, 100)},
	})
	if strings.Contains(ep, "false") || strings.Count(ep, "peer") != 2 || strings.Contains(ep, "leader ") || strings.Contains(ep, "follower") {
		t.Errorf("epaxos table: want two healthy peers and no leader:\n%s", ep)
	}
	for _, want := range []string{"peer  -  120  110  0  true", "peer  -  118  100  10  true"} {
		if !strings.Contains(squeeze(ep), squeeze(want)) {
			t.Errorf("epaxos table lacks %q:\n%s", want, ep)
		}
	}
}

// squeeze collapses runs of spaces, so that column widths do not matter.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

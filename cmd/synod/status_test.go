package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/server"
)

// swimOf is a SWIM view with the given health score (out of 8) and the
// given members' states, in "id state" pairs; a state may name the
// member's incarnation, "dead@4" (else 0).
func swimOf(health int, states ...any) *server.Membership {
	m := &server.Membership{Health: health, HealthMax: 8}
	for i := 0; i < len(states); i += 2 {
		mh := server.MemberHealth{ID: consensus.NodeID(states[i].(int)), State: states[i+1].(string)}
		if state, inc, ok := strings.Cut(mh.State, "@"); ok {
			n, err := strconv.ParseUint(inc, 10, 64)
			if err != nil {
				panic(fmt.Sprintf("swimOf: %q: %v", mh.State, err))
			}
			mh.State, mh.Incarnation = state, n
		}
		m.Members = append(m.Members, mh)
	}
	return m
}

// TestStatusTable: the status table names roles, SWIM states, health
// scores, health and lag for a cluster with a leader, and for a
// leaderless one (every member a healthy peer, no term, lag against the
// member that executed the most).
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
		{name: "n1", id: 1, st: st("raft", 1, 1, 4, 100, 100), swim: swimOf(0, 1, "alive", 2, "alive", 3, "suspect", 4, "dead")},
		{name: "n2", id: 2, st: st("raft", 2, 1, 4, 100, 90), swim: swimOf(0, 1, "alive", 2, "alive", 3, "alive", 4, "dead")},
		{name: "n3", id: 3, st: st("raft", 3, 0, 4, 50, 50), swim: swimOf(5, 1, "alive", 2, "alive", 3, "alive", 4, "dead")},
		{name: "n4", id: 4, err: errors.New("connection refused")},
	})
	t.Logf("raft table:\n%s", raft)
	for _, want := range []string{"NAME ID ENDPOINT ROLE SWIM HEALTH-SCORE TERM COMMIT APPLIED LAG HEALTH",
		"leader  alive  0/8  4     100     100      0    true", "follower  alive  0/8  4     100     90       10   true",
		"follower  suspect (1/2)  5/8  4     50      50       50   false: no leader",
		"-  dead  -  -     -       -        -    false: connection refused"} {
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
	for _, want := range []string{"peer  -  -  -  120  110  0  true", "peer  -  -  -  118  100  10  true"} {
		if !strings.Contains(squeeze(ep), squeeze(want)) {
			t.Errorf("epaxos table lacks %q:\n%s", want, ep)
		}
	}
}

// TestStatusSWIMColumn: a member's SWIM column is the worst state the
// other answering members report for it at the highest incarnation any
// of them reports, with how many of those report it when they disagree;
// its own view of itself does not count.
func TestStatusSWIMColumn(t *testing.T) {
	for _, tc := range []struct {
		name string
		rows []memberRow
		want []string // the SWIM column, row by row
	}{
		{"agree", []memberRow{
			{id: 1, swim: swimOf(0, 1, "alive", 2, "alive", 3, "alive")},
			{id: 2, swim: swimOf(0, 1, "alive", 2, "alive", 3, "alive")},
			{id: 3, swim: swimOf(0, 1, "alive", 2, "alive", 3, "alive")},
		}, []string{"alive", "alive", "alive"}},
		{"disagree", []memberRow{
			{id: 1, swim: swimOf(0, 1, "alive", 2, "suspect", 3, "alive", 4, "alive")},
			{id: 2, swim: swimOf(0, 1, "alive", 2, "alive", 3, "dead", 4, "unknown")},
			{id: 3, swim: swimOf(0, 1, "alive", 2, "alive", 3, "alive", 4, "suspect")},
			{id: 4, swim: swimOf(0, 1, "left", 2, "alive", 3, "suspect", 4, "alive")},
		}, []string{"left (1/3)", "suspect (1/3)", "dead (1/3)", "suspect (1/3)"}},
		{"worst reported by several", []memberRow{
			{id: 1, swim: swimOf(0, 3, "suspect")},
			{id: 2, swim: swimOf(0, 3, "suspect")},
			{id: 3, swim: swimOf(0, 3, "alive")},
			{id: 4, swim: swimOf(0, 3, "alive")},
		}, []string{"-", "-", "suspect (2/3)", "-"}},
		{"no answer", []memberRow{
			{id: 1, swim: swimOf(0, 1, "alive", 2, "alive", 3, "dead")},
			{id: 2, swim: swimOf(0, 1, "alive", 2, "alive", 3, "dead")},
			{id: 3, err: errors.New("connection refused")},
		}, []string{"alive", "alive", "dead"}},
		{"no answer, seen dead and suspect", []memberRow{
			{id: 1, swim: swimOf(0, 1, "alive", 2, "alive", 3, "suspect")},
			{id: 2, swim: swimOf(0, 1, "alive", 2, "alive", 3, "dead")},
			{id: 3, err: errors.New("connection refused")},
		}, []string{"alive", "alive", "dead (1/2)"}},
		{"nobody reports", []memberRow{
			{id: 1, swim: swimOf(0, 1, "dead")},     // itself: does not count
			{id: 2},                                 // answered without a SWIM view
			{id: 3, err: errors.New("unreachable")}, // did not answer
			{id: 4, swim: swimOf(0, 4, "alive")},    // lists only itself
		}, []string{"-", "-", "-", "-"}},
		// Member 3 restarted at incarnation 5: member 1's report of it
		// dead at 4 is stale, superseded, and counts in neither number.
		{"a higher incarnation supersedes", []memberRow{
			{id: 1, swim: swimOf(0, 3, "dead@4")},
			{id: 2, swim: swimOf(0, 3, "alive@5")},
			{id: 3, swim: swimOf(0, 3, "alive@5")},
		}, []string{"-", "-", "alive"}},
		{"the worst at the highest incarnation", []memberRow{
			{id: 1, swim: swimOf(0, 4, "dead@4")},
			{id: 2, swim: swimOf(0, 4, "alive@5")},
			{id: 3, swim: swimOf(0, 4, "suspect@5")},
			{id: 4, swim: swimOf(0, 4, "alive@5")},
		}, []string{"-", "-", "-", "suspect (1/2)"}},
		{"stale reports after the fresh one", []memberRow{
			{id: 1, swim: swimOf(0, 4, "suspect@7")},
			{id: 2, swim: swimOf(0, 4, "dead@6")},
			{id: 3, swim: swimOf(0, 4, "left@2")},
			{id: 4, err: errors.New("connection refused")},
		}, []string{"-", "-", "-", "suspect"}},
		{"state unknown to this version ranks as unknown", []memberRow{
			{id: 1, swim: swimOf(0, 3, "State(9)")},
			{id: 2, swim: swimOf(0, 3, "alive")},
			{id: 3},
		}, []string{"-", "-", "State(9) (1/2)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.rows {
				if got := swimView(tc.rows, i); got != tc.want[i] {
					t.Errorf("member %x: SWIM %q, want %q", tc.rows[i].id, got, tc.want[i])
				}
			}
		})
	}
}

// squeeze collapses runs of spaces, so that column widths do not matter.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

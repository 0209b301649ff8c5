package epaxos

import (
	"fmt"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
)

// violation is what a cluster's fatalf panics with under tryBug.
type violation string

// clusterBuilder builds an n-replica cluster for one scenario run.
type clusterBuilder func(n int, seed uint64, adjust ...func(*Config)) *cluster

// tryBug runs scenario on clusters built with the known-wrong variant bug
// ("" for the protocol itself) and returns the first violation one of the
// cluster's checks reported, or "" if none did.
func tryBug(t *testing.T, bug string, scenario func(build clusterBuilder)) (found violation) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			v, ok := p.(violation)
			if !ok {
				panic(p)
			}
			found = v
		}
	}()
	scenario(func(n int, seed uint64, adjust ...func(*Config)) *cluster {
		adjust = append(adjust, func(cfg *Config) { SetBug(cfg, bug) })
		c := newCluster(t, n, seed, adjust...)
		c.fatalf = func(format string, args ...any) { panic(violation(fmt.Sprintf(format, args...))) }
		return c
	})
	return ""
}

// TestKnownBugsAreCaught: each known-wrong variant is caught by the
// cluster's checks within a bounded number of seeds, and the protocol
// itself passes every seed up to the one that caught it (so the variant is
// what failed). This is the in-package counterpart of a simulator
// checker-teeth test.
func TestKnownBugsAreCaught(t *testing.T) {
	cases := []struct {
		bug      string
		seedsMax uint64
		scenario func(build clusterBuilder, seed uint64)
	}{
		{BugSCCUnordered, 6, func(build clusterBuilder, seed uint64) {
			c := build(5, seed)
			c.loss = 20
			c.run(800, 2)
			c.check()
		}},
		{BugPreAcceptIgnoresConflicts, 6, func(build clusterBuilder, seed uint64) {
			c := build(3, seed)
			c.loss = 20
			c.run(600, 2)
			c.check()
		}},
		{BugRecoveryReportsPromised, 1, recoveryReportsPromisedScenario},
		{BugMajorityFastQuorum, 1, majorityFastQuorumScenario},
		{BugExecuteFullGraph, 1, continuousLoadScenario},
	}
	if len(cases) != len(Bugs) {
		t.Fatalf("%d variants tested, %d known", len(cases), len(Bugs))
	}
	for _, tc := range cases {
		t.Run(tc.bug, func(t *testing.T) {
			caughtAt := uint64(0)
			for seed := uint64(1); seed <= tc.seedsMax && caughtAt == 0; seed++ {
				if v := tryBug(t, tc.bug, func(b clusterBuilder) { tc.scenario(b, seed) }); v != "" {
					t.Logf("caught at seed %d: %.300s", seed, v)
					caughtAt = seed
				}
			}
			if caughtAt == 0 {
				t.Fatalf("%s not caught in %d seeds", tc.bug, tc.seedsMax)
			}
			for seed := uint64(1); seed <= caughtAt; seed++ {
				if v := tryBug(t, "", func(b clusterBuilder) { tc.scenario(b, seed) }); v != "" {
					t.Fatalf("the protocol itself fails seed %d: %s", seed, v)
				}
			}
		})
	}
}

// recoveryReportsPromisedScenario (Sutra 2019): attributes v2 were chosen
// at ballot 2.3 (accepted by 3, 4 and 5, committed at 3, whose Commits
// were lost), while replica 2 accepted v1 at the lower ballot 1.2 and
// later promised 9.2 (its own recovery attempt, which reached only 1).
// The leader, 5, is down. Replica 1 recovers at 10.1 and hears from 2 and
// 4: it must adopt v2, accepted at the higher ballot. Reporting promises
// instead makes 2's 9.2 beat 4's 2.3, and replica 1 commits v1 beside 3's
// committed v2.
func recoveryReportsPromisedScenario(build clusterBuilder, seed uint64) {
	id := InstanceID{5, 1}
	cmd := put("k", "x")
	dep := Instance{ID: InstanceID{3, 9}, Status: StatusCommitted, Promised: Ballot{0, 3}, Accepted: Ballot{0, 3}, Command: put("z", "dep"), Seq: 1}
	v1 := Instance{ID: id, Status: StatusAccepted, Promised: Ballot{9, 2}, Accepted: Ballot{1, 2}, Command: cmd, Seq: 1}
	v2 := Instance{ID: id, Status: StatusAccepted, Promised: Ballot{2, 3}, Accepted: Ballot{2, 3}, Command: cmd, Seq: 7, Deps: []InstanceID{dep.ID}}
	chosen := v2
	chosen.Status = StatusCommitted
	c := build(5, seed, recoveryConfig(seed))
	c.proposed = 2
	state := map[consensus.NodeID][]consensus.Record{
		1: {dep, Instance{ID: id, Promised: Ballot{9, 2}}}, 2: {dep, v1}, 3: {dep, chosen}, 4: {dep, v2}, 5: {dep, v2},
	}
	for _, nd := range c.nodes {
		nd.durable = state[nd.id]
		c.crash(nd)
		c.restart(nd)
	}
	c.crash(c.nodes[4])
	rec := c.nodes[0]
	rec.r.startRecovery(id)
	c.process(rec)
	c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPrepare && (m.To == 2 || m.To == 4) })
	c.deliverWhere(isType(MsgPrepareOK))
	c.settle()
	c.checkAgree(false)
}

// majorityFastQuorumScenario, N = 7: the leader's PreAccept of x reaches 2,
// 3 and 4, which answer unchanged; the leader (fast quorum 5) waits, while
// the variant (a majority, 4) commits x with no deps. The leader, 3 and 4
// crash; 7 proposes a conflicting y. The survivors recover x: one
// unchanged pre-accept (2) and two silent replicas are not the fast quorum
// evidence recovery needs, so x is pre-accepted again and picks up y. The
// restarted leader then holds x committed with other attributes than
// everyone else.
func majorityFastQuorumScenario(build clusterBuilder, seed uint64) {
	c := build(7, seed, recoveryConfig(seed))
	l := c.nodes[0]
	c.propose(l, put("k", "x"))
	c.deliverWhere(func(m consensus.Message, p *Msg) bool { return p.Type == MsgPreAccept && m.To >= 2 && m.To <= 4 })
	c.deliverWhere(isType(MsgPreAcceptOK))
	for _, i := range []int{0, 2, 3} {
		c.crash(c.nodes[i])
	}
	c.propose(c.nodes[6], put("k", "y"))
	c.settle()
	for _, i := range []int{0, 2, 3} {
		c.restart(c.nodes[i])
	}
	c.settle()
	c.checkAgree(true)
}

// TestBugsOffByDefault: a default configuration runs the protocol itself,
// a variant can be switched off again, unknown names panic, and Validate
// rejects a variant number that does not exist.
func TestBugsOffByDefault(t *testing.T) {
	cfg := DefaultConfig(1, ids(3))
	if cfg.bug != bugNone {
		t.Fatalf("DefaultConfig selects variant %d", cfg.bug)
	}
	for _, bug := range Bugs {
		SetBug(&cfg, bug)
		if cfg.bug == bugNone {
			t.Fatalf("SetBug(%q) selected nothing", bug)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: %v", bug, err)
		}
		SetBug(&cfg, "")
		if cfg.bug != bugNone {
			t.Fatalf("SetBug(\"\") after %q left variant %d", bug, cfg.bug)
		}
	}
	cfg.bug = bugLast + 1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "variant") {
		t.Fatalf("Validate accepted variant %d: %v", cfg.bug, err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("SetBug accepted an unknown name")
		}
	}()
	SetBug(&cfg, "no-such-bug")
}

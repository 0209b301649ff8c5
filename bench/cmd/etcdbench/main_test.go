package main

import (
	"math"
	"slices"
	"testing"
)

func TestConflictKeys(t *testing.T) {
	for _, tc := range []struct {
		p       float64
		clients int
		keySize int
		want    int64
	}{
		{100, 100, 8, 1},
		{0, 100, 8, 1 << 48},
		{0, 100, 2, 1 << 13},
		{2, 100, 8, 4901}, // ≈ (c-1)/p = 4950
		{50, 2, 8, 2},
	} {
		k, err := conflictKeys(tc.p, tc.clients, tc.keySize)
		if err != nil || k != tc.want {
			t.Errorf("conflictKeys(%v, %d, %d) = %d, %v; want %d", tc.p, tc.clients, tc.keySize, k, err, tc.want)
			continue
		}
		if tc.p > 0 && tc.p < 100 {
			if got := conflictProbability(k, tc.clients); math.Abs(got-tc.p/100) > 0.001 {
				t.Errorf("conflictProbability(%d, %d) = %v, want ≈ %v", k, tc.clients, got, tc.p/100)
			}
		}
	}
	if p := conflictProbability(1, 100); p != 1 {
		t.Errorf("conflictProbability(1, 100) = %v, want 1", p)
	}
	if p := conflictProbability(1<<48, 100); p > 1e-12 {
		t.Errorf("conflictProbability(2^48, 100) = %v, want ≈ 0", p)
	}
	if _, err := conflictKeys(2, 1, 8); err == nil {
		t.Error("conflictKeys with one client succeeded")
	}
	if _, err := conflictKeys(0.001, 100, 1); err == nil {
		t.Error("conflictKeys beyond what 1-byte keys can encode succeeded")
	}
}

func TestParseSystems(t *testing.T) {
	ss, err := parseSystems(flags{systems: "etcd,synod", synodProtocols: "raft,epaxos,epaxos@leader"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range ss {
		got = append(got, s.name+"→"+s.target("auto"))
	}
	want := []string{"etcd→leader", "synod-raft→leader", "synod-epaxos→all", "synod-epaxos@leader→leader"}
	if !slices.Equal(got, want) {
		t.Errorf("parseSystems = %v, want %v", got, want)
	}
	for _, bad := range []string{"raft,raft", "paxos", "epaxos@nowhere"} {
		if _, err := parseSystems(flags{systems: "synod", synodProtocols: bad}); err == nil {
			t.Errorf("parseSystems(-synod-protocol %s) succeeded", bad)
		}
	}
}

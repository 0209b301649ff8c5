package check

import (
	"testing"

	"github.com/synod-io/synod/consensus"
)

func put(client int, key, v string, call, ret int64) KVOperation {
	return KVOperation{Client: client, Input: KVInput{Kind: KVPut, Key: key, Value: v}, Call: call, Return: ret}
}

func get(client int, key, v string, exists bool, call, ret int64) KVOperation {
	return KVOperation{Client: client, Input: KVInput{Kind: KVGet, Key: key},
		Output: KVOutput{Value: v, Exists: exists}, Call: call, Return: ret}
}

func TestLinearizableHistories(t *testing.T) {
	tests := []struct {
		name string
		ops  []KVOperation
		want string
	}{
		{"sequential", []KVOperation{put(0, "a", "1", 1, 2), get(1, "a", "1", true, 3, 4)}, "Ok"},
		{"concurrent read may see either", []KVOperation{put(0, "a", "1", 1, 4), get(1, "a", "", false, 2, 3)}, "Ok"},
		{"stale read after write returned", []KVOperation{put(0, "a", "1", 1, 2), get(1, "a", "", false, 3, 4)}, "Illegal"},
		{"read of a value never written", []KVOperation{get(1, "a", "x", true, 1, 2)}, "Illegal"},
		{"keys are independent", []KVOperation{put(0, "a", "1", 1, 2), get(1, "b", "", false, 3, 4)}, "Ok"},
		{"unknown write may apply late", []KVOperation{
			{Client: 0, Input: KVInput{Kind: KVPut, Key: "a", Value: "1"}, Output: KVOutput{Unknown: true}, Call: 1},
			get(1, "a", "", false, 2, 3), get(1, "a", "1", true, 4, 5)}, "Ok"},
		{"cas must see the current value", []KVOperation{put(0, "a", "1", 1, 2),
			{Client: 1, Input: KVInput{Kind: KVCompareAndSwap, Key: "a", Expected: "1", Value: "2"}, Output: KVOutput{OK: false}, Call: 3, Return: 4}}, "Illegal"},
		{"delete reports what it deleted", []KVOperation{put(0, "a", "1", 1, 2),
			{Client: 1, Input: KVInput{Kind: KVDelete, Key: "a"}, Output: KVOutput{Deleted: 1}, Call: 3, Return: 4},
			get(0, "a", "", false, 5, 6)}, "Ok"},
		{"delete of a missing key deletes nothing", []KVOperation{
			{Client: 1, Input: KVInput{Kind: KVDelete, Key: "a"}, Output: KVOutput{Deleted: 1}, Call: 3, Return: 4}}, "Illegal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckLinearizable(tt.ops, 0); string(got.Result) != tt.want {
				t.Fatalf("got %s, want %s", got.Result, tt.want)
			}
		})
	}
}

func TestElectionSafety(t *testing.T) {
	c := NewElectionSafety()
	if v := c.ObserveLeader(1, 3, 0); v != nil {
		t.Fatal(v)
	}
	if v := c.ObserveLeader(1, 3, 1); v != nil {
		t.Fatalf("the same leader seen twice is fine: %v", v)
	}
	if v := c.ObserveLeader(2, 4, 1); v != nil {
		t.Fatal(v)
	}
	if v := c.ObserveLeader(2, 3, 2); v == nil {
		t.Fatal("two leaders in term 3 not reported")
	}
}

func entry(index, term uint64, data string) *consensus.Entry {
	return &consensus.Entry{Index: index, Term: term, Command: consensus.Command{Data: []byte(data)}}
}

func TestAgreement(t *testing.T) {
	c := NewAgreement()
	if v := c.Applied(1, 0, entry(1, 1, "x"), 1, 0); v != nil {
		t.Fatal(v)
	}
	if v := c.Applied(2, 0, entry(1, 1, "x"), 1, 0); v != nil {
		t.Fatal(v)
	}
	if v := c.Applied(2, 1, entry(2, 1, "y"), 1, 0); v != nil {
		t.Fatal(v)
	}
	if v := c.Applied(3, 0, entry(1, 2, "z"), 2, 0); v == nil || v.Checker != "agreement" {
		t.Fatalf("different entry at index 1 not reported: %v", v)
	}
	if v := c.Applied(1, 1, entry(3, 1, "w"), 1, 0); v == nil || v.Checker != "apply-order" {
		t.Fatalf("gap not reported: %v", v)
	}
	log := map[uint64]consensus.Entry{1: *entry(1, 1, "x")}
	lookup := func(i uint64) (consensus.Entry, bool) { e, ok := log[i]; return e, ok }
	if v := c.CheckLeader(3, 2, 1, lookup, 0); v == nil || v.Checker != "leader-completeness" {
		t.Fatalf("leader of term 2 lacking index 2 (committed by term 1) not reported: %v", v)
	}
	log[2] = *entry(2, 1, "y")
	if v := c.CheckLeader(3, 2, 1, lookup, 0); v != nil {
		t.Fatal(v)
	}
	// A leader of an old term (elected late) need not hold later commits.
	if v := c.CheckLeader(4, 1, 1, func(uint64) (consensus.Entry, bool) { return consensus.Entry{}, false }, 0); v != nil {
		t.Fatalf("leader of term 1 judged against entries committed by term 1: %v", v)
	}
}

// TestKeyOrderResumesAtSnapshots: a node that resumes at a snapshot is
// checked from the snapshot's place in each key's order on; one that
// resumes at the wrong place, or executes another command there, is
// caught; two snapshots of one name must hold the same positions.
func TestKeyOrderResumesAtSnapshots(t *testing.T) {
	c := NewKeyOrder()
	cmd := func(index uint64, data string, keys ...string) *consensus.Entry {
		return &consensus.Entry{Index: index, Command: consensus.Command{Keys: keys, Data: []byte(data)}}
	}
	for i, e := range []*consensus.Entry{cmd(1, "a1", "a"), cmd(2, "b1", "b"), cmd(3, "a2", "a")} {
		if v := c.Applied(1, uint64(i), e, 0); v != nil {
			t.Fatal(v)
		}
	}
	if v := c.Snapshot(1, "s3", 0); v != nil {
		t.Fatal(v)
	}
	if v := c.Applied(1, 3, cmd(4, "a3", "a"), 0); v != nil {
		t.Fatal(v)
	}
	// Node 2 installs s3 and goes on with the same commands.
	if c.Resume(2, "unknown") {
		t.Fatal("resumed at a snapshot nobody took")
	}
	if !c.Resume(2, "s3") {
		t.Fatal("could not resume at s3")
	}
	if v := c.Applied(2, 3, cmd(4, "a3", "a"), 0); v != nil {
		t.Fatalf("the command after the snapshot: %v", v)
	}
	// Node 3 resumes at s3 but executes something else there.
	c.Resume(3, "s3")
	if v := c.Applied(3, 3, cmd(4, "a-other", "a"), 0); v == nil {
		t.Fatal("a different command at a key's position after a snapshot went unnoticed")
	}
	// Node 2 snapshots under the same name as node 1 at another place.
	if v := c.Snapshot(2, "s3", 0); v == nil {
		t.Fatal("two snapshots of one name with different positions went unnoticed")
	}
}

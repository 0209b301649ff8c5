package epaxos

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/synod-io/synod/consensus"
)

func sessionCmd(client, seq uint64, data string, keys ...string) consensus.Command {
	return consensus.Command{Session: consensus.Session{ClientID: client, Seq: seq}, Keys: keys, Data: []byte(data)}
}

// instanceData lists the data of an instance's commands, in order.
func instanceData(in Instance) []string {
	var out []string
	for _, c := range in.Commands() {
		out = append(out, string(c.Data))
	}
	return out
}

// TestBatchingWithinOneReady: the commands proposed before a Ready go into
// one instance, which conflicts on the union of their keys, travels whole
// in PreAccept, and executes as one entry per command, in proposal order,
// each with its own Session and Keys.
func TestBatchingWithinOneReady(t *testing.T) {
	r := newReplica(t, 1, 3, nil)
	cmds := []consensus.Command{
		sessionCmd(7, 1, "A", "a"),
		sessionCmd(8, 1, "B", "b"),
		sessionCmd(7, 2, "keyless"),
		sessionCmd(9, 4, "AC", "c", "a"),
	}
	for _, c := range cmds {
		if err := r.Propose(c); err != nil {
			t.Fatal(err)
		}
	}
	pre := takeMsgs(r, MsgPreAccept)
	if st := r.Status(); st.LastIndex != 1 || len(pre) != 2 {
		t.Fatalf("after one Ready: last instance %d, %d PreAccepts; want one instance sent to 2 replicas", st.LastIndex, len(pre))
	}
	id := InstanceID{1, 1}
	in, _ := r.Instance(id)
	if got := instanceData(in); !slices.Equal(got, []string{"A", "B", "keyless", "AC"}) || len(in.Batched) != 3 {
		t.Fatalf("instance holds %v (%d batched); want A B keyless AC", got, len(in.Batched))
	}
	if got := instanceData(Instance{ID: id, Status: StatusPreAccepted, Command: pre[0].Command, Batched: pre[0].Batched}); !slices.Equal(got, []string{"A", "B", "keyless", "AC"}) {
		t.Fatalf("PreAccept carries %v", got)
	}
	// A command of another replica on c, a key of the fourth command only,
	// depends on the batch.
	reply(t, r, 3, &Msg{Type: MsgPreAccept, Ballot: Ballot{Node: 3}, ID: InstanceID{3, 1}, Command: put("c", "other"), Seq: 1})
	if oks := takeMsgs(r, MsgPreAcceptOK); len(oks) != 1 || !slices.Equal(oks[0].Deps, []InstanceID{id}) {
		t.Fatalf("a command on c got %v; want a dependency on the batch %v", oks, id)
	}
	// Fast commit; one entry per command.
	reply(t, r, 2, &Msg{Type: MsgPreAcceptOK, Ballot: Ballot{Node: 1}, ID: id, Seq: 1})
	rd := r.Ready()
	r.Advance(rd)
	if len(rd.Committed) != len(cmds) {
		t.Fatalf("executed %d entries; want %d", len(rd.Committed), len(cmds))
	}
	for i, e := range rd.Committed {
		want := cmds[i]
		want.Keys = slices.Sorted(slices.Values(want.Keys))
		if e.Index != uint64(i+1) || e.Command.Session != want.Session || !slices.Equal(e.Command.Keys, want.Keys) || string(e.Command.Data) != string(want.Data) {
			t.Fatalf("entry %d is %+v; want index %d and command %+v", i, e, i+1, want)
		}
	}
	if st := r.Status(); st.Applied != uint64(len(cmds)) {
		t.Fatalf("applied %d", st.Applied)
	}
}

// TestBatchingBounds: a batch holds at most BatchCommandsMax commands and
// BatchBytesMax bytes; a Propose that finds the batch full starts it; a
// command larger than BatchBytesMax gets an instance to itself.
func TestBatchingBounds(t *testing.T) {
	sizes := func(r *Replica) [][]string {
		r.Advance(r.Ready())
		var out [][]string
		for i := uint64(1); i <= r.Status().LastIndex; i++ {
			in, _ := r.Instance(InstanceID{r.id, i})
			out = append(out, instanceData(in))
		}
		return out
	}
	r := newReplica(t, 1, 3, nil, func(c *Config) { c.BatchCommandsMax = 3 })
	for i := range 7 {
		r.Propose(put("k", fmt.Sprint(i)))
		if i == 3 && r.Status().LastIndex != 1 {
			t.Fatalf("the fourth proposal did not start the full batch")
		}
	}
	if got := fmt.Sprint(sizes(r)); got != "[[0 1 2] [3 4 5] [6]]" {
		t.Fatalf("by count: %s", got)
	}

	one := (&consensus.Entry{Command: put("k", "0")}).Size()
	r = newReplica(t, 1, 3, nil, func(c *Config) { c.BatchBytesMax = 2 * one })
	big := put("k", string(make([]byte, 3*one)))
	for _, c := range []consensus.Command{put("k", "0"), put("k", "1"), put("k", "2"), big, put("k", "3")} {
		r.Propose(c)
	}
	got := sizes(r)
	if len(got) != 4 || fmt.Sprint(got[0], got[1], got[3]) != "[0 1] [2] [3]" || len(got[2]) != 1 || len(got[2][0]) != 3*one {
		t.Fatalf("by bytes: %d instances %v", len(got), got)
	}
}

// TestBatchingWhileInflightFull: while InflightMax instances are
// uncommitted, proposals wait in one batch; Propose refuses once it is
// full; the batch starts at the first Ready after an instance commits.
func TestBatchingWhileInflightFull(t *testing.T) {
	r := newReplica(t, 1, 3, nil, func(c *Config) { c.InflightMax = 1; c.BatchCommandsMax = 3 })
	r.Propose(put("k", "A"))
	takeMsgs(r, MsgPreAccept)
	for _, d := range []string{"B", "C", "D"} {
		if err := r.Propose(put("k", d)); err != nil {
			t.Fatalf("proposing %s with the window full: %v", d, err)
		}
	}
	if err := r.Propose(put("k", "E")); !errors.Is(err, consensus.ErrProposalDropped) {
		t.Fatalf("proposing beyond a full batch with the window full: %v", err)
	}
	if pre := takeMsgs(r, MsgPreAccept); len(pre) != 0 || r.Status().LastIndex != 1 {
		t.Fatalf("an instance started with the window full")
	}
	reply(t, r, 2, &Msg{Type: MsgPreAcceptOK, Ballot: Ballot{Node: 1}, ID: InstanceID{1, 1}, Seq: 1})
	if pre := takeMsgs(r, MsgPreAccept); len(pre) != 2 || r.Status().LastIndex != 2 {
		t.Fatalf("the waiting batch did not start once the window opened")
	}
	if in, _ := r.Instance(InstanceID{1, 2}); !slices.Equal(instanceData(in), []string{"B", "C", "D"}) {
		t.Fatalf("second instance holds %v", instanceData(in))
	}
	if err := r.Propose(put("k", "E")); err != nil {
		t.Fatal(err)
	}
}

// TestClusterBatching: a lossy, reordering workload in which replicas
// propose bursts of commands between Readys (some without keys, some
// ConflictAll). Batches form, every replica
// executes every command once with its own Session, and conflicting
// commands in the same order.
func TestClusterBatching(t *testing.T) {
	for _, n := range []int{3, 5} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("N=%d/seed=%d", n, seed), func(t *testing.T) {
				c := newCluster(t, n, seed, func(cfg *Config) { cfg.BatchCommandsMax = 4 })
				c.loss, c.dup, c.conflictAll, c.burstMax = 10, 5, 5, 6
				c.run(1200, 6)
				c.check()
				batched := 0
				for _, it := range c.nodes[0].r.insts {
					if len(it.Batched) > 0 {
						batched++
					}
				}
				if batched == 0 {
					t.Fatal("no instance batched several commands")
				}
			})
		}
	}
}

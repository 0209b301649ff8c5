package raft

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/synod-io/synod/consensus"
)

// TestInteraction runs the transcripts in testdata/*.txt. Regenerate the
// expected output with
//
//	go test ./raft -run TestInteraction -rewrite
//
// and review the diff.
//
// Commands:
//
//	add-nodes N [prevote=true] [checkquorum=true] [election=10] [heartbeat=1]
//	          [entries-per-msg=N] [inflight=N] [bug=NAME]
//	          [snapshots=true] [snap-entries=N] [retain=N] [chunk=N]
//	                              snapshots=true gives each node a memory
//	                              snapshot store (thresholds default off)
//	campaign ID                   start an election now (pre-vote if enabled)
//	tick ID|all [N]               tick N times (default 1)
//	propose ID DATA [count=N]     propose DATA (N copies, numbered)
//	read-index ID CTX
//	process-ready ID...           handle one Ready per node and print it
//	deliver-msgs [from=ID] [to=ID] [drop=true]
//	                              deliver (or drop) queued messages
//	stabilize [ID...] [summary=true]
//	                              process-ready and deliver until quiet
//	partition ID...               cut the listed nodes off from the rest
//	heal                          remove every partition
//	crash ID / restart ID         restart rebuilds from persisted records
//	status [ID...] / raft-state / log ID
//	check                         committed entries agree on every node
//	compact ID [index=N]          the host snapshots its state machine at
//	                              its applied index (or N) and calls Compact
func TestInteraction(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		env := &interactionEnv{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			env.out.Reset()
			if err := env.handle(t, d); err != nil {
				fmt.Fprintf(&env.out, "error: %v\n", err)
			}
			if env.out.Len() == 0 {
				return "ok\n"
			}
			return env.out.String()
		})
	})
}

type interactionEnv struct {
	nodes []*inode
	queue []consensus.Message
	// group[i] of node i+1; nodes in different groups cannot talk.
	group []int
	out   strings.Builder
	// history is every entry ever committed, by index-1, across restarts.
	history    []consensus.Entry
	violations int
}

type inode struct {
	id      consensus.NodeID
	cfg     Config
	r       *Raft
	durable []consensus.Record
	up      bool
	applied []consensus.Entry
	store   *memSnapshotStore // nil without snapshots
}

// maxRand makes every election timeout 2E-1.
type maxRand struct{}

func (maxRand) IntN(n int) int { return n - 1 }

// transcriptLogger writes log lines into the transcript.
type transcriptLogger struct{ b *strings.Builder }

func (l transcriptLogger) Debugf(string, ...any) {}
func (l transcriptLogger) Infof(format string, args ...any) {
	fmt.Fprintf(l.b, "INFO "+format+"\n", args...)
}
func (l transcriptLogger) Warnf(format string, args ...any) {
	fmt.Fprintf(l.b, "WARN "+format+"\n", args...)
}

func (e *interactionEnv) node(s string) (*inode, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > len(e.nodes) {
		return nil, fmt.Errorf("no node %q", s)
	}
	return e.nodes[n-1], nil
}

func (e *interactionEnv) upNode(s string) (*inode, error) {
	nd, err := e.node(s)
	if err == nil && !nd.up {
		err = fmt.Errorf("node %d is down", nd.id)
	}
	return nd, err
}

func boolArg(t *testing.T, d *datadriven.TestData, key string, def bool) bool {
	v := def
	d.MaybeScanArgs(t, key, &v)
	return v
}

func intArg(t *testing.T, d *datadriven.TestData, key string, def int) int {
	v := def
	d.MaybeScanArgs(t, key, &v)
	return v
}

// positional returns the command's arguments that have no value.
func positional(d *datadriven.TestData) []string {
	var out []string
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 {
			out = append(out, a.Key)
		}
	}
	return out
}

func (e *interactionEnv) handle(t *testing.T, d *datadriven.TestData) error {
	args := positional(d)
	switch d.Cmd {
	case "add-nodes":
		if len(args) != 1 {
			return fmt.Errorf("usage: add-nodes N [options]")
		}
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		return e.addNodes(t, d, n)
	case "campaign":
		for _, a := range args {
			nd, err := e.upNode(a)
			if err != nil {
				return err
			}
			nd.r.hup()
		}
	case "tick":
		n := 1
		if len(args) == 2 {
			var err error
			if n, err = strconv.Atoi(args[1]); err != nil {
				return err
			}
		}
		if len(args) == 0 {
			return fmt.Errorf("usage: tick ID|all [N]")
		}
		for range n {
			for _, nd := range e.nodes {
				if nd.up && (args[0] == "all" || args[0] == nd.id.String()) {
					nd.r.Tick()
				}
			}
		}
	case "propose":
		if len(args) != 2 {
			return fmt.Errorf("usage: propose ID DATA [count=N]")
		}
		nd, err := e.upNode(args[0])
		if err != nil {
			return err
		}
		count := intArg(t, d, "count", 1)
		for i := range count {
			data := args[1]
			if count > 1 {
				data = fmt.Sprintf("%s%d", args[1], i+1)
			}
			if err := nd.r.Propose(consensus.Command{Data: []byte(data)}); err != nil {
				return err
			}
		}
	case "read-index":
		if len(args) != 2 {
			return fmt.Errorf("usage: read-index ID CTX")
		}
		nd, err := e.upNode(args[0])
		if err != nil {
			return err
		}
		return nd.r.ReadIndex([]byte(args[1]))
	case "process-ready":
		for _, a := range args {
			nd, err := e.upNode(a)
			if err != nil {
				return err
			}
			if !e.processReady(nd, true) {
				fmt.Fprintf(&e.out, "> %d: empty Ready\n", nd.id)
			}
		}
	case "deliver-msgs":
		e.deliver(intArg(t, d, "from", 0), intArg(t, d, "to", 0), boolArg(t, d, "drop", false), true)
	case "stabilize":
		var only []consensus.NodeID
		for _, a := range args {
			nd, err := e.node(a)
			if err != nil {
				return err
			}
			only = append(only, nd.id)
		}
		e.stabilize(only, boolArg(t, d, "summary", false))
	case "partition":
		for i := range e.group {
			e.group[i] = 0
		}
		for _, a := range args {
			nd, err := e.node(a)
			if err != nil {
				return err
			}
			e.group[nd.id-1] = 1
		}
	case "heal":
		for i := range e.group {
			e.group[i] = 0
		}
	case "crash":
		for _, a := range args {
			nd, err := e.node(a)
			if err != nil {
				return err
			}
			nd.up = false
			nd.r = nil
			if nd.store != nil {
				nd.store.crash()
			}
		}
	case "restart":
		for _, a := range args {
			nd, err := e.node(a)
			if err != nil {
				return err
			}
			r, err := New(nd.cfg, slices.Clone(nd.durable))
			if err != nil {
				return err
			}
			applied, err := restartState(nd.durable, nd.store)
			if err != nil {
				return err
			}
			if len(applied) > 0 {
				fmt.Fprintf(&e.out, "%d: restored snapshot at %d\n", nd.id, len(applied))
			}
			nd.r, nd.up, nd.applied = r, true, applied
			e.printStatus(nd)
		}
	case "status":
		for _, nd := range e.selected(args) {
			e.printStatus(nd)
		}
	case "raft-state":
		for _, nd := range e.nodes {
			if !nd.up {
				fmt.Fprintf(&e.out, "%d: down\n", nd.id)
				continue
			}
			st := nd.r.Status()
			fmt.Fprintf(&e.out, "%d: %s term=%d leader=%d commit=%d last=%d\n", nd.id, st.Role, st.Term, st.Leader, st.Commit, st.LastIndex)
		}
	case "log":
		for _, nd := range e.selected(args) {
			if !nd.up {
				return fmt.Errorf("node %d is down", nd.id)
			}
			st := nd.r.Status()
			fmt.Fprintf(&e.out, "%d: commit=%d\n", nd.id, st.Commit)
			if off := nd.r.log.offset; off > 0 {
				fmt.Fprintf(&e.out, "  (compacted through %d/%d; snapshot %d/%d)\n", off, nd.r.log.entries[0].Term, nd.r.snap.Index, nd.r.snap.Term)
			}
			for i := nd.r.log.offset + 1; i <= st.LastIndex; i++ {
				en, _ := nd.r.Entry(i)
				fmt.Fprintf(&e.out, "  %s\n", FormatEntry(en))
			}
		}
	case "check":
		e.check()
	case "compact":
		if len(args) != 1 {
			return fmt.Errorf("usage: compact ID [index=N]")
		}
		nd, err := e.upNode(args[0])
		if err != nil {
			return err
		}
		if nd.store == nil {
			return fmt.Errorf("node %d has no snapshot store", nd.id)
		}
		index := intArg(t, d, "index", len(nd.applied))
		if index < 1 || index > len(nd.applied) {
			return fmt.Errorf("node %d has applied %d entries; cannot snapshot at %d", nd.id, len(nd.applied), index)
		}
		meta, err := takeSnapshot(nd.r, nd.store, nd.applied[:index])
		if err != nil {
			return err
		}
		fmt.Fprintf(&e.out, "%d: snapshot %d/%d (%d bytes); log compacted through %d\n", nd.id, meta.Index, meta.Term, len(encodeApplied(nd.applied[:index])), nd.r.log.offset)
	default:
		t.Fatalf("unknown command %q", d.Cmd)
	}
	return nil
}

func (e *interactionEnv) selected(args []string) []*inode {
	if len(args) == 0 {
		return e.nodes
	}
	var out []*inode
	for _, a := range args {
		if nd, err := e.node(a); err == nil {
			out = append(out, nd)
		}
	}
	return out
}

func (e *interactionEnv) addNodes(t *testing.T, d *datadriven.TestData, n int) error {
	if len(e.nodes) > 0 {
		return fmt.Errorf("nodes already added")
	}
	peers := ids(n)
	var bug string
	d.MaybeScanArgs(t, "bug", &bug)
	for _, id := range peers {
		// Maximal jitter: every timeout is 2E-1 ticks, so after E ticks
		// a follower's leader lease has expired but it has not campaigned.
		cfg := DefaultConfig(id, peers, maxRand{})
		cfg.PreVote = boolArg(t, d, "prevote", true)
		cfg.CheckQuorum = boolArg(t, d, "checkquorum", true)
		cfg.ElectionTimeoutTicks = intArg(t, d, "election", 10)
		cfg.HeartbeatTicks = intArg(t, d, "heartbeat", 1)
		cfg.EntriesPerMsgMax = intArg(t, d, "entries-per-msg", cfg.EntriesPerMsgMax)
		cfg.InflightMsgsMax = intArg(t, d, "inflight", cfg.InflightMsgsMax)
		cfg.Logger = transcriptLogger{&e.out}
		if bug != "" {
			SetBug(&cfg, bug)
		}
		var store *memSnapshotStore
		if boolArg(t, d, "snapshots", false) {
			store = &memSnapshotStore{}
			cfg.Snapshots = store
			cfg.SnapshotEntries = intArg(t, d, "snap-entries", 0)
			cfg.SnapshotBytes = 0
			cfg.CompactionRetainEntries = intArg(t, d, "retain", 0)
			cfg.SnapshotChunkBytes = intArg(t, d, "chunk", cfg.SnapshotChunkBytes)
		}
		r, err := New(cfg, nil)
		if err != nil {
			return err
		}
		e.nodes = append(e.nodes, &inode{id: id, cfg: cfg, r: r, up: true, store: store})
		e.group = append(e.group, 0)
	}
	fmt.Fprintf(&e.out, "added %d nodes (prevote=%v checkquorum=%v election=%d heartbeat=%d)\n", n,
		e.nodes[0].cfg.PreVote, e.nodes[0].cfg.CheckQuorum, e.nodes[0].cfg.ElectionTimeoutTicks, e.nodes[0].cfg.HeartbeatTicks)
	return nil
}

func (e *interactionEnv) printStatus(nd *inode) {
	if !nd.up {
		fmt.Fprintf(&e.out, "%d: down\n", nd.id)
		return
	}
	st := nd.r.Status()
	fmt.Fprintf(&e.out, "%d: %s term=%d leader=%d commit=%d applied=%d last=%d\n", nd.id, st.Role, st.Term, st.Leader, st.Commit, st.Applied, st.LastIndex)
	if st.Progress != nil {
		var peers []consensus.NodeID
		for id := range st.Progress {
			peers = append(peers, id)
		}
		sort.Slice(peers, func(i, j int) bool { return peers[i] < peers[j] })
		for _, id := range peers {
			p := st.Progress[id]
			fmt.Fprintf(&e.out, "  %d: match=%d next=%d %s\n", id, p.Match, p.Next, p.State)
		}
	}
}

// processReady handles one Ready of nd, printing it if verbose. It reports
// whether the Ready had work.
func (e *interactionEnv) processReady(nd *inode, verbose bool) bool {
	rd := nd.r.Ready()
	if rd.Empty() {
		return false
	}
	if verbose {
		fmt.Fprintf(&e.out, "> %d handling Ready\n", nd.id)
		if len(rd.Persist) > 0 {
			fmt.Fprintf(&e.out, "  Persist:\n")
			for _, r := range rd.Persist {
				fmt.Fprintf(&e.out, "    %v\n", r)
			}
		}
		if len(rd.Messages) > 0 {
			fmt.Fprintf(&e.out, "  Messages:\n")
			for _, m := range rd.Messages {
				fmt.Fprintf(&e.out, "    %v\n", m)
			}
		}
		if len(rd.Committed) > 0 {
			fmt.Fprintf(&e.out, "  Committed:\n")
			for i, en := range rd.Committed {
				if n := len(rd.Committed); n > 10 && i == 4 {
					fmt.Fprintf(&e.out, "    … %d more …\n", n-8)
				}
				if n := len(rd.Committed); n > 10 && i >= 4 && i < n-4 {
					continue
				}
				fmt.Fprintf(&e.out, "    %s\n", FormatEntry(en))
			}
		}
		if len(rd.Reads) > 0 {
			fmt.Fprintf(&e.out, "  Reads:\n")
			for _, rs := range rd.Reads {
				fmt.Fprintf(&e.out, "    index=%d ctx=%q\n", rs.Index, rs.Context)
			}
		}
		if rd.Restore != nil {
			fmt.Fprintf(&e.out, "  Restore: snapshot %d/%d voters=%v\n", rd.Restore.Index, rd.Restore.Term, rd.Restore.Voters)
		}
		if rd.SnapshotWanted {
			fmt.Fprintf(&e.out, "  SnapshotWanted\n")
		}
	}
	if rd.Restore != nil {
		if err := nd.store.install(*rd.Restore); err != nil {
			panic(err)
		}
	}
	nd.durable = persistRecords(nd.durable, rd.Persist, nd.store)
	e.queue = append(e.queue, rd.Messages...)
	if rd.Restore != nil {
		applied, err := snapshotEntries(nd.store, rd.Restore.Index)
		if err != nil {
			panic(err)
		}
		for _, en := range applied {
			if i := en.Index - 1; i >= uint64(len(e.history)) || !sameEntry(e.history[i], en) {
				e.violations++
				fmt.Fprintf(&e.out, "VIOLATION: %d restored %s at index %d, which was not committed there\n", nd.id, FormatEntry(en), en.Index)
			}
		}
		nd.applied = applied
	}
	nd.applied = append(nd.applied, rd.Committed...)
	for _, en := range rd.Committed {
		switch i := en.Index - 1; {
		case i < uint64(len(e.history)):
			if !sameEntry(e.history[i], en) {
				e.violations++
				fmt.Fprintf(&e.out, "VIOLATION: %d committed %s at index %d, where %s was committed before\n",
					nd.id, FormatEntry(en), en.Index, FormatEntry(e.history[i]))
			}
		case i == uint64(len(e.history)):
			e.history = append(e.history, en)
		}
	}
	nd.r.Advance(rd)
	return true
}

// deliver delivers (or drops) the queued messages matching from/to (0 =
// any), in order. Messages across a partition or to a down node are lost.
func (e *interactionEnv) deliver(from, to int, drop, verbose bool) (delivered []consensus.Message) {
	var keep []consensus.Message
	batch := e.queue
	e.queue = nil
	for _, m := range batch {
		if (from != 0 && m.From != consensus.NodeID(from)) || (to != 0 && m.To != consensus.NodeID(to)) {
			keep = append(keep, m)
			continue
		}
		dst := e.nodes[m.To-1]
		switch {
		case drop:
			if verbose {
				fmt.Fprintf(&e.out, "dropped: %v\n", m)
			}
		case !dst.up || e.group[m.From-1] != e.group[m.To-1]:
			if verbose {
				fmt.Fprintf(&e.out, "lost: %v\n", m)
			}
		default:
			if verbose {
				fmt.Fprintf(&e.out, "%v\n", m)
			}
			if err := dst.r.Step(m); err != nil {
				fmt.Fprintf(&e.out, "error: %v\n", err)
			}
			delivered = append(delivered, m)
		}
	}
	e.queue = append(keep, e.queue...)
	return delivered
}

func (e *interactionEnv) stabilize(only []consensus.NodeID, summary bool) {
	in := func(id consensus.NodeID) bool { return len(only) == 0 || slices.Contains(only, id) }
	rounds := 0
	counts := map[string]int{}
	chunkBytes := map[string]int{}
	for {
		moved := false
		for _, nd := range e.nodes {
			if nd.up && in(nd.id) && e.processReady(nd, !summary) {
				moved = true
			}
		}
		var got []consensus.Message
		for _, nd := range e.nodes {
			if in(nd.id) {
				got = append(got, e.deliver(0, int(nd.id), false, !summary)...)
			}
		}
		for _, m := range got {
			p := m.Payload.(*Msg)
			k := p.Type.String()
			if p.Reject {
				k += "(rejected)"
			}
			counts[k]++
			if p.Type == MsgSnap {
				chunkBytes[k] += len(p.Data)
			}
		}
		if len(got) > 0 {
			moved = true
			rounds++
		}
		if !moved {
			break
		}
	}
	if summary {
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&e.out, "%d delivery rounds;", rounds)
		for _, k := range keys {
			fmt.Fprintf(&e.out, " %s=%d", k, counts[k])
			if b, ok := chunkBytes[k]; ok {
				fmt.Fprintf(&e.out, "(%d bytes)", b)
			}
		}
		fmt.Fprintln(&e.out)
	}
}

// check reports whether every entry committed on any node, at any time
// (including before a crash), agreed with the committed history. Each
// disagreement was printed as a VIOLATION when it happened.
func (e *interactionEnv) check() {
	if e.violations > 0 {
		fmt.Fprintf(&e.out, "VIOLATION: %d committed entries disagreed with the committed history\n", e.violations)
		return
	}
	fmt.Fprintf(&e.out, "ok: %d committed entries, all nodes agree\n", len(e.history))
}

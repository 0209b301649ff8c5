package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-io/synod/sim/check"
)

var (
	faultDuration  = flag.Duration("e2e.duration", 20*time.Second, "fault test: how long the workload runs")
	faultClients   = flag.Int("e2e.clients", 24, "fault test: concurrent clients, each with its own etcd client")
	faultKeys      = flag.Int("e2e.keys", 16, "fault test: distinct keys")
	faultKillEvery = flag.Duration("e2e.kill-every", 3*time.Second, "fault test: mean time between kill -9s")
	faultSeed      = flag.Uint64("e2e.seed", 0, "fault test: seed of the workload and kill schedule (0: from the clock)")
	faultOpTimeout = flag.Duration("e2e.op-timeout", 2*time.Second, "fault test: timeout of one client operation")
	faultCheckMax  = flag.Duration("e2e.check-timeout", 60*time.Second, "fault test: bound on the linearizability check")
	faultProtocol  = flag.String("e2e.protocol", "raft", "fault test: replication protocol the members run (synod serve --protocol)")
)

// Bounds of the fault test.
const (
	faultMembers = 3
	// faultKillsMax bounds the number of kills whatever the duration.
	faultKillsMax = 1000
	// faultDowntimeMin/Max: how long a killed member stays down.
	faultDowntimeMin = 200 * time.Millisecond
	faultDowntimeMax = 1500 * time.Millisecond
	// faultRecoverMax: after each kill, some write must succeed within this.
	faultRecoverMax = 5 * time.Second
	// faultFinalAttempts bounds the retries of each final read.
	faultFinalAttempts = 20
	// faultShortDuration is the workload of the short variants that run
	// protocols other than -e2e.protocol by default.
	faultShortDuration = 10 * time.Second
)

// faultRun is the shared state of one fault test.
type faultRun struct {
	start   time.Time
	history [][]check.KVOperation // per client
	// writeOK holds the call and return times (ns since start) of
	// acknowledged writes, for the recovery check.
	writeMu sync.Mutex
	writeOK [][2]int64
	ok      atomic.Int64
	failed  atomic.Int64
}

func (r *faultRun) now() int64 { return time.Since(r.start).Nanoseconds() }

type killEvent struct {
	at       time.Duration
	victim   string
	leader   bool
	downtime time.Duration
}

// TestFaultKillRestart runs three real members under a concurrent
// workload of gets, puts and compare-and-swaps from many etcd clients,
// kill -9s a random member (sometimes the leader) every few seconds and
// restarts it from its data directory, then checks that the history is
// linearizable, that no acknowledged write was lost (final linearizable
// reads are part of the checked history, and are also checked directly),
// and that every member converged to the same values. The members run
// -e2e.protocol (raft by default) for -e2e.duration.
func TestFaultKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for ~30s; skipped with -short")
	}
	runFault(t, *faultProtocol, *faultDuration)
}

// TestFaultKillRestartMultiPaxos is a short run of the fault test with
// Multi-Paxos members, so that the default "go test ./e2e" covers it too
// (-e2e.protocol multipaxos runs the full-length one).
func TestFaultKillRestartMultiPaxos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for ~15s; skipped with -short")
	}
	if *faultProtocol == "multipaxos" {
		t.Skip("-e2e.protocol multipaxos: TestFaultKillRestart runs it")
	}
	runFault(t, "multipaxos", min(*faultDuration, faultShortDuration))
}

// TestFaultKillRestartEPaxos is a short run of the fault test with
// EPaxos members (-e2e.protocol epaxos runs the full-length one). EPaxos
// has no leader, so every kill is of a peer; instances the killed member
// was driving are recovered by the others, and a restarted member
// rebuilds its state from its whole log.
func TestFaultKillRestartEPaxos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for ~15s; skipped with -short")
	}
	if *faultProtocol == "epaxos" {
		t.Skip("-e2e.protocol epaxos: TestFaultKillRestart runs it")
	}
	runFault(t, "epaxos", min(*faultDuration, faultShortDuration))
}

// runFault is the fault test, with members running protocol, for a
// workload of duration.
func runFault(t *testing.T, protocol string, duration time.Duration) {
	t.Logf("protocol %s, workload %v", protocol, duration)
	seed := *faultSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay the kill schedule and workload choices with -e2e.seed %d)", seed, seed)
	if *faultClients < 1 || *faultKeys < 1 || duration <= 0 || *faultKillEvery <= 0 {
		t.Fatal("e2e.clients, e2e.keys, e2e.duration and e2e.kill-every must be positive")
	}
	c := newCluster(t, faultMembers, "--protocol", protocol)
	eps := c.endpoints()

	r := &faultRun{start: time.Now(), history: make([][]check.KVOperation, *faultClients)}
	workCtx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	var workers sync.WaitGroup
	for i := range *faultClients {
		cli, err := newClient(eps...)
		if err != nil {
			t.Fatal(err)
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			defer cli.Close()
			r.client(workCtx, i, cli, rand.New(rand.NewPCG(seed, uint64(i)+1)))
		}()
	}

	// The fault schedule runs in this goroutine until the workload's time
	// is up; every wait in it is bounded.
	rng := rand.New(rand.NewPCG(seed, 0))
	end := r.start.Add(duration)
	var kills []killEvent
	var faultErr error
	for len(kills) < faultKillsMax {
		wait := time.Duration(float64(*faultKillEvery) * (0.5 + rng.Float64()))
		if time.Now().Add(wait + faultDowntimeMax).After(end) {
			break
		}
		time.Sleep(wait)
		if faultErr = c.crashed(); faultErr != nil {
			break
		}
		var victim *member
		leader, term := c.leader(context.Background())
		if rng.IntN(2) == 0 && leader != nil {
			victim = leader
		} else {
			victim = c.members[rng.IntN(len(c.members))]
		}
		ev := killEvent{at: time.Since(r.start), victim: victim.name, leader: victim == leader,
			downtime: faultDowntimeMin + time.Duration(rng.Int64N(int64(faultDowntimeMax-faultDowntimeMin)))}
		victim.kill()
		kills = append(kills, ev)
		t.Logf("t=%5.1fs kill -9 %s (leader: %v, term %d), down for %v", ev.at.Seconds(), victim.name, ev.leader, term, ev.downtime.Round(time.Millisecond))
		time.Sleep(ev.downtime)
		if faultErr = c.start(victim); faultErr != nil {
			break
		}
		// Wait (bounded) for the member to answer before the next kill, so
		// that a majority is up most of the time.
		deadline := time.Now().Add(waitMax)
		for {
			if _, err := victim.statusOf(context.Background()); err == nil {
				break
			}
			if time.Now().After(deadline) {
				faultErr = fmt.Errorf("%s did not answer within %v after its restart; its log:\n%s", victim.name, waitMax, tail(victim.logPath, 25))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if faultErr != nil {
			break
		}
		t.Logf("t=%5.1fs %s restarted and answering", time.Since(r.start).Seconds(), victim.name)
	}
	if faultErr == nil {
		time.Sleep(time.Until(end))
	}
	stopWork()
	workers.Wait()
	workEnd := time.Since(r.start)
	if faultErr != nil {
		t.Fatal(faultErr)
	}
	if err := c.crashed(); err != nil {
		t.Fatal(err)
	}

	// Final reads, through a fresh client, after every member is back.
	if err := c.waitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	final := r.finalReads(t, eps)

	// Liveness: after each kill, a write issued after it succeeded within
	// faultRecoverMax.
	for _, k := range kills {
		first := int64(-1)
		for _, w := range r.writeOK {
			if w[0] > k.at.Nanoseconds() && (first < 0 || w[1] < first) {
				first = w[1]
			}
		}
		switch {
		case first >= 0 && time.Duration(first)-k.at <= faultRecoverMax:
			t.Logf("kill of %s (leader: %v) at t=%.1fs: first write issued after it acknowledged %v after the kill",
				k.victim, k.leader, k.at.Seconds(), (time.Duration(first) - k.at).Round(time.Millisecond))
		case k.at+faultRecoverMax <= workEnd:
			t.Errorf("no write issued after the kill of %s at t=%.1fs succeeded within %v", k.victim, k.at.Seconds(), faultRecoverMax)
		}
	}

	var hist []check.KVOperation
	for _, h := range r.history {
		hist = append(hist, h...)
	}
	summarize(t, hist, workEnd, len(kills))
	if r.ok.Load() == 0 {
		t.Fatal("no operation succeeded")
	}

	// No acknowledged write lost, checked directly: each key's final value
	// must come from a write that no acknowledged write on that key
	// followed in real time.
	if lost := lostWrites(hist, final); len(lost) > 0 {
		for _, l := range lost {
			t.Error(l)
		}
	} else {
		t.Logf("no acknowledged write lost: the final value of each of %d keys is a write that no acknowledged write followed", len(final))
	}

	// Replicas converged: every member, read locally (serializable) once it
	// has applied the leader's commit index, holds the final values.
	c.checkConverged(t, final)

	// Linearizability of the whole history, final reads included.
	for _, f := range final {
		hist = append(hist, f)
	}
	began := time.Now()
	res := check.CheckLinearizable(hist, *faultCheckMax)
	took := time.Since(began).Round(time.Millisecond)
	switch res.Result {
	case porcupine.Ok:
		t.Logf("linearizable: %d operations checked in %v", res.Operations, took)
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("synod-e2e-fault-%d.html", seed))
		if err := res.WriteVisualization(path, *faultCheckMax); err != nil {
			path = "(visualization failed: " + err.Error() + ")"
		}
		t.Errorf("history of %d operations is NOT linearizable (seed %d); visualization: %s", res.Operations, seed, path)
	default:
		t.Errorf("linearizability check inconclusive after %v (%d operations); rerun with a larger -e2e.check-timeout or fewer -e2e.clients", took, res.Operations)
	}
}

// client runs one client's closed loop until ctx ends, recording each
// operation. An operation's own timeout is independent of ctx, so the
// last one completes normally.
func (r *faultRun) client(ctx context.Context, idx int, cli *clientv3.Client, rng *rand.Rand) {
	lastSeen := map[string]string{}
	for seq := 1; ctx.Err() == nil; seq++ {
		key := fmt.Sprintf("k%02d", rng.IntN(*faultKeys))
		in := check.KVInput{Key: key}
		switch p := rng.IntN(100); {
		case p < 40:
			in.Kind = check.KVGet
		case p < 75:
			in.Kind = check.KVPut
			in.Value = fmt.Sprintf("c%d.%d", idx, seq)
		default:
			in.Kind = check.KVCompareAndSwap
			in.Expected = lastSeen[key]
			in.Value = fmt.Sprintf("c%d.%d", idx, seq)
		}
		octx, cancel := context.WithTimeout(context.Background(), *faultOpTimeout)
		call := r.now()
		out, err := doOp(octx, cli, in)
		ret := r.now()
		cancel()
		if err != nil {
			r.failed.Add(1)
			if in.Kind == check.KVGet {
				// A failed read constrains nothing.
				sleepCtx(ctx, 20*time.Millisecond)
				continue
			}
			// A failed or timed-out write may or may not have taken effect.
			out = check.KVOutput{Unknown: true}
		} else {
			r.ok.Add(1)
			switch {
			case in.Kind == check.KVGet && out.Exists:
				lastSeen[key] = out.Value
			case in.Kind == check.KVPut, in.Kind == check.KVCompareAndSwap && out.OK:
				lastSeen[key] = in.Value
			}
			if in.Kind != check.KVGet {
				r.writeMu.Lock()
				r.writeOK = append(r.writeOK, [2]int64{call, ret})
				r.writeMu.Unlock()
			}
		}
		r.history[idx] = append(r.history[idx], check.KVOperation{
			Client: idx, Input: in, Output: out, Call: call, Return: ret})
		if err != nil {
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}
}

// doOp performs one operation through etcd's client.
func doOp(ctx context.Context, cli *clientv3.Client, in check.KVInput) (check.KVOutput, error) {
	switch in.Kind {
	case check.KVGet:
		resp, err := cli.Get(ctx, in.Key)
		if err != nil {
			return check.KVOutput{}, err
		}
		if len(resp.Kvs) == 0 {
			return check.KVOutput{}, nil
		}
		return check.KVOutput{Exists: true, Value: string(resp.Kvs[0].Value)}, nil
	case check.KVPut:
		_, err := cli.Put(ctx, in.Key, in.Value)
		return check.KVOutput{}, err
	case check.KVCompareAndSwap:
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(in.Key), "=", in.Expected)).
			Then(clientv3.OpPut(in.Key, in.Value)).
			Commit()
		if err != nil {
			return check.KVOutput{}, err
		}
		return check.KVOutput{OK: resp.Succeeded}, nil
	}
	return check.KVOutput{}, fmt.Errorf("unknown operation %v", in.Kind)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// finalReads reads every key once, linearizably, retrying failures
// (bounded), and returns the reads as history operations of an extra
// client.
func (r *faultRun) finalReads(t *testing.T, eps []string) map[string]check.KVOperation {
	t.Helper()
	cli, err := newClient(eps...)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	final := map[string]check.KVOperation{}
	for k := range *faultKeys {
		key := fmt.Sprintf("k%02d", k)
		var lastErr error
		for range faultFinalAttempts {
			in := check.KVInput{Kind: check.KVGet, Key: key}
			ctx, cancel := context.WithTimeout(context.Background(), *faultOpTimeout)
			call := r.now()
			out, err := doOp(ctx, cli, in)
			ret := r.now()
			cancel()
			if err == nil {
				final[key] = check.KVOperation{Client: len(r.history), Input: in, Output: out, Call: call, Return: ret}
				break
			}
			lastErr = err
			time.Sleep(100 * time.Millisecond)
		}
		if _, ok := final[key]; !ok {
			t.Fatalf("final read of %s failed %d times; last error: %v", key, faultFinalAttempts, lastErr)
		}
	}
	return final
}

// lostWrites checks that each key's final value was written by an
// operation that may be the last write to the key: one that no
// acknowledged write to the same key followed in real time (values are
// unique per write); and that a key with acknowledged writes exists. It
// returns a description of each key that breaks this.
func lostWrites(hist []check.KVOperation, final map[string]check.KVOperation) []string {
	byValue := map[string]check.KVOperation{}
	lastAckCall := map[string]int64{} // latest call of an acknowledged write, per key
	acked := map[string]int{}
	for _, op := range hist {
		write := op.Input.Kind == check.KVPut || op.Input.Kind == check.KVCompareAndSwap && (op.Output.OK || op.Output.Unknown)
		if !write {
			continue
		}
		byValue[op.Input.Key+"\x00"+op.Input.Value] = op
		if !op.Output.Unknown {
			acked[op.Input.Key]++
			lastAckCall[op.Input.Key] = max(lastAckCall[op.Input.Key], op.Call)
		}
	}
	var out []string
	keys := make([]string, 0, len(final))
	for k := range final {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		f := final[key]
		if !f.Output.Exists {
			if acked[key] > 0 {
				out = append(out, fmt.Sprintf("key %s: %d acknowledged writes, but the final read found no value", key, acked[key]))
			}
			continue
		}
		w, ok := byValue[key+"\x00"+f.Output.Value]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("key %s: final value %q was never written", key, f.Output.Value))
		case !w.Output.Unknown && w.Return < lastAckCall[key]:
			out = append(out, fmt.Sprintf("key %s: final value %q comes from a write that returned at %v, before an acknowledged write to the key started at %v: that write was lost",
				key, f.Output.Value, time.Duration(w.Return), time.Duration(lastAckCall[key])))
		}
	}
	return out
}

// TestLostWritesCatches shows the lost-write check has teeth, on
// hand-made histories (no processes; runs under -short too).
func TestLostWritesCatches(t *testing.T) {
	put := func(key, val string, call, ret int64, unknown bool) check.KVOperation {
		return check.KVOperation{Input: check.KVInput{Kind: check.KVPut, Key: key, Value: val},
			Output: check.KVOutput{Unknown: unknown}, Call: call, Return: ret}
	}
	read := func(key, val string, exists bool) map[string]check.KVOperation {
		return map[string]check.KVOperation{key: {Input: check.KVInput{Kind: check.KVGet, Key: key},
			Output: check.KVOutput{Exists: exists, Value: val}, Call: 100, Return: 101}}
	}
	hist := []check.KVOperation{put("k", "a", 1, 2, false), put("k", "b", 3, 4, false), put("k", "c", 5, 50, true)}
	for _, tc := range []struct {
		name  string
		final map[string]check.KVOperation
		bad   bool
	}{
		{"last acknowledged", read("k", "b", true), false},
		{"unknown write took effect", read("k", "c", true), false},
		{"acknowledged write lost", read("k", "a", true), true},
		{"key vanished", read("k", "", false), true},
		{"value never written", read("k", "zz", true), true},
	} {
		if got := lostWrites(hist, tc.final); (len(got) > 0) != tc.bad {
			t.Errorf("%s: lostWrites = %q, want a report: %v", tc.name, got, tc.bad)
		}
	}
}

// checkConverged waits (bounded) until every member has applied the
// leader's commit index, then reads every key locally (serializable) on
// each member and compares with the final linearizable reads. Without a
// leader there is no shared index to wait for: each member's local reads
// must come to equal the final reads within waitMax.
func (c *cluster) checkConverged(t *testing.T, final map[string]check.KVOperation) {
	t.Helper()
	ctx := context.Background()
	if c.leaderless {
		c.checkConvergedLeaderless(t, final)
		return
	}
	leader, _ := c.leader(ctx)
	if leader == nil {
		t.Fatal("no leader for the convergence check")
	}
	lst, err := leader.statusOf(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target := lst.RaftIndex
	keys := make([]string, 0, len(final))
	for k := range final {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, m := range c.members {
		deadline := time.Now().Add(waitMax)
		for {
			st, err := m.statusOf(ctx)
			if err == nil && st.RaftAppliedIndex >= target {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not apply index %d within %v (last status %v, err %v)", m.name, target, waitMax, st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cli, err := newClient(m.clientURL)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range keys {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := cli.Get(ctx, key, clientv3.WithSerializable())
			cancel()
			if err != nil {
				t.Errorf("%s: serializable get %s: %v", m.name, key, err)
				continue
			}
			want := final[key].Output
			got := check.KVOutput{}
			if len(resp.Kvs) > 0 {
				got = check.KVOutput{Exists: true, Value: string(resp.Kvs[0].Value)}
			}
			if got != want {
				t.Errorf("%s: key %s is %+v locally, but the final linearizable read found %+v", m.name, key, got, want)
			}
		}
		cli.Close()
	}
	t.Logf("converged: all %d members hold the same %d keys at applied index >= %d", len(c.members), len(keys), target)
}

// checkConvergedLeaderless polls each member's local (serializable) reads
// of every key until they equal the final linearizable reads, for at most
// waitMax per member.
func (c *cluster) checkConvergedLeaderless(t *testing.T, final map[string]check.KVOperation) {
	t.Helper()
	keys := make([]string, 0, len(final))
	for k := range final {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, m := range c.members {
		cli, err := newClient(m.clientURL)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(waitMax)
		var diff string
		for {
			diff = ""
			for _, key := range keys {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := cli.Get(ctx, key, clientv3.WithSerializable())
				cancel()
				if err != nil {
					diff = fmt.Sprintf("serializable get %s: %v", key, err)
					break
				}
				got := check.KVOutput{}
				if len(resp.Kvs) > 0 {
					got = check.KVOutput{Exists: true, Value: string(resp.Kvs[0].Value)}
				}
				if want := final[key].Output; got != want {
					diff = fmt.Sprintf("key %s is %+v locally, but the final linearizable read found %+v", key, got, want)
					break
				}
			}
			if diff == "" || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		cli.Close()
		if diff != "" {
			t.Errorf("%s did not converge within %v: %s", m.name, waitMax, diff)
		}
	}
	t.Logf("converged: all %d members hold the same %d keys", len(c.members), len(keys))
}

// summarize logs counts per kind and outcome.
func summarize(t *testing.T, hist []check.KVOperation, elapsed time.Duration, kills int) {
	type counts struct{ ok, unknown, swapped int }
	by := map[check.KVOpKind]*counts{}
	ok := 0
	for _, op := range hist {
		k := by[op.Input.Kind]
		if k == nil {
			k = &counts{}
			by[op.Input.Kind] = k
		}
		if op.Output.Unknown {
			k.unknown++
			continue
		}
		k.ok++
		ok++
		if op.Input.Kind == check.KVCompareAndSwap && op.Output.OK {
			k.swapped++
		}
	}
	get := func(k check.KVOpKind) counts {
		if by[k] == nil {
			return counts{}
		}
		return *by[k]
	}
	g, p, cs := get(check.KVGet), get(check.KVPut), get(check.KVCompareAndSwap)
	t.Logf("%d kills in %v; %d ops acknowledged (%.0f/s): %d gets, %d puts, %d cas (%d swapped); %d writes with unknown outcome (%d puts, %d cas)",
		kills, elapsed.Round(time.Millisecond), ok, float64(ok)/elapsed.Seconds(), g.ok, p.ok, cs.ok, cs.swapped, p.unknown+cs.unknown, p.unknown, cs.unknown)
}

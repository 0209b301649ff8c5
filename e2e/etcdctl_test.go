package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synod-io/synod/server"
)

// etcdctl versions to try, in order: the release matching the etcd API
// synod serves (go.etcd.io/etcd/api/v3 v3.7.3), then the newest 3.6.x.
var etcdctlVersions = []string{"v3.7.3", "v3.6"}

// ctlTimeout bounds one etcdctl invocation.
const ctlTimeout = 20 * time.Second

var (
	etcdctlOnce sync.Once
	etcdctlPath string
	etcdctlSkip string
)

// etcdctlBinary returns etcdctl, built from the module proxy into
// <user cache>/synod-e2e/etcdctl-<version>/ (outside the repository; the
// repository's go.mod is not touched) on first use and reused after.
// SYNOD_E2E_ETCDCTL names a binary to use instead. If no version can be
// built (no network, no proxy), the test is skipped with the reason.
func etcdctlBinary(t *testing.T) string {
	t.Helper()
	etcdctlOnce.Do(func() {
		if p := os.Getenv("SYNOD_E2E_ETCDCTL"); p != "" {
			etcdctlPath = p
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			etcdctlSkip = "no user cache directory: " + err.Error()
			return
		}
		root := filepath.Join(cache, "synod-e2e")
		var reasons []string
		for _, v := range etcdctlVersions {
			p, err := buildEtcdctl(root, v)
			if err == nil {
				etcdctlPath = p
				return
			}
			reasons = append(reasons, fmt.Sprintf("%s: %v", v, err))
		}
		etcdctlSkip = "cannot build etcdctl from the module proxy:\n" + strings.Join(reasons, "\n")
	})
	if etcdctlSkip != "" {
		t.Skip(etcdctlSkip)
	}
	return etcdctlPath
}

// buildEtcdctl builds go.etcd.io/etcd/etcdctl/v3 at version (a version or
// a query such as v3.6) in a throw-away module under root, and installs it
// as root/etcdctl-<resolved version>/etcdctl. "go install pkg@version"
// cannot be used: etcdctl's go.mod has replace directives.
func buildEtcdctl(root, version string) (string, error) {
	if strings.Count(version, ".") == 2 {
		p := filepath.Join(root, "etcdctl-"+version, "etcdctl")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte("module synod-e2e-etcdctl\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	const mod = "go.etcd.io/etcd/etcdctl/v3"
	if _, err := run("get", mod+"@"+version); err != nil {
		return "", err
	}
	resolved, err := run("list", "-m", "-f", "{{.Version}}", mod)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "etcdctl-"+resolved)
	p := filepath.Join(dir, "etcdctl")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	tmp := filepath.Join(work, "etcdctl")
	if _, err := run("build", "-o", tmp, mod); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Rename is atomic, so concurrent test runs never see half a binary.
	if err := os.Rename(tmp, p); err != nil {
		return "", err
	}
	return p, nil
}

// ctl runs etcdctl against endpoints with stdin, bounded by ctlTimeout.
type ctl struct {
	t         *testing.T
	bin       string
	endpoints []string
}

type ctlResult struct {
	stdout, stderr string
	err            error
}

func (c ctl) run(stdin string, args ...string) ctlResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	full := append([]string{"--endpoints", strings.Join(c.endpoints, ","), "--dial-timeout", "5s", "--command-timeout", "10s"}, args...)
	cmd := exec.CommandContext(ctx, c.bin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return ctlResult{out.String(), errb.String(), err}
}

// ok runs etcdctl and fails the test unless it succeeds.
func (c ctl) ok(stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.err != nil {
		c.t.Fatalf("etcdctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// expect runs etcdctl and compares its standard output.
func (c ctl) expect(want string, args ...string) {
	c.t.Helper()
	if got := c.ok("", args...); got != want {
		c.t.Errorf("etcdctl %s:\n got %q\nwant %q", strings.Join(args, " "), got, want)
	}
}

// TestEtcdctl drives a three-member Raft cluster with etcd's own etcdctl:
// put, get (single keys, ranges, prefixes, limits, JSON), del, txn from
// standard input, watch, endpoint status, member list and endpoint health.
func TestEtcdctl(t *testing.T) { testEtcdctl(t, "raft") }

// TestEtcdctlEPaxos runs the same commands against an EPaxos cluster,
// where every member serves writes and linearizable reads itself, no
// member names a leader, and a txn compare on a revision is refused.
func TestEtcdctlEPaxos(t *testing.T) { testEtcdctl(t, "epaxos") }

func testEtcdctl(t *testing.T, protocol string) {
	if testing.Short() {
		t.Skip("builds etcdctl and starts real processes; skipped with -short")
	}
	bin := etcdctlBinary(t)
	c := newCluster(t, 3, "--protocol", protocol)
	all := ctl{t: t, bin: bin, endpoints: c.endpoints()}
	t.Logf("using %s: %s", bin, strings.ReplaceAll(strings.TrimSpace(all.ok("", "version")), "\n", "; "))

	t.Run("put-get", func(t *testing.T) {
		e := ctl{t: t, bin: bin, endpoints: all.endpoints}
		e.expect("OK\n", "put", "greeting", "hello")
		e.expect("greeting\nhello\n", "get", "greeting")
		e.expect("hello\n", "get", "greeting", "--print-value-only")
		e.expect("", "get", "no-such-key")
		e.expect("OK\n", "put", "greeting", "hello again")
		e.expect("greeting\nhello again\n", "get", "greeting")
		// Through each member alone: followers forward writes and
		// linearizable reads to the leader (under EPaxos every member
		// serves them); the next member reads it back.
		for i, m := range c.members {
			key := "via-" + m.name
			one := ctl{t: t, bin: bin, endpoints: []string{m.clientURL}}
			next := ctl{t: t, bin: bin, endpoints: []string{c.members[(i+1)%len(c.members)].clientURL}}
			one.expect("OK\n", "put", key, m.name)
			next.expect(key+"\n"+m.name+"\n", "get", key)
			next.expect(key+"\n"+m.name+"\n", "get", key, "--consistency", "l")
		}
	})

	t.Run("prefix-range", func(t *testing.T) {
		e := ctl{t: t, bin: bin, endpoints: all.endpoints}
		for _, kv := range [][2]string{{"dir/a", "1"}, {"dir/b", "2"}, {"dir/c", "3"}, {"dir0", "outside"}, {"dia", "outside"}} {
			e.expect("OK\n", "put", kv[0], kv[1])
		}
		e.expect("dir/a\n1\ndir/b\n2\ndir/c\n3\n", "get", "--prefix", "dir/")
		// etcdctl prints an empty value line after each key with --keys-only.
		e.expect("dir/a\n\ndir/b\n\ndir/c\n\n", "get", "--prefix", "dir/", "--keys-only")
		e.expect("dir/a\n1\ndir/b\n2\n", "get", "dir/a", "dir/c") // [dir/a, dir/c)
		e.expect("dir/c\n3\ndir/b\n2\ndir/a\n1\n", "get", "--prefix", "dir/", "--order", "DESCEND")
		var resp struct {
			Count int64 `json:"count"`
			More  bool  `json:"more"`
			Kvs   []struct {
				Key   []byte `json:"key"`
				Value []byte `json:"value"`
			} `json:"kvs"`
		}
		if err := json.Unmarshal([]byte(e.ok("", "get", "--prefix", "dir/", "--limit", "2", "-w", "json")), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Count != 3 || !resp.More || len(resp.Kvs) != 2 || string(resp.Kvs[0].Key) != "dir/a" || string(resp.Kvs[1].Value) != "2" {
			t.Errorf("get --prefix dir/ --limit 2 -w json: count %d more %v kvs %d (%+v); want count 3, more, 2 kvs", resp.Count, resp.More, len(resp.Kvs), resp.Kvs)
		}
		if out := e.ok("", "get", "--prefix", "dir/", "--count-only", "-w", "fields"); !strings.Contains(out, "\"Count\" : 3\n") {
			t.Errorf("get --prefix dir/ --count-only -w fields: no \"Count\" : 3 in\n%s", out)
		}
	})

	t.Run("del", func(t *testing.T) {
		e := ctl{t: t, bin: bin, endpoints: all.endpoints}
		e.expect("1\n", "del", "dir/a")
		e.expect("0\n", "del", "dir/a")
		e.expect("1\ndir/b\n2\n", "del", "dir/b", "--prev-kv")
		e.expect("1\n", "del", "--prefix", "dir/")
		e.expect("", "get", "--prefix", "dir/")
		e.expect("dir0\noutside\n", "get", "dir0")
	})

	t.Run("txn", func(t *testing.T) {
		e := ctl{t: t, bin: bin, endpoints: all.endpoints}
		e.expect("OK\n", "put", "tx", "old")
		// compares, blank line, success ops, blank line, failure ops, blank line.
		in := "value(\"tx\") = \"old\"\n\nput tx new\nget tx\n\nget tx\n\n"
		if got, want := e.ok(in, "txn"), "SUCCESS\n\nOK\n\ntx\nnew\n"; got != want {
			t.Errorf("txn (compare holds):\n got %q\nwant %q", got, want)
		}
		if got, want := e.ok(in, "txn"), "FAILURE\n\ntx\nnew\n"; got != want {
			t.Errorf("txn (compare fails):\n got %q\nwant %q", got, want)
		}
		in = "version(\"tx-absent\") = \"0\"\n\nput tx-absent created\n\n\n"
		if got, want := e.ok(in, "txn"), "SUCCESS\n\nOK\n"; got != want {
			t.Errorf("txn (create if absent):\n got %q\nwant %q", got, want)
		}
		e.expect("tx-absent\ncreated\n", "get", "tx-absent")
		in = "mod(\"tx\") > \"0\"\n\nput tx exists\n\n\n"
		if got, want := e.ok(in, "txn"), "SUCCESS\n\nOK\n"; got != want {
			t.Errorf("txn (mod revision > 0: the key exists):\n got %q\nwant %q", got, want)
		}
		in = "mod(\"tx\") = \"5\"\n\nput tx five\n\n\n"
		r := e.run(in, "txn")
		if c.leaderless {
			// Revisions are local to each member: such a compare could
			// take different branches on different members.
			if r.err == nil || !strings.Contains(r.stderr, "create or mod revision") {
				t.Errorf("txn with a revision compare under %s: %v, want it refused\nstdout:\n%s\nstderr:\n%s", protocol, r.err, r.stdout, r.stderr)
			}
		} else if r.err != nil || !strings.HasPrefix(r.stdout, "FAILURE") && !strings.HasPrefix(r.stdout, "SUCCESS") {
			t.Errorf("txn with a revision compare: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
		}
		e.expect("tx\nexists\n", "get", "tx")
	})

	t.Run("watch", func(t *testing.T) { testWatch(t, bin, all) })

	t.Run("compact", func(t *testing.T) {
		// Compaction is checked against the revision of the member that
		// serves it (under EPaxos, that member's own), and removes nothing.
		one := ctl{t: t, bin: bin, endpoints: []string{c.members[0].clientURL}}
		var resp struct {
			Header struct {
				Revision int64 `json:"revision"`
			} `json:"header"`
		}
		if out := one.ok("", "get", "greeting", "-w", "json"); json.Unmarshal([]byte(out), &resp) != nil || resp.Header.Revision < 2 {
			t.Fatalf("get -w json: no revision in %s", out)
		}
		rev := resp.Header.Revision
		one.expect(fmt.Sprintf("compacted revision %d\n", rev), "compact", fmt.Sprint(rev))
		if r := one.run("", "compact", fmt.Sprint(rev+1_000_000)); r.err == nil || !strings.Contains(r.stderr, "future revision") {
			t.Errorf("compact beyond the current revision: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
		}
		one.expect("greeting\nhello again\n", "get", "greeting")
	})

	t.Run("endpoint-status", func(t *testing.T) {
		e := ctl{t: t, bin: bin, endpoints: all.endpoints}
		var sts []struct {
			Endpoint string `json:"Endpoint"`
			Status   struct {
				Header struct {
					ClusterID uint64 `json:"cluster_id"`
					MemberID  uint64 `json:"member_id"`
					RaftTerm  uint64 `json:"raft_term"`
				} `json:"header"`
				Version   string `json:"version"`
				DBSize    int64  `json:"dbSize"`
				Leader    uint64 `json:"leader"`
				RaftIndex uint64 `json:"raftIndex"`
				RaftTerm  uint64 `json:"raftTerm"`
			} `json:"Status"`
		}
		out := e.ok("", "endpoint", "status", "-w", "json")
		if err := json.Unmarshal([]byte(out), &sts); err != nil {
			t.Fatalf("endpoint status -w json: %v\n%s", err, out)
		}
		if len(sts) != 3 {
			t.Fatalf("endpoint status: %d entries, want 3:\n%s", len(sts), out)
		}
		ids := map[uint64]bool{}
		var eps []string
		for _, s := range sts {
			st := s.Status
			eps = append(eps, s.Endpoint)
			ids[st.Header.MemberID] = true
			if st.Header.ClusterID == 0 || st.Header.ClusterID != sts[0].Status.Header.ClusterID {
				t.Errorf("%s: cluster ID %x, first member says %x", s.Endpoint, st.Header.ClusterID, sts[0].Status.Header.ClusterID)
			}
			if server.ProtocolOfVersion(st.Version) != protocol || st.RaftIndex == 0 || st.DBSize <= 0 {
				t.Errorf("%s: implausible status %+v", s.Endpoint, st)
			}
			switch {
			case c.leaderless && (st.Leader != 0 || st.RaftTerm != 0):
				t.Errorf("%s: leader %x, term %d under %s: want no leader, term 0", s.Endpoint, st.Leader, st.RaftTerm, protocol)
			case !c.leaderless && (st.Leader == 0 || st.Leader != sts[0].Status.Leader || st.RaftTerm == 0):
				t.Errorf("%s: implausible leader or term in %+v", s.Endpoint, st)
			}
		}
		if len(ids) != 3 || !c.leaderless && !ids[sts[0].Status.Leader] {
			t.Errorf("endpoint status: member IDs %v, leader %x: want 3 distinct members, one of them the leader (if any)", ids, sts[0].Status.Leader)
		}
		slices.Sort(eps)
		want := slices.Sorted(slices.Values(c.endpoints()))
		if !slices.Equal(eps, want) {
			t.Errorf("endpoint status endpoints %v, want %v", eps, want)
		}
		table := e.ok("", "endpoint", "status", "-w", "table")
		leaders := 1
		if c.leaderless {
			leaders = 0
		}
		if !strings.Contains(table, "IS LEADER") || strings.Count(table, " true │") != leaders {
			t.Errorf("endpoint status -w table: want %d leader rows:\n%s", leaders, table)
		}
	})

	t.Run("member-list", func(t *testing.T) {
		e := ctl{t: t, bin: bin, endpoints: all.endpoints}
		type jsonMember struct {
			ID         uint64   `json:"ID"`
			Name       string   `json:"name"`
			PeerURLs   []string `json:"peerURLs"`
			ClientURLs []string `json:"clientURLs"`
		}
		var ml struct {
			Members []jsonMember `json:"members"`
		}
		out := e.ok("", "member", "list", "-w", "json")
		if err := json.Unmarshal([]byte(out), &ml); err != nil {
			t.Fatalf("member list -w json: %v\n%s", err, out)
		}
		if len(ml.Members) != len(c.members) {
			t.Fatalf("member list: %d members, want %d:\n%s", len(ml.Members), len(c.members), out)
		}
		for _, m := range c.members {
			i := slices.IndexFunc(ml.Members, func(x jsonMember) bool { return x.Name == m.name })
			if i < 0 {
				t.Errorf("member list lacks %s:\n%s", m.name, out)
				continue
			}
			got := ml.Members[i]
			m.mu.Lock()
			id := m.id
			m.mu.Unlock()
			if got.ID == 0 || (id != 0 && got.ID != id) || !slices.Equal(got.PeerURLs, []string{m.peerURL}) || !slices.Equal(got.ClientURLs, []string{m.clientURL}) {
				t.Errorf("member list entry %+v, want ID %x, peer %s, client %s", got, id, m.peerURL, m.clientURL)
			}
		}
		simple := e.ok("", "member", "list")
		if n := strings.Count(simple, ", started, "); n != len(c.members) {
			t.Errorf("member list: %d started members, want %d:\n%s", n, len(c.members), simple)
		}
	})

	t.Run("endpoint-health", func(t *testing.T) {
		e := ctl{t: t, bin: bin, endpoints: all.endpoints}
		// etcdctl's health check reads a key and lists alarms.
		r := e.run("", "endpoint", "health")
		if r.err != nil || strings.Count(r.stdout+r.stderr, "is healthy") != len(c.members) {
			t.Errorf("endpoint health: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
		}
	})

	if err := c.crashed(); err != nil {
		t.Fatal(err)
	}
}

// testWatch runs "etcdctl watch" on a key and puts to it until events
// arrive; the events must be etcdctl's PUT/key/value lines, in order.
func testWatch(t *testing.T, bin string, all ctl) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--endpoints", strings.Join(all.endpoints, ","), "watch", "wkey", "--prefix")
	var out syncBuffer
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	e := ctl{t: t, bin: bin, endpoints: all.endpoints}
	// Put until an event shows up: the watch may not be established when
	// the first puts land.
	for i := 1; i <= 30; i++ {
		e.expect("OK\n", "put", fmt.Sprintf("wkey/%02d", i), fmt.Sprintf("v%d", i))
		select {
		case err := <-done:
			done <- err // for the deferred clean-up
			msg := errb.String()
			t.Fatalf("etcdctl watch exited (%v) without events\nstdout:\n%s\nstderr:\n%s", err, out.String(), msg)
		case <-time.After(200 * time.Millisecond):
		}
		if strings.Contains(out.String(), "PUT\n") {
			// Two more puts, then check the tail of the event stream is
			// complete and in order.
			for j := i + 1; j <= i+2; j++ {
				e.expect("OK\n", "put", fmt.Sprintf("wkey/%02d", j), fmt.Sprintf("v%d", j))
			}
			want := fmt.Sprintf("PUT\nwkey/%02d\nv%d\nPUT\nwkey/%02d\nv%d\n", i+1, i+1, i+2, i+2)
			deadline := time.Now().Add(5 * time.Second)
			for !strings.HasSuffix(out.String(), want) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			got := out.String()
			if !strings.HasSuffix(got, want) {
				t.Fatalf("watch output does not end with the last two puts:\n got %q\nwant suffix %q", got, want)
			}
			first := strings.Index(got, "PUT\n")
			var n int
			if _, err := fmt.Sscanf(got[first:], "PUT\nwkey/%d\n", &n); err != nil {
				t.Fatalf("watch output %q: %v", got, err)
			}
			var wantAll strings.Builder
			for j := n; j <= i+2; j++ {
				fmt.Fprintf(&wantAll, "PUT\nwkey/%02d\nv%d\n", j, j)
			}
			if got[first:] != wantAll.String() {
				t.Errorf("watch events from wkey/%02d on are not every put in order:\n got %q\nwant %q", n, got[first:], wantAll.String())
			}
			t.Logf("watch works: %d events", i+3-n)
			return
		}
	}
	t.Fatalf("no watch event after 30 puts\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

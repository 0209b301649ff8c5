package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestGossipMode runs three "synod serve --protocol gossip" processes: a
// write to one member reaches the others without consensus; a compare is
// refused; with a member killed the others still take writes and see it
// dead in "synod status"; restarted, it keeps what it had and catches up.
func TestGossipMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-process cluster; skipped with -short")
	}
	c := newCluster(t, 3, "--protocol", "gossip", "--tick-interval", "20ms")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clients := make([]*clientv3.Client, 3)
	for i, m := range c.members {
		cli, err := newClient(m.clientURL)
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		clients[i] = cli
	}
	waitValue := func(i int, key, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := clients[i].Get(ctx, key)
			got := "<missing>"
			if err == nil && len(resp.Kvs) == 1 {
				got = string(resp.Kvs[0].Value)
			}
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %d: %s = %s (err %v) after 30s; want %s", i+1, key, got, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if _, err := clients[0].Put(ctx, "greeting", "hello"); err != nil {
		t.Fatal(err)
	}
	waitValue(1, "greeting", "hello")
	waitValue(2, "greeting", "hello")

	_, err := clients[1].Txn(ctx).If(clientv3.Compare(clientv3.Value("greeting"), "=", "hello")).
		Then(clientv3.OpPut("greeting", "bye")).Commit()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "gossip") {
		t.Fatalf("txn with a compare: %v; want InvalidArgument naming gossip mode", err)
	}

	c.members[2].kill()
	if _, err := clients[0].Put(ctx, "while-down", "1"); err != nil {
		t.Fatalf("put with a member down: %v", err)
	}
	waitValue(1, "while-down", "1")
	// synod status: the dead member's SWIM state as the others see it.
	waitSWIMState(t, c, "n3", "dead")

	if err := c.start(c.members[2]); err != nil {
		t.Fatal(err)
	}
	cli, err := newClient(c.members[2].clientURL)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	clients[2] = cli
	waitValue(2, "greeting", "hello") // its own state, from its WAL
	waitValue(2, "while-down", "1")   // caught up by anti-entropy
	for i := range 20 {               // and it takes writes again
		if _, err := clients[2].Put(ctx, fmt.Sprintf("after/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	waitValue(0, "after/19", "x")

	// A member stopped with SIGTERM announces that it leaves.
	c.members[1].stop()
	waitSWIMState(t, c, "n2", "left")
}

// waitSWIMState waits until "synod status", asked through the first
// member, shows member name in SWIM state want.
func waitSWIMState(t *testing.T, c *cluster, name, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := exec.Command(c.exe, "status", "--endpoints", c.members[0].clientURL).CombinedOutput()
		var row []string
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 4 && f[0] == name {
				row = f
			}
		}
		if slices.Contains(row, want) {
			if !strings.Contains(string(out), "SWIM") {
				t.Fatalf("status output lacks the SWIM column:\n%s", out)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s synod status does not show %s %s:\n%s", name, want, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

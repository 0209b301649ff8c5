package e2e

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGossipKeyringRotation runs a Raft cluster whose SWIM messages are
// sealed with --gossip-keyring-file, rotates the key on every member with
// SIGHUP without any member losing sight of another, and shows the seal
// at work: a member given a foreign key is cut off from SWIM (the others
// declare it dead) until it gets the right key back.
func TestGossipKeyringRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-process cluster; skipped with -short")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "keyring")
	key := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	write := func(path string, keys ...string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("# primary first\n"+strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(file, key(1))
	c := newCluster(t, 3, "--gossip-keyring-file", file)
	// hup sends SIGHUP to each member and waits until it has reloaded
	// the file (its log says so once more).
	reloads := func(m *member) int {
		data, _ := os.ReadFile(m.logPath)
		return strings.Count(string(data), "gossip keyring reloaded")
	}
	hup := func(ms ...*member) {
		t.Helper()
		for _, m := range ms {
			before := reloads(m)
			m.mu.Lock()
			err := m.cmd.Process.Signal(syscall.SIGHUP)
			m.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); reloads(m) == before; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s did not reload its keyring within 10s", m.name)
				}
			}
		}
	}
	allAlive := func() {
		t.Helper()
		for _, name := range []string{"n1", "n2", "n3"} {
			waitSWIMState(t, c, name, "alive")
		}
	}
	allAlive()
	for _, step := range [][]string{{key(1), key(2)}, {key(2), key(1)}, {key(2)}} {
		write(file, step...)
		hup(c.members...)
		time.Sleep(2 * time.Second) // a few protocol periods under the new keys
		allAlive()
	}

	// n3 alone gets a key nobody else has: its messages are refused. (The
	// file is shared: n3 reloads it holding the foreign key, and then it
	// is restored for the others.)
	write(file, key(3))
	hup(c.members[2])
	write(file, key(2))
	waitSWIMState(t, c, "n3", "dead")
	hup(c.members[2])
	waitSWIMState(t, c, "n3", "alive")
	if err := c.crashed(); err != nil {
		t.Fatal(err)
	}
}

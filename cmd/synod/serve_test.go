package main

import (
	"strings"
	"testing"

	"github.com/synod-io/synod/node"
)

func TestServeConfig(t *testing.T) {
	f := &serveFlags{
		name:                "n2",
		listenClientURLs:    "http://127.0.0.1:2379",
		listenPeerURLs:      "http://127.0.0.1:2380",
		initialCluster:      "n1=http://10.0.0.1:2380,n2=http://127.0.0.1:2380,n3=http://10.0.0.3:2380",
		initialClients:      "n1=http://10.0.0.1:2379,n3=http://10.0.0.3:2379",
		initialClusterState: "new",
		initialClusterToken: "tok",
		protocol:            "raft",
	}
	cfg, listen, err := serveConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "n2" || cfg.DataDir != "n2.synod" || len(cfg.Peers) != 3 || len(listen) != 1 || cfg.Protocol != "raft" {
		t.Fatalf("config: %+v, listen %v", cfg, listen)
	}
	if cfg.ID != memberID("tok", "n2") || cfg.Peers[0].ID != memberID("tok", "n1") {
		t.Errorf("member IDs are not derived from name and token")
	}
	if cfg.ClusterID != clusterID("tok", []string{"n3", "n1", "n2"}) || cfg.ClusterID == clusterID("other", []string{"n1", "n2", "n3"}) {
		t.Errorf("cluster ID is not derived from token and names")
	}
	if got := cfg.Peers[1].ClientURLs; len(got) != 1 || got[0] != "http://127.0.0.1:2379" {
		t.Errorf("own client URLs: %v", got)
	}
	if got := cfg.Peers[2].ClientURLs; len(got) != 1 || got[0] != "http://10.0.0.3:2379" {
		t.Errorf("n3 client URLs: %v", got)
	}

	for _, p := range []string{"multipaxos", "epaxos", "gossip"} {
		mp := *f
		mp.protocol = p
		if cfg, _, err := serveConfig(&mp); err != nil || cfg.Protocol != p {
			t.Errorf("--protocol %s: %+v, %v", p, cfg, err)
		}
	}
	// The flag's help lists every protocol.
	usage := newServeCommand().Flags().Lookup("protocol").Usage
	for _, p := range node.MemberProtocols {
		if !strings.Contains(usage, p) {
			t.Errorf("--protocol help %q does not list %s", usage, p)
		}
	}

	for _, tc := range []struct {
		mut  func(*serveFlags)
		want string
	}{
		{func(f *serveFlags) { f.protocol = "paxos" }, `--protocol "paxos" is not supported; this build runs epaxos, gossip, multipaxos, raft`},
		{func(f *serveFlags) { f.initialClusterState = "maybe" }, "want new or existing"},
		{func(f *serveFlags) { f.name = "n9" }, "does not list this member"},
		{func(f *serveFlags) { f.initialCluster = "n1" }, "not name=URL"},
		{func(f *serveFlags) { f.listenClientURLs = "https://127.0.0.1:2379" }, "but no --cert-file is given"},
		{func(f *serveFlags) {
			f.listenPeerURLs, f.initialCluster = "https://127.0.0.1:2380", strings.ReplaceAll(f.initialCluster, "http:", "https:")
		}, "but no --peer-cert-file is given"},
		{func(f *serveFlags) { f.tls.certFile = "c.pem" }, "is http://, but --cert-file is given"},
		{func(f *serveFlags) { f.listenClientURLs = "127.0.0.1:2379" }, "want http://host:port"},
		{func(f *serveFlags) { f.initialClients = "n7=http://1.2.3.4:5" }, "not in --initial-cluster"},
		{func(f *serveFlags) { f.advertisePeerURLs = "http://127.0.0.1:9999" }, "--initial-advertise-peer-urls"},
	} {
		g := *f
		tc.mut(&g)
		if _, _, err := serveConfig(&g); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
}

func TestServeFlagsFromEnv(t *testing.T) {
	t.Setenv("SYNOD_NAME", "from-env")
	t.Setenv("SYNOD_DATA_DIR", "/data/env")
	t.Setenv("SYNOD_LOG_FORMAT", "yaml")
	cmd := newServeCommand()
	if err := cmd.ParseFlags([]string{"--data-dir", "/data/flag"}); err != nil {
		t.Fatal(err)
	}
	if err := flagsFromEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	fl := cmd.Flags()
	if v, _ := fl.GetString("name"); v != "from-env" {
		t.Errorf("--name = %q, want it from SYNOD_NAME", v)
	}
	if v, _ := fl.GetString("data-dir"); v != "/data/flag" {
		t.Errorf("--data-dir = %q; the command line must win over SYNOD_DATA_DIR", v)
	}
	// A bad value from the environment is reported when the command runs.
	_, _, err := run(t, "serve")
	if err == nil || !strings.Contains(err.Error(), `--log-format "yaml"`) {
		t.Errorf("serve with SYNOD_LOG_FORMAT=yaml: %v", err)
	}
}

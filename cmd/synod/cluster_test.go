package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-io/synod/server"
)

// testCA is a throwaway certificate authority writing PEM files to dir.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// file is the CA certificate's PEM file.
	file string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{t: t, dir: dir, cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

var serial = big.NewInt(100)

// healthScore matches a HEALTH-SCORE cell of synod status.
var healthScore = regexp.MustCompile(` [0-9]+/[0-9]+ `)

// issue writes a certificate for 127.0.0.1, usable by servers and
// clients, and its key; it returns their paths.
func (ca *testCA) issue(name string) (certFile, keyFile string) {
	t := ca.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Add(serial, big.NewInt(1))
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).Set(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncWriter serializes writes from the members' loggers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// tlsCluster is three in-process "synod serve" members with mutual TLS on
// the client API and between peers.
type tlsCluster struct {
	clientURLs, peerURLs, metricsURLs []string
	ca, peerCA, rogueCA               *testCA
	// clientArgs are the TLS flags of a trusted client.
	clientArgs []string
	clientCert tls.Certificate
}

func startTLSCluster(t *testing.T) *tlsCluster {
	t.Helper()
	dir := t.TempDir()
	c := &tlsCluster{
		ca:      newTestCA(t, dir, "ca"),
		peerCA:  newTestCA(t, dir, "peer-ca"),
		rogueCA: newTestCA(t, dir, "rogue-ca"),
	}
	cert, key := c.ca.issue("client")
	c.clientArgs = []string{"--cacert", c.ca.file, "--cert", cert, "--key", key}
	var err error
	if c.clientCert, err = tls.LoadX509KeyPair(cert, key); err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(9)
	if err != nil {
		t.Fatal(err)
	}
	var cluster, clients []string
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		c.clientURLs = append(c.clientURLs, fmt.Sprintf("https://127.0.0.1:%d", ports[3*i]))
		c.peerURLs = append(c.peerURLs, fmt.Sprintf("https://127.0.0.1:%d", ports[3*i+1]))
		c.metricsURLs = append(c.metricsURLs, fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]))
		cluster = append(cluster, name+"="+c.peerURLs[i])
		clients = append(clients, name+"="+c.clientURLs[i])
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 3)
	logs := &syncWriter{w: io.Discard}
	if testing.Verbose() {
		logs.w = os.Stderr
	}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		cert, key := c.ca.issue(name)
		peerCert, peerKey := c.peerCA.issue(name + "-peer")
		root := newRootCommand()
		root.SetOut(logs)
		root.SetErr(logs)
		root.SetArgs([]string{"serve", "--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", c.clientURLs[i], "--listen-peer-urls", c.peerURLs[i],
			"--listen-metrics-urls", c.metricsURLs[i],
			"--initial-cluster", strings.Join(cluster, ","), "--initial-cluster-clients", strings.Join(clients, ","),
			"--initial-cluster-token", "tls-test", "--tick-interval", "20ms", "--log-level", "warn",
			"--cert-file", cert, "--key-file", key, "--trusted-ca-file", c.ca.file, "--client-cert-auth",
			"--peer-cert-file", peerCert, "--peer-key-file", peerKey, "--peer-trusted-ca-file", c.peerCA.file,
			"--peer-client-cert-auth"})
		go func() { errc <- root.ExecuteContext(ctx) }()
	}
	running := 3
	t.Cleanup(func() {
		cancel()
		for range running {
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("a member did not stop")
			}
		}
	})
	// Wait until every member is healthy.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, err := run(t, append([]string{"status", "--endpoints", c.clientURLs[0]}, c.clientArgs...)...)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not healthy after 20s: %v\n%s", err, out)
		}
		select {
		case err := <-errc:
			running--
			t.Fatalf("a member exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *tlsCluster) kv(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, append(append([]string{"kv", "--endpoints", strings.Join(c.clientURLs, ",")}, c.clientArgs...), args...)...)
	if err != nil {
		t.Fatalf("synod kv %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func TestTLSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member cluster; skipped with -short")
	}
	c := startTLSCluster(t)

	t.Run("kv", func(t *testing.T) {
		if got := c.kv(t, "put", "k", "v"); got != "OK\n" {
			t.Errorf("put: %q", got)
		}
		if got := c.kv(t, "get", "k"); got != "k\nv\n" {
			t.Errorf("get: %q", got)
		}
		txn := []string{"txn", "--compare", "value(k) = v", "--then", "put k v2", "--else", "get k"}
		if got := c.kv(t, txn...); got != "SUCCESS\n\nOK\n" {
			t.Errorf("txn that succeeds: %q", got)
		}
		if got := c.kv(t, txn...); got != "FAILURE\n\nk\nv2\n" {
			t.Errorf("txn that fails: %q", got)
		}
		if got := c.kv(t, "txn", "--compare", `version("k") > 0`, "--then", `put k "a b"`); got != "SUCCESS\n\nOK\n" {
			t.Errorf("txn on version: %q", got)
		}
		if got := c.kv(t, "get", "--prefix", "k"); got != "k\na b\n" {
			t.Errorf("get --prefix: %q", got)
		}
		if got := c.kv(t, "del", "k"); got != "1\n" {
			t.Errorf("del: %q", got)
		}
	})

	t.Run("watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		root := newRootCommand()
		var out strings.Builder
		root.SetOut(&syncWriter{w: &out})
		root.SetArgs(append(append([]string{"kv", "--endpoints", c.clientURLs[0]}, c.clientArgs...), "watch", "wk"))
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(ctx) }()
		time.Sleep(500 * time.Millisecond)
		c.kv(t, "put", "wk", "wv")
		if err := <-done; err != nil {
			t.Fatalf("watch: %v", err)
		}
		t.Logf("watch printed %q", out.String())
		if got := out.String(); got != watchUnsupported+"\n" && !strings.HasPrefix(got, "PUT\nwk\nwv\n") {
			t.Errorf("watch printed %q; want the event, or %q", got, watchUnsupported)
		}
	})

	t.Run("status", func(t *testing.T) {
		out, _, err := run(t, append([]string{"status", "--endpoints", c.clientURLs[1]}, c.clientArgs...)...)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		t.Logf("synod status:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.Contains(out, "leader") || strings.Count(out, "follower") != 2 || strings.Count(out, " true") != 3 {
			t.Errorf("status table:\n%s", out)
		}
		// Every member's SWIM view reaches the table, over TLS: each sees
		// the others alive (once SWIM has converged) and has a score.
		for deadline := time.Now().Add(10 * time.Second); ; {
			if strings.Count(out, " alive ") == 3 && len(healthScore.FindAllString(out, -1)) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("status table without every member alive and scored after 10s:\n%s", out)
				break
			}
			time.Sleep(200 * time.Millisecond)
			out, _, _ = run(t, append([]string{"status", "--endpoints", c.clientURLs[1]}, c.clientArgs...)...)
		}
	})

	t.Run("untrusted client refused", func(t *testing.T) {
		rogueCert, rogueKey := c.rogueCA.issue("rogue-client")
		rogue, err := tls.LoadX509KeyPair(rogueCert, rogueKey)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(c.ca.cert)
		addr := strings.TrimPrefix(c.clientURLs[0], "https://")
		for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "untrusted certificate": &rogue} {
			err := probeH2(addr, c.ca.cert, cert)
			if err == nil || strings.Contains(err.Error(), "no answer") {
				t.Errorf("a client with %s was not refused the handshake: %v", name, err)
			}
			t.Logf("a client with %s: %v", name, err)
			tcfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			if cert != nil {
				tcfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			}
			cli, err := clientv3.New(clientv3.Config{
				Endpoints: c.clientURLs[:1], DialTimeout: time.Second, Logger: zap.NewNop(), TLS: tcfg,
			})
			if err != nil {
				continue // refused while dialing
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = cli.Put(ctx, "intruder", "x")
			cancel()
			cli.Close()
			if err == nil {
				t.Errorf("a client with %s was served", name)
			}
		}
		// The same client with the trusted certificate is served.
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: c.clientURLs[:1], DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
			TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{c.clientCert}, MinVersion: tls.VersionTLS12},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, "friend", "x"); err != nil {
			t.Errorf("a trusted client was refused: %v", err)
		}
	})

	t.Run("untrusted peer refused", func(t *testing.T) {
		rogueCert, rogueKey := c.rogueCA.issue("rogue-peer")
		rogue, err := tls.LoadX509KeyPair(rogueCert, rogueKey)
		if err != nil {
			t.Fatal(err)
		}
		goodCert, goodKey := c.peerCA.issue("good-peer")
		good, err := tls.LoadX509KeyPair(goodCert, goodKey)
		if err != nil {
			t.Fatal(err)
		}
		addr := strings.TrimPrefix(c.peerURLs[0], "https://")
		if err := probeH2(addr, c.peerCA.cert, &good); err != nil {
			t.Fatalf("a peer with a trusted certificate was refused: %v", err)
		}
		for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "untrusted certificate": &rogue} {
			err := probeH2(addr, c.peerCA.cert, cert)
			if err == nil || strings.Contains(err.Error(), "no answer") {
				t.Errorf("a peer with %s was not refused: %v", name, err)
			}
			t.Logf("a peer with %s: %v", name, err)
		}
	})

	t.Run("http", func(t *testing.T) {
		leader := -1
		for i, u := range c.metricsURLs {
			code, body := httpGet(t, u+"/health")
			if code != http.StatusOK || !strings.Contains(body, `"health": "true"`) {
				t.Errorf("%s/health: %d %s", u, code, body)
			}
			var st server.Status
			_, body = httpGet(t, u+"/status")
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatalf("/status: %v\n%s", err, body)
			}
			if len(st.Members) != 3 || st.Leader == "" || st.Transport == nil || st.SWIM == nil || st.SWIM.HealthMax == 0 {
				t.Errorf("%s/status: %s", u, body)
			}
			for _, m := range st.Members {
				if m.SWIMState == "" || m.SWIMIncarnation == nil {
					t.Errorf("%s/status lacks the SWIM state of %s: %s", u, m.Name, body)
				}
			}
			if st.Role == "leader" {
				leader = i
				for _, m := range st.Members {
					if m.Lag == nil || (m.Name != st.Name && (m.Peer == nil || m.Peer.BytesSent == 0)) {
						t.Errorf("leader's /status lacks lag or peer stats for %s: %s", m.Name, body)
					}
				}
			}
		}
		if leader < 0 {
			t.Fatal("no member's /status says it leads")
		}
		// Heartbeat round trips need a moment after the election.
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, body := httpGet(t, c.metricsURLs[leader]+"/metrics")
			var missing []string
			for _, want := range []string{
				"synod_server_is_leader 1", "synod_server_has_leader 1", "synod_server_proposals_committed_total",
				"synod_disk_wal_fsync_duration_seconds_count", "synod_server_apply_duration_seconds_bucket",
				"synod_network_peer_round_trip_time_seconds_count", "synod_network_peer_sent_bytes_total{to=",
				"synod_network_peer_received_bytes_total{from=", "synod_disk_wal_size_bytes", "synod_disk_db_size_bytes",
				"synod_server_term", "synod_server_commit_index", "synod_server_applied_index", "synod_server_leader_changes_seen_total",
				"synod_swim_health_score", `synod_swim_members{state="alive"}`,
			} {
				if !strings.Contains(body, want) {
					missing = append(missing, want)
				}
			}
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the leader's /metrics lacks %q", missing)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("bench", func(t *testing.T) {
		for _, w := range []string{"put", "mixed"} {
			out, _, err := run(t, append([]string{"bench", w, "--endpoints", strings.Join(c.clientURLs, ","),
				"--duration", "700ms", "--clients", "4", "--conns", "2", "--keys", "20"}, c.clientArgs...)...)
			if err != nil {
				t.Fatalf("bench %s: %v\n%s", w, err, out)
			}
			t.Logf("synod bench %s:\n%s", w, out)
			for _, want := range []string{"ops/s", "p99.9", "put "} {
				if !strings.Contains(out, want) {
					t.Errorf("bench %s output lacks %q:\n%s", w, want, out)
				}
			}
			if w == "mixed" && !strings.Contains(out, "get ") {
				t.Errorf("bench mixed reports no gets:\n%s", out)
			}
		}
	})
}

// probeH2 opens a TLS connection to addr presenting cert (nil: none),
// sends HTTP/2's client preface and reads the server's first frame. It
// returns an error if the server refuses the handshake or the certificate.
func probeH2(addr string, ca *x509.Certificate, cert *tls.Certificate) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cfg := &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	if cert != nil {
		// Present cert even if the server's acceptable CAs do not include
		// its issuer (Go's client would otherwise send none).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		return err
	}
	// With TLS 1.3 the server checks the client's certificate after the
	// client's handshake completes: a refusal arrives as an alert here.
	buf := make([]byte, 9)
	if _, err := io.ReadFull(conn, buf); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("no answer: %w", err)
		}
		return err
	}
	return nil
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

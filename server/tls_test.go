package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-io/synod/server"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "synod-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func TestTLSForwarding(t *testing.T) {
	cert, pool := selfSigned(t)
	cfg := server.Config{
		TLS:        &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ForwardTLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}
	cluster := &fakeCluster{}
	follower, leader := newFakeBackend(1, cluster), newFakeBackend(2, cluster)
	follower.setLeader(2)
	furl := startMember(t, follower, cfg)
	startMember(t, leader, cfg)
	// startMember registers http:// URLs; these members serve TLS.
	cluster.mu.Lock()
	for i := range cluster.members {
		u := &cluster.members[i].ClientURLs[0]
		*u = strings.Replace(*u, "http://", "https://", 1)
	}
	cluster.mu.Unlock()

	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{strings.Replace(furl, "http://", "https://", 1)},
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	get, err := c.Get(ctx, "k")
	if err != nil || len(get.Kvs) != 1 || leader.proposed() != 1 {
		t.Fatalf("get over TLS via follower: %v, %v (leader proposals %d)", get, err, leader.proposed())
	}
}

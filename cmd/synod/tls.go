package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/synod-io/synod/node"
)

// TLS for synod serve, with etcd's flags and semantics:
//
//   - --cert-file and --key-file: the client API serves TLS with this
//     certificate (https:// client URLs need them). The same certificate
//     is presented as a client certificate when a follower forwards a
//     request to the leader, so give it both the serverAuth and the
//     clientAuth extended key usages.
//   - --trusted-ca-file: the CA bundle that verifies client certificates
//     (with --client-cert-auth) and the leader's certificate when
//     forwarding (the system roots when unset).
//   - --client-cert-auth: clients must present a certificate signed by
//     --trusted-ca-file.
//   - --peer-cert-file, --peer-key-file, --peer-trusted-ca-file and
//     --peer-client-cert-auth: the same for peer traffic. The peer
//     certificate is both the peer server's and the one presented when
//     dialing peers; --peer-trusted-ca-file verifies the peers'
//     certificates. With peer TLS every peer URL must be https://, without
//     it http://.
//
// Client certificates are checked against the CA only, as etcd does
// without --client-cert-allowed-hostname: any certificate the CA signed is
// accepted.

// tlsMinVersion is the lowest TLS version synod speaks.
const tlsMinVersion = tls.VersionTLS12

// tlsFlags are the serve command's TLS flags.
type tlsFlags struct {
	certFile, keyFile, trustedCAFile             string
	clientCertAuth                               bool
	peerCertFile, peerKeyFile, peerTrustedCAFile string
	peerClientCertAuth                           bool
}

func (f *tlsFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.certFile, "cert-file", "", "TLS certificate for the client API (and for forwarding to the leader)")
	fl.StringVar(&f.keyFile, "key-file", "", "TLS key for --cert-file")
	fl.StringVar(&f.trustedCAFile, "trusted-ca-file", "", "CA bundle that verifies client certificates and the leader's when forwarding")
	fl.BoolVar(&f.clientCertAuth, "client-cert-auth", false, "require client certificates signed by --trusted-ca-file")
	fl.StringVar(&f.peerCertFile, "peer-cert-file", "", "TLS certificate for peer traffic, served and presented to peers")
	fl.StringVar(&f.peerKeyFile, "peer-key-file", "", "TLS key for --peer-cert-file")
	fl.StringVar(&f.peerTrustedCAFile, "peer-trusted-ca-file", "", "CA bundle that verifies the peers' certificates")
	fl.BoolVar(&f.peerClientCertAuth, "peer-client-cert-auth", false, "require peers to present certificates signed by --peer-trusted-ca-file")
}

// serveTLS holds the TLS configurations built from tlsFlags; nil fields
// mean plaintext.
type serveTLS struct {
	client, forward        *tls.Config // the client API server; forwarding to the leader
	peerServer, peerClient *tls.Config
}

// build loads the certificates the flags name.
func (f *tlsFlags) build() (serveTLS, error) {
	var out serveTLS
	var err error
	out.client, out.forward, err = tlsPair("", f.certFile, f.keyFile, f.trustedCAFile, f.clientCertAuth)
	if err != nil {
		return serveTLS{}, err
	}
	out.peerServer, out.peerClient, err = tlsPair("peer-", f.peerCertFile, f.peerKeyFile, f.peerTrustedCAFile, f.peerClientCertAuth)
	if err != nil {
		return serveTLS{}, err
	}
	return out, nil
}

// tlsPair builds the server and the client side of one TLS setup (client
// API or peers; prefix is "" or "peer-" for the flag names in errors).
func tlsPair(prefix, certFile, keyFile, caFile string, clientCertAuth bool) (server, client *tls.Config, err error) {
	if certFile == "" && keyFile == "" {
		if caFile != "" || clientCertAuth {
			return nil, nil, fmt.Errorf("--%strusted-ca-file and --%sclient-cert-auth need --%scert-file and --%skey-file", prefix, prefix, prefix, prefix)
		}
		return nil, nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, nil, fmt.Errorf("give both --%scert-file and --%skey-file", prefix, prefix)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--%scert-file %s, --%skey-file %s: %w", prefix, certFile, prefix, keyFile, err)
	}
	var pool *x509.CertPool // nil: the system roots
	if caFile != "" {
		if pool, err = loadCAs(caFile); err != nil {
			return nil, nil, fmt.Errorf("--%strusted-ca-file: %w", prefix, err)
		}
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tlsMinVersion}
	if clientCertAuth {
		if pool == nil {
			return nil, nil, fmt.Errorf("--%sclient-cert-auth needs --%strusted-ca-file to verify client certificates", prefix, prefix)
		}
		server.ClientAuth, server.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tlsMinVersion}
	return server, client, nil
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// checkSchemes checks that URLs use https exactly when TLS is configured
// for them (flag names the URLs' flag; tlsFlag the certificate's).
func checkSchemes(flag string, urls []string, tlsOn bool, tlsFlag string) error {
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("--%s: %w", flag, err)
		}
		switch {
		case u.Scheme == "https" && !tlsOn:
			return fmt.Errorf("--%s: %s is https://, but no --%s is given", flag, raw, tlsFlag)
		case u.Scheme == "http" && tlsOn:
			return fmt.Errorf("--%s: %s is http://, but --%s is given: use https://", flag, raw, tlsFlag)
		}
	}
	return nil
}

// clientTLSFlags are the TLS flags of the commands that talk to a cluster
// (kv, status, bench), named as etcdctl's.
type clientTLSFlags struct {
	caCert, cert, key  string
	insecureSkipVerify bool
}

func (f *clientTLSFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.caCert, "cacert", "", "verify the servers' certificates with this CA bundle (https:// endpoints)")
	fl.StringVar(&f.cert, "cert", "", "client certificate, for servers that require one")
	fl.StringVar(&f.key, "key", "", "key of --cert")
	fl.BoolVar(&f.insecureSkipVerify, "insecure-skip-tls-verify", false, "do not verify the servers' certificates (testing only)")
}

// config returns the client TLS configuration the flags ask for, or nil
// for plaintext (no flag given and no https:// endpoint).
func (f *clientTLSFlags) config(endpoints []string) (*tls.Config, error) {
	https := false
	for _, e := range endpoints {
		https = https || strings.HasPrefix(e, "https://")
	}
	if !https && f.caCert == "" && f.cert == "" && f.key == "" && !f.insecureSkipVerify {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tlsMinVersion, InsecureSkipVerify: f.insecureSkipVerify}
	if f.caCert != "" {
		pool, err := loadCAs(f.caCert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		cfg.RootCAs = pool
	}
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("give both --cert and --key")
	}
	if f.cert != "" {
		cert, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("--cert %s, --key %s: %w", f.cert, f.key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// checkServeSchemes checks the URLs of a serve configuration against the
// TLS flags: client URLs are https:// exactly when --cert-file is given,
// peer URLs exactly when --peer-cert-file is.
func checkServeSchemes(f *serveFlags, listenClient []string, cfg node.Config) error {
	clientTLS, peerTLS := f.tls.certFile != "", f.tls.peerCertFile != ""
	if err := checkSchemes("listen-client-urls", listenClient, clientTLS, "cert-file"); err != nil {
		return err
	}
	if err := checkSchemes("listen-peer-urls", strings.Split(f.listenPeerURLs, ","), peerTLS, "peer-cert-file"); err != nil {
		return err
	}
	for _, p := range cfg.Peers {
		if err := checkSchemes("initial-cluster", p.PeerURLs, peerTLS, "peer-cert-file"); err != nil {
			return err
		}
		if p.ID == cfg.ID {
			if err := checkSchemes("advertise-client-urls", p.ClientURLs, clientTLS, "cert-file"); err != nil {
				return err
			}
		}
	}
	return nil
}

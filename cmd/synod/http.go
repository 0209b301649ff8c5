package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/server"
)

// httpReadHeaderTimeout bounds reading a request's headers on the metrics
// port (a slow client must not hold a connection forever).
const httpReadHeaderTimeout = 10 * time.Second

// serveMetrics serves /metrics, /health and /status for n on each of the
// comma-separated URLs (etcd's --listen-metrics-urls); https:// URLs are
// served with tlsCfg. It returns a function that stops the servers. No
// URLs: nothing is served.
func serveMetrics(urls string, n runningMember, tlsCfg *tls.Config, log *slog.Logger) (stop func(), err error) {
	if strings.TrimSpace(urls) == "" {
		return func() {}, nil
	}
	list, err := splitURLs("listen-metrics-urls", urls)
	if err != nil {
		return nil, err
	}
	for _, u := range list {
		// As etcd: http:// metrics URLs are plaintext even when the
		// client API serves TLS; https:// ones use the client API's TLS.
		if strings.HasPrefix(u, "https://") && tlsCfg == nil {
			return nil, fmt.Errorf("--listen-metrics-urls: %s is https://, but no --cert-file is given", u)
		}
	}
	h, err := server.NewHTTPHandler(server.HTTPConfig{Backend: backend{n}, Metrics: n.Metrics})
	if err != nil {
		return nil, err
	}
	var srvs []*http.Server
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		for _, s := range srvs {
			if err := s.Shutdown(ctx); err != nil {
				s.Close()
			}
		}
	}
	for _, u := range list {
		addr, _ := node.HostPort(u)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			stop()
			return nil, fmt.Errorf("listening for metrics on %s: %w", addr, err)
		}
		if strings.HasPrefix(u, "https://") {
			l = tls.NewListener(l, tlsCfg)
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: httpReadHeaderTimeout}
		srvs = append(srvs, s)
		go func() {
			if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "addr", addr, "err", err)
			}
		}()
		log.Info("serving /metrics, /health and /status", "url", u)
	}
	return stop, nil
}

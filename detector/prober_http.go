package detector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// probeHTTP sends one GET to t.HTTP's address over a connection pinned
// like every probe, and succeeds when the answer carries the expected
// status. Redirects are not followed (a redirect elsewhere would leave the
// pinned connection), and the body is read only up to 64 KiB. The round
// trip is measured from the connect to the response header.
func (p *SocketProber) probeHTTP(ctx context.Context, t Target) (time.Duration, error) {
	c := t.HTTP
	if c == nil {
		return 0, errors.New("http probe without a check")
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	d := pinnedDialer(t, "tcp")
	var conn net.Conn
	start := p.now()
	err := InNamespace(p.ns, func() error {
		var err error
		conn, err = d.DialContext(ctx, "tcp", c.Addr.String())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("connecting to %s via %s: %w", c.Addr, t.Iface, err)
	}
	// The transport gets this one connection: its own dialer would create
	// the socket outside the namespace and unpinned.
	var once sync.Once
	dial := func(context.Context, string, string) (net.Conn, error) {
		var out net.Conn
		once.Do(func() { out = conn })
		if out == nil {
			return nil, errors.New("the probe's one connection is used")
		}
		return out, nil
	}
	tr := &http.Transport{DialContext: dial, DisableKeepAlives: true, Proxy: nil, MaxResponseHeaderBytes: 64 << 10}
	defer tr.CloseIdleConnections()
	host := c.Addr.String()
	scheme := "http"
	if c.HTTPS {
		scheme = "https"
		cfg, err := p.tlsConfig(c)
		if err != nil {
			conn.Close()
			return 0, err
		}
		tr.TLSClientConfig = cfg
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+c.RequestURI, nil)
	if err != nil {
		conn.Close()
		return 0, err
	}
	if c.ServerName != "" {
		req.Host = c.ServerName
	}
	req.Header.Set("User-Agent", "uplinkd-probe")
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s via %s: %w", c.URL, t.Iface, err)
	}
	rtt := p.now().Sub(start)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != c.Status {
		return 0, fmt.Errorf("GET %s via %s: answered %d, want %d", c.URL, t.Iface, resp.StatusCode, c.Status)
	}
	return rtt, nil
}

// tlsConfig verifies the server against c.CAFile (the system's roots if
// unset) under c.ServerName (the address if unset). CA files are read once
// and again when their modification time changes.
func (p *SocketProber) tlsConfig(c *policy.HTTPCheck) (*tls.Config, error) {
	name := c.ServerName
	if name == "" {
		name = c.Addr.Addr().String()
	}
	cfg := &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
	if c.CAFile == "" {
		return cfg, nil
	}
	pool, err := p.cas.pool(c.CAFile)
	if err != nil {
		return nil, err
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// caCache holds the CA pools of http_ca_file, by path.
type caCache struct {
	mu    sync.Mutex
	pools map[string]caEntry
}

type caEntry struct {
	mod  time.Time
	pool *x509.CertPool
}

func (cc *caCache) pool(path string) (*x509.CertPool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading http_ca_file: %w", err)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if e, ok := cc.pools[path]; ok && e.mod.Equal(fi.ModTime()) {
		return e.pool, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading http_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("reading http_ca_file %s: no PEM certificate in it", path)
	}
	if cc.pools == nil {
		cc.pools = map[string]caEntry{}
	}
	cc.pools[path] = caEntry{fi.ModTime(), pool}
	return pool, nil
}

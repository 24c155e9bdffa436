package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/uplinkd/uplinkd/internal/testca"
	"github.com/uplinkd/uplinkd/policy"
)

func TestHostAllow(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, tc := range []struct {
		bound, listen string
		extra         []string
		host          string
		want          bool
	}{
		{"127.0.0.1:9474", "127.0.0.1:9474", nil, "127.0.0.1:9474", true},
		{"127.0.0.1:9474", "127.0.0.1:9474", nil, "127.0.0.1", true},
		{"127.0.0.1:9474", "127.0.0.1:9474", nil, "localhost:9474", true},
		{"127.0.0.1:9474", "127.0.0.1:9474", nil, "LOCALHOST.", true},
		{"127.0.0.1:9474", "127.0.0.1:9474", nil, "", true},                   // HTTP/1.0 without Host
		{"127.0.0.1:9474", "127.0.0.1:9474", nil, "evil.example:9474", false}, // DNS rebinding
		{"127.0.0.1:9474", "127.0.0.1:9474", nil, "198.18.0.1:9474", false},   // another address
		{"127.0.0.1:9474", "localhost:9474", nil, "localhost:9474", true},     // listen by name
		{"198.18.0.1:9474", "198.18.0.1:9474", nil, "localhost:9474", false},  // not loopback
		{"198.18.0.1:9474", "198.18.0.1:9474", []string{"R1.example.net"}, "r1.example.net:9474", true},
		{"198.18.0.1:9474", "198.18.0.1:9474", []string{"r1.example.net"}, "r2.example.net", false},
		{"198.18.0.1:9474", "mgmt.example.net:9474", nil, "mgmt.example.net:9474", true},
		{"[2001:db8::1]:9474", "[2001:db8::1]:9474", nil, "[2001:db8::1]:9474", true},
		{"[2001:db8::1]:9474", "[2001:db8::1]:9474", nil, "[2001:db8::2]:9474", false},
		{"[::1]:9474", "[::1]:9474", nil, "localhost", true},
		{"[::]:9474", ":9474", nil, "198.18.0.7:9474", true}, // every address: any literal
		{"[::]:9474", ":9474", nil, "[2001:db8::7]:9474", true},
		{"[::]:9474", ":9474", nil, "localhost:9474", true},
		{"[::]:9474", ":9474", nil, "evil.example", false},
	} {
		a := newHostAllow(tcp(tc.bound), tc.listen, tc.extra)
		if got := a.ok(tc.host); got != tc.want {
			t.Errorf("listen %s (bound %s, http_hosts %v): Host %q allowed = %v, want %v", tc.listen, tc.bound, tc.extra, tc.host, got, tc.want)
		}
	}
}

// TestGuardHost: a refused Host gets 421 on /metrics and /status, and
// /healthz still answers.
func TestGuardHost(t *testing.T) {
	a := newHostAllow(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9474}, "127.0.0.1:9474", nil)
	h := readOnly(guardHost(a, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })))
	for _, tc := range []struct {
		path, host string
		want       int
	}{
		{"/metrics", "127.0.0.1:9474", 200},
		{"/metrics", "evil.example:9474", http.StatusMisdirectedRequest},
		{"/status", "evil.example", http.StatusMisdirectedRequest},
		{"/status", "localhost:9474", 200},
		{"/healthz", "evil.example", 200},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://x"+tc.path, nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("GET %s with Host %q: %d, want %d (%s)", tc.path, tc.host, w.Code, tc.want, w.Body.String())
		}
	}
}

// TestServeHTTPWithWebConfig serves through exporter-toolkit with a web
// configuration file, as [daemon] web_config_file names it: TLS with a
// certificate from a test CA, and basic auth. Plain HTTP, a wrong password
// and no password are refused; the right one gets through, Host guard
// included.
func TestServeHTTPWithWebConfig(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t)
	pool := ca.Pool
	cert, key := ca.WriteServer(t, dir, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	conf := "tls_server_config:\n  cert_file: " + cert + "\n  key_file: " + key + "\nbasic_auth_users:\n  prometheus: " + string(hash) + "\n"
	if err := os.WriteFile(webConfig, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkWebConfig(&policy.Policy{Daemon: policy.Daemon{WebConfigFile: webConfig}}); err != nil {
		t.Fatalf("valid web config refused: %v", err)
	}
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: /nonexistent\n  key_file: /nonexistent\nbogus: 1\n"), 0o600)
	if err := checkWebConfig(&policy.Policy{Daemon: policy.Daemon{WebConfigFile: bad}}); err == nil {
		t.Error("a web config naming missing files and an unknown key was accepted")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "uplinkd_build_info 1\n") })
	srv := &http.Server{Handler: readOnly(guardHost(newHostAllow(l.Addr(), "127.0.0.1:0", nil), mux)), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- serveHTTP(srv, l, webConfig, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serveHTTP: %v", err)
		}
	})
	base := "https://" + l.Addr().String() + "/metrics"
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(c *http.Client, url, user, pass, host string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(tlsClient, base, "prometheus", "s3cret", ""); code != 200 || !strings.Contains(body, "uplinkd_build_info") {
		t.Errorf("TLS with the right password: %d %q", code, body)
	}
	if code, _ := get(tlsClient, base, "prometheus", "wrong", ""); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code, _ := get(tlsClient, base, "", "", ""); code != http.StatusUnauthorized {
		t.Errorf("no password: %d, want 401", code)
	}
	if code, _ := get(tlsClient, base, "prometheus", "s3cret", "evil.example"); code != http.StatusMisdirectedRequest {
		t.Errorf("right password, rebinding Host: %d, want 421", code)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if code, body := get(plain, "http://"+l.Addr().String()+"/metrics", "prometheus", "s3cret", ""); code == 200 {
		t.Errorf("plain HTTP was served with TLS configured: %q", body)
	}
}

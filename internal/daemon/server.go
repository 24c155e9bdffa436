package daemon

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/uplinkd/uplinkd/policy"
)

func statusJSON(s *Status) (string, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	return string(b) + "\n", nil
}

// readOnly refuses every method but GET and HEAD: nothing on the HTTP
// listener changes the daemon.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: reload with SIGHUP or `uplinkd reload`", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllow is the set of Host header values the listener answers: the
// names of its address. A browser tricked by DNS rebinding sends the
// attacker's name as Host, so refusing unknown names keeps a web page from
// reading /metrics or /status off a loopback or management listener. An
// IP literal cannot be rebound, and an empty Host (HTTP/1.0) names nothing.
type hostAllow struct {
	addr     netip.Addr // the bound address; unspecified accepts every IP literal
	loopback bool       // "localhost" names it
	names    map[string]bool
}

// newHostAllow builds the set for a listener bound at bound, configured as
// listen, with the policy's extra names.
func newHostAllow(bound net.Addr, listen string, extra []string) hostAllow {
	a := hostAllow{names: map[string]bool{}}
	if ap, err := netip.ParseAddrPort(bound.String()); err == nil {
		a.addr = ap.Addr().Unmap().WithZone("")
		a.loopback = a.addr.IsLoopback() || a.addr.IsUnspecified()
	}
	if h, _, err := net.SplitHostPort(listen); err == nil {
		if _, err := netip.ParseAddr(h); err != nil && h != "" {
			a.names[normalHost(h)] = true // listen = "mgmt.example.net:9474"
		}
	}
	for _, n := range extra {
		a.names[normalHost(n)] = true
	}
	return a
}

func normalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// ok reports whether a request's Host (with or without a port) names the
// listener.
func (a hostAllow) ok(host string) bool {
	if host == "" {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if ip, err := netip.ParseAddr(h); err == nil {
		ip = ip.Unmap().WithZone("")
		return a.addr.IsUnspecified() || ip == a.addr
	}
	h = normalHost(h)
	return (h == "localhost" && a.loopback) || a.names[h]
}

// guardHost refuses, with 421 Misdirected Request, every request whose
// Host does not name the listener, except /healthz, which reveals nothing.
func guardHost(a hostAllow, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && !a.ok(r.Host) {
			http.Error(w, fmt.Sprintf("uplinkd does not answer to Host %q: add it to [daemon] http_hosts if it is one of this listener's names", r.Host), http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// checkWebConfig validates [daemon] web_config_file as exporter-toolkit
// will read it, so that a broken file refuses a start or a reload instead
// of failing the listener later.
func checkWebConfig(p *policy.Policy) error {
	if p.Daemon.WebConfigFile == "" {
		return nil
	}
	if err := web.Validate(p.Daemon.WebConfigFile); err != nil {
		return fmt.Errorf("checking web_config_file %s: %w", p.Daemon.WebConfigFile, err)
	}
	return nil
}

// serveHTTP serves srv on l, with TLS and basic auth when webConfig (an
// exporter-toolkit web configuration file) says so. It returns when srv is
// shut down.
func serveHTTP(srv *http.Server, l net.Listener, webConfig string, log *slog.Logger) error {
	return web.Serve(l, srv, &web.FlagConfig{WebConfigFile: &webConfig}, log)
}

// newHTTPServer serves /metrics, /status and /healthz to requests whose
// Host is in allow. Every request marks busy the progress the daemon's
// liveness follows.
func newHTTPServer(c *Core, reg *prometheus.Registry, log *slog.Logger, allow hostAllow, busy *progress) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		out, err := statusJSON(c.Status())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(out))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if ok, reason := c.Healthy(); !ok {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		if cs := c.rec.Conflicts(); len(cs) > 0 {
			http.Error(w, fmt.Sprintf("degraded: %d route conflicts, not written: %s", len(cs), cs[0].String()), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("uplinkd: /metrics /status /healthz\n"))
	})
	return &http.Server{
		Handler:           withProgress(busy, readOnly(guardHost(allow, mux))),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

package detector_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/internal/testca"
)

// httpServe runs a real net/http server in the Server namespace on
// 198.18.100.1:port until the test ends; health answers 204, everything
// else 404. cfg, if set, makes it HTTPS.
func (l *lab) httpServe(t *testing.T, port int, cfg *tls.Config) {
	t.Helper()
	var ln net.Listener
	if err := l.Server.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(nstest.TargetAddr4.String(), fmt.Sprint(port)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "probe.example.net" && !strings.HasPrefix(r.Host, nstest.TargetAddr4.String()) {
			http.Error(w, "unexpected Host "+r.Host, http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 2 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// testServerTLS makes a CA and a certificate for probe.example.net signed
// by it; it writes the CA to dir/ca.pem.
func testServerTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	ca := testca.New(t)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{ca.Server(t, []string{"probe.example.net"}, nil)}, MinVersion: tls.VersionTLS12}
}

// dnsmasq runs a real DNS responder in the Server namespace on
// 198.18.100.1:53, answering probe.example.net with 198.18.100.80, with
// its configuration and pid file in the test's directory; nstest stops it
// by PID at cleanup.
func (l *lab) dnsmasq(t *testing.T) {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is needed for the DNS probe test: install Debian's dnsmasq-base (sh scripts/setup.sh): %v", err)
	}
	dir := t.TempDir()
	l.Server.StartPeer(t, bin, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
		"--bind-interfaces", "--listen-address="+nstest.TargetAddr4.String(), "--except-interface=lo", "--port=53",
		"--address=/probe.example.net/198.18.100.80", "--pid-file="+filepath.Join(dir, "dnsmasq.pid"),
		"--user=root", "--group=root", "--log-facility=-", "--dhcp-leasefile="+filepath.Join(dir, "leases"))
}

// TestNSHTTPAndDNSProbes runs the HTTP(S) and DNS probe kinds through the
// real sockets, pinned to the uplink, against a real Go net/http server
// (with a test CA for HTTPS) and a real dnsmasq behind gateway 1: each
// passes while they answer as expected, fails when the answer is not the
// expected one, and takes the gateway down when it dies silently.
func TestNSHTTPAndDNSProbes(t *testing.T) {
	caDir := t.TempDir()
	serverTLS := testServerTLS(t, caDir)
	ca := filepath.Join(caDir, "ca.pem")
	tests := []struct {
		name  string
		probe string
		setup func(t *testing.T, l *lab)
		kind  detector.ProbeKind
		ok    bool
		why   string // what the prober's error must say when !ok
	}{
		{"http 204", `http = ["http://198.18.100.1/health"]
http_status = 204`, func(t *testing.T, l *lab) { l.httpServe(t, 80, nil) }, detector.KindHTTP, true, ""},
		{"http wrong status", `http = ["http://198.18.100.1/missing"]
http_status = 204`, func(t *testing.T, l *lab) { l.httpServe(t, 80, nil) }, detector.KindHTTP, false, "answered 404, want 204"},
		{"https with a private CA", `http = ["https://198.18.100.1/health"]
http_status = 204
http_server_name = "probe.example.net"
http_ca_file = "` + ca + `"`, func(t *testing.T, l *lab) { l.httpServe(t, 443, serverTLS) }, detector.KindHTTP, true, ""},
		{"https without the CA", `http = ["https://198.18.100.1/health"]
http_status = 204
http_server_name = "probe.example.net"`, func(t *testing.T, l *lab) { l.httpServe(t, 443, serverTLS) }, detector.KindHTTP, false, "certificate signed by unknown authority"},
		{"dns expected answer", `dns = ["198.18.100.1"]
dns_name = "probe.example.net"
dns_answer = "198.18.100.80"`, func(t *testing.T, l *lab) { l.dnsmasq(t) }, detector.KindDNS, true, ""},
		{"dns other answer", `dns = ["198.18.100.1"]
dns_name = "probe.example.net"
dns_answer = "198.18.100.81"`, func(t *testing.T, l *lab) { l.dnsmasq(t) }, detector.KindDNS, false, "answered [198.18.100.80], want 198.18.100.81 among them"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tu := nstest.NewTwoUplinks(t)
			l := &lab{TwoUplinks: tu}
			// Like tcp, these are real sockets: they need a route through
			// the gateway, and pin = "device" holds them to eth1.
			l.routeVia(t, 1)
			tc.setup(t, l)
			l.startDetector(t, `
[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
[gateway.gw1.detect]
gating = "always"
interval = "50ms"
[gateway.gw1.probe]
gateway = false
neigh = false
`+tc.probe+"\n")
			sent := func() float64 { s, _ := l.d.ProbeCounts("gw1", tc.kind); return s }
			failed := func() float64 { _, f := l.d.ProbeCounts("gw1", tc.kind); return f }
			if !tc.ok {
				l.waitState(t, "gw1", detector.Down, 5*time.Second)
				if sent() < 1 || failed() != sent() {
					t.Errorf("%s probes against the wrong answer: %v sent, %v failed, want all failed", tc.kind, sent(), failed())
				}
				// The same probe, straight through the prober: it fails for
				// the reason the test is about, not for want of a route.
				p := mustPolicy(t, "[gateway.gw1]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n[gateway.gw1.probe]\n"+tc.probe+"\n").Gateway("gw1").Probe
				tg := detector.Target{Gateway: "gw1", Iface: nstest.HostUplink1If, Source: nstest.Host1Addr4, NextHop: nstest.GW1Addr4,
					Pin: p.Pin, Timeout: time.Second, Kind: tc.kind}
				if tc.kind == detector.KindHTTP {
					tg.Addr, tg.HTTP = p.HTTP[0].Addr, &p.HTTP[0]
				} else {
					tg.Addr, tg.DNS = p.DNS[0].Server, &p.DNS[0]
				}
				if _, err := l.pr.Probe(context.Background(), tg); err == nil || !strings.Contains(err.Error(), tc.why) {
					t.Errorf("probe error %v, want one saying %q", err, tc.why)
				}
				return
			}
			l.waitState(t, "gw1", detector.Up, 5*time.Second)
			detectortest.WaitFor(t, "three probes", 5*time.Second, func() bool { return sent() >= 3 })
			if failed() > 0 {
				t.Errorf("%s probes against a live target: %v sent, %v failed (%s)", tc.kind, sent(), failed(), l.status("gw1").Reason)
			}
			p := mustPolicy(t, "[gateway.gw1]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n[gateway.gw1.probe]\n"+tc.probe+"\n").Gateway("gw1").Probe
			target := ""
			if tc.kind == detector.KindHTTP {
				target = p.HTTP[0].URL
			} else {
				target = p.DNS[0].Server.String()
			}
			if v := l.d.TargetSuccess("gw1", tc.kind, target); v != 1 {
				t.Errorf("uplinkd_probe_target_success{kind=%q,target=%q} = %v, want 1", tc.kind, target, v)
			}
			l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
			l.waitState(t, "gw1", detector.Down, 5*time.Second)
		})
	}
}

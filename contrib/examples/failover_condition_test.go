package examples_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// providerAPI stands in for a hosting provider's failover-IP API: it
// records every call and who the IP is routed to, and notes any claim made
// while another node still holds the IP.
type providerAPI struct {
	mu     sync.Mutex
	calls  []string // "claim director-1", "release director-2"
	holder string
	double []string // claims made while another node held the IP
}

func (p *providerAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	node := r.Form.Get("active_server_ip")
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.Method {
	case http.MethodPost:
		if p.holder != "" && p.holder != node {
			p.double = append(p.double, fmt.Sprintf("%s claimed while %s held it", node, p.holder))
		}
		p.calls = append(p.calls, "claim "+node)
		p.holder = node
	case http.MethodDelete:
		p.calls = append(p.calls, "release "+node)
		if p.holder == node {
			p.holder = ""
		}
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (p *providerAPI) snapshot() (calls, double []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls), slices.Clone(p.double)
}

// serveAPI serves api in h's namespace on addr until the test ends: the
// listening socket is made inside the namespace and stays there.
func serveAPI(t *testing.T, h *nstest.Host, addr string, api http.Handler) {
	t.Helper()
	var ln net.Listener
	if err := h.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
}

// TestFailoverIPCondition proves contrib/examples/failover-ip-condition.toml
// with failover-ip-keepalived.conf: two directors in a VRRP pair, each with
// its own uplink, claim the provider's failover IP only while master with a
// healthy uplink and an answering remote target. Each of the three terms is
// failed in turn on the claiming director, and each change must make
// exactly one release and one claim, never with both directors claiming.
//
//	[ispa] lo 198.18.100.1          [ispb] lo 198.18.100.1
//	   │ 198.18.1.1                    │ 198.18.1.1
//	eth1 [director-1] eth0 ── VRRP ── eth0 [director-2] eth1
//	     eth2 ──────── [api] 198.18.81.1 ──────── eth2
func TestFailoverIPCondition(t *testing.T) {
	dir := t.TempDir() // before the lab: removed after its processes are killed
	lab := nstest.New(t)
	d1, d2, api := lab.Host("d1"), lab.Host("d2"), lab.Host("api")
	isp := map[*nstest.Host]*nstest.Host{d1: lab.Host("ispa"), d2: lab.Host("ispb")}
	lab.Link(d1, "eth0", d2, "eth0")
	d1.AddAddr(t, "eth0", "198.18.70.2/24")
	d2.AddAddr(t, "eth0", "198.18.70.3/24")
	for i, d := range []*nstest.Host{d1, d2} {
		up := isp[d]
		lab.Link(d, "eth1", up, "eth0")
		d.AddAddr(t, "eth1", "198.18.1.2/24")
		up.AddAddr(t, "eth0", "198.18.1.1/24")
		up.AddAddr(t, "lo", "198.18.100.1/32")
		// The management network to the provider's API.
		apiIf := fmt.Sprintf("eth%d", i)
		lab.Link(d, "eth2", api, apiIf)
		d.AddAddr(t, "eth2", fmt.Sprintf("198.18.80.%d/30", 4*i+2))
		api.AddAddr(t, apiIf, fmt.Sprintf("198.18.80.%d/30", 4*i+1))
		d.MustRun(t, "ip", "route", "add", "198.18.81.1/32", "via", fmt.Sprintf("198.18.80.%d", 4*i+1), "dev", "eth2")
	}
	api.AddAddr(t, "lo", "198.18.81.1/32")
	provider := &providerAPI{}
	serveAPI(t, api, "198.18.81.1:80", provider)

	script, err := os.ReadFile("hooks/failover-ip-api")
	if err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(dir, "failover-ip-api")
	if err := os.WriteFile(hook, script, 0o755); err != nil {
		t.Fatal(err)
	}
	pol := example(t, "failover-ip-condition.toml")
	conf := example(t, "failover-ip-keepalived.conf")
	for _, s := range []string{"/usr/local/lib/uplinkd/hooks/failover-ip-api", `"director-1"`} {
		if !strings.Contains(pol, s) {
			t.Fatalf("failover-ip-condition.toml no longer mentions %s", s)
		}
	}
	for _, s := range []string{"/run/uplinkd/track/path-ok", "state MASTER", "priority 150"} {
		if !strings.Contains(conf, s) {
			t.Fatalf("failover-ip-keepalived.conf no longer mentions %s", s)
		}
	}
	name := map[*nstest.Host]string{d1: "director-1", d2: "director-2"}
	ka := map[*nstest.Host]*kaProc{}
	uk := map[*nstest.Host]*daemontest.Daemon{}
	trackDir := map[*nstest.Host]string{d1: filepath.Join(dir, "track-d1"), d2: filepath.Join(dir, "track-d2")}
	startUplinkd := func(d *nstest.Host) {
		p := strings.ReplaceAll(pol, "/usr/local/lib/uplinkd/hooks/failover-ip-api", hook)
		p = strings.ReplaceAll(p, `"director-1"`, fmt.Sprintf("%q", name[d]))
		uk[d] = daemontest.Start(t, d, bin, daemontest.SetDaemonKeys(p, map[string]string{"track_dir": fmt.Sprintf("%q", trackDir[d])}))
	}
	start := func(d *nstest.Host) {
		startUplinkd(d)
		c := strings.ReplaceAll(conf, "/run/uplinkd/track/path-ok", filepath.Join(trackDir[d], "path-ok"))
		if d == d2 {
			c = strings.ReplaceAll(strings.ReplaceAll(c, "state MASTER", "state BACKUP"), "priority 150", "priority 100")
		}
		ka[d] = &kaProc{conf: c, cmd: startKeepalived(t, d, c)}
	}
	master := func(want string) func() (bool, string) {
		return func() (bool, string) {
			on1, on2 := hasAddr(t, d1, "eth0", "198.18.70.1/32"), hasAddr(t, d2, "eth0", "198.18.70.1/32")
			got := map[[2]bool]string{{true, false}: "director-1", {false, true}: "director-2", {false, false}: "nobody", {true, true}: "both"}[[2]bool{on1, on2}]
			return got == want, "the VRRP address is on " + got
		}
	}
	var want []string
	since := time.Now() // the end of the last expect: just before the next fault
	// expect waits for the calls to be exactly want plus more, then makes
	// sure no further call comes (a duplicate would arrive within the
	// claim's hold of 1s), and that no claim ever overlapped another.
	expect := func(what string, more ...string) {
		t.Helper()
		want = append(want, more...)
		daemontest.WaitFor(t, 30*time.Second, what, func() (bool, string) {
			calls, _ := provider.snapshot()
			return slices.Equal(calls, want), fmt.Sprintf("calls %v, want %v", calls, want)
		})
		if len(more) > 0 {
			t.Logf("%s: %v after the fault", what, time.Since(since).Round(10*time.Millisecond))
		}
		time.Sleep(1500 * time.Millisecond)
		calls, double := provider.snapshot()
		if !slices.Equal(calls, want) {
			t.Fatalf("%s: calls %v after settling, want %v", what, calls, want)
		}
		if len(double) > 0 {
			t.Fatalf("%s: both directors claimed at once: %v", what, double)
		}
		since = time.Now()
	}

	// director-1 first, so that it is master before director-2 exists.
	start(d1)
	daemontest.WaitFor(t, 20*time.Second, "director-1 to be VRRP master", master("director-1"))
	expect("director-1 to claim", "claim director-1")
	start(d2)
	time.Sleep(3 * time.Second) // director-2 settles as backup: no call
	expect("director-2 to stay quiet as backup")

	// 1. director-1's uplink gateway dies silently: carrier up, ARP
	// answered, IP dropped.
	isp[d1].BlackholeIP(t, "eth0")
	daemontest.WaitFor(t, 20*time.Second, "director-2 to become master", master("director-2"))
	expect("the uplink's death to move the claim", "release director-1", "claim director-2")
	isp[d1].Recover(t)
	daemontest.WaitFor(t, 30*time.Second, "director-1 to preempt", master("director-1"))
	expect("the uplink's return to move the claim back", "release director-2", "claim director-1")

	// 2. The remote target stops answering director-1 (its uplink's
	// gateway still does).
	isp[d1].MustRun(t, "ip", "address", "del", "198.18.100.1/32", "dev", "lo")
	daemontest.WaitFor(t, 20*time.Second, "director-2 to become master", master("director-2"))
	expect("the remote target's silence to move the claim", "release director-1", "claim director-2")
	isp[d1].AddAddr(t, "lo", "198.18.100.1/32")
	daemontest.WaitFor(t, 30*time.Second, "director-1 to preempt", master("director-1"))
	expect("the remote target's return to move the claim back", "release director-2", "claim director-1")

	// 3. director-1 stops being master: its keepalived stops (and drops
	// the VRRP address), with uplink and target healthy.
	if err := d1.ProcOf(ka[d1].cmd).Terminate(5 * time.Second); err != nil {
		t.Logf("keepalived on director-1 exited with %v", err)
	}
	daemontest.WaitFor(t, 20*time.Second, "director-2 to become master", master("director-2"))
	expect("the loss of mastership to move the claim", "release director-1", "claim director-2")
	ka[d1].cmd = startKeepalived(t, d1, ka[d1].conf)
	daemontest.WaitFor(t, 30*time.Second, "director-1 to preempt", master("director-1"))
	expect("mastership's return to move the claim back", "release director-2", "claim director-1")

	// 4. uplinkd on the claiming director crashes and is restarted. Its
	// track files still say up, and the new instance adopts them: path-ok
	// never reads down, so keepalived stays master, and claim never goes
	// down, so no release and no second claim reach the provider.
	if err := d1.ProcOf(uk[d1].Cmd).Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := d1.Wait(uk[d1].Cmd, 10*time.Second); err == nil {
		t.Fatal("uplinkd exited cleanly after SIGKILL?")
	}
	startUplinkd(d1)
	time.Sleep(2 * time.Second) // past claim's hold_up and every first verdict
	if ok, where := master("director-1")(); !ok {
		t.Fatalf("after uplinkd's restart on director-1: %s", where)
	}
	expect("a crash and restart of uplinkd on director-1 to make no call")
	if b, err := os.ReadFile(filepath.Join(trackDir[d1], "path-ok")); err != nil || string(b) != "0\n" {
		t.Errorf("path-ok after the restart: %q, %v; want up", b, err)
	}
}

type kaProc struct {
	conf string
	cmd  *exec.Cmd
}

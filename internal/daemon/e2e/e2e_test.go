package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/policy"
)

// binary is uplinkd built once for the whole test binary with the race
// detector (daemontest.BuildRace): a data race in the daemon stops it and
// fails the test. prodBinary is the shipped build (CGO_ENABLED=0, as `make
// build`), for the tests of the capability drop, which the race build
// cannot do, and for the timing benchmark.
var binary, prodBinary string

// faults counts the e2e tests that belong to the fault suite (restarts,
// a policy that manages nothing over live routes); TestMain prints their
// totals beside internal/reliability's, on success and on failure.
var faults daemontest.FaultLedger

func TestMain(m *testing.M) {
	code := runMain(m)
	faults.Print("internal/daemon/e2e")
	os.Exit(code)
}

// fault records t as one fault run: at its end, the owned defaults pol
// says should be in the kernel and are not (none when pol withdraws on
// exit, as the on_exit = "withdraw" test wants).
func (l *lab) fault(t testing.TB, pol string) {
	p, err := policy.Parse("uplinkd.toml", []byte(pol), policy.Options{})
	if err != nil {
		t.Fatalf("the test's policy is invalid: %v", err)
	}
	faults.Track(t, func() []string {
		if p.Daemon.OnExit == policy.OnExitWithdraw {
			return nil
		}
		return daemontest.MissingOwnedRoutes(l.Host, p, nil)
	})
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "uplinkd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = daemontest.BuildRace(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if prodBinary, err = daemontest.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("GORACE", daemontest.RaceEnv) // the daemons inherit it
	return m.Run()
}

const listen = "127.0.0.1:9474" // each lab host has its own loopback

// lab is the TwoUplinks topology with uplinkd running on the host.
type lab struct {
	*nstest.TwoUplinks
	t      testing.TB
	dir    string
	policy string
	cmd    *exec.Cmd
	hooks  string // file the recording hook appends to
	bin    string // the uplinkd that start runs: binary unless a test needs prodBinary
}

// recordHook appends one line per event with every UPLINKD_* variable.
const recordHook = `#!/bin/sh
printf 'event=%s gateway=%s group=%s iface=%s addr=%s prev=%s state=%s table=%s reason=%s\n' \
  "$UPLINKD_EVENT" "$UPLINKD_GATEWAY" "$UPLINKD_GROUP" "$UPLINKD_INTERFACE" "$UPLINKD_ADDRESS" \
  "$UPLINKD_PREV_STATE" "$UPLINKD_STATE" "$UPLINKD_TABLE" "$UPLINKD_REASON" >> "$1"
`

func newLab(t testing.TB) *lab {
	t.Helper()
	return newLabOn(t, nstest.NewTwoUplinks(t))
}

// newLabOn runs uplinkd on tu.Host; the helpers use only Host (and
// Server), so another topology may pass a TwoUplinks with just those.
func newLabOn(t testing.TB, tu *nstest.TwoUplinks) *lab {
	t.Helper()
	l := &lab{TwoUplinks: tu, t: t, dir: t.TempDir(), bin: binary}
	l.policy = filepath.Join(l.dir, "uplinkd.toml")
	l.hooks = filepath.Join(l.dir, "hooks.log")
	l.writeFile("record-hook", recordHook, 0o755)
	return l
}

func (l *lab) writeFile(name, content string, mode os.FileMode) string {
	l.t.Helper()
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// basePolicy: a weighted multipath default over both uplinks, each gateway
// probed every 100ms through a remote target behind it, and the recording
// hook on every event. extra is appended.
func (l *lab) basePolicy(w1 int, extra string) string {
	return fmt.Sprintf(`
[daemon]
listen = %q
control_socket = %q
track_dir = %q

[profile.fast]
gating = "always"
interval = "100ms"
timeout = "100ms"
down_count = 3
up_count = 3
recovery_interval = "100ms"
damping = false

[gateway.isp1]
address = "%s"
interface = "%s"
weight = %d
profile = "fast"
[gateway.isp1.probe]
icmp = ["%s"]

[gateway.isp2]
address = "%s"
interface = "%s"
weight = 1
profile = "fast"
[gateway.isp2.probe]
icmp = ["%s"]

[group.wan]
gateways = ["isp1", "isp2"]

[hook.record]
command = [%q, %q]
events = ["gateway_up", "gateway_down", "gateway_degraded", "group_up", "group_down", "route_changed"]
timeout = "5s"
%s`, listen, filepath.Join(l.dir, "run", "control.sock"), filepath.Join(l.dir, "track"),
		nstest.GW1Addr4, nstest.HostUplink1If, w1, nstest.TargetAddr4,
		nstest.GW2Addr4, nstest.HostUplink2If, nstest.TargetAddr4,
		filepath.Join(l.dir, "record-hook"), l.hooks, extra)
}

func (l *lab) start(policy string, args ...string) {
	l.t.Helper()
	l.writeFile("uplinkd.toml", policy, 0o600)
	l.cmd = l.Host.Start(l.t, append([]string{l.bin, "run", "--config", l.policy, "--log-level", "info"}, args...)...)
	l.waitFor("the status listener", func() bool {
		_, err := l.get("/healthz")
		return err == nil
	})
}

func (l *lab) signal(sig syscall.Signal) {
	l.t.Helper()
	if err := l.Host.ProcOf(l.cmd).Signal(sig); err != nil {
		l.t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitFor polls cond every 20 ms up to a generous deadline.
func (l *lab) waitFor(what string, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			l.t.Fatalf("timed out waiting for %s\ndaemon output:\n%s", what, tail(l.Host.Output(l.cmd), 6000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// get does an HTTP GET inside the host namespace. The socket is created on
// the namespace's thread (nstest Do), so it reaches the lab's loopback.
func (l *lab) get(path string) (string, error) {
	var body string
	err := l.Host.Do(func() error {
		c, err := net.DialTimeout("tcp", listen, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, listen)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
			return err
		}
		body = b.String()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	})
	return body, err
}

func (l *lab) metrics() map[string]*dto.MetricFamily {
	l.t.Helper()
	body, err := l.get("/metrics")
	if err != nil {
		l.t.Fatalf("scraping /metrics: %v", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		l.t.Fatalf("parsing /metrics: %v", err)
	}
	return mf
}

// metric sums the samples of name whose labels include want; -1 when the
// family is absent.
func (l *lab) metric(name string, want map[string]string) float64 {
	l.t.Helper()
	body, err := l.get("/metrics")
	if err != nil {
		l.t.Fatalf("scraping /metrics: %v", err)
	}
	sum, present, err := daemontest.Sum(body, name, want)
	if err != nil {
		l.t.Fatal(err)
	}
	if !present {
		return -1
	}
	return sum
}

// routes is uplinkd's part of the host's main table.
func (l *lab) routes() string {
	l.t.Helper()
	// A group's default through a nexthop group reads "default nhid N
	// via ..." or "default nhid N" and its nexthops; the tests look at the
	// gateways, whichever form the kernel gave the daemon.
	return nhidText.ReplaceAllString(l.Host.MustRun(l.t, "ip", "route", "show", "table", "main", "proto", "212"), "")
}

func (l *lab) hookLines() []string {
	data, _ := os.ReadFile(l.hooks)
	s := strings.TrimSpace(string(data))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// hookEvents returns the hook lines for one event name.
func (l *lab) hookEvents(event string) []string {
	var out []string
	for _, line := range l.hookLines() {
		if strings.HasPrefix(line, "event="+event+" ") {
			out = append(out, line)
		}
	}
	return out
}

func (l *lab) status() *daemon.Status {
	l.t.Helper()
	out, err := l.Host.Run(binary, "status", "--json", "--addr", listen)
	if err != nil {
		l.t.Fatalf("uplinkd status --json: %v\n%s", err, out)
	}
	var st daemon.Status
	if err := jsonUnmarshal(out, &st); err != nil {
		l.t.Fatalf("decoding status: %v\n%s", err, out)
	}
	return &st
}

func (l *lab) gatewayState(name string) string {
	for _, g := range l.status().Gateways {
		if g.Name == name {
			return g.State
		}
	}
	return ""
}

var nhidText = regexp.MustCompile(`nhid \d+ `)

var bothNexthops = regexp.MustCompile(`(?s)default.*nexthop via 198\.18\.1\.1 dev eth1 weight (\d+).*nexthop via 198\.18\.2\.1 dev eth2 weight 1`)

func (l *lab) waitBothUp() {
	l.t.Helper()
	l.waitFor("both gateways up and in the default route", func() bool {
		return l.gatewayState("isp1") == "up" && l.gatewayState("isp2") == "up" && bothNexthops.MatchString(l.routes())
	})
}

// A gateway that black-holes traffic (carrier and ARP still fine) leaves the
// default route, each hook fires once with the right environment, and the
// gateway comes back when it recovers.
func TestGatewayDiesRoutesChangeHooksFireOnce(t *testing.T) {
	l := newLab(t)
	l.start(l.basePolicy(2, ""))
	l.waitBothUp()
	if m := bothNexthops.FindStringSubmatch(l.routes()); m[1] != "2" {
		t.Fatalf("isp1 weight %s in %q, want 2", m[1], l.routes())
	}
	// Real traffic through the multipath route while the gateway dies.
	pinger := l.Host.Start(t, "ping", "-q", "-i", "0.05", "-c", "400", "-W", "1", nstest.TargetAddr4.String())
	defer l.Host.Stop(pinger)

	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("isp1 to leave the default route", func() bool {
		r := l.routes()
		return strings.Contains(r, "default via 198.18.2.1 dev eth2") && !strings.Contains(r, "198.18.1.1")
	})
	l.waitFor("the gateway_down and group hooks to run", func() bool { return len(l.hookEvents("gateway_down")) >= 1 })
	if got := l.gatewayState("isp1"); got != "down" {
		t.Errorf("isp1 state %q, want down", got)
	}
	track, err := os.ReadFile(filepath.Join(l.dir, "track", "isp1"))
	if err != nil || string(track) != "1\n" {
		t.Errorf("track file isp1 = %q, %v; want \"1\\n\"", track, err)
	}
	if track, _ := os.ReadFile(filepath.Join(l.dir, "track", "wan")); string(track) != "0\n" {
		t.Errorf("track file wan = %q, want \"0\\n\" (isp2 still healthy)", track)
	}

	l.GW1.Recover(t)
	l.waitFor("isp1 back in the default route", func() bool { return bothNexthops.MatchString(l.routes()) })
	l.waitFor("the gateway_up hook", func() bool { return len(l.hookEvents("gateway_up")) >= 1 })
	// Hooks run one after another, each through its reaper (a fresh
	// process): wait for the last expected run, then let any stray
	// duplicate show up before counting.
	l.waitFor("the third route_changed hook", func() bool { return len(l.hookEvents("route_changed")) >= 3 })
	time.Sleep(500 * time.Millisecond)

	down := l.hookEvents("gateway_down")
	wantDown := "event=gateway_down gateway=isp1 group=wan iface=eth1 addr=198.18.1.1 prev=up state=down table=254 reason="
	if len(down) != 1 || !strings.HasPrefix(down[0], wantDown) || strings.TrimPrefix(down[0], wantDown) == "" {
		t.Errorf("gateway_down hook lines:\n%s\nwant exactly one starting %q with a reason", strings.Join(down, "\n"), wantDown)
	}
	up := l.hookEvents("gateway_up")
	wantUp := "event=gateway_up gateway=isp1 group=wan iface=eth1 addr=198.18.1.1 prev=down state=up table=254 reason="
	if len(up) != 1 || !strings.HasPrefix(up[0], wantUp) {
		t.Errorf("gateway_up hook lines:\n%s\nwant exactly one starting %q", strings.Join(up, "\n"), wantUp)
	}
	if g := l.hookEvents("group_down"); len(g) != 0 {
		t.Errorf("group_down fired although isp2 stayed up: %q", g)
	}
	// One route_changed when isp1 left, one when it came back (plus the
	// initial install at start-up).
	rc := l.hookEvents("route_changed")
	if len(rc) != 3 {
		t.Errorf("route_changed hook ran %d times, want 3 (install, isp1 out, isp1 back):\n%s", len(rc), strings.Join(rc, "\n"))
	}
	for _, line := range rc {
		if !strings.Contains(line, "group=wan") || !strings.Contains(line, "table=254") {
			t.Errorf("route_changed line %q lacks group=wan table=254", line)
		}
	}
	// A run is counted when its reaper has ended, a moment after the hook
	// wrote its line.
	l.waitFor("hook_runs_total{ok} to count every run", func() bool {
		return l.metric("uplinkd_hook_runs_total", map[string]string{"hook": "record", "result": "ok"}) == float64(len(l.hookLines()))
	})
}

// A hook that hangs is killed, with its children, at its timeout; the
// daemon keeps detecting and routing meanwhile.
func TestHangingHookIsKilledAtTimeout(t *testing.T) {
	l := newLab(t)
	pidFile := filepath.Join(l.dir, "hang.pid")
	hang := l.writeFile("hang-hook", "#!/bin/sh\necho $$ > "+pidFile+"\nsleep 600\n", 0o755)
	l.start(l.basePolicy(2, fmt.Sprintf(`
[hook.hang]
command = [%q]
events = ["gateway_down", "gateway_up"]
timeout = "1s"
`, hang)))
	l.waitBothUp()
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("the hanging hook to start", func() bool { _, err := os.Stat(pidFile); return err == nil })
	// Routing does not wait for the hook.
	l.waitFor("isp1 to leave the default route", func() bool { return !strings.Contains(l.routes(), "198.18.1.1") })
	l.waitFor("the hook to be counted as timed out", func() bool {
		return l.metric("uplinkd_hook_runs_total", map[string]string{"hook": "hang", "result": "timeout"}) == 1
	})
	data, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 0 {
		t.Fatalf("bad pid file %q", data)
	}
	l.waitFor("the hook process to be gone", func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(st), ") Z ")
	})
	if !strings.Contains(l.Host.Output(l.cmd), "killed after timeout 1s") {
		t.Errorf("daemon log does not say the hook was killed at its timeout")
	}
	// The next event still runs the hook: its queue is not wedged.
	l.GW1.Recover(t)
	l.waitFor("the hook's second run", func() bool {
		return l.metric("uplinkd_hook_runs_total", map[string]string{"hook": "hang", "result": "timeout"}) == 2
	})
}

func writesTotal(l *lab) float64 {
	return l.metric("uplinkd_netlink_writes_total", nil)
}

// SIGHUP with one weight changed replaces exactly one route; a storm of
// SIGHUPs with nothing changed writes nothing; a broken policy is refused,
// keeping the old routes and health, with the reload metric at 0.
func TestReload(t *testing.T) {
	l := newLab(t)
	l.start(l.basePolicy(2, ""))
	l.waitBothUp()
	time.Sleep(300 * time.Millisecond) // let the start-up route_changed settle
	w0 := writesTotal(l)
	since0 := l.status().Gateways[0].Since

	l.writeFile("uplinkd.toml", l.basePolicy(5, ""), 0o600)
	l.signal(syscall.SIGHUP)
	l.waitFor("isp1's weight to become 5", func() bool {
		m := bothNexthops.FindStringSubmatch(l.routes())
		return m != nil && m[1] == "5"
	})
	l.waitFor("the reload to be counted", func() bool { return writesTotal(l) > w0 })
	time.Sleep(300 * time.Millisecond)
	if d := writesTotal(l) - w0; d != 1 {
		t.Errorf("weight change made %v netlink writes, want 1", d)
	}
	// A weight change is one replace: of the route (classic multipath) or
	// of its nexthop group.
	if v := l.metric("uplinkd_netlink_writes_total", map[string]string{"op": "replace", "result": "ok", "object": "route"}) +
		l.metric("uplinkd_netlink_writes_total", map[string]string{"op": "replace", "result": "ok", "object": "nexthop"}); v < 1 {
		t.Errorf("the write was not a replace (replace count %v)", v)
	}
	if st := l.status(); !sameTime(st.Gateways[0].Since, since0) || st.Gateways[0].State != "up" {
		t.Errorf("isp1 lost its health on reload: state %s since %v, was up since %v", st.Gateways[0].State, st.Gateways[0].Since, since0)
	}

	// 100 SIGHUPs in a burst, policy unchanged: no churn.
	w1 := writesTotal(l)
	reloadLines := strings.Count(l.Host.Output(l.cmd), "policy reloaded")
	for range 100 {
		l.signal(syscall.SIGHUP)
	}
	time.Sleep(time.Second)
	if d := writesTotal(l) - w1; d != 0 {
		t.Errorf("100 SIGHUPs with an unchanged policy made %v writes, want 0", d)
	}
	n := strings.Count(l.Host.Output(l.cmd), "policy reloaded") - reloadLines
	if n < 1 || n > 3 {
		t.Errorf("100 SIGHUPs caused %d reloads, want them coalesced into 1..3", n)
	}

	// A broken policy: refused, old routes and health stay.
	before := l.routes()
	l.writeFile("uplinkd.toml", l.basePolicy(2, "\n[gateway.isp3]\naddress = \"not-an-ip\"\ninterface = \"eth1\"\n"), 0o600)
	l.signal(syscall.SIGHUP)
	l.waitFor("the reload metric to drop to 0", func() bool {
		return l.metric("uplinkd_config_last_reload_successful", nil) == 0
	})
	if after := l.routes(); after != before {
		t.Errorf("routes changed after a refused reload:\nbefore %q\nafter  %q", before, after)
	}
	st := l.status()
	if st.LastReloadOK || !strings.Contains(st.LastReloadError, "not-an-ip") {
		t.Errorf("status last_reload_ok=%v error %q; want false and the policy error", st.LastReloadOK, st.LastReloadError)
	}
	if st.Gateways[0].State != "up" || !sameTime(st.Gateways[0].Since, since0) || len(st.Gateways) != 2 {
		t.Errorf("health changed after a refused reload: %+v", st.Gateways)
	}

	// `uplinkd reload` over the control socket reports the refusal too,
	// then succeeds once the policy is fixed.
	sock := filepath.Join(l.dir, "run", "control.sock")
	if out, err := l.Host.Run(binary, "reload", "--socket", sock); err == nil || !strings.Contains(out, "not-an-ip") {
		t.Errorf("uplinkd reload with a broken policy: err %v, output %q; want failure naming the error", err, out)
	}
	l.writeFile("uplinkd.toml", l.basePolicy(5, ""), 0o600)
	if out, err := l.Host.Run(binary, "reload", "--socket", sock); err != nil {
		t.Errorf("uplinkd reload: %v\n%s", err, out)
	}
	if v := l.metric("uplinkd_config_last_reload_successful", nil); v != 1 {
		t.Errorf("reload metric %v after a good reload, want 1", v)
	}
	// Opt-in kernel settings follow a reload.
	if v := strings.TrimSpace(l.Host.SysctlGet(t, "net.ipv4.fib_multipath_hash_policy")); v != "0" {
		t.Fatalf("fib_multipath_hash_policy starts at %s, want the namespace default 0", v)
	}
	l.writeFile("uplinkd.toml", "[kernel]\nfib_multipath_hash_policy = \"l4\"\n"+l.basePolicy(5, ""), 0o600)
	if out, err := l.Host.Run(binary, "reload", "--socket", sock); err != nil {
		t.Errorf("uplinkd reload with [kernel]: %v\n%s", err, out)
	}
	if v := strings.TrimSpace(l.Host.SysctlGet(t, "net.ipv4.fib_multipath_hash_policy")); v != "1" {
		t.Errorf("fib_multipath_hash_policy = %s after reload, want 1 (l4)", v)
	}
	// Status through the control socket instead of HTTP.
	if out, err := l.Host.Run(binary, "status", "--socket", sock, "--check", "isp1"); err != nil {
		t.Errorf("status --socket --check isp1: %v\n%s", err, out)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("control socket mode %v, %v; want a 0600 socket", fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("control socket directory mode %v, %v; want 0700", di.Mode(), err)
	}
}

// Every metric of docs/design.md's table is served.
func TestMetricsAreAllPresent(t *testing.T) {
	l := newLab(t)
	l.start(l.basePolicy(2, "[condition.both]\nall = [\"gateway isp1 up\", \"gateway isp2 up\"]\n"))
	l.waitBothUp()
	// Make every label set exist: a transition, a hook run, a reload, a
	// condition that goes down and up with isp1.
	l.waitFor("condition both up", func() bool { return l.metric("uplinkd_condition_up", map[string]string{"condition": "both"}) == 1 })
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("isp1 down", func() bool { return l.gatewayState("isp1") == "down" })
	l.waitFor("condition both down", func() bool { return l.metric("uplinkd_condition_up", map[string]string{"condition": "both"}) == 0 })
	if b, err := os.ReadFile(filepath.Join(l.dir, "track", "both")); err != nil || string(b) != "1\n" {
		t.Errorf("track file of condition both = %q (%v) with isp1 down, want 1", b, err)
	}
	l.GW1.Recover(t)
	l.waitFor("isp1 up", func() bool { return l.gatewayState("isp1") == "up" })
	l.waitFor("condition both up again", func() bool { return l.metric("uplinkd_condition_up", map[string]string{"condition": "both"}) == 1 })
	l.signal(syscall.SIGHUP)
	l.waitFor("a hook run", func() bool { return len(l.hookLines()) > 0 })

	names := designMetrics(t)
	if len(names) < 20 {
		t.Fatalf("found only %d metric names in docs/design.md", len(names))
	}
	mf := l.metrics()
	for _, n := range names {
		if bfdSessionMetric(n) {
			continue // per-session series: TestBFDGateway checks them with a session
		}
		if _, ok := mf[n]; !ok {
			t.Errorf("metric %s (docs/design.md) is not served", n)
		}
	}
	if v := l.metric("uplinkd_build_info", nil); v != 1 {
		t.Errorf("uplinkd_build_info = %v, want 1", v)
	}
	if v := l.metric("uplinkd_group_up", map[string]string{"group": "wan"}); v != 1 {
		t.Errorf("uplinkd_group_up{group=wan} = %v, want 1", v)
	}
	if v := l.metric("uplinkd_group_healthy_gateways", map[string]string{"group": "wan"}); v != 2 {
		t.Errorf("uplinkd_group_healthy_gateways{group=wan} = %v, want 2", v)
	}
	// Read-only: nothing changes on POST.
	err := l.Host.Do(func() error {
		c, err := net.DialTimeout("tcp", listen, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /status HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			return fmt.Errorf("POST /status: %s, want 405", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// `uplinkd status --check` exit codes follow the state: 0 up, 1 down, 2 for
// an unknown name, 4 for no daemon.
func TestStatusCheckExitCodes(t *testing.T) {
	l := newLab(t)
	l.start(l.basePolicy(2, ""))
	l.waitBothUp()
	check := func(name string) int {
		_, err := l.Host.Run(binary, "status", "--addr", listen, "--check", name)
		if err == nil {
			return 0
		}
		var ee *exec.ExitError
		if errorsAs(err, &ee) {
			return ee.ExitCode()
		}
		t.Fatalf("status --check %s: %v", name, err)
		return -1
	}
	for name, want := range map[string]int{"isp1": 0, "isp2": 0, "wan": 0, "nosuch": 2} {
		if got := check(name); got != want {
			t.Errorf("status --check %s = %d, want %d", name, got, want)
		}
	}
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("isp1 down", func() bool { return check("isp1") == 1 })
	if got := check("wan"); got != 0 {
		t.Errorf("status --check wan = %d with isp2 up, want 0", got)
	}
	l.GW2.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("group wan down", func() bool { return check("wan") == 1 })
	l.waitFor("the group_down hook", func() bool { return len(l.hookEvents("group_down")) == 1 })
	if track, _ := os.ReadFile(filepath.Join(l.dir, "track", "wan")); string(track) != "1\n" {
		t.Errorf("track file wan = %q with no healthy gateway, want \"1\\n\"", track)
	}
	// The table shows both gateways down, with reasons.
	out := l.Host.MustRun(t, binary, "status", "--addr", listen)
	t.Logf("uplinkd status:\n%s", out)
	for _, want := range []string{"GATEWAY", "isp1", "eth1", "down", "GROUP", "wan"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	l.GW1.Recover(t)
	l.waitFor("group wan up again", func() bool { return check("wan") == 0 })

	l.signal(syscall.SIGTERM)
	if err := l.Host.Wait(l.cmd, 15*time.Second); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	if got := check("isp1"); got != 4 {
		t.Errorf("status --check with no daemon = %d, want 4 (unreachable)", got)
	}
}

// SIGTERM with the default on_exit leaves the routes in place; withdraw
// removes them.
func TestSIGTERMOnExit(t *testing.T) {
	for _, tc := range []struct {
		onExit    string
		wantRoute bool
	}{{"", true}, {`on_exit = "withdraw"`, false}} {
		t.Run("on_exit="+tc.onExit, func(t *testing.T) {
			l := newLab(t)
			pol := l.basePolicy(2, "")
			if tc.onExit != "" {
				pol = strings.Replace(pol, "[daemon]\n", "[daemon]\n"+tc.onExit+"\n", 1)
			}
			l.fault(t, pol)
			l.start(pol)
			l.waitBothUp()
			before := l.routes()
			l.signal(syscall.SIGTERM)
			if err := l.Host.Wait(l.cmd, 15*time.Second); err != nil {
				t.Fatalf("daemon did not exit cleanly on SIGTERM: %v\n%s", err, l.Host.Output(l.cmd))
			}
			after := l.routes()
			if tc.wantRoute && after != before {
				t.Errorf("routes changed on exit with on_exit=leave:\nbefore %q\nafter  %q", before, after)
			}
			if !tc.wantRoute && strings.TrimSpace(after) != "" {
				t.Errorf("routes left after on_exit=withdraw: %q", after)
			}
			if _, err := os.Stat(filepath.Join(l.dir, "run", "control.sock")); !os.IsNotExist(err) {
				t.Errorf("control socket left behind: %v", err)
			}
		})
	}
}

// A restart with the same policy and healthy gateways makes no writes.
func TestRestartMakesNoWrites(t *testing.T) {
	l := newLab(t)
	pol := l.basePolicy(2, "")
	l.fault(t, pol)
	l.start(pol)
	l.waitBothUp()
	l.signal(syscall.SIGTERM)
	if err := l.Host.Wait(l.cmd, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	before := l.routes()
	l.start(pol)
	l.waitBothUp()
	time.Sleep(500 * time.Millisecond)
	if v := writesTotal(l); v != 0 {
		t.Errorf("restart made %v netlink writes, want 0", v)
	}
	if after := l.routes(); after != before {
		t.Errorf("routes changed across a restart:\nbefore %q\nafter  %q", before, after)
	}
}

// After start-up only CAP_NET_ADMIN and CAP_NET_RAW remain, in every set.
func TestCapabilitiesDropped(t *testing.T) {
	l := newLab(t)
	l.bin = prodBinary // the race build cannot drop capabilities
	capsFile := filepath.Join(l.dir, "hook-caps")
	capsHook := l.writeFile("caps-hook", "#!/bin/sh\ngrep ^Cap /proc/self/status >> "+capsFile+"\n", 0o755)
	// route_changed fires for the initial apply, which happens before the
	// drop: the hook must still only run with the kept capabilities.
	l.start(l.basePolicy(2, fmt.Sprintf(`
[hook.caps]
command = [%q]
events = ["route_changed"]
`, capsHook)))
	l.waitBothUp()
	l.waitFor("the caps hook", func() bool { _, err := os.Stat(capsFile); return err == nil })
	data, _ := os.ReadFile(capsFile)
	hc, err := daemon.ParseProcCaps(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if hc.Eff != 1<<12|1<<13 || hc.Bnd != 1<<12|1<<13 || hc.Amb != 0 {
		t.Errorf("hook capabilities %+v (%q); want Eff=Bnd=0x3000, Amb=0", hc, data)
	}
	pid := strconv.Itoa(l.cmd.Process.Pid)
	caps, err := daemon.ReadProcCaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	const want = 1<<12 | 1<<13 // CAP_NET_ADMIN, CAP_NET_RAW
	if caps.Eff != want || caps.Prm != want || caps.Bnd != want || caps.Inh != 0 || caps.Amb != 0 {
		t.Errorf("capabilities of pid %s: %+v; want Eff=Prm=Bnd=%#x, Inh=Amb=0", pid, caps, want)
	}
	// Every thread, not just the main one.
	tasks, _ := os.ReadDir("/proc/" + pid + "/task")
	if len(tasks) < 2 {
		t.Fatalf("only %d threads", len(tasks))
	}
	for _, task := range tasks {
		c, err := daemon.ReadProcCaps(pid + "/task/" + task.Name())
		if err != nil {
			continue // thread exited
		}
		if c.Eff != want || c.Prm != want || c.Bnd != want {
			t.Errorf("thread %s: %+v", task.Name(), c)
		}
	}
	// And the daemon still works: it can still change routes.
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("isp1 to leave the route with reduced capabilities", func() bool { return !strings.Contains(l.routes(), "198.18.1.1") })
}

// The daemon refuses to start, says why, exits 2 and touches nothing.
func TestRefusesToStart(t *testing.T) {
	l := newLab(t)
	good := l.basePolicy(2, "")
	ruleDump := l.Host.MustRun(t, "ip", "rule", "show")
	for _, tc := range []struct {
		name   string
		policy string
		mode   os.FileMode
		setup  func()
		want   string
		code   int      // 3 for the policy itself, 2 for the host
		flags  []string // extra `run` flags
	}{
		{"invalid policy", good + "\n[gateway.bad]\naddress = \"nope\"\ninterface = \"eth1\"\n", 0o600, nil, "is not an IPv4 or IPv6 address", 3, nil},
		{"group-writable policy", good, 0o664, nil, "is writable by group or others", 3, nil},
		// By default an absent interface only holds its gateway down
		// (TestInterfaceCreatedAfterStart); the old strictness is a flag.
		{"missing interface, --require-interfaces", strings.Replace(good, `interface = "eth2"`, `interface = "eth9"`, 1), 0o600, nil, "interface eth9 does not exist", 2,
			[]string{"--require-interfaces"}},
		{"writable hook", good, 0o600, func() { os.Chmod(filepath.Join(l.dir, "record-hook"), 0o757) }, "record-hook is writable by group or others", 2, nil},
		{"hook owned by another user", good, 0o600, func() {
			os.Chmod(filepath.Join(l.dir, "record-hook"), 0o755)
			os.Chown(filepath.Join(l.dir, "record-hook"), 65534, 65534)
		}, "is owned by uid 65534, not root", 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l.writeFile("record-hook", recordHook, 0o755)
			os.Chown(filepath.Join(l.dir, "record-hook"), 0, 0)
			if tc.setup != nil {
				tc.setup()
			}
			l.writeFile("uplinkd.toml", tc.policy, tc.mode)
			out, err := l.Host.Run(append([]string{binary, "run", "--config", l.policy}, tc.flags...)...)
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != tc.code {
				t.Errorf("exit: %v, want status %d\n%s", err, tc.code, out)
			}
			if !strings.Contains(out, "refusing to start") || !strings.Contains(out, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, out)
			}
			if r := l.routes(); strings.TrimSpace(r) != "" {
				t.Errorf("routes installed by a daemon that refused to start: %q", r)
			}
			if r := l.Host.MustRun(t, "ip", "rule", "show"); r != ruleDump {
				t.Errorf("rules changed:\n%s", r)
			}
		})
	}
	// Without CAP_NET_ADMIN (setpriv removes it from the bounding set,
	// so the exec'd daemon never has it).
	// scripts/setup.sh installs setpriv (util-linux): its absence is a
	// broken setup, not a reason to test less.
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is not installed; run scripts/setup.sh: %v", err)
	}
	l.writeFile("record-hook", recordHook, 0o755)
	os.Chown(filepath.Join(l.dir, "record-hook"), 0, 0)
	l.writeFile("uplinkd.toml", good, 0o600)
	out, err := l.Host.Run("setpriv", "--inh-caps=-all", "--bounding-set=-net_admin", binary, "run", "--config", l.policy)
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, "missing CAP_NET_ADMIN") {
		t.Errorf("without CAP_NET_ADMIN: %v, want exit 2 saying \"missing CAP_NET_ADMIN\":\n%s", err, out)
	}
}

// With the shipped profile (gated: probe only while traffic flows and
// nothing comes back), real traffic through a gateway that silently stops
// forwarding is what gets it detected and routed around; the idle gateway
// is never declared down.
func TestGatedDetectionWithRealTraffic(t *testing.T) {
	l := newLab(t)
	pol := fmt.Sprintf(`
[daemon]
listen = %q
control_socket = %q

[gateway.isp1]
address = "%s"
interface = "eth1"
[gateway.isp1.probe]
icmp = ["%s"]

[gateway.isp2]
address = "%s"
interface = "eth2"
[gateway.isp2.probe]
icmp = ["%s"]

[group.wan]
gateways = ["isp1", "isp2"]
`, listen, filepath.Join(l.dir, "run", "control.sock"), nstest.GW1Addr4, nstest.TargetAddr4, nstest.GW2Addr4, nstest.TargetAddr4)
	l.start(pol)
	l.waitFor("both gateways in the default route", func() bool {
		r := l.routes()
		return strings.Contains(r, "nexthop via 198.18.1.1 dev eth1") && strings.Contains(r, "nexthop via 198.18.2.1 dev eth2")
	})
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	// Traffic bound to eth1 takes isp1's nexthop of the multipath default,
	// so isp1 sees tx without rx; bounded in count and time.
	pinger := l.Host.Start(t, "ping", "-q", "-I", "eth1", "-i", "0.02", "-c", "1000", "-w", "30", nstest.TargetAddr4.String())
	defer l.Host.Stop(pinger)
	l.waitFor("isp1 to leave the default route", func() bool {
		r := l.routes()
		return strings.Contains(r, "default via 198.18.2.1 dev eth2") && !strings.Contains(r, "198.18.1.1")
	})
	st := l.status()
	for _, g := range st.Gateways {
		switch g.Name {
		case "isp1":
			if g.State != "down" || g.Reason == "" {
				t.Errorf("isp1: state %q reason %q, want down with a reason", g.State, g.Reason)
			}
		case "isp2":
			if !g.Up {
				t.Errorf("idle isp2 is %q, want it still up", g.State)
			}
		}
	}
	if v := l.metric("uplinkd_probes_sent_total", map[string]string{"gateway": "isp1"}); v <= 0 {
		t.Errorf("isp1 was never probed (probes_sent %v): detection must come from probes confirming tx without rx", v)
	}
	l.Host.Stop(pinger)
	l.GW1.Recover(t)
	l.waitFor("isp1 back after recovery probes", func() bool {
		return strings.Contains(l.routes(), "nexthop via 198.18.1.1 dev eth1")
	})
}

// systemd notification: READY=1 once routes are applied, STATUS=, the
// watchdog at half of WATCHDOG_USEC from the health loop, RELOADING=1 around
// a reload and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	l := newLab(t)
	sockPath := filepath.Join(l.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 256)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	l.writeFile("uplinkd.toml", l.basePolicy(2, ""), 0o600)
	l.cmd = l.Host.Start(t, "env", "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=400000", binary, "run", "--config", l.policy)
	var got []string
	expect := func(prefix string) string {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			for _, m := range got {
				if strings.HasPrefix(m, prefix) {
					return m
				}
			}
			select {
			case m := <-msgs:
				got = append(got, m)
			case <-deadline:
				t.Fatalf("no %q notification; got %q\n%s", prefix, got, l.Host.Output(l.cmd))
			}
		}
	}
	expect("READY=1")
	if s := expect("STATUS="); !strings.Contains(s, "gateways healthy") {
		t.Errorf("status text %q", s)
	}
	// At least two watchdog pings: the loop keeps sending them.
	expect("WATCHDOG=1")
	got = slicesDeleteFirst(got, "WATCHDOG=1")
	expect("WATCHDOG=1")
	l.signal(syscall.SIGHUP)
	if m := expect("RELOADING=1"); !strings.Contains(m, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING without MONOTONIC_USEC: %q", m)
	}
	l.signal(syscall.SIGTERM)
	expect("STOPPING=1")
	if err := l.Host.Wait(l.cmd, 15*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

func slicesDeleteFirst(s []string, v string) []string {
	for i, x := range s {
		if x == v {
			return append(s[:i:i], s[i+1:]...)
		}
	}
	return s
}

// A lossy gateway is degraded, not down: it keeps its place in the route
// with its degraded weight, gateway_degraded fires once, and it is restored
// when the loss stops.
func TestLossyGatewayDegraded(t *testing.T) {
	l := newLab(t)
	pol := l.basePolicy(3, "")
	pol = strings.Replace(pol, "weight = 3\n", "weight = 3\ndegraded_weight = 1\n", 1)
	pol = strings.Replace(pol, `interval = "100ms"
timeout = "100ms"
down_count = 3`, `interval = "50ms"
timeout = "100ms"
down_count = 12
window = "2s"
min_samples = 10
loss_threshold = "20%"`, 1)
	l.start(pol)
	l.waitBothUp()
	// 40% of what reaches GW1 is dropped: twelve losses in a row (down) is
	// a 1-in-60,000 event, the window's loss ratio is far above 20%.
	l.GW1.Loss(t, nstest.GWDownlinkIf, 40)
	l.waitFor("isp1 degraded with its degraded weight", func() bool {
		m := bothNexthops.FindStringSubmatch(l.routes())
		return l.gatewayState("isp1") == "degraded" && m != nil && m[1] == "1"
	})
	l.GW1.Recover(t)
	l.waitFor("isp1 restored to weight 3", func() bool {
		m := bothNexthops.FindStringSubmatch(l.routes())
		return l.gatewayState("isp1") == "up" && m != nil && m[1] == "3"
	})
	l.waitFor("the gateway_up hook", func() bool { return len(l.hookEvents("gateway_up")) >= 1 })
	time.Sleep(300 * time.Millisecond)
	deg := l.hookEvents("gateway_degraded")
	if len(deg) != 1 || !strings.HasPrefix(deg[0], "event=gateway_degraded gateway=isp1 group=wan iface=eth1 addr=198.18.1.1 prev=up state=degraded table=254 reason=loss ") {
		t.Errorf("gateway_degraded hook lines: %q", deg)
	}
	if up := l.hookEvents("gateway_up"); len(up) != 1 || !strings.Contains(up[0], "prev=degraded state=up") {
		t.Errorf("gateway_up hook lines: %q", up)
	}
	if d := l.hookEvents("gateway_down"); len(d) != 0 {
		t.Errorf("a lossy gateway was declared down: %q", d)
	}
}

// Every kind of gateway death takes the gateway out of the route and brings
// it back after recovery, with one gateway_down and one gateway_up hook.
func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(l *lab)
		after func(l *lab) // extra repair after Recover
	}{
		{"forwarding blackholed, ARP still answered", func(l *lab) { l.GW1.BlackholeIP(t, nstest.GWDownlinkIf) }, nil},
		{"ARP and IP blackholed", func(l *lab) { l.GW1.BlackholeARP(t, nstest.GWDownlinkIf) }, nil},
		{"carrier lost", func(l *lab) { l.GW1.LinkDown(t, nstest.GWDownlinkIf) }, nil},
		// Only the remote probe target can see this one.
		{"upstream cut behind the gateway", func(l *lab) { l.GW1.LinkDown(t, nstest.GWUplinkIf) }, func(l *lab) {
			// The kernel dropped GW1's default route with its link.
			l.GW1.MustRun(t, "ip", "route", "replace", "default", "via", nstest.Server1TransitAddr4.String(), "dev", nstest.GWUplinkIf)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.start(l.basePolicy(2, ""))
			l.waitBothUp()
			tc.fault(l)
			l.waitFor("isp1 out of the default route", func() bool {
				r := l.routes()
				return strings.Contains(r, "default via 198.18.2.1 dev eth2") && !strings.Contains(r, "198.18.1.1")
			})
			l.waitFor("the gateway_down hook", func() bool { return len(l.hookEvents("gateway_down")) >= 1 })
			reason := l.status().Gateways[0].Reason
			l.GW1.Recover(t)
			if tc.after != nil {
				tc.after(l)
			}
			l.waitFor("isp1 back in the default route", func() bool { return bothNexthops.MatchString(l.routes()) })
			l.waitFor("the gateway_up hook", func() bool { return len(l.hookEvents("gateway_up")) >= 1 })
			time.Sleep(300 * time.Millisecond)
			if d, u := l.hookEvents("gateway_down"), l.hookEvents("gateway_up"); len(d) != 1 || len(u) != 1 {
				t.Errorf("hooks: %d gateway_down, %d gateway_up, want 1 each:\n%s", len(d), len(u), strings.Join(l.hookLines(), "\n"))
			}
			t.Logf("%s: detected as %q", tc.name, reason)
		})
	}
}

// A gateway that leaves the policy on reload takes its metric series, its
// track file and its routes with it; the other gateway keeps its health.
func TestReloadRemovesGateway(t *testing.T) {
	l := newLab(t)
	l.start(l.basePolicy(2, ""))
	l.waitBothUp()
	hasSeries := func(label, value string) []string {
		var names []string
		for name, mf := range l.metrics() {
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label && lp.GetValue() == value {
						names = append(names, name)
					}
				}
			}
		}
		return names
	}
	if len(hasSeries("gateway", "isp2")) == 0 {
		t.Fatal("no isp2 series before the reload")
	}
	since := l.status().Gateways[0].Since
	pol := l.basePolicy(2, "")
	start := strings.Index(pol, "[gateway.isp2]")
	end := strings.Index(pol, "[group.wan]")
	pol = pol[:start] + pol[end:]
	pol = strings.Replace(pol, `gateways = ["isp1", "isp2"]`, `gateways = ["isp1"]`, 1)
	l.writeFile("uplinkd.toml", pol, 0o600)
	if out, err := l.Host.Run(binary, "reload", "--socket", filepath.Join(l.dir, "run", "control.sock")); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	l.waitFor("the route through isp1 only", func() bool {
		r := l.routes()
		return strings.Contains(r, "default via 198.18.1.1 dev eth1") && !strings.Contains(r, "198.18.2.1")
	})
	if names := hasSeries("gateway", "isp2"); len(names) != 0 {
		t.Errorf("series of removed gateway isp2 still served: %v", names)
	}
	if _, err := os.Stat(filepath.Join(l.dir, "track", "isp2")); !os.IsNotExist(err) {
		t.Errorf("track file of removed gateway isp2: %v", err)
	}
	st := l.status()
	if len(st.Gateways) != 1 || st.Gateways[0].State != "up" || !sameTime(st.Gateways[0].Since, since) {
		t.Errorf("after removing isp2: %+v (isp1 was up since %v)", st.Gateways, since)
	}
}

// IPv6 gateways go through the same loop: an IPv6 default multipath route
// loses the dead gateway and gets it back.
func TestIPv6Gateway(t *testing.T) {
	l := newLab(t)
	pol := l.basePolicy(2, fmt.Sprintf(`
[gateway.isp1-v6]
address = "%s"
interface = "eth1"
profile = "fast"
[gateway.isp1-v6.probe]
icmp = ["%s"]

[gateway.isp2-v6]
address = "%s"
interface = "eth2"
profile = "fast"
[gateway.isp2-v6.probe]
icmp = ["%s"]

[group.wan6]
gateways = ["isp1-v6", "isp2-v6"]
`, nstest.GW1Addr6, nstest.TargetAddr6, nstest.GW2Addr6, nstest.TargetAddr6))
	l.start(pol)
	routes6 := func() string {
		return nhidText.ReplaceAllString(l.Host.MustRun(t, "ip", "-6", "route", "show", "table", "main", "proto", "212"), "")
	}
	both6 := regexp.MustCompile(`(?s)default.*nexthop via 2001:db8:1::1 dev eth1 weight 1.*nexthop via 2001:db8:2::1 dev eth2 weight 1`)
	l.waitFor("the IPv6 multipath default", func() bool { return both6.MatchString(routes6()) })
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("isp1-v6 out of the IPv6 default", func() bool {
		r := routes6()
		// Through a one-member nexthop group IPv6 shows the member as
		// "nexthop via"; either way only isp2-v6 is left.
		return strings.Contains(r, "via 2001:db8:2::1 dev eth2") && !strings.Contains(r, "2001:db8:1::1")
	})
	l.waitFor("the v6 gateway_down hook", func() bool {
		for _, line := range l.hookEvents("gateway_down") {
			if strings.Contains(line, "gateway=isp1-v6 group=wan6 iface=eth1 addr=2001:db8:1::1 prev=up state=down") {
				return true
			}
		}
		return false
	})
	l.GW1.Recover(t)
	l.waitFor("isp1-v6 back", func() bool { return both6.MatchString(routes6()) })
}

// Under the systemd unit's CapabilityBoundingSet (NET_ADMIN, NET_RAW; BPF
// and SYS_ADMIN for loading and adopting the counting programs, SETPCAP to
// drop them; no CAP_CHOWN or CAP_DAC_OVERRIDE) the daemon starts, counts
// with tcx, keeps only NET_ADMIN and NET_RAW, and still moves routes.
// Under the older set, without BPF and SYS_ADMIN, it counts with its
// nftables table instead and says why.
func TestRunsUnderUnitBoundingSet(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is not installed; run scripts/setup.sh: %v", err)
	}
	for _, tc := range []struct {
		name, bounding, backend, why string
	}{
		{"unit", "-all,+net_admin,+net_raw,+bpf,+sys_admin,+setpcap", "tcx", ""},
		{"without bpf", "-all,+net_admin,+net_raw", "nftables", "operation not permitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.writeFile("uplinkd.toml", l.basePolicy(2, ""), 0o600)
			l.cmd = l.Host.Start(t, "setpriv", "--inh-caps=-all", "--bounding-set="+tc.bounding, prodBinary, "run", "--config", l.policy)
			l.waitFor("the status listener", func() bool { _, err := l.get("/healthz"); return err == nil })
			l.waitBothUp()
			caps, err := daemon.ReadProcCaps(strconv.Itoa(l.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			if caps.Eff != 0x3000 || caps.Bnd != 0x3000 {
				t.Errorf("capabilities %+v, want Eff=Bnd=0x3000", caps)
			}
			// Counting works with the capabilities kept: the programs
			// are attached after the drop, with CAP_NET_ADMIN only.
			l.waitFor("isp1 counted per gateway", func() bool { return l.gatewayStatus("isp1").TrafficCounting == "neighbour" })
			st := l.status()
			if st.TrafficBackend != tc.backend || !strings.Contains(st.TrafficBackendReason, tc.why) || (tc.why == "") != (st.TrafficBackendReason == "") {
				t.Errorf("traffic backend %q (%q), want %q (with %q)", st.TrafficBackend, st.TrafficBackendReason, tc.backend, tc.why)
			}
			l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
			l.waitFor("isp1 out of the route", func() bool { return !strings.Contains(l.routes(), "198.18.1.1") })
			if out, err := l.Host.Run(binary, "reload", "--socket", filepath.Join(l.dir, "run", "control.sock")); err != nil {
				t.Errorf("reload under the bounding set: %v\n%s", err, out)
			}
		})
	}
}

// BenchmarkFailoverInNamespace measures, with the real binary, the time
// from a gateway silently black-holing traffic to the kernel's default
// route no longer using it (100 ms probe interval, 3 lost probes), and
// from its recovery to the route using it again (3 good probes).
func BenchmarkFailoverInNamespace(b *testing.B) {
	l := newLab(b)
	l.bin = prodBinary // timings of the shipped build
	l.start(l.basePolicy(2, ""))
	l.waitFor("both gateways up", func() bool { return bothNexthops.MatchString(l.routes()) })
	var down, up time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		l.GW1.BlackholeIP(b, nstest.GWDownlinkIf)
		l.waitFor("isp1 out", func() bool { return !strings.Contains(l.routes(), "198.18.1.1") })
		down += time.Since(start)
		start = time.Now()
		l.GW1.Recover(b)
		l.waitFor("isp1 back", func() bool { return bothNexthops.MatchString(l.routes()) })
		up += time.Since(start)
	}
	b.ReportMetric(float64(down.Milliseconds())/float64(b.N), "ms-to-withdraw")
	b.ReportMetric(float64(up.Milliseconds())/float64(b.N), "ms-to-restore")
}

// Issue 11.2: a policy that manages nothing (empty, comments only) is
// refused by reload and by run, with the routes a previous policy or
// instance installed left in place. Before, reload said "policy reloaded"
// and run started, and both deleted every owned route: the host's default
// route among them.
func TestPolicyThatManagesNothingIsRefused(t *testing.T) {
	l := newLab(t)
	good := l.basePolicy(2, "")
	l.fault(t, good)
	l.start(good)
	l.waitBothUp()
	before := l.routes()
	sock := filepath.Join(l.dir, "run", "control.sock")
	// The last one has a gateway, but in no group and without a table: it
	// leads to no route, and policy refuses it too.
	gatewayOnly := fmt.Sprintf("[daemon]\nlisten = %q\ncontrol_socket = %q\n\n[gateway.isp1]\naddress = %q\ninterface = %q\n",
		listen, sock, nstest.GW1Addr4, nstest.HostUplink1If)
	for _, empty := range []string{"", "# nothing here yet\n", gatewayOnly} {
		l.writeFile("uplinkd.toml", empty, 0o600)
		out, err := l.Host.Run(binary, "reload", "--socket", sock)
		if err == nil || !strings.Contains(out, "manages nothing") {
			t.Errorf("reload with %q: %v, want refused saying it manages nothing:\n%s", empty, err, out)
		}
		if after := l.routes(); after != before {
			t.Fatalf("reload with %q changed the routes:\nbefore %q\nafter  %q", empty, before, after)
		}
	}
	if st := l.status(); !strings.Contains(strings.Join(st.Routes, "\n"), "198.18.1.1") {
		t.Errorf("status after the refused reloads lost the routes: %v", st.Routes)
	}

	// The daemon goes (on_exit = "leave"); its routes stay. A new one with
	// the empty policy must not start over them.
	l.signal(syscall.SIGTERM)
	if err := l.Host.Wait(l.cmd, 15*time.Second); err != nil {
		t.Fatalf("daemon did not exit cleanly on SIGTERM: %v", err)
	}
	for _, empty := range []string{"", "# nothing here yet\n", gatewayOnly} {
		l.writeFile("uplinkd.toml", empty, 0o600)
		out, err := l.Host.Run(binary, "run", "--config", l.policy)
		var ee *exec.ExitError
		if !errorsAs(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out, "refusing to start") || !strings.Contains(out, "manages nothing") {
			t.Errorf("run with %q: %v, want exit 3 (invalid policy) refusing to start because it manages nothing:\n%s", empty, err, out)
		}
		if after := l.routes(); after != before {
			t.Fatalf("run with %q changed the routes left by the previous instance:\nbefore %q\nafter  %q", empty, before, after)
		}
	}
}

// TestResilientGroupsEndToEnd runs the daemon with multipath = "groups": the
// group's default goes through a resilient nexthop group, status says so,
// and a dead gateway is taken out of the group without a route write.
func TestResilientGroupsEndToEnd(t *testing.T) {
	l := newLab(t)
	l.start(strings.Replace(l.basePolicy(2, ""), "[daemon]\n", "[daemon]\nmultipath = \"groups\"\n", 1))
	l.waitBothUp()
	if st := l.status(); st.Multipath != "resilient" {
		t.Fatalf("status multipath %q, want resilient", st.Multipath)
	}
	if v := l.metric("uplinkd_multipath_form", map[string]string{"form": "resilient"}); v != 1 {
		t.Errorf("uplinkd_multipath_form{form=resilient} = %v, want 1", v)
	}
	nh := l.Host.MustRun(t, "ip", "nexthop", "show")
	raw := l.Host.MustRun(t, "ip", "route", "show", "default", "proto", "212")
	if !strings.Contains(nh, "type resilient buckets 128 idle_timer 120") || !strings.Contains(raw, "default nhid ") {
		t.Fatalf("nexthop objects:\n%s\nroute:\n%s", nh, raw)
	}
	routeWrites := func() float64 {
		var n float64
		for _, op := range []string{"add", "replace", "delete"} {
			n += l.metric("uplinkd_netlink_writes_total", map[string]string{"object": "route", "op": op, "result": "ok"})
		}
		return n
	}
	r0 := routeWrites()
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("isp1 out of the group", func() bool {
		r := l.routes()
		return strings.Contains(r, "198.18.2.1") && !strings.Contains(r, "198.18.1.1")
	})
	if v := l.metric("uplinkd_netlink_writes_total", map[string]string{"object": "nexthop", "op": "replace", "result": "ok"}); v < 1 {
		t.Errorf("no nexthop group replace counted (%v)", v)
	}
	if d := routeWrites() - r0; d != 0 {
		t.Errorf("%v route writes for a member change, want 0 (the group object carries it)", d)
	}
	if got := l.Host.MustRun(t, "ip", "route", "show", "default", "proto", "212"); nhidText.FindString(got) != nhidText.FindString(raw) {
		t.Errorf("the route moved to another group:\n%s\nwas:\n%s", got, raw)
	}
}

package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/policy"
)

// uplinkdBin, prodBin and spooferBin are built once for the whole test
// binary. uplinkdBin has the race detector (daemontest.BuildRace): a data
// race in the daemon under these faults stops it and fails the test.
// prodBin is the shipped build, for the soak benchmark's CPU and memory
// figures, which the race detector would inflate.
var uplinkdBin, prodBin, spooferBin string

// faults counts the suite's fault runs: every rig is one (newRig), and the
// tests without one record themselves (faultRun). TestMain prints the
// totals whatever the outcome; the ledger asserts nothing the tests do not.
var faults daemontest.FaultLedger

func TestMain(m *testing.M) {
	code := runMain(m)
	faults.Print("internal/reliability")
	os.Exit(code)
}

// faultRun records a test that injects a fault without a rig (nothing of
// a daemon's to measure routes against).
func faultRun(t testing.TB) { faults.Track(t, nil) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "uplinkd-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if uplinkdBin, err = daemontest.BuildRace(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if prodBin, err = daemontest.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("GORACE", daemontest.RaceEnv) // the daemons inherit it
	spooferBin = filepath.Join(dir, "spoofer")
	goBin := "go"
	if _, err := exec.LookPath(goBin); err != nil {
		goBin = "/usr/local/go/bin/go" // where the machine image and CI keep it, as daemontest.Build
	}
	cmd := exec.Command(goBin, "build", "-o", spooferBin, "./internal/reliability/testdata/spoofer")
	cmd.Dir = daemontest.Root()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the spoofer: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

const listen = "127.0.0.1:9474" // every lab host has its own loopback

// rig is the TwoUplinks lab with uplinkd about to run on its host.
type rig struct {
	*nstest.TwoUplinks
	t     testing.TB
	dir   string
	hooks string // the recording hook's log
	d     *daemontest.Daemon
	pol   *policy.Policy // the policy launch last started d with
	bin   string         // the uplinkd launch runs: uplinkdBin unless set
}

// recordHook appends one line per event.
const recordHook = `#!/bin/sh
printf 'event=%s gateway=%s group=%s state=%s\n' "$UPLINKD_EVENT" "$UPLINKD_GATEWAY" "$UPLINKD_GROUP" "$UPLINKD_STATE" >> "$1"
`

func newRig(t testing.TB) *rig {
	t.Helper()
	r := &rig{TwoUplinks: nstest.NewTwoUplinks(t), t: t, dir: t.TempDir()}
	r.hooks = filepath.Join(r.dir, "hooks.log")
	r.writeFile("record-hook", recordHook, 0o755)
	faults.Track(t, r.missingRoutes)
	return r
}

// missingRoutes measures the owned routes missing from the kernel at the
// end of the test, against the last policy launched (none: nothing to
// miss). A daemon that withdrew on purpose (on_exit = "withdraw", then
// stopped) is expected to own nothing.
func (r *rig) missingRoutes() []string {
	if r.pol == nil || r.d == nil {
		return nil
	}
	st, err := r.d.Status()
	if err != nil && r.pol.Daemon.OnExit == policy.OnExitWithdraw {
		return nil
	}
	var up func(string) bool
	if err == nil {
		up = func(name string) bool {
			for _, g := range st.Gateways {
				if g.Name == name {
					return g.Up
				}
			}
			return false
		}
	}
	return daemontest.MissingOwnedRoutes(r.Host, r.pol, up)
}

func (r *rig) writeFile(name, content string, mode os.FileMode) string {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// polOpts shapes the standard policy: isp1 and isp2 in one weighted
// multipath group, probed every 100 ms through the Server's target.
type polOpts struct {
	Tables     bool   // per-source tables 201/202 with their rules
	Src1       string // isp1's source address when Tables (default Host1Addr4)
	LastResort string // the group's last_resort ("" = policy default)
	Damping    bool   // flap damping on, with a quick half-life
	Extra      string // appended verbatim (more sections)
	NoRecord   bool   // leave the recording hook out
	V6         bool   // also an IPv6 group over both uplinks (isp1v6, isp2v6)
}

func (r *rig) policy(o polOpts) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[daemon]
listen = %q
log_level = "info"
resync_interval = "30s"

[profile.fast]
gating = "always"
interval = "100ms"
timeout = "100ms"
down_count = 3
up_count = 3
recovery_interval = "100ms"
# A death leaves lost probes in the loss window; the faults here are about
# up and down, so degradation would only blur them.
loss_threshold = 0
latency_threshold = "0s"
`, listen)
	if o.Damping {
		b.WriteString("damping = true\nflap_penalty = 1000\nsuppress_above = 2000\nreuse_below = 750\nhalf_life = \"30s\"\nmax_suppress = \"2m\"\n")
	} else {
		b.WriteString("damping = false\n")
	}
	src1 := o.Src1
	if src1 == "" {
		src1 = nstest.Host1Addr4.String()
	}
	for i, g := range []struct{ name, addr, iface, src string }{
		{"isp1", nstest.GW1Addr4.String(), nstest.HostUplink1If, src1},
		{"isp2", nstest.GW2Addr4.String(), nstest.HostUplink2If, nstest.Host2Addr4.String()},
	} {
		fmt.Fprintf(&b, "\n[gateway.%s]\naddress = %q\ninterface = %q\nprofile = \"fast\"\n", g.name, g.addr, g.iface)
		if o.Tables {
			fmt.Fprintf(&b, "sources = [%q]\ntable = %d\n", g.src, 201+i)
		}
		fmt.Fprintf(&b, "[gateway.%s.probe]\nicmp = [%q]\n", g.name, nstest.TargetAddr4)
	}
	b.WriteString("\n[group.wan]\ngateways = [\"isp1\", \"isp2\"]\n")
	if o.LastResort != "" {
		fmt.Fprintf(&b, "last_resort = %q\n", o.LastResort)
	}
	if o.V6 {
		for i, g := range []struct{ name, addr, iface, src string }{
			{"isp1v6", nstest.GW1Addr6.String(), nstest.HostUplink1If, nstest.Host1Addr6.String()},
			{"isp2v6", nstest.GW2Addr6.String(), nstest.HostUplink2If, nstest.Host2Addr6.String()},
		} {
			fmt.Fprintf(&b, "\n[gateway.%s]\naddress = %q\ninterface = %q\nprofile = \"fast\"\n", g.name, g.addr, g.iface)
			if o.Tables {
				fmt.Fprintf(&b, "sources = [%q]\ntable = %d\n", g.src, 211+i)
			}
			fmt.Fprintf(&b, "[gateway.%s.probe]\nicmp = [%q]\n", g.name, nstest.TargetAddr6)
		}
		b.WriteString("\n[group.wan6]\ngateways = [\"isp1v6\", \"isp2v6\"]\n")
	}
	if !o.NoRecord {
		fmt.Fprintf(&b, "\n[hook.record]\ncommand = [%q, %q]\nevents = [\"gateway_up\", \"gateway_down\", \"gateway_degraded\", \"group_up\", \"group_down\"]\ntimeout = \"5s\"\n",
			filepath.Join(r.dir, "record-hook"), r.hooks)
	}
	b.WriteString(o.Extra)
	return b.String()
}

// start runs `uplinkd run` on the lab's host with policy text (control
// socket moved into the test's directory) and waits until every gateway
// has been judged.
func (r *rig) start(text string) *daemontest.Daemon {
	r.t.Helper()
	d := r.launch(text)
	r.waitJudged(d)
	return d
}

// launch starts the daemon without waiting for anything.
func (r *rig) launch(text string) *daemontest.Daemon {
	r.t.Helper()
	bin := r.bin
	if bin == "" {
		bin = uplinkdBin
	}
	d := &daemontest.Daemon{Host: r.Host, Bin: bin, Dir: r.dir,
		Config: filepath.Join(r.dir, "uplinkd.toml"), Socket: filepath.Join(r.dir, "control.sock")}
	text = daemontest.SetDaemonKeys(text, map[string]string{"control_socket": fmt.Sprintf("%q", d.Socket)})
	r.writeFile("uplinkd.toml", text, 0o644)
	p, err := policy.Parse(d.Config, []byte(text), policy.Options{})
	if err != nil {
		r.t.Fatalf("the test's policy is invalid: %v\n%s", err, text)
	}
	d.Listen = p.Daemon.Listen
	d.Cmd = r.Host.Start(r.t, bin, "run", "--config", d.Config)
	r.d, r.pol = d, p
	cmd := d.Cmd
	r.t.Cleanup(func() {
		if r.t.Failed() {
			r.t.Logf("uplinkd (pid %d) output:\n%s", cmd.Process.Pid, tail(r.Host.Output(cmd), 12000))
		}
	})
	return d
}

func (r *rig) waitJudged(d *daemontest.Daemon) {
	r.t.Helper()
	r.waitFor(30*time.Second, "uplinkd to judge every gateway", func() (bool, string) {
		st, err := d.Status()
		if err != nil {
			return false, err.Error()
		}
		for _, g := range st.Gateways {
			if g.State == "unknown" {
				return false, "gateway " + g.Name + " still unknown"
			}
		}
		return true, ""
	})
}

// rewrite replaces the policy file of the running daemon.
func (r *rig) rewrite(text string) {
	r.t.Helper()
	text = daemontest.SetDaemonKeys(text, map[string]string{"control_socket": fmt.Sprintf("%q", r.d.Socket)})
	r.writeFile("uplinkd.toml", text, 0o644)
}

func (r *rig) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.Host.ProcOf(r.d.Cmd).Signal(sig); err != nil {
		r.t.Fatalf("signalling uplinkd with %v: %v", sig, err)
	}
}

func (r *rig) waitFor(timeout time.Duration, what string, cond func() (bool, string)) {
	r.t.Helper()
	daemontest.WaitFor(r.t, timeout, what, cond)
}

// state is one gateway's state from `uplinkd status`, "" when unreachable.
func (r *rig) state(name string) string {
	g, err := r.d.Gateway(name)
	if err != nil {
		return ""
	}
	return g.State
}

func (r *rig) waitState(name, want string) {
	r.t.Helper()
	r.waitFor(30*time.Second, name+" "+want, func() (bool, string) {
		s := r.state(name)
		return s == want, "state " + s
	})
}

// ipOut runs ip in the host namespace.
func (r *rig) ipOut(args ...string) string {
	r.t.Helper()
	return r.Host.MustRun(r.t, append([]string{"ip"}, args...)...)
}

// owned is every route (all tables, both families) and rule with proto
// 212, one per line, sorted: what uplinkd owns in the host namespace.
func (r *rig) owned() string {
	r.t.Helper()
	var lines []string
	for _, fam := range []string{"-4", "-6"} {
		for _, l := range strings.Split(r.ipOut(fam, "route", "show", "table", "all", "proto", "212"), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, fam+" route "+l)
			}
		}
		for _, l := range strings.Split(r.ipOut(fam, "rule", "show"), "\n") {
			if l = strings.TrimSpace(l); strings.Contains(l, "proto 212") || strings.Contains(l, "proto uplinkd") {
				lines = append(lines, fam+" rule "+l)
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// mainDefault is the default route of the main table ("" when none).
func (r *rig) mainDefault() string {
	r.t.Helper()
	return strings.TrimSpace(r.ipOut("-4", "route", "show", "default", "table", "main"))
}

var twoNexthops = regexp.MustCompile(`(?s)nexthop via 198\.18\.1\.1 dev eth1.*nexthop via 198\.18\.2\.1 dev eth2`)

// waitBothUp waits until both gateways are up and in the main default.
func (r *rig) waitBothUp() {
	r.t.Helper()
	r.waitFor(30*time.Second, "both gateways up and in the default route", func() (bool, string) {
		s1, s2, def := r.state("isp1"), r.state("isp2"), r.mainDefault()
		return s1 == "up" && s2 == "up" && twoNexthops.MatchString(def), fmt.Sprintf("isp1 %s isp2 %s default %q", s1, s2, def)
	})
}

// metric sums the samples of name whose labels include want; present is
// false when the family is absent.
func (r *rig) metric(name string, want map[string]string) (sum float64, present bool) {
	r.t.Helper()
	body, err := r.d.Metrics()
	if err != nil {
		r.t.Fatalf("scraping /metrics: %v", err)
	}
	return metricFrom(r.t, body, name, want)
}

func metricFrom(t testing.TB, body, name string, want map[string]string) (float64, bool) {
	t.Helper()
	sum, present, err := daemontest.Sum(body, name, want)
	if err != nil {
		t.Fatal(err)
	}
	return sum, present
}

// hookEvents returns the recorded hook lines of one event.
func (r *rig) hookEvents(event string) []string {
	data, _ := os.ReadFile(r.hooks)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "event="+event+" ") {
			out = append(out, l)
		}
	}
	return out
}

// logTransitions returns the daemon log lines announcing a move to state.
func logTransitions(log, state string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `msg="gateway `+state+`"`) || strings.Contains(l, `"msg":"gateway `+state+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// traffic keeps a bounded ping running from the host to the Server's
// target through whatever default route is installed: at most count
// packets, 20 per second, and never longer than max.
func (r *rig) traffic(max time.Duration) *exec.Cmd {
	r.t.Helper()
	count := int(max/(50*time.Millisecond)) + 1
	return r.Host.Start(r.t, "ping", "-n", "-q", "-i", "0.05", "-W", "1",
		"-c", fmt.Sprint(count), "-w", fmt.Sprint(int(max/time.Second)+1), nstest.TargetAddr4.String())
}

// monitor runs `ip -ts monitor route rule` in the host namespace; its
// output lists every route and rule change from now on.
func (r *rig) monitor() *exec.Cmd {
	r.t.Helper()
	cmd := r.Host.Start(r.t, "ip", "monitor", "route", "rule")
	// ip monitor prints nothing when it is ready; a change it must see
	// makes sure it is subscribed before the test goes on.
	r.waitFor(10*time.Second, "ip monitor to subscribe", func() (bool, string) {
		r.Host.MustRun(r.t, "ip", "route", "replace", "198.19.255.254/32", "dev", "lo", "table", "999")
		r.Host.MustRun(r.t, "ip", "route", "del", "198.19.255.254/32", "dev", "lo", "table", "999")
		return strings.Contains(r.Host.Output(cmd), "198.19.255.254"), "no output yet"
	})
	return cmd
}

// ownedChanges returns the lines of ip monitor output after mark that are
// about routes or rules with uplinkd's protocol.
func ownedChanges(out string, mark int) []string {
	if mark > len(out) {
		mark = len(out)
	}
	var res []string
	for _, l := range strings.Split(out[mark:], "\n") {
		if strings.Contains(l, "proto 212") || strings.Contains(l, "proto uplinkd") {
			res = append(res, l)
		}
	}
	return res
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// hold checks cond every 20 ms for d and fails the test the first time it
// does not hold: an invariant over a window, not a duration.
func hold(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if ok, msg := cond(); !ok {
			t.Fatalf("%s broke: %s", what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Package examples_test proves, in real network namespaces, that each
// example policy in this directory does what its comments say. Each test
// runs the real uplinkd binary on the example file itself; only [daemon]
// paths (control socket, track files) are moved into the test's temporary
// directory, and hook paths are pointed at this repository's copy.
package examples_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "uplinkd-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = daemontest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var viaRE = regexp.MustCompile(`\bvia (?:inet6 )?(\S+)`)

// nexthops returns the gateways of the routes `ip ARGS` prints, sorted.
func nexthops(t *testing.T, h *nstest.Host, args ...string) []string {
	t.Helper()
	out, err := h.Run(append([]string{"ip"}, args...)...)
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var gws []string
	for _, m := range viaRE.FindAllStringSubmatch(out, -1) {
		gws = append(gws, m[1])
	}
	slices.Sort(gws)
	return gws
}

// waitNexthops waits until `ip ARGS` shows exactly the gateways want.
func waitNexthops(t *testing.T, h *nstest.Host, timeout time.Duration, want []string, args ...string) {
	t.Helper()
	slices.Sort(want)
	daemontest.WaitFor(t, timeout, fmt.Sprintf("`ip %s` to route via %v", strings.Join(args, " "), want), func() (bool, string) {
		got := nexthops(t, h, args...)
		if slices.Equal(got, want) {
			return true, ""
		}
		out, _ := h.Run(append([]string{"ip"}, args...)...)
		return false, fmt.Sprintf("it routes via %v:\n%s", got, out)
	})
}

// rxPackets reads an interface's received-packet counter.
func rxPackets(t *testing.T, h *nstest.Host, iface string) uint64 {
	t.Helper()
	l, err := h.Handle.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.RxPackets
}

// pings starts one bounded background ping per target (at most a minute
// and a half), so that gated detection sees traffic; they are reaped when
// the test ends.
func pings(t *testing.T, h *nstest.Host, src string, targets ...string) {
	t.Helper()
	for _, dst := range targets {
		args := []string{"ping", "-n", "-q", "-i", "0.05", "-c", "1800", "-W", "1"}
		if src != "" {
			args = append(args, "-I", src)
		}
		h.Start(t, append(args, dst)...)
	}
}

// addTargets puts n more traffic targets on the Server's lo, in
// 198.18.101.0/24 or 2001:db8:101::/64 (the gateways default-route to the
// Server), and returns them with TargetAddr4 or TargetAddr6.
func addTargets(t *testing.T, tu *nstest.TwoUplinks, n int, v6 bool) []string {
	t.Helper()
	out := []string{nstest.TargetAddr4.String()}
	a, bits := netip.MustParseAddr("198.18.101.0"), 32
	if v6 {
		out = []string{nstest.TargetAddr6.String()}
		a, bits = netip.MustParseAddr("2001:db8:101::"), 128
	}
	for range n {
		a = a.Next()
		tu.Server.AddAddr(t, "lo", netip.PrefixFrom(a, bits).String())
		out = append(out, a.String())
	}
	return out
}

// TestRouterTwoISPs: both ISPs carry traffic over a weighted multipath
// default; isp1 dies silently (carrier up, ARP answered, IP dropped) and
// every flow moves to isp2; isp1 comes back into the route.
func TestRouterTwoISPs(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	gw1, gw2 := nstest.GW1Addr4.String(), nstest.GW2Addr4.String()
	d := daemontest.Start(t, tu.Host, bin, example(t, "router-two-isps.toml"))

	waitNexthops(t, tu.Host, 10*time.Second, []string{gw1, gw2}, "-4", "route", "show", "default", "proto", "212")
	if got := tu.Host.SysctlGet(t, "net.ipv4.fib_multipath_hash_policy"); got != "1" {
		t.Errorf("[kernel] fib_multipath_hash_policy = \"l4\": sysctl is %s, want 1", got)
	}
	out := tu.Host.MustRun(t, "ip", "route", "show", "default")
	if !strings.Contains(out, "weight 2") {
		t.Errorf("isp1 has weight 2 in the policy, the route says:\n%s", out)
	}

	// Many flows, so that both uplinks carry some.
	targets := addTargets(t, tu, 15, false)
	pings(t, tu.Host, "", targets...)
	r1, r2 := rxPackets(t, tu.GW1, nstest.GWDownlinkIf), rxPackets(t, tu.GW2, nstest.GWDownlinkIf)
	daemontest.WaitFor(t, 10*time.Second, "traffic on both uplinks", func() (bool, string) {
		d1, d2 := rxPackets(t, tu.GW1, nstest.GWDownlinkIf)-r1, rxPackets(t, tu.GW2, nstest.GWDownlinkIf)-r2
		return d1 >= 20 && d2 >= 20, fmt.Sprintf("isp1 received %d packets, isp2 %d", d1, d2)
	})

	tu.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	died := time.Now()
	waitNexthops(t, tu.Host, 15*time.Second, []string{gw2}, "-4", "route", "show", "default", "proto", "212")
	// Informational (polling adds up to 50 ms): the design target is well
	// under a second with the default profile.
	t.Logf("isp1's silent death to a default without it: %v", time.Since(died).Round(time.Millisecond))
	if c := d.Check("isp1"); c != 1 {
		t.Errorf("uplinkd status --check isp1 = %d with isp1 dead, want 1", c)
	}
	if c := d.Check("wan"); c != 0 {
		t.Errorf("uplinkd status --check wan = %d with isp2 alive, want 0", c)
	}
	g, err := d.Gateway("isp1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("isp1: %s", g.Reason)
	if os.Getenv("UPLINKD_DEBUG_LOG") != "" {
		t.Logf("daemon log:\n%s", d.Output())
	}
	if g.State != "down" || g.Carrier != true {
		t.Errorf("isp1: state %s, carrier %v; want down with carrier up (a silent death)", g.State, g.Carrier)
	}
	// Every flow now leaves through isp2 and gets its answer.
	for _, dst := range targets {
		if out := tu.Host.MustRun(t, "ip", "route", "get", dst); !strings.Contains(out, "dev "+nstest.HostUplink2If) {
			t.Errorf("with isp1 dead, %s still routes: %s", dst, out)
		}
		if err := tu.Host.Ping(t, "-c", "2", "-i", "0.2", dst); err != nil {
			t.Errorf("with isp1 dead: %v", err)
		}
	}
	r2 = rxPackets(t, tu.GW2, nstest.GWDownlinkIf)
	daemontest.WaitFor(t, 5*time.Second, "all flows on isp2", func() (bool, string) {
		d2 := rxPackets(t, tu.GW2, nstest.GWDownlinkIf) - r2
		// 16 pings at 20/s each: well over 100 packets a second.
		return d2 >= 150, fmt.Sprintf("isp2 received %d packets", d2)
	})

	tu.GW1.Recover(t)
	waitNexthops(t, tu.Host, 20*time.Second, []string{gw1, gw2}, "-4", "route", "show", "default", "proto", "212")
}

// TestPrimaryBackup: the backup tier carries no traffic while the primary
// is up, takes the default route when the primary dies, and gives it back.
func TestPrimaryBackup(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	primary, backup := nstest.GW1Addr4.String(), nstest.GW2Addr4.String()
	d := daemontest.Start(t, tu.Host, bin, example(t, "primary-backup.toml"))
	def := []string{"-4", "route", "show", "default", "proto", "212"}
	waitNexthops(t, tu.Host, 10*time.Second, []string{primary}, def...)

	// Traffic flows, all of it through the primary.
	targets := addTargets(t, tu, 3, false)
	pings(t, tu.Host, "", targets...)
	idleBackup := func(phase string) {
		t.Helper()
		p0, b0 := rxPackets(t, tu.GW1, nstest.GWDownlinkIf), rxPackets(t, tu.GW2, nstest.GWDownlinkIf)
		time.Sleep(time.Second) // a measuring window, not a wait for a condition
		p, b := rxPackets(t, tu.GW1, nstest.GWDownlinkIf)-p0, rxPackets(t, tu.GW2, nstest.GWDownlinkIf)-b0
		// 4 pings at 20/s: ~80 packets a second. The backup may see its
		// slow standby check and neighbour traffic, a handful at most.
		if p < 40 || b > 5 {
			t.Errorf("%s: the primary received %d packets in 1s and the backup %d; want all traffic on the primary", phase, p, b)
		}
	}
	idleBackup("primary up")
	if g, err := d.Gateway("backup"); err != nil || !g.Standby {
		t.Errorf("the backup should be in standby (slow checks only) while the primary carries traffic: %+v %v", g, err)
	}

	tu.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	waitNexthops(t, tu.Host, 15*time.Second, []string{backup}, def...)
	for _, dst := range targets {
		if err := tu.Host.Ping(t, "-c", "2", "-i", "0.2", dst); err != nil {
			t.Errorf("with the primary dead: %v", err)
		}
	}
	if c := d.Check("wan"); c != 0 {
		t.Errorf("status --check wan = %d while the backup carries it, want 0", c)
	}

	tu.GW1.Recover(t)
	waitNexthops(t, tu.Host, 20*time.Second, []string{primary}, def...)
	idleBackup("primary back")
}

// TestFailoverIPHook: when the primary dies the hook moves the service
// address to the backup's interface, exactly once; the primary's return
// does not move it back.
func TestFailoverIPHook(t *testing.T) {
	// The hook's argv in the example names the installed paths; run this
	// repository's script, from a root-only directory (uplinkd refuses a
	// hook anyone else could replace), logging into the test's directory.
	// The directory is made before the lab so that it is removed after the
	// lab's cleanup has killed every process in its namespaces, hooks
	// included: a hook still logging would race the removal.
	dir := t.TempDir()
	tu := nstest.NewTwoUplinks(t)
	const addr = "198.18.60.1/32"
	tu.Host.AddAddr(t, nstest.HostUplink1If, addr)

	hook := filepath.Join(dir, "move-address")
	script, err := os.ReadFile("hooks/move-address")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hook, script, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "move-address.log")
	text := example(t, "failover-ip-hook.toml")
	for old, repl := range map[string]string{
		"/usr/local/lib/uplinkd/hooks/move-address": hook,
		"/run/uplinkd/move-address.log":             logFile,
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("failover-ip-hook.toml no longer mentions %s", old)
		}
		text = strings.ReplaceAll(text, old, repl)
	}
	d := daemontest.Start(t, tu.Host, bin, text)
	def := []string{"-4", "route", "show", "default", "proto", "212"}
	waitNexthops(t, tu.Host, 10*time.Second, []string{nstest.GW1Addr4.String()}, def...)

	has := func(iface string) bool {
		out := tu.Host.MustRun(t, "ip", "-4", "-o", "address", "show", "dev", iface)
		return strings.Contains(out, " "+addr+" ")
	}
	moves := func() int {
		b, err := os.ReadFile(logFile)
		if os.IsNotExist(err) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), " moved ")
	}
	if !has(nstest.HostUplink1If) || moves() != 0 {
		t.Fatalf("before any failure the address must be on %s and the hook must not have run (moves: %d)", nstest.HostUplink1If, moves())
	}

	pings(t, tu.Host, "", nstest.TargetAddr4.String())
	tu.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	waitNexthops(t, tu.Host, 15*time.Second, []string{nstest.GW2Addr4.String()}, def...)
	daemontest.WaitFor(t, 10*time.Second, "the hook to move "+addr, func() (bool, string) {
		on1, on2 := has(nstest.HostUplink1If), has(nstest.HostUplink2If)
		return !on1 && on2, fmt.Sprintf("on %s: %v, on %s: %v", nstest.HostUplink1If, on1, nstest.HostUplink2If, on2)
	})
	// The address moves before the hook's gratuitous ARP (about 2 s) and
	// its log line: wait for the run to be over, as the daemon counts it,
	// before reading what it wrote.
	hookDone(t, d, "move-failover-ip", 1)
	b, _ := os.ReadFile(logFile)
	if n := moves(); n != 1 {
		t.Errorf("the hook moved the address %d times, want exactly 1:\n%s", n, b)
	}
	if !strings.Contains(string(b), "event gateway_down, gateway primary") {
		t.Errorf("the hook did not see the event in its environment:\n%s", b)
	}

	// The primary returns: routes go back, the address stays (moving a
	// failover IP back is the operator's decision).
	tu.GW1.Recover(t)
	waitNexthops(t, tu.Host, 20*time.Second, []string{nstest.GW1Addr4.String()}, def...)
	hookDone(t, d, "move-failover-ip", 1) // gateway_down only: no second run
	if !has(nstest.HostUplink2If) || has(nstest.HostUplink1If) {
		t.Errorf("the address moved back when the primary returned")
	}
	if n := moves(); n != 1 {
		t.Errorf("after the primary's return the hook has moved the address %d times, want 1", n)
	}
}

// hookDone waits until the daemon has counted exactly n finished runs of
// hook, all of them successful.
func hookDone(t *testing.T, d *daemontest.Daemon, hook string, n int) {
	t.Helper()
	d.WaitFor(15*time.Second, fmt.Sprintf("%d ok run(s) of hook %s", n, hook), func() (bool, string) {
		m, err := d.Metrics()
		if err != nil {
			return false, err.Error()
		}
		var all, ok float64
		for _, r := range []string{"ok", "failed", "timeout", "error", "dropped"} {
			v, _, err := daemontest.Sum(m, "uplinkd_hook_runs_total", map[string]string{"hook": hook, "result": r})
			if err != nil {
				return false, err.Error()
			}
			all += v
			if r == "ok" {
				ok = v
			}
		}
		return all == float64(n) && ok == float64(n), fmt.Sprintf("%v runs, %v ok", all, ok)
	})
}

// TestDualStack: the IPv4 and IPv6 defaults follow the same ISP failure
// together, each judged on its own evidence.
func TestDualStack(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	v4 := []string{"-4", "route", "show", "default", "proto", "212"}
	v6 := []string{"-6", "route", "show", "default", "proto", "212"}
	d := daemontest.Start(t, tu.Host, bin, example(t, "dual-stack.toml"))
	waitNexthops(t, tu.Host, 10*time.Second, []string{nstest.GW1Addr4.String(), nstest.GW2Addr4.String()}, v4...)
	waitNexthops(t, tu.Host, 10*time.Second, []string{nstest.GW1Addr6.String(), nstest.GW2Addr6.String()}, v6...)

	t4 := addTargets(t, tu, 7, false)
	t6 := addTargets(t, tu, 7, true)
	pings(t, tu.Host, "", append(t4, t6...)...)

	tu.GW1.BlackholeIP(t, nstest.GWDownlinkIf) // both families, ARP and ND still answered
	waitNexthops(t, tu.Host, 15*time.Second, []string{nstest.GW2Addr4.String()}, v4...)
	waitNexthops(t, tu.Host, 15*time.Second, []string{nstest.GW2Addr6.String()}, v6...)
	for _, dst := range append(t4, t6...) {
		if err := tu.Host.Ping(t, "-c", "2", "-i", "0.2", dst); err != nil {
			t.Errorf("with isp1 dead: %v", err)
		}
	}
	for name, want := range map[string]int{"isp1-v4": 1, "isp1-v6": 1, "wan4": 0, "wan6": 0} {
		if c := d.Check(name); c != want {
			t.Errorf("status --check %s = %d, want %d", name, c, want)
		}
	}

	tu.GW1.Recover(t)
	waitNexthops(t, tu.Host, 20*time.Second, []string{nstest.GW1Addr4.String(), nstest.GW2Addr4.String()}, v4...)
	waitNexthops(t, tu.Host, 20*time.Second, []string{nstest.GW1Addr6.String(), nstest.GW2Addr6.String()}, v6...)
}

// TestRealserverLVS: replies from each VIP leave through the director
// their requests came in on (per-source tables), checked with `ip route
// get` and with real traffic; a dead director's table follows its on_down.
func TestRealserverLVS(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	const vip1, vip2 = "198.18.50.1", "198.18.50.2"
	d1, d2 := nstest.GW1Addr4.String(), nstest.GW2Addr4.String()
	tu.Host.AddAddr(t, "lo", vip1+"/32")
	tu.Host.AddAddr(t, "lo", vip2+"/32")
	// Each director delivers its VIP to the realserver; clients (the
	// Server) reach VIP1 through director 1 and VIP2 through director 2.
	tu.GW1.MustRun(t, "ip", "route", "add", vip1+"/32", "via", nstest.Host1Addr4.String(), "dev", nstest.GWDownlinkIf)
	tu.GW2.MustRun(t, "ip", "route", "add", vip2+"/32", "via", nstest.Host2Addr4.String(), "dev", nstest.GWDownlinkIf)
	tu.Server.MustRun(t, "ip", "route", "add", vip1+"/32", "via", nstest.GW1TransitAddr4.String(), "dev", nstest.ServerGW1If)
	tu.Server.MustRun(t, "ip", "route", "add", vip2+"/32", "via", nstest.GW2TransitAddr4.String(), "dev", nstest.ServerGW2If)

	d := daemontest.Start(t, tu.Host, bin, example(t, "realserver-lvs.toml"))
	t201 := []string{"-4", "route", "show", "table", "201", "default", "proto", "212"}
	t202 := []string{"-4", "route", "show", "table", "202", "default", "proto", "212"}
	own := []string{"-4", "route", "show", "table", "main", "default", "proto", "212"}
	waitNexthops(t, tu.Host, 10*time.Second, []string{d1}, t201...)
	waitNexthops(t, tu.Host, 10*time.Second, []string{d2}, t202...)
	waitNexthops(t, tu.Host, 10*time.Second, []string{d1, d2}, own...)
	rules := tu.Host.MustRun(t, "ip", "-4", "rule", "show") // no proto selector in iproute2 6.1
	for _, want := range []string{"from " + vip1 + " lookup 201 proto 212", "from " + vip2 + " lookup 202 proto 212"} {
		if !strings.Contains(rules, want) {
			t.Errorf("ip rule lacks %q:\n%s", want, rules)
		}
	}
	routeGet := func(vip, want string) {
		t.Helper()
		out := tu.Host.MustRun(t, "ip", "route", "get", nstest.TargetAddr4.String(), "from", vip)
		if !strings.Contains(out, want) {
			t.Errorf("ip route get %s from %s: %s; want %q", nstest.TargetAddr4, vip, strings.TrimSpace(out), want)
		}
	}
	routeGet(vip1, "via "+d1+" dev "+nstest.HostUplink1If+" table 201")
	routeGet(vip2, "via "+d2+" dev "+nstest.HostUplink2If+" table 202")

	// Real traffic: clients ping each VIP; the replies must reach the
	// director the requests came through, and only that one.
	replies := func(vip string, via, other *nstest.Host) {
		t.Helper()
		v0, o0 := rxPackets(t, via, nstest.GWDownlinkIf), rxPackets(t, other, nstest.GWDownlinkIf)
		out, err := tu.Server.Run("ping", "-n", "-q", "-c", "40", "-i", "0.02", "-W", "1", "-I", nstest.TargetAddr4.String(), vip)
		if err != nil {
			t.Fatalf("clients cannot reach %s: %v\n%s", vip, err, out)
		}
		v, o := rxPackets(t, via, nstest.GWDownlinkIf)-v0, rxPackets(t, other, nstest.GWDownlinkIf)-o0
		if v < 40 || o > 10 {
			t.Errorf("40 replies from %s: the director it came through received %d packets, the other %d", vip, v, o)
		}
	}
	replies(vip1, tu.GW1, tu.GW2)
	replies(vip2, tu.GW2, tu.GW1)

	// The realserver keeps answering from both VIPs (what LVS clients
	// generate), so a dead director is noticed by its silence.
	pings(t, tu.Host, vip1, nstest.TargetAddr4.String())
	pings(t, tu.Host, vip2, nstest.TargetAddr4.String())

	// Director 1 dies: on_down = "failover", its table goes through
	// director 2, keeping VIP1 as the source.
	tu.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	waitNexthops(t, tu.Host, 15*time.Second, []string{d2}, t201...)
	if out := tu.Host.MustRun(t, "ip", "route", "show", "table", "201"); !strings.Contains(out, "src "+vip1) {
		t.Errorf("the failed-over table 201 lost its source %s:\n%s", vip1, out)
	}
	routeGet(vip1, "via "+d2+" dev "+nstest.HostUplink2If+" table 201")
	if err := tu.Host.Ping(t, "-c", "2", "-i", "0.2", "-I", vip1, nstest.TargetAddr4.String()); err != nil {
		t.Errorf("VIP1's traffic does not get through after the failover: %v", err)
	}
	waitNexthops(t, tu.Host, 5*time.Second, []string{d2}, t202...)
	waitNexthops(t, tu.Host, 5*time.Second, []string{d2}, own...)
	tu.GW1.Recover(t)
	waitNexthops(t, tu.Host, 20*time.Second, []string{d1}, t201...)
	waitNexthops(t, tu.Host, 5*time.Second, []string{d1, d2}, own...)

	// Director 2 dies: on_down = "keep", table 202 stays as it is while
	// the realserver's own default drops it.
	tu.GW2.BlackholeIP(t, nstest.GWDownlinkIf)
	d.WaitFor(15*time.Second, "director2 down", func() (bool, string) {
		g, err := d.Gateway("director2")
		if err != nil {
			return false, err.Error()
		}
		return g.State == "down", "director2 is " + g.State
	})
	waitNexthops(t, tu.Host, 5*time.Second, []string{d1}, own...)
	if got := nexthops(t, tu.Host, t202...); !slices.Equal(got, []string{d2}) {
		t.Errorf("table 202 (on_down = keep) routes via %v with director 2 down, want it kept via %s", got, d2)
	}
	routeGet(vip2, "via "+d2+" dev "+nstest.HostUplink2If+" table 202")
}

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
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/contrib/internal/daemontest"
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
	waitNexthops(t, tu.Host, 15*time.Second, []string{gw2}, "-4", "route", "show", "default", "proto", "212")
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

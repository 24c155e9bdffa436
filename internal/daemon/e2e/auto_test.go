package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// udhcpcRouteScript is a DHCP client script that, as most clients do,
// also installs the lease's router as a default route, but kept out of
// uplinkd's way in a table of its own (table 100): the way
// docs/operations.md recommends for every client. On renew the address is
// replaced, not flushed, so a renewal does not take the subnet away.
const udhcpcRouteScript = `#!/bin/sh
case "$1" in
deconfig) ip -4 route flush table 100 dev "$interface"; ip -4 addr flush dev "$interface" ;;
bound) ip -4 addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"
       ip route replace default via "$router" dev "$interface" table 100 proto dhcp ;;
renew) ip addr replace "$ip/$mask" dev "$interface"
       ip route replace default via "$router" dev "$interface" table 100 proto dhcp ;;
esac
exit 0
`

// autoISP1 makes basePolicy's isp1 an auto gateway.
func autoISP1(pol string) string {
	return strings.Replace(pol, fmt.Sprintf("address = %q", nstest.GW1Addr4), `address = "auto"`, 1)
}

func (l *lab) gateway(name string) daemon.GatewayStatus {
	for _, g := range l.status().Gateways {
		if g.Name == name {
			return g
		}
	}
	l.t.Fatalf("no gateway %s in status", name)
	return daemon.GatewayStatus{}
}

// Issue 19 with a real DHCP server (dnsmasq) and client (busybox udhcpc):
// isp1 is address = "auto".
//  1. It learns the lease's router at start, from the client's route in
//     table 100, and routes like a static gateway.
//  2. The lease is renewed naming another router while traffic flows:
//     uplinkd follows within a second, rewrites the default, and the
//     traffic keeps going.
//  3. The learned gateway dies silently: detected by probes, like any.
//  4. The lease is lost: down, "no gateway learned on eth1", default via
//     isp2 alone.
func TestAutoGatewayDHCP(t *testing.T) {
	d := newDHCPLabScript(t, udhcpcRouteScript)
	d.waitFor("the lease and the client's route in table 100", func() bool {
		return d.leased() && strings.Contains(d.Host.MustRun(t, "ip", "route", "show", "table", "100"), "via 198.18.1.1")
	})
	d.start(autoISP1(d.basePolicy(1, "")))
	d.waitBothUp()
	g := d.gateway("isp1")
	if g.Address != "198.18.1.1" || !g.Auto || !strings.Contains(g.AddressSource, "table 100 proto dhcp") {
		t.Fatalf("isp1 learned %q from %q; want 198.18.1.1 from the client's route in table 100", g.Address, g.AddressSource)
	}
	if out := d.Host.MustRun(t, binary, "status", "--addr", listen); !strings.Contains(out, "isp1: 198.18.1.1, learned from default via 198.18.1.1 dev eth1 table 100 proto dhcp") {
		t.Errorf("uplinkd status does not show what isp1 learned:\n%s", out)
	}

	// 2. Another router on the same LAN (GW1 answers on a second
	// address), named by a renewed lease.
	d.GW1.MustRun(t, "ip", "addr", "add", "198.18.1.3/24", "dev", nstest.GWDownlinkIf)
	d.startServer("198.18.1.3")
	pinger := d.Host.Start(t, "ping", "-q", "-i", "0.05", "-c", "100", "-W", "1", nstest.TargetAddr4.String())
	defer d.Host.Stop(pinger)
	time.Sleep(time.Second) // dnsmasq listening
	renewed := time.Now()
	if err := d.Host.ProcOf(d.client).Signal(syscall.SIGUSR1); err != nil { // udhcpc: renew now
		t.Fatal(err)
	}
	d.waitFor("the client's route via 198.18.1.3", func() bool {
		return strings.Contains(d.Host.MustRun(t, "ip", "route", "show", "table", "100"), "via 198.18.1.3")
	})
	clientAt := time.Since(renewed)
	d.waitFor("uplinkd's default via 198.18.1.3", func() bool {
		return strings.Contains(d.routes(), "nexthop via 198.18.1.3 dev eth1")
	})
	followed := time.Since(renewed) - clientAt
	t.Logf("renewal: the client's route changed %v after SIGUSR1, uplinkd's default within %v of that", clientAt.Round(time.Millisecond), followed.Round(10*time.Millisecond))
	if followed > time.Second {
		t.Errorf("uplinkd followed the new router %v after the client's route changed, want within 1 s", followed)
	}
	if strings.Contains(d.routes(), "198.18.1.1 dev eth1") {
		t.Errorf("the old router is still in uplinkd's routes:\n%s", d.routes())
	}
	d.waitFor("isp1 up again at its new address", func() bool {
		g := d.gateway("isp1")
		return g.Address == "198.18.1.3" && g.State == "up"
	})
	if err := d.Host.Wait(pinger, 20*time.Second); err != nil {
		t.Logf("ping during the renewal: %v", err)
	}
	out := d.Host.Output(pinger)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	t.Logf("ping (every 50 ms) across the renewal: %s", strings.Join(lines[max(0, len(lines)-2):], "; "))
	if !strings.Contains(out, "100 packets transmitted") || strings.Contains(out, " 100% packet loss") {
		t.Errorf("traffic did not survive the renewal:\n%s", out)
	}

	// 3. The learned router dies silently.
	d.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	d.waitFor("isp1 down by probes", func() bool {
		g := d.gateway("isp1")
		return g.State == "down" && strings.Contains(g.Reason, "probe")
	})
	d.GW1.Recover(t)
	d.waitFor("isp1 back", func() bool { return d.gatewayState("isp1") == "up" })

	// 4. The lease is released: nothing to learn.
	if err := d.Host.ProcOf(d.client).Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	d.waitFor("isp1 down, nothing learned, and a default via isp2 alone", func() bool {
		g := d.gateway("isp1")
		return g.State == "down" && g.Reason == "no gateway learned on eth1" && g.Address == "auto" &&
			strings.Contains(d.routes(), "default via 198.18.2.1 dev eth2")
	})
	if err := d.Host.Ping(t, "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping after the lease was lost: %v", err)
	}
}

// Issue 19 with a real radvd: an auto IPv6 gateway learns GW1's
// link-local router from the kernel's RA default (proto ra, table main).
// Then the RA router changes: radvd stops (its final RA withdraws the old
// default), GW1's link-local address changes, radvd starts again; uplinkd
// follows and routes through the new router.
func TestAutoGatewayRA(t *testing.T) {
	radvd, err := exec.LookPath("radvd")
	if err != nil {
		t.Fatalf("radvd is needed: install Debian's radvd (sh scripts/setup.sh): %v", err)
	}
	l := newLab(t)
	l.Host.Sysctl(t, "net.ipv6.conf."+nstest.HostUplink1If+".accept_ra", "2")
	conf := l.writeFile("radvd.conf", fmt.Sprintf(`interface %s {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime 60;
	prefix %s { AdvOnLink on; AdvAutonomous off; };
};
`, nstest.GWDownlinkIf, nstest.Uplink1Net6), 0o600)
	startRadvd := func() *exec.Cmd {
		return l.GW1.StartPeer(t, radvd, "--nodaemon", "--config="+conf, "--pidfile="+filepath.Join(l.dir, "radvd.pid"),
			"--logmethod=stderr", "--username=root")
	}
	raRouter := func() string {
		out := l.Host.MustRun(t, "ip", "-6", "route", "show", "default", "proto", "ra")
		if f := strings.Fields(out); len(f) > 2 && f[1] == "via" {
			return f[2]
		}
		return ""
	}
	r := startRadvd()
	l.waitFor("the kernel's RA default on eth1", func() bool { return raRouter() != "" })
	first := raRouter()
	// The RA route holds metric 1024: the group goes to 512 (documented).
	pol := l.basePolicy(1, `
[gateway.isp1-v6]
address = "auto"
family = "ipv6"
interface = "eth1"
profile = "fast"
[gateway.isp2-v6]
address = "`+nstest.GW2Addr6.String()+`"
interface = "eth2"
profile = "fast"
[group.wan6]
gateways = ["isp1-v6", "isp2-v6"]
metric = 512
`)
	l.start(pol)
	l.waitFor("isp1-v6 learned from the RA and in the IPv6 default", func() bool {
		g := l.gateway("isp1-v6")
		return g.Address == first && g.State == "up" &&
			strings.Contains(l.Host.MustRun(t, "ip", "-6", "route", "show", "default", "proto", "212"), "via "+first+" dev eth1")
	})
	if g := l.gateway("isp1-v6"); !strings.Contains(g.AddressSource, "proto ra metric 1024") {
		t.Errorf("isp1-v6 learned from %q, want the kernel's RA route", g.AddressSource)
	}

	// SIGTERM: radvd's final RAs carry router lifetime 0.
	if err := l.GW1.ProcOf(r).Terminate(5 * time.Second); err != nil {
		t.Logf("radvd exit: %v", err)
	}
	l.waitFor("the old RA default withdrawn", func() bool { return raRouter() == "" })
	l.waitFor("isp1-v6 down, nothing learned", func() bool { return l.gatewayReason("isp1-v6") == "no gateway learned on eth1" })
	l.GW1.MustRun(t, "ip", "-6", "addr", "flush", "dev", nstest.GWDownlinkIf, "scope", "link")
	l.GW1.MustRun(t, "ip", "-6", "addr", "add", "fe80::a2/64", "dev", nstest.GWDownlinkIf)
	startRadvd()
	l.waitFor("the new RA router", func() bool { return raRouter() == "fe80::a2" })
	l.waitFor("isp1-v6 up through the new router", func() bool {
		g := l.gateway("isp1-v6")
		return g.Address == "fe80::a2" && g.State == "up" &&
			strings.Contains(l.Host.MustRun(t, "ip", "-6", "route", "show", "default", "proto", "212"), "via fe80::a2 dev eth1")
	})
	if err := l.Host.Ping(t, "-6", "-c", "3", "-i", "0.2", "-W", "2", "-I", nstest.Host1Addr6.String(), nstest.TargetAddr6.String()); err != nil {
		t.Errorf("IPv6 ping through the new router: %v", err)
	}
}

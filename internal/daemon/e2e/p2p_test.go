package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// p2pLink makes a point-to-point uplink from the host to GW1 with no link
// layer (nstest.TunWire: a tun device each side), host address 198.18.9.10
// and GW1 at peer, and puts another program's "default dev tun0" in table
// 100, as pppd does with its device route. The Server reaches 198.18.9.0/24
// through GW1.
func p2pLink(t *testing.T, l *lab, peer string) *nstest.TunWire {
	t.Helper()
	w := nstest.NewTunWire(t, l.Host, "tun0", l.GW1, "tun0")
	l.Host.MustRun(t, "ip", "addr", "add", "198.18.9.10", "peer", peer+"/32", "dev", "tun0")
	l.GW1.MustRun(t, "ip", "addr", "add", peer, "peer", "198.18.9.10/32", "dev", "tun0")
	l.Host.MustRun(t, "ip", "route", "add", "default", "dev", "tun0", "table", "100", "proto", "boot")
	return w
}

// Issue 19, scenario 6 on this kernel's point-to-point device (the PPP
// run is TestAutoGatewayPPPoE, where the kernel has PPP): isp1 is
// address = "auto" on tun0, whose default has no nexthop, so the gateway
// is the link itself and uplinkd's default goes "nexthop dev tun0". It is
// probed through the device (no MAC to send frames to) and counted by the
// device's counters. The link dies silently (carrier up, nothing
// forwarded): down by probes. The link goes away and comes back with
// another peer address: isp1 follows it.
func TestAutoGatewayPointToPoint(t *testing.T) {
	l := newLab(t)
	w := p2pLink(t, l, "198.18.9.1")
	l.Server.MustRun(t, "ip", "route", "add", "198.18.9.0/24", "via", nstest.GW1TransitAddr4.String(), "dev", nstest.ServerGW1If)
	l.start(strings.Replace(autoISP1(l.basePolicy(1, "")), `interface = "`+nstest.HostUplink1If+`"`, `interface = "tun0"`, 1))
	inDefault := func() bool {
		g := l.gateway("isp1")
		return g.Address == "dev tun0" && g.State == "up" && strings.Contains(l.routes(), "nexthop dev tun0")
	}
	l.waitFor("isp1 the link itself, up, in the default", inDefault)
	if src := l.gateway("isp1").AddressSource; src != "default dev tun0 table 100 proto boot metric 0" {
		t.Errorf("isp1 learned from %q", src)
	}
	if err := l.Host.Ping(t, "-I", "tun0", "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping through tun0: %v", err)
	}

	w.SetDrop(true)
	died := time.Now()
	l.waitFor("isp1 down by probes, the default via isp2 alone", func() bool {
		g := l.gateway("isp1")
		return g.State == "down" && strings.Contains(g.Reason, "probe") && strings.Contains(l.routes(), "default via 198.18.2.1 dev eth2")
	})
	t.Logf("silent death of the point-to-point link: out of the default %v after (profile fast: 100ms interval, 3 losses)", time.Since(died).Round(10*time.Millisecond))
	w.SetDrop(false)
	l.waitFor("isp1 back after the link forwards again", inDefault)

	w.Close() // the devices go, as ppp0 does when pppd hangs up
	l.waitFor("isp1 down with tun0 gone, the default via isp2 alone", func() bool {
		return l.gatewayState("isp1") == "down" && strings.Contains(l.routes(), "default via 198.18.2.1 dev eth2")
	})
	t.Logf("isp1 with tun0 gone: %q", l.gatewayReason("isp1"))
	p2pLink(t, l, "198.18.9.2")
	l.waitFor("isp1 back through the new tun0, peer 198.18.9.2", inDefault)
	if err := l.Host.Ping(t, "-I", "tun0", "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping through the new tun0: %v", err)
	}
}

// The same link under the default profile (gated: probes only while
// traffic goes out with nothing coming back): the device's own counters
// are the link gateway's evidence, so its silent death under traffic is
// found as a static gateway's is, and while idle it costs no probes.
func TestAutoGatewayPointToPointGated(t *testing.T) {
	l := newLab(t)
	w := p2pLink(t, l, "198.18.9.1")
	l.Server.MustRun(t, "ip", "route", "add", "198.18.9.0/24", "via", nstest.GW1TransitAddr4.String(), "dev", nstest.ServerGW1If)
	pol := strings.Replace(autoISP1(l.basePolicy(1, "")), `interface = "`+nstest.HostUplink1If+`"`, `interface = "tun0"`, 1)
	pol = strings.Replace(pol, "profile = \"fast\"\n", "", 1) // isp1's: the default profile
	l.start(pol)
	l.waitFor("isp1 up through tun0", func() bool {
		return l.gatewayState("isp1") == "up" && strings.Contains(l.routes(), "nexthop dev tun0")
	})
	time.Sleep(time.Second) // the start-up check's last probes counted
	before := l.probesSent("isp1")
	time.Sleep(3 * time.Second)
	if n := l.probesSent("isp1") - before; n != 0 {
		t.Errorf("isp1 idle: %v probes in 3 s, want 0", n)
	}
	flood := l.Host.Start(t, "ping", "-q", "-I", "tun0", "-i", "0.01", "-c", "1000", "-W", "1", nstest.TargetAddr4.String())
	defer l.Host.Stop(flood)
	time.Sleep(time.Second)
	w.SetDrop(true)
	died := time.Now()
	l.waitFor("isp1 down under traffic", func() bool { return l.gatewayState("isp1") == "down" })
	t.Logf("silent death under 100 pkt/s with the default profile: down %v after", time.Since(died).Round(10*time.Millisecond))
	if r := l.gatewayReason("isp1"); !strings.Contains(r, "probe") {
		t.Errorf("isp1 down for %q, want lost probes", r)
	}
}

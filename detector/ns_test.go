package detector_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

const polGW1 = `
[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
`

func TestNSBlackholeARPAnswered(t *testing.T) {
	l := newLab(t, polGW1)
	l.routeVia(t, 1)
	l.pingFlood(t, 1000, 20*time.Second)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := l.rec.Count("gw1", detector.Down, l.start, time.Time{}); n != 0 {
		t.Fatalf("down before the fault: %v", l.rec.List())
	}
	fault := time.Now()
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitState(t, "gw1", detector.Down, 5*time.Second)
	tr, _ := l.rec.First("gw1", detector.Down, fault)
	t.Logf("detected in %v: %s (%s)", tr.Mono.Sub(fault), tr.Reason, tr.Cause)
	if !strings.Contains(tr.Reason, "probes lost") {
		t.Errorf("reason %q, want lost probes", tr.Reason)
	}
}

func TestNSBlackholeARPDead(t *testing.T) {
	l := newLab(t, polGW1)
	l.routeVia(t, 1)
	l.pingFlood(t, 1000, 20*time.Second)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	fault := time.Now()
	l.GW1.BlackholeARP(t, nstest.GWDownlinkIf)
	l.waitState(t, "gw1", detector.Down, 5*time.Second)
	tr, _ := l.rec.First("gw1", detector.Down, fault)
	t.Logf("detected in %v: %s (%s)", tr.Mono.Sub(fault), tr.Reason, tr.Cause)
}

func TestNSCarrierLoss(t *testing.T) {
	l := newLab(t, polGW1)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	fault := time.Now()
	l.GW1.LinkDown(t, nstest.GWDownlinkIf)
	l.waitState(t, "gw1", detector.Down, 5*time.Second)
	tr, _ := l.rec.First("gw1", detector.Down, fault)
	t.Logf("detected in %v: %s (%s)", tr.Mono.Sub(fault), tr.Reason, tr.Cause)
	if tr.Cause != detector.CauseCarrier || tr.Reason != "carrier lost on eth1" {
		t.Errorf("transition %+v, want cause carrier, reason \"carrier lost on eth1\"", tr.Transition)
	}
}

const polGW1Remote = `
[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
[gateway.gw1.probe]
icmp = ["198.18.100.1"]
`

func TestNSUpstreamCut(t *testing.T) {
	l := newLab(t, polGW1Remote)
	l.routeVia(t, 1)
	l.pingFlood(t, 1000, 20*time.Second)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	fault := time.Now()
	// The gateway still answers for itself; what is behind it is gone.
	l.GW1.BlackholeIP(t, nstest.GWUplinkIf)
	if err := l.Host.Ping(t, nstest.GW1Addr4.String()); err != nil {
		t.Fatalf("the gateway itself should still answer: %v", err)
	}
	l.waitState(t, "gw1", detector.Down, 5*time.Second)
	tr, _ := l.rec.First("gw1", detector.Down, fault)
	t.Logf("detected in %v: %s (%s)", tr.Mono.Sub(fault), tr.Reason, tr.Cause)
	if !strings.Contains(tr.Reason, "probes lost") {
		t.Errorf("reason %q", tr.Reason)
	}
}

func TestNSRecovery(t *testing.T) {
	for _, tc := range []struct {
		name, pol string
		iface     string
	}{
		{"gateway", polGW1, nstest.GWDownlinkIf},
		{"remote", polGW1Remote, nstest.GWUplinkIf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, tc.pol)
			l.routeVia(t, 1)
			l.pingFlood(t, 500, 30*time.Second)
			l.waitState(t, "gw1", detector.Up, 5*time.Second)
			l.GW1.BlackholeIP(t, tc.iface)
			l.waitState(t, "gw1", detector.Down, 5*time.Second)
			// detector.Down gateways are probed slowly; none of these may succeed.
			time.Sleep(2 * time.Second)
			if s := l.status("gw1"); s.State != detector.Down {
				t.Fatalf("state %v while still black-holed", s.State)
			}
			fix := time.Now()
			l.GW1.Recover(t)
			l.waitState(t, "gw1", detector.Up, 10*time.Second)
			tr, _ := l.rec.First("gw1", detector.Up, fix)
			t.Logf("recovered in %v: %s (%s)", tr.Mono.Sub(fix), tr.Reason, tr.Cause)
			if tr.Cause != detector.CauseProbe || !strings.Contains(tr.Reason, "3 probes answered") {
				t.Errorf("recovery %+v, want 3 probes answered", tr.Transition)
			}
			if s := l.status("gw1"); s.RTTLast <= 0 || s.LastGoodProbeAge < 0 {
				t.Errorf("status after recovery lacks probe evidence: %+v", s)
			}
		})
	}
}

func TestNSLinkFlapDamped(t *testing.T) {
	l := newLab(t, polGW1)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	flap := time.Now()
	for i := 0; i < 5; i++ {
		l.GW1.LinkDown(t, nstest.GWDownlinkIf)
		time.Sleep(time.Second)
		l.GW1.LinkUp(t, nstest.GWDownlinkIf)
		time.Sleep(time.Second)
	}
	stopped := time.Now()
	if n := l.rec.Count("gw1", detector.Up, flap, time.Time{}); n != 0 {
		t.Errorf("%d up transitions while the link flapped every second: %v", n, l.rec.List())
	}
	s := l.status("gw1")
	if s.State != detector.Down || !s.Damped || s.FlapPenalty <= 2500 {
		t.Fatalf("after flapping: %+v, want down and damped", s)
	}
	// detector.Link hold (1s) and three recovery probes (3s) would bring an
	// undamped gateway back by now; the penalty keeps it down.
	time.Sleep(5 * time.Second)
	s = l.status("gw1")
	if s.State != detector.Down || !s.Damped {
		t.Fatalf("5s after flapping stopped: %+v, want still damped", s)
	}
	if n := l.rec.Count("gw1", detector.Up, stopped, time.Time{}); n != 0 {
		t.Errorf("came back while damped: %v", l.rec.List())
	}
	if !strings.Contains(s.Reason, "flap penalty") {
		t.Errorf("reason %q does not explain the damping", s.Reason)
	}
	t.Logf("status: state=%v damped=%v penalty=%.0f reason=%q", s.State, s.Damped, s.FlapPenalty, s.Reason)
}

func TestNSRandomLossNoFalseDown(t *testing.T) {
	l := newLab(t, polGW1+`
[gateway.gw1.detect]
gating = "always"
interval = "20ms"
`)
	l.routeVia(t, 1)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	l.GW1.Loss(t, nstest.GWDownlinkIf, 1)
	start := time.Now()
	l.pingFlood(t, 1000, 15*time.Second)
	time.Sleep(15 * time.Second)
	if n := l.rec.Count("gw1", detector.Down, start, time.Time{}); n != 0 {
		t.Fatalf("1%% random loss took the gateway down: %v", l.rec.List())
	}
	s := l.status("gw1")
	if s.State == detector.Degraded || s.State == detector.Down {
		t.Fatalf("state %v under 1%% loss", s.State)
	}
	if s.Samples < 100 {
		t.Fatalf("only %d probe results in the window: the test did not probe", s.Samples)
	}
	t.Logf("state=%v loss=%.3f over %d probes, rtt avg %v", s.State, s.Loss, s.Samples, s.RTTAvg)
}

// TestNSSpoofedRepliesIgnored: a third host sends echo replies "from" the
// dead gateway, with the prober's own ICMP id and every sequence number
// around the current one. Only the random payload token tells them apart;
// the gateway must stay down.
func TestNSSpoofedRepliesIgnored(t *testing.T) {
	l := newLab(t, polGW1)
	spoof := l.Lab.Host("spoof")
	l.Lab.Link(l.Host, "eth3", spoof, "eth0")
	l.Host.AddAddr(t, "eth3", "198.18.3.2/24")
	spoof.AddAddr(t, "eth0", "198.18.3.1/24")
	spoof.MustRun(t, "ip", "route", "add", nstest.Uplink1Net4.String(), "via", "198.18.3.2", "dev", "eth0")

	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.routeVia(t, 1)
	l.pingFlood(t, 500, 20*time.Second)
	l.waitState(t, "gw1", detector.Down, 5*time.Second)
	down := time.Now()

	var rc *ipv4.RawConn
	if err := spoof.Do(func() error {
		c, err := net.ListenPacket("ip4:icmp", "198.18.3.1")
		if err != nil {
			return err
		}
		rc, err = ipv4.NewRawConn(c)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	id := l.pr.EchoID()
	sent := 0
	end := time.Now().Add(5 * time.Second) // five recovery probes
	for time.Now().Before(end) {
		cur := l.pr.Seq()
		for s := cur - 20; s != cur+60; s++ {
			body, _ := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: int(id), Seq: int(s), Data: make([]byte, detector.TokenLen)}}).Marshal(nil)
			h := &ipv4.Header{Version: 4, Len: 20, TotalLen: 20 + len(body), TTL: 64, Protocol: 1,
				Src: nstest.GW1Addr4.AsSlice(), Dst: nstest.Host1Addr4.AsSlice()}
			if err := rc.WriteTo(h, body, nil); err != nil {
				t.Fatalf("spoofing: %v", err)
			}
			sent++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := l.rec.Count("gw1", detector.Up, down, time.Time{}); n != 0 {
		t.Fatalf("spoofed replies brought the dead gateway up: %v", l.rec.List())
	}
	if s := l.status("gw1"); s.State != detector.Down || s.LastGoodProbeAge >= 0 && s.LastGoodProbeAge < time.Since(down) {
		t.Fatalf("status %+v: a spoofed reply counted", s)
	}
	ign := l.pr.Ignored.Load()
	if ign == 0 {
		t.Fatalf("no spoofed reply reached the prober (%d sent): the test proves nothing", sent)
	}
	t.Logf("%d spoofed replies sent, %d reached the prober and were ignored", sent, ign)
}

// TestNSProbeKinds checks each probe kind and pinning mode against a live
// gateway, then against a dead one, through the real sockets.
func TestNSProbeKinds(t *testing.T) {
	tests := []struct {
		name  string
		pol   string
		setup func(t *testing.T, l *lab)
		kinds []detector.ProbeKind
	}{
		{"ipv6 gateway and remote target", `
[gateway.gw1]
address = "2001:db8:1::1"
interface = "eth1"
[gateway.gw1.probe]
icmp = ["2001:db8:100::1"]
`, nil, []detector.ProbeKind{detector.KindICMP, detector.KindNeigh}},
		{"tcp connect through the uplink", `
[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
[gateway.gw1.probe]
gateway = false
neigh = false
tcp = ["198.18.100.1:9"]
`, func(t *testing.T, l *lab) {
			// TCP needs a route through the gateway (the connect is a real
			// socket); a listener on the Server answers.
			l.routeVia(t, 1)
			l.tcpListen(t)
		}, []detector.ProbeKind{detector.KindTCP}},
		{"pin by mark", `
[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
table = 201
[gateway.gw1.probe]
gateway = false
neigh = false
icmp = ["198.18.100.1"]
pin = "mark"
mark = 0x51
`, func(t *testing.T, l *lab) {
			// What routing installs for pin = "mark", by hand.
			l.Host.MustRun(t, "ip", "rule", "add", "fwmark", "0x51", "lookup", "201", "priority", "1001")
			l.Host.MustRun(t, "ip", "route", "add", "default", "via", nstest.GW1Addr4.String(), "dev", "eth1", "table", "201")
		}, []detector.ProbeKind{detector.KindICMP}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tu := nstest.NewTwoUplinks(t)
			l := &lab{TwoUplinks: tu}
			if tc.setup != nil {
				tc.setup(t, l)
			}
			pol := strings.ReplaceAll(tc.pol, "[gateway.gw1.probe]", "[gateway.gw1.detect]\ngating = \"always\"\ninterval = \"50ms\"\n[gateway.gw1.probe]")
			l.startDetector(t, pol)
			l.waitState(t, "gw1", detector.Up, 5*time.Second)
			time.Sleep(500 * time.Millisecond)
			if s := l.status("gw1"); s.State != detector.Up || s.Samples < 3 || s.Loss > 0 {
				t.Fatalf("live gateway: %+v", s)
			}
			for _, k := range tc.kinds {
				sent, failed := l.d.ProbeCounts("gw1", k)
				if sent < 3 || failed > 0 {
					t.Errorf("%s probes: %v sent, %v failed", k, sent, failed)
				}
			}
			l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
			l.waitState(t, "gw1", detector.Down, 5*time.Second)
		})
	}
}

// TestNSInterfaceRecreated deletes the uplink and creates it again: the
// new interface has a new index, and the detector follows it by name.
func TestNSInterfaceRecreated(t *testing.T) {
	l := newLab(t, polGW1)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	old, err := l.Host.Handle.LinkByName(nstest.HostUplink1If)
	if err != nil {
		t.Fatal(err)
	}
	l.Host.MustRun(t, "ip", "link", "del", nstest.HostUplink1If)
	l.waitState(t, "gw1", detector.Down, 5*time.Second)
	if s := l.status("gw1"); s.Reason != "interface eth1 absent" {
		t.Errorf("reason %q", s.Reason)
	}
	l.Lab.Link(l.Host, nstest.HostUplink1If, l.GW1, nstest.GWDownlinkIf)
	l.Host.AddAddr(t, nstest.HostUplink1If, "198.18.1.2/24")
	l.GW1.AddAddr(t, nstest.GWDownlinkIf, "198.18.1.1/24")
	nl, err := l.Host.Handle.LinkByName(nstest.HostUplink1If)
	if err != nil {
		t.Fatal(err)
	}
	if nl.Attrs().Index == old.Attrs().Index {
		t.Fatalf("re-created interface kept index %d; the test proves nothing", nl.Attrs().Index)
	}
	l.waitState(t, "gw1", detector.Up, 10*time.Second)
}

// TestNSLinkMode reads speed and duplex of a veth through ethtool netlink:
// either a value or, quietly, detector.ErrNotSupported.
func TestNSLinkMode(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	k, err := detector.NewNetlink(tu.Host.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	m, err := k.LinkMode(nstest.HostUplink1If)
	switch {
	case errors.Is(err, detector.ErrNotSupported):
		t.Logf("veth reports no link mode here: %v", err)
	case err != nil:
		t.Fatalf("LinkMode: %v", err)
	default:
		t.Logf("veth link mode: %+v", m)
		if m.SpeedMbps < 0 {
			t.Errorf("negative speed %+v", m)
		}
	}
	if _, err := k.LinkMode("nosuchif0"); err == nil {
		t.Error("detector.LinkMode of a missing interface succeeded")
	}
}

// TestNSLinkLocalGateway: detector.IPv6 gateways are usually known by their
// link-local address (router advertisements). The lab uses the gateway's
// own kernel-made fe80:: address, which needs the interface to be
// reachable at all.
func TestNSLinkLocalGateway(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	l := &lab{TwoUplinks: tu}
	link, err := tu.GW1.Handle.LinkByName(nstest.GWDownlinkIf)
	if err != nil {
		t.Fatal(err)
	}
	var ll netip.Addr
	detectortest.WaitFor(t, "gateway link-local address", 5*time.Second, func() bool {
		as, _ := tu.GW1.Handle.AddrList(link, netlink.FAMILY_V6)
		for _, a := range as {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() {
				ll = ip
				return true
			}
		}
		return false
	})
	l.startDetector(t, fmt.Sprintf(`
[gateway.gw1]
address = "%s"
interface = "eth1"
[gateway.gw1.detect]
gating = "always"
interval = "50ms"
`, ll))
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	if s := l.status("gw1"); s.State != detector.Up || s.Samples < 3 || s.Loss > 0 {
		t.Fatalf("link-local gateway %s: %+v", ll, s)
	}
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitState(t, "gw1", detector.Down, 5*time.Second)
}

// TestNSUnprivilegedICMP runs the prober on ICMP datagram sockets, as it
// does without CAP_NET_RAW: the kernel rewrites the echo id to the
// socket's, and remote targets go through IP_PKTINFO instead of frames.
func TestNSUnprivilegedICMP(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	l := &lab{TwoUplinks: tu}
	tu.Host.Sysctl(t, "net.ipv4.ping_group_range", "0 2147483647")
	l.routeVia(t, 1)
	tu.Host.MustRun(t, "ip", "-6", "route", "add", nstest.TargetAddr6.String(), "via", nstest.GW1Addr6.String(), "dev", nstest.HostUplink1If)
	l.startDetectorWith(t, `
[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
[gateway.gw1.detect]
gating = "always"
interval = "50ms"
[gateway.gw1.probe]
icmp = ["198.18.100.1"]

[gateway.gw1v6]
address = "2001:db8:1::1"
interface = "eth1"
[gateway.gw1v6.detect]
gating = "always"
interval = "50ms"
[gateway.gw1v6.probe]
icmp = ["2001:db8:100::1"]
`, true)
	if !l.pr.Datagram() {
		t.Fatal("prober is not on datagram sockets")
	}
	for _, gw := range []string{"gw1", "gw1v6"} {
		l.waitState(t, gw, detector.Up, 5*time.Second)
	}
	time.Sleep(300 * time.Millisecond)
	for _, gw := range []string{"gw1", "gw1v6"} {
		if s := l.status(gw); s.State != detector.Up || s.Samples < 3 || s.Loss > 0 {
			t.Fatalf("%s on datagram sockets: %+v", gw, s)
		}
	}
	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	for _, gw := range []string{"gw1", "gw1v6"} {
		l.waitState(t, gw, detector.Down, 5*time.Second)
	}
}

// TestNSStopLeavesNothing: after Run returns and Close, no goroutine of
// the detector, its subscriptions, probers or rounds is left.
func TestNSStopLeavesNothing(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	tu.Host.MustRun(t, "ip", "route", "add", nstest.TargetAddr4.String(), "via", nstest.GW1Addr4.String())
	base := runtime.NumGoroutine()
	k, err := detector.NewNetlink(tu.Host.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	pr, err := detector.NewSocketProber(tu.Host.NsHandle(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := detector.New(detector.Config{Policy: mustPolicy(t, polGW1Remote+"[gateway.gw1.detect]\ngating = \"always\"\ninterval = \"20ms\"\n"), Kernel: k, Prober: pr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	detectortest.WaitFor(t, "gw1 up", 5*time.Second, func() bool { s := d.Status(); return len(s) == 1 && s[0].State == detector.Up })
	time.Sleep(200 * time.Millisecond) // rounds in flight
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d.Close()
	pr.Close()
	k.Close()
	detectortest.WaitFor(t, fmt.Sprintf("goroutines back to %d", base), 5*time.Second, func() bool { return runtime.NumGoroutine() <= base })
}

// TestNSProberLiveness: the real prober's readers are part of the
// detector's liveness, and a running detector has nothing stalled.
func TestNSProberLiveness(t *testing.T) {
	l := newLab(t, polGW1)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	var names []string
	for _, w := range l.d.Liveness() {
		names = append(names, w.Name)
		if w.Stalled(time.Now(), 10*time.Second) {
			t.Errorf("worker %q stalled: %+v", w.Name, w)
		}
	}
	for _, want := range []string{"health loop", "traffic poller", "probe rounds", "prober reader icmp", "prober reader icmpv6"} {
		if !slices.Contains(names, want) {
			t.Errorf("no worker %q in %v", want, names)
		}
	}
}

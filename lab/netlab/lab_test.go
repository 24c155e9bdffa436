package netlab_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
)

// viaGW1 routes the server's addresses from the host through gw1 only.
func viaGW1(t *testing.T, tu *nstest.TwoUplinks) {
	t.Helper()
	for _, a := range []netip.Addr{netlab.TargetAddr4, netlab.ProbeAddr4} {
		tu.Host.MustRun(t, "ip", "route", "add", a.String(), "via", netlab.GW1Addr4.String(), "dev", netlab.HostUplink1If)
	}
}

func labOf(tu *nstest.TwoUplinks) *netlab.TwoUplinks {
	return &netlab.TwoUplinks{Lab: tu.Lab.Lab, Host: tu.Host.Host, GW1: tu.GW1.Host, GW2: tu.GW2.Host, Server: tu.Server.Host}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pings(h *nstest.Host, dst netip.Addr) func() bool {
	return func() bool { return h.Host.Ping(dst.String()) == nil }
}

func carrier(t *testing.T, h *nstest.Host, iface string) bool {
	t.Helper()
	out := h.MustRun(t, "ip", "link", "show", iface)
	return !strings.Contains(out, "NO-CARRIER")
}

func TestInjectEachFault(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	lab := labOf(tu)
	viaGW1(t, tu)
	h := tu.Host
	eventually(t, "the target answers through gw1", pings(h, netlab.TargetAddr4))

	check := func(f netlab.Fault, o netlab.FaultOptions, broken func() bool, what string) {
		t.Helper()
		if err := lab.Inject(1, f, o); err != nil {
			t.Fatal(err)
		}
		eventually(t, string(f)+": "+what, broken)
		if err := lab.Inject(1, netlab.FaultRecover, netlab.FaultOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, string(f)+": the target answers again after recover", pings(h, netlab.TargetAddr4))
		if rs := tu.GW1.FaultRuleset(); rs != "" {
			t.Fatalf("%s: fault table left after recover:\n%s", f, rs)
		}
	}
	check(netlab.FaultBlackhole, netlab.FaultOptions{}, func() bool {
		return !pings(h, netlab.TargetAddr4)() && !pings(h, netlab.GW1Addr4)() && carrier(t, h, netlab.HostUplink1If)
	}, "target and gateway silent, carrier up")
	flushed := false
	check(netlab.FaultBlackholeARP, netlab.FaultOptions{}, func() bool {
		// Forget the resolved entry once, so it has to be resolved anew
		// (and fail) instead of ageing out over half a minute.
		if !flushed {
			h.MustRun(t, "ip", "neigh", "flush", "dev", netlab.HostUplink1If)
			flushed = true
		}
		st := h.MustRun(t, "ip", "neigh", "show", netlab.GW1Addr4.String())
		return !pings(h, netlab.TargetAddr4)() && (strings.Contains(st, "FAILED") || strings.Contains(st, "INCOMPLETE"))
	}, "neighbour unresolved")
	check(netlab.FaultLinkDown, netlab.FaultOptions{}, func() bool {
		return !carrier(t, h, netlab.HostUplink1If)
	}, "host loses carrier")
	// The upstream cut is the one a first-hop check cannot see: the gateway
	// answers, what lies behind it does not.
	check(netlab.FaultUpstream, netlab.FaultOptions{}, func() bool {
		return pings(h, netlab.GW1Addr4)() && !pings(h, netlab.TargetAddr4)() && !pings(h, netlab.ProbeAddr4)()
	}, "gateway answers, target does not")
	check(netlab.FaultLoss, netlab.FaultOptions{LossPercent: 100}, func() bool {
		return !pings(h, netlab.TargetAddr4)()
	}, "everything lost at 100%")

	// Flap: the carrier goes away and comes back by itself, and the flap
	// ends on its own.
	if err := lab.Inject(1, netlab.FaultFlap, netlab.FaultOptions{FlapPeriod: 200 * time.Millisecond, FlapFor: time.Second}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "flap takes the carrier away", func() bool { return !carrier(t, h, netlab.HostUplink1If) })
	done := tu.GW1.FlapDone(netlab.GWDownlinkIf)
	if done == nil {
		t.Fatal("no flap running")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("flap did not end by itself")
	}
	eventually(t, "carrier back after the flap", func() bool { return carrier(t, h, netlab.HostUplink1If) })
	eventually(t, "target answers after the flap", pings(h, netlab.TargetAddr4))
	if err := lab.Inject(3, netlab.FaultBlackhole, netlab.FaultOptions{}); err == nil {
		t.Error("Inject accepted gateway 3")
	}
}

func TestTrafficEchoMonitorCounters(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	viaGW1(t, tu)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		served <- tu.Server.Do(func() error {
			return netlab.ServeEcho(ctx, netip.IPv4Unspecified(), func() { close(ready) })
		})
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("echo: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-served:
		t.Fatalf("echo ended early: %v", err)
	}
	if err := netlab.InstallCounters(tu.GW1.Host, netlab.GWDownlinkIf); err != nil {
		t.Fatal(err)
	}
	c0, err := netlab.ReadCounters(tu.GW1.Host)
	if err != nil {
		t.Fatal(err)
	}
	mon, err := netlab.MonitorRoutes(tu.Host.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()

	tr, err := netlab.RunUDP(ctx, tu.Host.Host, netlab.UDPConfig{
		Target: netip.AddrPortFrom(netlab.TargetAddr4, netlab.EchoPort),
		Flows:  2, Rate: 200, Duration: time.Second,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := tr.Delivered(0, tr.End+time.Millisecond)
	if d.Sent != 200 || d.Lost != 0 || d.Via[netlab.ServerGW1If] != 200 {
		t.Fatalf("delivery %s, want 200 sent, none lost, all via %s", d, netlab.ServerGW1If)
	}
	if g := tr.LongestGap(0, tr.End+time.Millisecond); g.Lost != 0 || g.Open {
		t.Fatalf("gap %+v on a healthy path", g)
	}

	// Probes are ICMP echo requests; the UDP traffic must not count.
	for i := 0; i < 3; i++ {
		if err := tu.Host.Host.Ping(netlab.GW1Addr4.String()); err != nil {
			t.Fatal(err)
		}
	}
	c1, err := netlab.ReadCounters(tu.GW1.Host)
	if err != nil {
		t.Fatal(err)
	}
	if n := c1.Sub(c0).Echo(); n != 3 {
		t.Errorf("echo requests counted at gw1 = %d, want 3", n)
	}

	from := time.Now()
	tu.Host.MustRun(t, "ip", "route", "add", "198.18.200.0/24", "via", netlab.GW2Addr4.String(), "proto", "212")
	tu.Host.MustRun(t, "ip", "route", "add", "198.18.201.0/24", "via", netlab.GW2Addr4.String())
	tu.Host.MustRun(t, "ip", "route", "del", "198.18.200.0/24", "proto", "212")
	eventually(t, "the monitor sees both proto 212 changes", func() bool { return mon.Count(212, from, time.Now()) == 2 })
	if n := mon.Count(-1, from, time.Now()); n != 3 {
		t.Errorf("monitor counted %d changes of any protocol, want 3", n)
	}
	if err := mon.Err(); err != nil {
		t.Errorf("monitor: %v", err)
	}

	// A TCP stream is bounded in time and reaches the discard port.
	n, err := netlab.RunTCP(ctx, tu.Host.Host, netlab.TCPConfig{
		Target: netip.AddrPortFrom(netlab.TargetAddr4, netlab.DiscardPort), Chunk: 100, Rate: 50, Duration: 300 * time.Millisecond,
	})
	if err != nil || n == 0 {
		t.Fatalf("tcp stream wrote %d bytes: %v", n, err)
	}
}

func TestReadUsage(t *testing.T) {
	u, err := netlab.ReadUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.PeakRSS <= 0 || u.RSS <= 0 || u.PeakRSS < u.RSS {
		t.Fatalf("usage %+v: want 0 < RSS <= peak", u)
	}
	if _, err := netlab.ReadUsage(-1); err == nil {
		t.Fatal("ReadUsage(-1) succeeded")
	}
}

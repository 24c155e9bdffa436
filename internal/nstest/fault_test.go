package nstest

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func itoa(i int) string { return strconv.Itoa(i) }

// neighState returns the NUD state the host has for addr on dev ("" if none).
func neighState(t *testing.T, h *Host, addr, dev string) string {
	t.Helper()
	out := h.MustRun(t, "ip", "neigh", "show", addr, "dev", dev)
	f := strings.Fields(out)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// viaGW1 gives the host routes to the target through GW1 only.
func viaGW1(t *testing.T, tu *TwoUplinks) {
	t.Helper()
	tu.Host.MustRun(t, "ip", "route", "add", TargetAddr4.String(), "via", GW1Addr4.String(), "dev", HostUplink1If)
	tu.Host.MustRun(t, "ip", "-6", "route", "add", TargetAddr6.String(), "via", GW1Addr6.String(), "dev", HostUplink1If)
}

func TestFaultBlackholeIP(t *testing.T) {
	tu := NewTwoUplinks(t)
	viaGW1(t, tu)
	h := tu.Host
	pingEventually(t, h, "-I", Host1Addr4.String(), TargetAddr4.String())
	pingEventually(t, h, "-I", Host1Addr6.String(), TargetAddr6.String())

	tu.GW1.BlackholeIP(t, GWDownlinkIf)
	h.MustRun(t, "ip", "neigh", "flush", "dev", HostUplink1If)
	for _, tc := range []struct{ src, dst, gw string }{
		{Host1Addr4.String(), TargetAddr4.String(), GW1Addr4.String()},
		{Host1Addr6.String(), TargetAddr6.String(), GW1Addr6.String()},
	} {
		if err := h.Ping(t, "-I", tc.src, tc.dst); err == nil {
			t.Fatalf("ping %s succeeded through a black-holed gateway\n%s", tc.dst, tu.GW1.FaultRuleset())
		}
		// Layer 2 must still be fine: that is the whole point of this
		// fault, and what makes it invisible to carrier/neighbour checks.
		st := neighState(t, h, tc.gw, HostUplink1If)
		switch st {
		case "REACHABLE", "STALE", "DELAY", "PROBE":
		default:
			t.Fatalf("neighbour %s state %q after blackhole, want it resolved", tc.gw, st)
		}
	}
	// Carrier is untouched.
	l, err := h.Handle.LinkByName(HostUplink1If)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().RawFlags&0x10000 == 0 { // IFF_LOWER_UP
		t.Fatal("host lost carrier on BlackholeIP")
	}
	// The gateway's own address is black-holed too (it arrives on the same
	// interface), which is what a detector pinging the gateway would see.
	if err := h.Ping(t, GW1Addr4.String()); err == nil {
		t.Fatal("ping to the gateway itself succeeded")
	}
	// The other uplink is unaffected.
	if err := h.Ping(t, GW2Addr4.String()); err != nil {
		t.Fatal(err)
	}

	tu.GW1.Recover(t)
	if rs := tu.GW1.FaultRuleset(); rs != "" {
		t.Fatalf("fault table still present after Recover:\n%s", rs)
	}
	pingEventually(t, h, "-I", Host1Addr4.String(), TargetAddr4.String())
	pingEventually(t, h, "-I", Host1Addr6.String(), TargetAddr6.String())
}

func TestFaultBlackholeARP(t *testing.T) {
	tu := NewTwoUplinks(t)
	viaGW1(t, tu)
	h := tu.Host
	pingEventually(t, h, "-I", Host1Addr4.String(), TargetAddr4.String())

	tu.GW1.BlackholeARP(t, GWDownlinkIf)
	h.MustRun(t, "ip", "neigh", "flush", "dev", HostUplink1If)
	if err := h.Ping(t, "-I", Host1Addr4.String(), TargetAddr4.String()); err == nil {
		t.Fatal("ping succeeded through an ARP-blackholed gateway")
	}
	if err := h.Ping(t, "-I", Host1Addr6.String(), TargetAddr6.String()); err == nil {
		t.Fatal("ping6 succeeded through an ND-blackholed gateway")
	}
	for _, gw := range []string{GW1Addr4.String(), GW1Addr6.String()} {
		switch st := neighState(t, h, gw, HostUplink1If); st {
		case "INCOMPLETE", "FAILED":
		default:
			t.Fatalf("neighbour %s state %q, want INCOMPLETE/FAILED", gw, st)
		}
	}
	tu.GW1.Recover(t)
	if out := tu.GW1.MustRun(t, "ip", "link", "show", GWDownlinkIf); strings.Contains(out, "NOARP") {
		t.Fatalf("arp still off after Recover: %s", out)
	}
	pingEventually(t, h, "-I", Host1Addr4.String(), TargetAddr4.String())
	pingEventually(t, h, "-I", Host1Addr6.String(), TargetAddr6.String())
}

func TestFaultLinkDown(t *testing.T) {
	tu := NewTwoUplinks(t)
	viaGW1(t, tu)
	h := tu.Host
	pingEventually(t, h, "-I", Host1Addr6.String(), TargetAddr6.String())

	tu.GW1.LinkDown(t, GWDownlinkIf)
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := h.MustRun(t, "ip", "link", "show", HostUplink1If)
		if strings.Contains(out, "NO-CARRIER") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host side never lost carrier: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := h.Ping(t, "-I", Host1Addr4.String(), TargetAddr4.String()); err == nil {
		t.Fatal("ping succeeded over a link without carrier")
	}
	tu.GW1.LinkUp(t, GWDownlinkIf)
	tu.GW1.LinkDown(t, GWDownlinkIf)
	tu.GW1.Recover(t) // must bring it up again
	pingEventually(t, h, "-I", Host1Addr4.String(), TargetAddr4.String())
	// keep_addr_on_down: the gateway's static IPv6 address survived.
	pingEventually(t, h, "-I", Host1Addr6.String(), TargetAddr6.String())
}

var lossRE = regexp.MustCompile(`(\d+(?:\.\d+)?)% packet loss`)

func TestFaultLoss(t *testing.T) {
	tu := NewTwoUplinks(t)
	viaGW1(t, tu)
	h := tu.Host
	pingEventually(t, h, "-I", Host1Addr4.String(), TargetAddr4.String())

	measure := func() float64 {
		t.Helper()
		// 60 probes, 10 ms apart, 1 s wait for the last replies: bounded
		// in count and time whatever the loss (no -w, which would keep
		// sending until the deadline under loss).
		out, _ := h.Run("ping", "-n", "-q", "-c", "60", "-i", "0.01", "-W", "1",
			"-I", Host1Addr4.String(), TargetAddr4.String())
		m := lossRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("cannot parse ping output: %s", out)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	tu.GW1.Loss(t, GWDownlinkIf, 50)
	// P(outside [15,85]) for Binomial(60, .5) is ~1e-7.
	if v := measure(); v < 15 || v > 85 {
		t.Fatalf("loss with 50%% fault = %v%%\n%s", v, tu.GW1.FaultRuleset())
	}
	tu.GW1.Loss(t, GWDownlinkIf, 100)
	if v := measure(); v != 100 {
		t.Fatalf("loss with 100%% fault = %v%%", v)
	}
	tu.GW1.Loss(t, GWDownlinkIf, 0)
	if v := measure(); v != 0 {
		t.Fatalf("loss with 0%% fault = %v%%", v)
	}
	tu.GW1.Loss(t, GWDownlinkIf, 100)
	tu.GW1.Recover(t)
	if v := measure(); v != 0 {
		t.Fatalf("loss after Recover = %v%%", v)
	}
}

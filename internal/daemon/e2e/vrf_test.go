package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// vrfPolicy puts basePolicy's two gateways in VRF blue; the group wan
// then writes its default in the VRF's table.
func vrfPolicy(pol string) string {
	for _, ifc := range []string{nstest.HostUplink1If, nstest.HostUplink2If} {
		line := fmt.Sprintf("interface = %q\n", ifc)
		pol = strings.Replace(pol, line, line+"vrf = \"blue\"\n", 1)
	}
	return pol
}

// addVRF creates VRF blue with the given table in the host namespace, or
// skips the test where this kernel has no VRF devices: that is a kernel
// build option (CONFIG_NET_VRF), not something a test can provide.
func (l *lab) addVRF(table int) {
	l.t.Helper()
	out, err := l.Host.Run("ip", "link", "add", "blue", "type", "vrf", "table", fmt.Sprint(table))
	if err != nil {
		if strings.Contains(out, "Unknown device type") || strings.Contains(out, "not supported") {
			l.t.Skipf("this kernel has no VRF devices (CONFIG_NET_VRF unset): ip link add type vrf: %s", strings.TrimSpace(out))
		}
		l.t.Fatalf("creating vrf blue: %v: %s", err, out)
	}
	l.Host.MustRun(l.t, "ip", "link", "set", "blue", "up")
	// As operators do: the VRF's lookups end in its table, never fall
	// through to main.
	l.Host.MustRun(l.t, "ip", "route", "add", "table", fmt.Sprint(table), "unreachable", "default", "metric", "4278198272")
}

func (l *lab) enslave(ifc, vrf string) {
	l.t.Helper()
	if vrf == "" {
		l.Host.MustRun(l.t, "ip", "link", "set", ifc, "nomaster")
		return
	}
	l.Host.MustRun(l.t, "ip", "link", "set", ifc, "master", vrf)
}

// ownRoutes is uplinkd's part of one table, as ip shows it.
func (l *lab) ownRoutes(table int) string {
	l.t.Helper()
	return nhidText.ReplaceAllString(l.Host.MustRun(l.t, "ip", "route", "show", "table", fmt.Sprint(table), "proto", "212"), "")
}

// Issue 19, scenario 8: a VRF with two uplinks. The group's default goes
// in the VRF's table (read from the device), none in main; traffic bound
// to the VRF uses it. A silent death moves the VRF's traffic to the other
// uplink; an interface taken out of the VRF is down with the reason; a
// VRF created again with another table takes the route with it.
func TestVRFTwoUplinks(t *testing.T) {
	l := newLab(t)
	l.addVRF(10)
	l.enslave(nstest.HostUplink1If, "blue")
	l.enslave(nstest.HostUplink2If, "blue")
	l.start(vrfPolicy(l.basePolicy(1, "")))
	both := func(table int) func() bool {
		return func() bool {
			return l.gatewayState("isp1") == "up" && l.gatewayState("isp2") == "up" && bothNexthops.MatchString(l.ownRoutes(table))
		}
	}
	l.waitFor("both gateways up and in table 10's default", both(10))
	if r := l.routes(); strings.Contains(r, "default") {
		t.Errorf("a default of uplinkd's in main, for a group in vrf blue:\n%s", r)
	}
	g := l.gateway("isp1")
	if g.VRF != "blue" {
		t.Errorf("status: isp1 vrf %q, want blue", g.VRF)
	}
	vrfPing := func(what string) {
		t.Helper()
		if err := l.Host.Ping(t, "-I", "blue", "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
			t.Errorf("ping in vrf blue %s: %v", what, err)
		}
	}
	vrfPing("with both uplinks")

	// The kernel's l3mdev rule deleted (by an operator, a config tool):
	// the gateways are fine, the VRF routes by the wrong table, and
	// status says so until the rule is back.
	l.Host.MustRun(t, "ip", "rule", "del", "pref", "1000", "l3mdev")
	l.waitFor("the warning on isp1", func() bool { return strings.Contains(l.gateway("isp1").VRFWarning, "no IPv4 l3mdev rule") })
	if st := l.gatewayState("isp1"); st != "up" {
		t.Errorf("isp1 %s without the l3mdev rule, want up (the gateway is fine)", st)
	}
	l.Host.MustRun(t, "ip", "rule", "add", "pref", "1000", "l3mdev")
	l.waitFor("the warning gone", func() bool { return l.gateway("isp1").VRFWarning == "" })

	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitFor("isp1 down by probes and table 10's default via isp2 alone", func() bool {
		return l.gatewayState("isp1") == "down" && strings.Contains(l.ownRoutes(10), "default via 198.18.2.1 dev eth2")
	})
	vrfPing("with isp1 silently dead")
	l.GW1.Recover(t)
	l.waitFor("isp1 back", both(10))

	l.enslave(nstest.HostUplink2If, "")
	l.waitFor("isp2 down, out of the VRF", func() bool {
		return l.gatewayReason("isp2") == "eth2 is not in vrf blue" && strings.Contains(l.ownRoutes(10), "default via 198.18.1.1 dev eth1")
	})
	l.enslave(nstest.HostUplink2If, "blue")
	l.waitFor("isp2 back in the VRF", both(10))

	l.Host.MustRun(t, "ip", "link", "del", "blue")
	l.waitFor("both down with the VRF gone", func() bool {
		return l.gatewayReason("isp1") == "vrf blue absent" && l.gatewayReason("isp2") == "vrf blue absent"
	})
	l.addVRF(20)
	l.enslave(nstest.HostUplink1If, "blue")
	l.enslave(nstest.HostUplink2If, "blue")
	l.waitFor("both up in the new VRF's table 20", both(20))
	if r := l.ownRoutes(10); r != "" {
		t.Errorf("uplinkd's routes left in table 10:\n%s", r)
	}
	vrfPing("in the VRF created again")
}

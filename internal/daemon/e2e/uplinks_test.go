package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

func (l *lab) gatewayReason(name string) string {
	for _, g := range l.status().Gateways {
		if g.Name == name {
			return g.Reason
		}
	}
	return ""
}

// Issue 19, scenario 7: eth2 does not exist when uplinkd starts (a PPP
// link, a VLAN, a USB modem that comes later). The daemon starts anyway,
// isp2 is down with reason "interface eth2 absent", a reload is accepted,
// and 10 s after the start the interface is created, with a new index,
// and isp2 rejoins the multipath default by name.
func TestInterfaceCreatedAfterStart(t *testing.T) {
	l := newLab(t)
	l.Host.MustRun(t, "ip", "link", "del", nstest.HostUplink2If) // takes GW2's eth0 with it
	started := time.Now()
	l.start(l.basePolicy(1, ""))
	l.waitFor("isp1 up, isp2 down as absent, a default via isp1 only", func() bool {
		return l.gatewayState("isp1") == "up" && l.gatewayState("isp2") == "down" &&
			strings.Contains(l.routes(), "default via 198.18.1.1 dev eth1")
	})
	if r := l.gatewayReason("isp2"); r != "interface eth2 absent" {
		t.Errorf("isp2 reason %q, want %q", r, "interface eth2 absent")
	}
	if out := l.Host.Output(l.cmd); !strings.Contains(out, "interface absent; the gateway is down until it appears") {
		t.Errorf("no warning about the absent interface in the log:\n%s", tail(out, 3000))
	}
	l.signal(1) // SIGHUP: a reload with the interface still absent is accepted
	l.waitFor("the reload", func() bool {
		st := l.status()
		return !st.LastReload.IsZero() && st.LastReload.After(started)
	})
	if st := l.status(); !st.LastReloadOK {
		t.Fatalf("reload with an absent interface refused: %s", st.LastReloadError)
	}

	time.Sleep(time.Until(started.Add(10 * time.Second)))
	l.Lab.Link(l.Host, nstest.HostUplink2If, l.GW2, nstest.GWDownlinkIf)
	l.Host.AddAddr(t, nstest.HostUplink2If, nstest.Host2Addr4.String()+"/24")
	l.GW2.AddAddr(t, nstest.GWDownlinkIf, nstest.GW2Addr4.String()+"/24")
	created := time.Now()
	l.waitBothUp()
	t.Logf("isp2 in the default route %v after eth2 was created (profile: 100ms interval, up_count 3)", time.Since(created).Round(10*time.Millisecond))
	if err := l.Host.ProcOf(l.cmd).Signal(0); err != nil {
		t.Fatalf("daemon gone: %v", err)
	}
}

// Issue 19, "released lease": eth1 loses its address and subnet (what a
// DHCP client does on release) while both gateways are up. isp1 goes
// down at once with the reason, the host keeps a default through isp2
// (never none: the kernel would refuse a multipath route naming
// 198.18.1.1 on eth1), and isp1 comes back with the address.
func TestReleasedLeaseGatewayDown(t *testing.T) {
	l := newLab(t)
	l.start(l.basePolicy(1, ""))
	l.waitBothUp()
	released := time.Now()
	l.Host.MustRun(t, "ip", "-4", "addr", "flush", "dev", nstest.HostUplink1If)
	l.waitFor("isp1 down and a default via isp2 alone", func() bool {
		return l.gatewayState("isp1") == "down" && strings.Contains(l.routes(), "default via 198.18.2.1 dev eth2")
	})
	t.Logf("isp1 out of the default route %v after the release", time.Since(released).Round(10*time.Millisecond))
	want := "198.18.1.1 is not on-link on eth1 (no address in its subnet)"
	if r := l.gatewayReason("isp1"); r != want {
		t.Errorf("isp1 reason %q, want %q", r, want)
	}
	if err := l.Host.Ping(t, "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping through isp2 after eth1's lease went: %v", err)
	}
	l.Host.AddAddr(t, nstest.HostUplink1If, nstest.Host1Addr4.String()+"/24")
	l.waitBothUp()
}

// Issue 19, "a client at metric 0": a DHCP client installs its own
// metric-0 default in main beside uplinkd's (the same key). The running
// daemon shows it in status, the metric and a degraded /healthz, and
// recovers when the client's route goes.
func TestDHCPClientDefaultIsAVisibleConflict(t *testing.T) {
	l := newLab(t)
	l.start(l.basePolicy(1, ""))
	l.waitBothUp()
	l.Host.MustRun(t, "ip", "route", "prepend", "default", "via", nstest.GW1Addr4.String(), "dev", nstest.HostUplink1If, "proto", "dhcp")
	l.waitFor("the conflict in status", func() bool { return len(l.status().Conflicts) == 1 })
	if c := l.status().Conflicts[0]; !strings.Contains(c, "proto 16") && !strings.Contains(c, "proto dhcp") {
		t.Errorf("conflict line %q does not name the DHCP client's route", c)
	}
	if v := l.metric("uplinkd_route_conflicts", nil); v != 1 {
		t.Errorf("uplinkd_route_conflicts = %v, want 1", v)
	}
	if _, err := l.get("/healthz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("/healthz with a conflict: err %v, want 503", err)
	}
	l.Host.MustRun(t, "ip", "route", "del", "default", "proto", "dhcp")
	l.waitFor("the conflict to clear and /healthz ok", func() bool {
		_, err := l.get("/healthz")
		return err == nil && len(l.status().Conflicts) == 0
	})
	l.waitBothUp()
}

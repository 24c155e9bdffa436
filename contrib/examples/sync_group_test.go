package examples_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// bridge makes h a switch: a bridge br0 holding the given ports, all up.
// It lives and dies with h's namespace.
func bridge(t *testing.T, h *nstest.Host, ports ...string) {
	t.Helper()
	h.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	for _, p := range ports {
		h.MustRun(t, "ip", "link", "set", p, "master", "br0")
	}
	h.MustRun(t, "ip", "link", "set", "br0", "up")
}

// syncAddrs are the VIPs of VI_1 (eth0) and the DIP of VI_2 (eth1).
var syncAddrs = []struct{ iface, cidr string }{
	{"eth0", "198.18.1.10/24"}, {"eth0", "198.18.1.11/24"}, {"eth1", "198.18.2.1/24"},
}

// holders says, per VRRP address, which director holds it: "1", "2",
// "-" (nobody) or "12" (both), e.g. "1 1 1". has reads one director's
// addresses: `ip addr` (hasAddr) to check, netlink for the 20ms polls that
// time a move.
func holders(t *testing.T, has func(h *nstest.Host, iface, cidr string) bool, d1, d2 *nstest.Host) string {
	t.Helper()
	var out []string
	for _, a := range syncAddrs {
		s := ""
		if has(d1, a.iface, a.cidr) {
			s += "1"
		}
		if has(d2, a.iface, a.cidr) {
			s += "2"
		}
		if s == "" {
			s = "-"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// netlinkHas is hasAddr through the host's netlink handle: no process per
// read, so a poll takes microseconds and does not blur the timing.
func netlinkHas(t *testing.T) func(h *nstest.Host, iface, cidr string) bool {
	return func(h *nstest.Host, iface, cidr string) bool {
		t.Helper()
		l, err := h.Handle.LinkByName(iface)
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := h.Handle.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.IPNet.String() == cidr {
				return true
			}
		}
		return false
	}
}

// ipAddrHas is hasAddr, as an operator checks: `ip addr show dev IFACE`.
func ipAddrHas(t *testing.T) func(h *nstest.Host, iface, cidr string) bool {
	return func(h *nstest.Host, iface, cidr string) bool { t.Helper(); return hasAddr(t, h, iface, cidr) }
}

// TestKeepalivedSyncGroup proves keepalived-sync-group.toml with
// keepalived-sync-group.conf: director-1's uplink router dies silently
// (carrier up, ARP answered, IP dropped) and both VRRP instances, the
// outside VIPs and the inside DIP, move to director-2 within 2 s, as `ip
// addr` on both directors shows; when the router returns both come back
// (preempt).
//
//	[r1] 198.18.1.1   [r2] 198.18.1.254
//	   └──── [out] br0 ────┘
//	 eth0 [d1] eth1 ── eth1 [d2] eth0 (d2's eth0 on [out] too)
func TestKeepalivedSyncGroup(t *testing.T) {
	lab := nstest.New(t)
	d1, d2, r1, r2, out := lab.Host("d1"), lab.Host("d2"), lab.Host("r1"), lab.Host("r2"), lab.Host("out")
	lab.Link(d1, "eth0", out, "p-d1")
	lab.Link(d2, "eth0", out, "p-d2")
	lab.Link(r1, "eth0", out, "p-r1")
	lab.Link(r2, "eth0", out, "p-r2")
	bridge(t, out, "p-d1", "p-d2", "p-r1", "p-r2")
	lab.Link(d1, "eth1", d2, "eth1")
	d1.AddAddr(t, "eth0", "198.18.1.2/24")
	d2.AddAddr(t, "eth0", "198.18.1.3/24")
	r1.AddAddr(t, "eth0", "198.18.1.1/24")
	r2.AddAddr(t, "eth0", "198.18.1.254/24")
	d1.AddAddr(t, "eth1", "198.18.2.2/24")
	d2.AddAddr(t, "eth1", "198.18.2.3/24")

	pol := example(t, "keepalived-sync-group.toml")
	conf := example(t, "keepalived-sync-group.conf")
	for _, s := range []string{`address = "198.18.1.1"`} {
		if !strings.Contains(pol, s) {
			t.Fatalf("keepalived-sync-group.toml no longer mentions %s", s)
		}
	}
	for _, s := range []string{"/run/uplinkd/track/director-ok", "state MASTER", "priority 150", "vrrp_sync_group"} {
		if !strings.Contains(conf, s) {
			t.Fatalf("keepalived-sync-group.conf no longer mentions %s", s)
		}
	}
	ka := map[*nstest.Host]*exec.Cmd{}
	start := func(d *nstest.Host, router string) {
		track := filepath.Join(t.TempDir(), "track")
		p := strings.ReplaceAll(pol, `address = "198.18.1.1"`, fmt.Sprintf("address = %q", router))
		daemontest.Start(t, d, bin, daemontest.SetDaemonKeys(p, map[string]string{"track_dir": fmt.Sprintf("%q", track)}))
		c := strings.ReplaceAll(conf, "/run/uplinkd/track/director-ok", filepath.Join(track, "director-ok"))
		if d == d2 {
			c = strings.ReplaceAll(strings.ReplaceAll(c, "state MASTER", "state BACKUP"), "priority 150", "priority 100")
		}
		ka[d] = startKeepalived(t, d, c)
	}
	start(d1, "198.18.1.1")
	daemontest.WaitFor(t, 20*time.Second, "director-1 to hold both instances", func() (bool, string) {
		h := holders(t, ipAddrHas(t), d1, d2)
		return h == "1 1 1", "holders " + h
	})
	start(d2, "198.18.1.254")
	time.Sleep(3 * time.Second) // director-2 settles as backup
	if h := holders(t, ipAddrHas(t), d1, d2); h != "1 1 1" {
		t.Fatalf("with director-2 up as backup the addresses are held by %s, want 1 1 1", h)
	}

	// moved polls both directors' addresses every 20ms until every one is
	// held by want alone, and returns when the poll that saw it ended: an
	// upper bound of how long the move took. `ip addr` then confirms it.
	moved := func(want string, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			h := holders(t, netlinkHas(t), d1, d2)
			took := time.Since(start)
			if h == want {
				if ip := holders(t, ipAddrHas(t), d1, d2); ip != want {
					t.Fatalf("netlink shows %s but ip addr shows %s", h, ip)
				}
				if took > limit {
					t.Fatalf("the addresses took %v to be held by %s, more than %v", took, want, limit)
				}
				return took
			}
			if took > limit {
				t.Fatalf("after %v the addresses are held by %s, want %s", took, h, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	r1.BlackholeIP(t, "eth0")
	took := moved("2 2 2", 2*time.Second)
	t.Logf("both instances on director-2 %v after director-1's router died", took.Round(time.Millisecond))

	r1.Recover(t)
	took = moved("1 1 1", 30*time.Second)
	t.Logf("both instances back on director-1 %v after its router returned (up_count probes, then preempt)", took.Round(time.Millisecond))
	// keepalived's own log says the track file moved them.
	if out := d1.Output(ka[d1]); !strings.Contains(out, "tracked file director_ok now FAULT state") {
		t.Errorf("director-1's keepalived never logged that director_ok failed:\n%s", out)
	}
}

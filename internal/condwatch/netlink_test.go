package condwatch_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/condition"
	"github.com/uplinkd/uplinkd/internal/condwatch"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// TestNetlinkInNamespace watches a real veth in a lab namespace: carrier
// follows the peer, and an address added and removed as keepalived does
// for a VIP shows and goes, each on its netlink notification (the resync is
// an hour, so only notifications can explain what is seen).
func TestNetlinkInNamespace(t *testing.T) {
	lab := nstest.New(t)
	a, b := lab.Host("a"), lab.Host("b")
	lab.Link(a, "eth0", b, "eth0")
	ns := a.NsHandle()
	w := condwatch.New(condwatch.Config{Kernel: condwatch.Netlink{NS: &ns}, Resync: time.Hour})
	w.Set([]string{"eth0", "eth9"}, nil)
	start(t, w)
	await(t, w, "eth0 up, eth9 absent", func(f condwatch.Facts) bool { return f.Links["eth0"] && !f.Links["eth9"] })

	for _, tc := range []struct{ cidr, ip string }{{"198.18.0.100/32", "198.18.0.100"}, {"2001:db8::100/128", "2001:db8::100"}} {
		vip := condition.Addr{Iface: "eth0", IP: netip.MustParseAddr(tc.ip)}
		t0 := time.Now()
		a.MustRun(t, "ip", "addr", "add", tc.cidr, "dev", "eth0")
		await(t, w, tc.ip+" present", func(f condwatch.Facts) bool { return f.Addrs[vip] })
		t.Logf("%s seen %v after ip addr add", tc.ip, time.Since(t0).Round(time.Microsecond))
		a.MustRun(t, "ip", "addr", "del", tc.cidr, "dev", "eth0")
		await(t, w, tc.ip+" gone", func(f condwatch.Facts) bool { return !f.Addrs[vip] })
	}
	b.MustRun(t, "ip", "link", "set", "eth0", "down")
	await(t, w, "eth0 without carrier", func(f condwatch.Facts) bool { return !f.Links["eth0"] })
	b.MustRun(t, "ip", "link", "set", "eth0", "up")
	await(t, w, "eth0 with carrier again", func(f condwatch.Facts) bool { return f.Links["eth0"] })
	a.MustRun(t, "ip", "link", "set", "eth0", "down")
	await(t, w, "eth0 administratively down", func(f condwatch.Facts) bool { return !f.Links["eth0"] })
}

package reliability

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// ifindex returns the index of iface in the host namespace.
func (r *rig) ifindex(iface string) int {
	r.t.Helper()
	l, err := r.Host.Handle.LinkByName(iface)
	if err != nil {
		r.t.Fatalf("looking up %s: %v", iface, err)
	}
	return l.Attrs().Index
}

// recreateUplink1 puts back the host–GW1 link after eth1 was deleted
// (deleting one end of a veth deletes both): a new pair, new indexes, the
// same names and addresses, as when a USB modem or a VF comes back.
func (r *rig) recreateUplink1() {
	r.t.Helper()
	r.Lab.Link(r.Host, nstest.HostUplink1If, r.GW1, nstest.GWDownlinkIf)
	r.Host.AddAddr(r.t, nstest.HostUplink1If, fmt.Sprintf("%s/24", nstest.Host1Addr4))
	r.Host.AddAddr(r.t, nstest.HostUplink1If, fmt.Sprintf("%s/64", nstest.Host1Addr6))
	r.GW1.AddAddr(r.t, nstest.GWDownlinkIf, fmt.Sprintf("%s/24", nstest.GW1Addr4))
	r.GW1.AddAddr(r.t, nstest.GWDownlinkIf, fmt.Sprintf("%s/64", nstest.GW1Addr6))
}

// Fault 2: the uplink is deleted and re-created with a new index, then
// renamed away and back. While eth1 is gone the host keeps a default
// through isp2; when it is back (new index, or old name again) uplinkd
// restores exactly the routes and rules it had.
func TestUplinkDeletedRecreatedRenamed(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.traffic(90 * time.Second)
	d := r.start(r.policy(polOpts{Tables: true}))
	r.waitBothUp()
	before := r.owned()
	oldIndex := r.ifindex(nstest.HostUplink1If)

	r.ipOut("link", "del", nstest.HostUplink1If)
	r.waitFor(30*time.Second, "isp1 down and the default through isp2 alone", func() (bool, string) {
		def := r.mainDefault()
		return r.state("isp1") == "down" && strings.Contains(def, "via 198.18.2.1") && !strings.Contains(def, "198.18.1.1"),
			fmt.Sprintf("isp1 %s default %q", r.state("isp1"), def)
	})
	if tbl := r.ipOut("route", "show", "table", "202"); !strings.Contains(tbl, "default via 198.18.2.1") {
		t.Errorf("table 202 lost its default while eth1 was gone: %q", tbl)
	}

	r.recreateUplink1()
	if newIndex := r.ifindex(nstest.HostUplink1If); newIndex == oldIndex {
		t.Fatalf("eth1 came back with the same index %d: the test proves nothing", oldIndex)
	}
	r.waitBothUp()
	r.waitFor(30*time.Second, "the owned routes and rules restored after re-creation", func() (bool, string) {
		now := r.owned()
		return now == before, fmt.Sprintf("owned now:\n%s\nwant:\n%s", now, before)
	})

	// Renamed away (an interface can only be renamed while down) and back.
	r.ipOut("link", "set", nstest.HostUplink1If, "down")
	r.ipOut("link", "set", nstest.HostUplink1If, "name", "wan1")
	r.ipOut("link", "set", "wan1", "up")
	r.waitFor(30*time.Second, "isp1 down while its interface is called wan1", func() (bool, string) {
		def := r.mainDefault()
		return r.state("isp1") == "down" && strings.Contains(def, "via 198.18.2.1"), fmt.Sprintf("isp1 %s default %q", r.state("isp1"), def)
	})
	renamed := r.owned()
	r.ipOut("link", "set", "wan1", "down")
	r.ipOut("link", "set", "wan1", "name", nstest.HostUplink1If)
	r.ipOut("link", "set", nstest.HostUplink1If, "up")
	r.waitBothUp()
	r.waitFor(30*time.Second, "the owned routes and rules restored after the rename back", func() (bool, string) {
		now := r.owned()
		return now == before, fmt.Sprintf("owned now:\n%s\nwant:\n%s", now, before)
	})
	if err := r.Host.Ping(t, "-c", "1", "-W", "1", "-I", nstest.Host1Addr4.String(), nstest.TargetAddr4.String()); err != nil {
		t.Errorf("no traffic from isp1's source after the rename back: %v", err)
	}
	t.Logf("while renamed to wan1, uplinkd owned:\n%s", renamed)
	_ = d
}

// Fault 3: the uplink's address is renewed (DHCP style: the old lease
// removed, a new one in the same subnet added) and the policy follows it
// by reload; later the source address disappears and comes back. Rules and
// tables follow the policy and nothing stale is left behind.
func TestUplinkAddressChanges(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.traffic(90 * time.Second)
	const newSrc = "198.18.1.3"
	r.start(r.policy(polOpts{Tables: true}))
	r.waitBothUp()
	if rules := r.ipOut("rule", "show"); !strings.Contains(rules, "from 198.18.1.2 lookup 201") {
		t.Fatalf("no source rule for 198.18.1.2:\n%s", rules)
	}

	// The renew: the old address goes (the kernel drops routes using it as
	// their source), the new one arrives. uplinkd keeps running and keeps
	// table 202 and the main default intact meanwhile.
	r.ipOut("addr", "del", fmt.Sprintf("%s/24", nstest.Host1Addr4), "dev", nstest.HostUplink1If)
	r.ipOut("addr", "add", newSrc+"/24", "dev", nstest.HostUplink1If)
	hold(t, 2*time.Second, "the rest of the routing while isp1's address is renewed", func() (bool, string) {
		def := r.mainDefault()
		t202 := r.ipOut("route", "show", "table", "202")
		return strings.Contains(def, "via 198.18.2.1") && strings.Contains(t202, "default via 198.18.2.1"),
			fmt.Sprintf("default %q table 202 %q", def, t202)
	})
	if _, err := r.d.Status(); err != nil {
		t.Fatalf("uplinkd stopped answering after the address change: %v", err)
	}

	// The DHCP client's hook updates the policy and reloads.
	r.rewrite(r.policy(polOpts{Tables: true, Src1: newSrc}))
	if out, err := r.d.Reload(); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	r.waitFor(30*time.Second, "rules and table 201 following the new source", func() (bool, string) {
		rules := r.ipOut("rule", "show")
		t201 := r.ipOut("route", "show", "table", "201")
		ok := strings.Contains(rules, "from "+newSrc+" lookup 201") && !strings.Contains(rules, "198.18.1.2") &&
			strings.Contains(t201, "default via 198.18.1.1") && !strings.Contains(t201, "198.18.1.2")
		return ok, fmt.Sprintf("rules:\n%s\ntable 201:\n%s", rules, t201)
	})
	if owned := r.owned(); strings.Contains(owned, "198.18.1.2 ") || strings.Contains(owned, "198.18.1.2\n") {
		t.Errorf("stale state for the old address left behind:\n%s", owned)
	}
	r.waitBothUp()
	if err := r.Host.Ping(t, "-c", "1", "-W", "1", "-I", newSrc, nstest.TargetAddr4.String()); err != nil {
		t.Errorf("no traffic from the new source: %v", err)
	}
	steady := r.owned()

	// The source address disappears (and with it every route using it)
	// and comes back: the table is restored, nothing else changes.
	errs0, _ := r.metric("uplinkd_netlink_writes_total", map[string]string{"result": "error"})
	r.ipOut("addr", "del", newSrc+"/24", "dev", nstest.HostUplink1If)
	time.Sleep(3 * time.Second)
	errs, _ := r.metric("uplinkd_netlink_writes_total", map[string]string{"result": "error"})
	// The kernel refuses a route whose source is gone; uplinkd must not
	// spin on that (repairs are limited to a burst of 5, then 2 a second).
	if errs-errs0 > 3*(5+2*3) {
		t.Errorf("%v failed writes in 3 s while the source address was gone: uplinkd spins", errs-errs0)
	}
	if _, err := r.d.Status(); err != nil {
		t.Fatalf("uplinkd stopped answering while its source address was gone: %v", err)
	}
	gone := r.owned()
	r.ipOut("addr", "add", newSrc+"/24", "dev", nstest.HostUplink1If)
	r.waitBothUp()
	r.waitFor(30*time.Second, "the owned state back as before the address vanished", func() (bool, string) {
		now := r.owned()
		return now == steady, fmt.Sprintf("owned now:\n%s\nwant:\n%s", now, steady)
	})
	t.Logf("while the source address was gone (3 s, %v failed writes), uplinkd owned:\n%s", errs-errs0, gone)
}

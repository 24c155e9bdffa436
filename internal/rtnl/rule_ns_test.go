package rtnl

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRulesInNamespace adds and deletes rules in one batch beside a
// foreign rule at the same priority: the kernel holds exactly what `ip
// rule` shows, and the delete leaves the foreign rule alone.
func TestRulesInNamespace(t *testing.T) {
	h, c, _ := nexthopLab(t)
	h.MustRun(t, "ip", "rule", "add", "pref", "1000", "from", "198.18.9.0/24", "lookup", "100") // foreign: proto boot
	rules := []Rule{
		{Family: unix.AF_INET, Priority: 1000, Src: netip.MustParsePrefix("198.18.9.0/24"), Table: 100, Protocol: 212},
		{Family: unix.AF_INET, Priority: 1001, Mark: 0x100, Mask: 0xff00, IIF: "up0", Table: 1000, Protocol: 212},
		{Family: unix.AF_INET6, Priority: 1002, Dst: netip.MustParsePrefix("2001:db8:5::/48"), Table: 100000, Protocol: 212},
	}
	var adds, dels []Request
	for _, r := range rules {
		a, err := RuleRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		d, err := RuleDeleteRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		adds, dels = append(adds, a), append(dels, d)
	}
	for i, err := range c.Batch(adds) {
		if err != nil {
			t.Fatalf("rule %d: %v", i, err)
		}
	}
	v4 := h.MustRun(t, "ip", "rule", "show")
	v6 := h.MustRun(t, "ip", "-6", "rule", "show")
	for _, want := range []string{
		"1000:\tfrom 198.18.9.0/24 lookup 100\n",
		"1000:\tfrom 198.18.9.0/24 lookup 100 proto 212",
		"1001:\tfrom all fwmark 0x100/0xff00 iif up0 lookup 1000 proto 212",
	} {
		if !strings.Contains(v4, want) {
			t.Errorf("ip rule lacks %q:\n%s", want, v4)
		}
	}
	if !strings.Contains(v6, "1002:\tfrom all to 2001:db8:5::/48 lookup 100000 proto 212") {
		t.Errorf("ip -6 rule:\n%s", v6)
	}
	for i, err := range c.Batch(dels) {
		if err != nil {
			t.Fatalf("deleting rule %d: %v", i, err)
		}
	}
	v4 = h.MustRun(t, "ip", "rule", "show")
	if strings.Contains(v4, "proto 212") || !strings.Contains(v4, "1000:\tfrom 198.18.9.0/24 lookup 100\n") {
		t.Errorf("after deleting ours, ip rule:\n%s", v4)
	}
}

// The kernel's own rules have no l3mdev rule until one is added (by the
// kernel with its first VRF, or by hand, as here: it needs only
// CONFIG_NET_L3_MASTER_DEV, not VRF devices); then its family has one.
func TestL3mdevFamilies(t *testing.T) {
	h, c, _ := nexthopLab(t)
	got, err := c.L3mdevFamilies()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("before any l3mdev rule: %v", got)
	}
	if out, err := h.Run("ip", "rule", "add", "pref", "1000", "l3mdev"); err != nil {
		t.Fatalf("ip rule add l3mdev: %v: %s", err, out)
	}
	got, err = c.L3mdevFamilies()
	if err != nil {
		t.Fatal(err)
	}
	if !got[unix.AF_INET] || got[unix.AF_INET6] {
		t.Errorf("with an IPv4 l3mdev rule: %v, want IPv4 only", got)
	}
}

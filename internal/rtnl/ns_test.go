package rtnl

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"golang.org/x/sys/unix"
)

// ipNexthop is one object of `ip -j -d nexthop show`: iproute2 is the
// independent witness of what the kernel holds.
type ipNexthop struct {
	ID       uint32 `json:"id"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Type     string `json:"type"`
	Group    []struct {
		ID     uint32 `json:"id"`
		Weight int    `json:"weight"`
	} `json:"group"`
	Res *struct {
		Buckets         int `json:"buckets"`
		IdleTimer       int `json:"idle_timer"`
		UnbalancedTimer int `json:"unbalanced_timer"`
	} `json:"resilient_args"`
}

func ipNexthops(t *testing.T, h *nstest.Host) map[uint32]ipNexthop {
	t.Helper()
	var list []ipNexthop
	if err := json.Unmarshal([]byte(h.MustRun(t, "ip", "-j", "-d", "nexthop", "show")), &list); err != nil {
		t.Fatal(err)
	}
	out := map[uint32]ipNexthop{}
	for _, n := range list {
		out[n.ID] = n
	}
	return out
}

func nexthopLab(t *testing.T) (*nstest.Host, *Conn, uint32) {
	lab := nstest.New(t)
	h := lab.Host("nh")
	peer := lab.Host("peer")
	lab.Link(h, "up0", peer, "down0")
	h.AddAddr(t, "up0", "198.18.0.1/24")
	h.AddAddr(t, "up0", "2001:db8::1/64")
	c, err := Dial(h.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l, err := h.Handle.LinkByName("up0")
	if err != nil {
		t.Fatal(err)
	}
	return h, c, uint32(l.Attrs().Index)
}

// TestNexthopObjectsInNamespace creates, dumps, replaces and deletes
// nexthop objects and a route via a resilient group in a namespace's
// kernel, beside a foreign nexthop object that must come through intact.
func TestNexthopObjectsInNamespace(t *testing.T) {
	h, c, oif := nexthopLab(t)
	h.MustRun(t, "ip", "nexthop", "add", "id", "5", "via", "198.18.0.9", "dev", "up0") // foreign: proto unspec
	foreignBefore := ipNexthops(t, h)[5]

	caps := c.Probe()
	if !caps.Nexthops {
		t.Skipf("kernel lacks nexthop objects: %s", caps.Reason)
	}
	t.Logf("kernel %s: form %s", caps.Release, caps.Form())

	gw := func(id uint32, addr string, fam uint8) Nexthop {
		return Nexthop{ID: id, Family: fam, Protocol: 212, Gateway: netip.MustParseAddr(addr), OIF: oif}
	}
	res := ResilientParams{Buckets: 64, IdleTimer: 2 * time.Second, UnbalancedTimer: 10 * time.Second}
	group := Nexthop{ID: 1100, Protocol: 212, Group: []Member{{1001, 1}, {1002, 3}}, Type: Resilient, Resilient: res}
	if !caps.Resilient {
		group.Type, group.Resilient = Multipath, ResilientParams{}
	}
	var reqs []Request
	for _, n := range []Nexthop{gw(1001, "198.18.0.2", unix.AF_INET), gw(1002, "198.18.0.3", unix.AF_INET), gw(1003, "2001:db8::2", unix.AF_INET6), group} {
		r, err := NexthopRequest(n, FlagsAdd)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	route := Route{Family: unix.AF_INET, Table: 100, Dst: netip.MustParsePrefix("0.0.0.0/0"), Protocol: 212, Type: unix.RTN_UNICAST, NHID: 1100}
	rr, err := RouteRequest(route, FlagsAdd)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range c.Batch(append(reqs, rr)) {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}

	got := ipNexthops(t, h)
	if g := got[1001]; g.Gateway != "198.18.0.2" || g.Dev != "up0" || g.Protocol != "212" {
		t.Errorf("ip shows nexthop 1001 as %+v", g)
	}
	if g := got[1003]; g.Gateway != "2001:db8::2" {
		t.Errorf("ip shows nexthop 1003 as %+v", g)
	}
	g := got[1100]
	if len(g.Group) != 2 || g.Group[0].ID != 1001 || g.Group[1].ID != 1002 || g.Group[1].Weight != 3 {
		t.Errorf("ip shows group 1100 as %+v", g)
	}
	if caps.Resilient && (g.Type != "resilient" || g.Res == nil || g.Res.Buckets != 64 || g.Res.IdleTimer != 2 || g.Res.UnbalancedTimer != 10) {
		t.Errorf("ip shows resilient group 1100 as %+v (resilient_args %+v)", g, g.Res)
	}
	if out := h.MustRun(t, "ip", "route", "show", "table", "100"); !strings.Contains(out, "default nhid 1100 proto 212") {
		t.Errorf("ip route show table 100:\n%s", out)
	}

	// Our dump reads back what we wrote, exactly, and the foreign one.
	dumped, err := c.Nexthops()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint32]Nexthop{}
	for _, n := range dumped {
		byID[n.ID] = n
	}
	for _, want := range []Nexthop{gw(1001, "198.18.0.2", unix.AF_INET), gw(1003, "2001:db8::2", unix.AF_INET6), group} {
		if !want.Equal(byID[want.ID]) {
			t.Errorf("dump of %d = %+v, want %+v", want.ID, byID[want.ID], want)
		}
	}
	if byID[5].Protocol != 0 {
		t.Errorf("foreign nexthop 5 dumped as %+v", byID[5])
	}
	routes, err := c.Routes(unix.AF_INET, 212)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || routes[0] != route {
		t.Errorf("owned route dump = %+v, want [%+v]", routes, route)
	}

	// Replace: drop a member (what a dead gateway does to its group).
	group.Group = []Member{{1002, 3}}
	rq, err := NexthopRequest(group, FlagsReplace)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(rq); err != nil {
		t.Fatalf("replacing group: %v", err)
	}
	if g := ipNexthops(t, h)[1100]; len(g.Group) != 1 || g.Group[0].ID != 1002 {
		t.Errorf("after replace, ip shows group 1100 as %+v", g)
	}
	// A replace cannot change a resilient group's bucket count: the
	// kernel refuses, and the reconciler must build a new group instead.
	if caps.Resilient {
		bad := group
		bad.Resilient.Buckets = 128
		rq, _ := NexthopRequest(bad, FlagsReplace)
		if err := c.Do(rq); !errors.Is(err, unix.EINVAL) {
			t.Errorf("replacing the bucket count: %v, want EINVAL", err)
		}
	}
	// An add on an existing id is EEXIST, which the reconciler counts as success.
	ra, _ := NexthopRequest(gw(1001, "198.18.0.2", unix.AF_INET), FlagsAdd)
	if err := c.Do(ra); !errors.Is(err, unix.EEXIST) {
		t.Errorf("adding nexthop 1001 twice: %v, want EEXIST", err)
	}

	// Delete: route, group, members; ENOENT for what is gone.
	rd, _ := RouteDeleteRequest(route)
	for i, err := range c.Batch([]Request{rd, NexthopDeleteRequest(1100), NexthopDeleteRequest(1001), NexthopDeleteRequest(1002), NexthopDeleteRequest(1003)}) {
		if err != nil {
			t.Errorf("delete %d: %v", i, err)
		}
	}
	if err := c.Do(NexthopDeleteRequest(1001)); !errors.Is(err, unix.ENOENT) {
		t.Errorf("deleting nexthop 1001 twice: %v, want ENOENT", err)
	}
	left := ipNexthops(t, h)
	if len(left) != 1 {
		t.Errorf("left after deletes: %+v, want only the foreign nexthop 5", left)
	}
	if f := left[5]; f.Gateway != foreignBefore.Gateway || f.Dev != foreignBefore.Dev || f.Protocol != foreignBefore.Protocol {
		t.Errorf("foreign nexthop 5 changed: %+v, was %+v", f, foreignBefore)
	}
}

package daemon

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// forwardingFunc reports whether this network namespace forwards a
// family's packets (4 or 6).
type forwardingFunc func(family int) (bool, error)

// procForwarding reads the forwarding sysctls. /proc/sys/net answers for
// the reader's own network namespace, which is the daemon's.
func procForwarding(family int) (bool, error) {
	path := "/proc/sys/net/ipv4/ip_forward"
	if family == 6 {
		path = "/proc/sys/net/ipv6/conf/all/forwarding"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("reading IPv%d forwarding: %w", family, err)
	}
	return strings.TrimSpace(string(b)) != "0", nil
}

// multipathForm turns [daemon] multipath into the reconciler's form cap
// and the reason status shows for it.
//
// "auto" asks whether the host forwards. A router's flows are forwarded:
// their source address is the client's, so a resilient group's bucket
// choice is stable, and only the dead uplink's flows move. A host's own
// connections choose their source address in a first route lookup and
// then route with it; the kernel's classic multipath prefers the nexthop
// whose source matches (Linux 6.15+), but a nexthop group hashes the new
// source onto any member, so about (n-1)/n of them would leave one uplink
// with another's address (measured on 6.18, routing's
// TestKernelGroupsIgnoreSource). A host forwarding one of its groups'
// families but not another is treated as a host: forwarding IPv4 for
// containers does not make its own IPv6 connections safe.
func multipathForm(p *policy.Policy, fwd forwardingFunc) (routing.Form, string) {
	switch p.Daemon.Multipath {
	case policy.MultipathClassic:
		return routing.FormClassic, `multipath = "classic" in the policy`
	case policy.MultipathGroups:
		return routing.FormAuto, `multipath = "groups" in the policy`
	}
	var fams []int
	for _, g := range p.Groups {
		if !slices.Contains(fams, g.Family) {
			fams = append(fams, g.Family)
		}
	}
	if len(fams) == 0 {
		return routing.FormClassic, "no groups"
	}
	slices.Sort(fams)
	var names []string
	for _, f := range fams {
		on, err := fwd(f)
		if err != nil {
			return routing.FormClassic, fmt.Sprintf("%v; a host's own connections need classic multipath", err)
		}
		if !on {
			return routing.FormClassic, fmt.Sprintf("the host does not forward IPv%d: its own connections pick a source address before the nexthop, and only classic multipath keeps the two together (multipath = \"groups\" overrides)", f)
		}
		names = append(names, fmt.Sprintf("IPv%d", f))
	}
	return routing.FormAuto, "the host forwards " + strings.Join(names, " and ") + ": a dead uplink's flows move, no others"
}

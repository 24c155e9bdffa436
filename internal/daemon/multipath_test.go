package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

func TestMultipathForm(t *testing.T) {
	v4 := []*policy.Group{{Name: "wan", Family: 4}}
	dual := []*policy.Group{{Name: "wan", Family: 4}, {Name: "wan6", Family: 6}}
	fwd := func(v4, v6 bool) forwardingFunc {
		return func(f int) (bool, error) { return map[int]bool{4: v4, 6: v6}[f], nil }
	}
	broken := func(int) (bool, error) { return false, errors.New("reading IPv4 forwarding: permission denied") }
	for _, tc := range []struct {
		name   string
		mode   policy.Multipath
		groups []*policy.Group
		fwd    forwardingFunc
		want   routing.Form
		why    string
	}{
		{"router", policy.MultipathAuto, v4, fwd(true, false), routing.FormAuto, "the host forwards IPv4: a dead uplink's flows move, no others"},
		{"host", policy.MultipathAuto, v4, fwd(false, false), routing.FormClassic, "the host does not forward IPv4"},
		{"dual-stack router", policy.MultipathAuto, dual, fwd(true, true), routing.FormAuto, "the host forwards IPv4 and IPv6"},
		// Forwarding IPv4 for containers does not make the host's own
		// IPv6 connections safe on a group.
		{"forwards one family", policy.MultipathAuto, dual, fwd(true, false), routing.FormClassic, "does not forward IPv6"},
		{"unreadable", policy.MultipathAuto, v4, broken, routing.FormClassic, "permission denied; a host's own connections need classic multipath"},
		{"no groups", policy.MultipathAuto, nil, broken, routing.FormClassic, "no groups"},
		{"classic asked", policy.MultipathClassic, v4, fwd(true, true), routing.FormClassic, `multipath = "classic"`},
		{"groups asked on a host", policy.MultipathGroups, v4, fwd(false, false), routing.FormAuto, `multipath = "groups"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &policy.Policy{Daemon: policy.Daemon{Multipath: tc.mode}, Groups: tc.groups}
			form, why := multipathForm(p, tc.fwd)
			if form != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("multipathForm = %s, %q; want %s, containing %q", form, why, tc.want, tc.why)
			}
		})
	}
}

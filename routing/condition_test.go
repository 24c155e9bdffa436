package routing

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Conditions gate groups and announces through the Snapshot: a condition
// missing from it is down, unlike a gateway.
func TestDesiredConditions(t *testing.T) {
	p := mustPolicy(t, `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"

[group.wan]
gateways = ["a"]
condition = "master"
last_resort = "remove"

[condition.master]
all = ["address 198.18.0.100 on eth0"]

[announce.vip]
prefix = "198.18.0.100/32"
track = "master"
dev = "eth0"
type = "unicast"

[announce.svc]
prefix = "198.18.50.0/24"
track = "master"
type = "blackhole"
`)
	for _, tc := range []struct {
		name string
		h    Snapshot
		want string
	}{
		{"condition unknown: down", Snapshot{"a": Up}, ``},
		{"condition down", Snapshot{"a": Up, ConditionKey("master"): Down}, ``},
		{"condition up", Snapshot{"a": Up, ConditionKey("master"): Up}, `
			default via 198.18.1.1 dev eth1 table main proto 212
			198.18.0.100/32 dev eth0 table main proto 212
			blackhole 198.18.50.0/24 table main proto 212`},
		{"condition up, gateway down: last_resort as ever", Snapshot{"a": Down, ConditionKey("master"): Up}, `
			198.18.0.100/32 dev eth0 table main proto 212
			blackhole 198.18.50.0/24 table main proto 212`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(dump(tc.want), Format(Desired(p, tc.h))); diff != "" {
				t.Errorf("Desired (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAdoptConditions: the routes a previous instance left show which
// conditions it had up, and adopting them (with the withdrawn gateways)
// reproduces the state exactly, so a restart writes nothing and claims
// nothing again.
func TestAdoptConditions(t *testing.T) {
	gated := `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"

[gateway.b]
address = "198.18.2.1"
interface = "eth2"

[group.wan]
gateways = ["a", "b"]
condition = "master"
last_resort = "%s"

[condition.master]
all = ["address 198.18.0.100 on eth0"]

[condition.inside]
all = ["link eth0 up"]
%s`
	announce := `
[announce.vip]
prefix = "198.18.0.100/32"
track = "master"
dev = "eth0"
type = "unicast"
`
	master := ConditionKey("master")
	tests := []struct {
		name       string
		lastResort string
		announce   bool
		left       Snapshot
		edit       func(*State)
		want       Adopted
		exact      bool
	}{
		{name: "master up, all gateways up", lastResort: "remove", announce: true,
			left: Snapshot{master: Up}, want: Adopted{Conditions: []string{"master"}}, exact: true},
		{name: "master up, a withdrawn: both found, whichever needs the other", lastResort: "unreachable",
			left: Snapshot{master: Up, "a": Down}, want: Adopted{Withdrawn: []string{"a"}, Conditions: []string{"master"}}, exact: true},
		{name: "master down: unreachable is the down form", lastResort: "unreachable", announce: true,
			left: Snapshot{}, want: Adopted{}, exact: true},
		{name: "only the announce shows it", lastResort: "remove", announce: true,
			// remove: the group's missing route shows both withdrawn, once
			// the announce shows master was up.
			left: Snapshot{master: Up, "a": Down, "b": Down}, want: Adopted{Withdrawn: []string{"a", "b"}, Conditions: []string{"master"}}, exact: true},
		// With keep, the gated route is every member: the same as all up.
		// No evidence, and none needed: either way nothing is written.
		{name: "keep, all up: no evidence, same routes", lastResort: "keep",
			left: Snapshot{master: Up}, want: Adopted{}, exact: true},
		{name: "keep, b withdrawn: the route lacks b, so master was up", lastResort: "keep",
			left: Snapshot{master: Up, "b": Down}, want: Adopted{Withdrawn: []string{"b"}, Conditions: []string{"master"}}, exact: true},
		{name: "another program holds the default: no evidence there", lastResort: "remove",
			left: Snapshot{master: Up},
			edit: func(s *State) {
				for i := range s.Routes {
					s.Routes[i].Protocol = 4
				}
			},
			want: Adopted{}},
		{name: "a route through a hop not ours is no evidence", lastResort: "remove",
			left: Snapshot{master: Up},
			edit: func(s *State) {
				s.Routes[0].Nexthops = []Nexthop{{Gateway: gw1, Dev: "eth9"}}
			},
			want: Adopted{}},
		{name: "nothing left: a first start", lastResort: "remove",
			left: Snapshot{master: Up},
			edit: func(s *State) { *s = State{} },
			want: Adopted{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			extra := ""
			if tc.announce {
				extra = announce
			}
			p := mustPolicy(t, fmt.Sprintf(gated, tc.lastResort, extra))
			left := Desired(p, tc.left)
			// A rule of ours shows an instance ran even where no route is left.
			left.Rules = append(left.Rules, Rule{Family: 4, Priority: 100, Table: 201, Protocol: 212})
			if tc.edit != nil {
				tc.edit(&left)
			}
			got := Adopt(p, left)
			// inside gates nothing: whatever was left, the routes cannot
			// tell, and Adopt says so.
			tc.want.Routeless = []string{"inside"}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Adopt (-want +got):\n%s", diff)
			}
			if !tc.exact {
				return
			}
			h := Snapshot{}
			for _, name := range got.Withdrawn {
				h[name] = Down
			}
			for _, name := range got.Conditions {
				h[ConditionKey(name)] = Up
			}
			if diff := cmp.Diff(Format(Desired(p, tc.left)), Format(Desired(p, h))); diff != "" {
				t.Errorf("adopting %+v does not reproduce what was left (-left +adopted):\n%s", got, diff)
			}
		})
	}
}

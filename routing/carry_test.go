package routing

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCarryingAndStandby(t *testing.T) {
	p := mustPolicy(t, `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"
tier = 1
[gateway.b]
address = "198.18.2.1"
interface = "eth2"
tier = 2
degraded_tier = 3
[gateway.c]
address = "198.18.3.1"
interface = "eth3"
tier = 2
[gateway.d]
address = "198.18.4.1"
interface = "eth4"
table = 104
tier = 3
[group.g]
gateways = ["a", "b", "c", "d"]
`)
	for _, tc := range []struct {
		name              string
		h                 Snapshot
		carrying, standby []string
	}{
		{"all up: backup tier idles; d carries its own table", Snapshot{}, []string{"a", "d"}, []string{"b", "c"}},
		{"primary down: tier 2 carries", Snapshot{"a": Down}, []string{"b", "c", "d"}, nil},
		{"primary down, b degraded to tier 3", Snapshot{"a": Down, "b": Degraded}, []string{"c", "d"}, []string{"b"}},
		// The case of issue 12: a degraded tier 1 yields to an up tier 2,
		// so the route goes via b and c, and they are not standby; a still
		// forwards but carries nothing, so it is the standby one.
		{"a degraded at tier 1, b and c up at tier 2", Snapshot{"a": Degraded}, []string{"b", "c", "d"}, []string{"a"}},
		{"everything down: nobody carries, nobody is standby", Snapshot{"a": Down, "b": Down, "c": Down, "d": Down}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(set(tc.carrying...), Carrying(p, tc.h)); d != "" {
				t.Errorf("Carrying (-want +got):\n%s", d)
			}
			if d := cmp.Diff(set(tc.standby...), Standby(p, tc.h)); d != "" {
				t.Errorf("Standby (-want +got):\n%s", d)
			}
			// The rule Desired routes by is the same one: the group's
			// multipath default names exactly its carriers.
			var nhs []Nexthop
			for _, rt := range Desired(p, tc.h).Routes {
				if rt.Owner == "group/g" {
					nhs = rt.Nexthops
				}
			}
			want := map[string]bool{}
			for _, nh := range nhs {
				for _, gw := range p.Gateways {
					if gw.Address == nh.Gateway && gw.Table == 0 {
						want[gw.Name] = true
					}
				}
			}
			got := map[string]bool{}
			for name := range Carrying(p, tc.h) {
				if p.Gateway(name).Table == 0 {
					got[name] = true
				}
			}
			// With nobody healthy, last_resort decides the route instead.
			if len(got) > 0 && !cmp.Equal(want, got) {
				t.Errorf("route goes via %v but Carrying says %v", want, got)
			}
		})
	}
}

func set(names ...string) map[string]bool {
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

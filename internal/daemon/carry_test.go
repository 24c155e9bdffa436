package daemon

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/uplinkd/uplinkd/routing"
)

const tiered = `
[gateway.fibre]
address = "198.18.1.1"
interface = "eth1"
tier = 1
degraded_tier = 3
[gateway.lte]
address = "198.18.2.1"
interface = "eth2"
tier = 2
[gateway.dsl]
address = "198.18.3.1"
interface = "eth3"
tier = 2
table = 203
[group.wan]
gateways = ["fibre", "lte", "dsl"]
`

func TestCarrying(t *testing.T) {
	p := mustParse(t, tiered)
	for _, tc := range []struct {
		name    string
		health  routing.Snapshot
		inRoute map[string]bool
		tier    int
	}{
		{"all up: the fibre alone, dsl through its own table",
			routing.Snapshot{"fibre": routing.Up, "lte": routing.Up, "dsl": routing.Up},
			map[string]bool{"fibre": true, "lte": false, "dsl": true}, 1},
		{"fibre down: tier 2",
			routing.Snapshot{"fibre": routing.Down, "lte": routing.Up, "dsl": routing.Up},
			map[string]bool{"fibre": false, "lte": true, "dsl": true}, 2},
		{"fibre degraded to tier 3: tier 2 wins",
			routing.Snapshot{"fibre": routing.Degraded, "lte": routing.Up, "dsl": routing.Up},
			map[string]bool{"fibre": false, "lte": true, "dsl": true}, 2},
		{"only the degraded fibre left",
			routing.Snapshot{"fibre": routing.Degraded, "lte": routing.Down, "dsl": routing.Down},
			map[string]bool{"fibre": true, "lte": false, "dsl": false}, 3},
		{"all down: no gateway carries traffic, no tier is active",
			routing.Snapshot{"fibre": routing.Down, "lte": routing.Down, "dsl": routing.Down},
			map[string]bool{"fibre": false, "lte": false, "dsl": false}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := carrying(p, tc.health)
			if d := cmp.Diff(tc.inRoute, c.inRoute); d != "" {
				t.Errorf("in route (-want +got):\n%s\nroutes:\n%s", d, routing.Format(routing.Desired(p, tc.health)))
			}
			if c.tier["wan"] != tc.tier {
				t.Errorf("active tier %d, want %d", c.tier["wan"], tc.tier)
			}
		})
	}
}

// TestGatewayInfoAndCarriageSeries: the join series and the carriage
// follow the policy; what leaves it is deleted.
func TestGatewayInfoAndCarriageSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, BuildInfo{"v", "c", "go"})
	p := mustParse(t, tiered)
	m.setPolicy(p)
	h := routing.Snapshot{"fibre": routing.Up, "lte": routing.Up, "dsl": routing.Up}
	m.setCarriage(carrying(p, h))
	want := `
# HELP uplinkd_gateway_info Always 1; the labels join a gateway to its interface (node_exporter's device), address, family and tables.
# TYPE uplinkd_gateway_info gauge
uplinkd_gateway_info{address="198.18.1.1",family="ipv4",gateway="fibre",iface="eth1",table="254"} 1
uplinkd_gateway_info{address="198.18.2.1",family="ipv4",gateway="lte",iface="eth2",table="254"} 1
uplinkd_gateway_info{address="198.18.3.1",family="ipv4",gateway="dsl",iface="eth3",table="203,254"} 1
# HELP uplinkd_gateway_in_route 1 while the gateway carries traffic (in its group's active tier, its own table, or a failed-over table), 0 while it does not (down, or standby in a worse tier).
# TYPE uplinkd_gateway_in_route gauge
uplinkd_gateway_in_route{gateway="dsl"} 1
uplinkd_gateway_in_route{gateway="fibre"} 1
uplinkd_gateway_in_route{gateway="lte"} 0
# HELP uplinkd_group_active_tier The tier whose gateways carry the group's default route; -1 while none of its healthy gateways does.
# TYPE uplinkd_group_active_tier gauge
uplinkd_group_active_tier{group="wan"} 1
`
	names := []string{"uplinkd_gateway_info", "uplinkd_gateway_in_route", "uplinkd_group_active_tier"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// Reload: lte leaves, dsl moves to eth4, the group is renamed.
	p2 := mustParse(t, strings.NewReplacer(`[gateway.lte]
address = "198.18.2.1"
interface = "eth2"
tier = 2
`, "", `"fibre", "lte", "dsl"`, `"fibre", "dsl"`, "eth3", "eth4", "[group.wan]", "[group.uplinks]").Replace(tiered))
	m.setPolicy(p2)
	h2 := routing.Snapshot{"fibre": routing.Down, "dsl": routing.Up}
	m.setCarriage(carrying(p2, h2))
	want = `
# HELP uplinkd_gateway_info Always 1; the labels join a gateway to its interface (node_exporter's device), address, family and tables.
# TYPE uplinkd_gateway_info gauge
uplinkd_gateway_info{address="198.18.1.1",family="ipv4",gateway="fibre",iface="eth1",table="254"} 1
uplinkd_gateway_info{address="198.18.3.1",family="ipv4",gateway="dsl",iface="eth4",table="203,254"} 1
# HELP uplinkd_gateway_in_route 1 while the gateway carries traffic (in its group's active tier, its own table, or a failed-over table), 0 while it does not (down, or standby in a worse tier).
# TYPE uplinkd_gateway_in_route gauge
uplinkd_gateway_in_route{gateway="dsl"} 1
uplinkd_gateway_in_route{gateway="fibre"} 0
# HELP uplinkd_group_active_tier The tier whose gateways carry the group's default route; -1 while none of its healthy gateways does.
# TYPE uplinkd_group_active_tier gauge
uplinkd_group_active_tier{group="uplinks"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

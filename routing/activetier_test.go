package routing

import "testing"

// TestActiveTier: the tier a group routes over is its carriers' (an Up
// backup beats a degraded primary), -1 when no member is healthy.
func TestActiveTier(t *testing.T) {
	p := mustPolicy(t, `
[gateway.fibre]
address = "198.18.1.1"
interface = "eth1"
tier = 1
[gateway.lte]
address = "198.18.2.1"
interface = "eth2"
tier = 2
[group.wan]
gateways = ["fibre", "lte"]
`)
	g := p.Group("wan")
	for _, tc := range []struct {
		name string
		h    Snapshot
		want int
	}{
		{"both up", Snapshot{"fibre": Up, "lte": Up}, 1},
		{"fibre down", Snapshot{"fibre": Down, "lte": Up}, 2},
		{"fibre degraded, lte up: the up backup wins", Snapshot{"fibre": Degraded, "lte": Up}, 2},
		{"fibre degraded, lte down", Snapshot{"fibre": Degraded, "lte": Down}, 1},
		{"both down", Snapshot{"fibre": Down, "lte": Down}, -1},
	} {
		if got := ActiveTier(p, g, tc.h); got != tc.want {
			t.Errorf("%s: ActiveTier = %d, want %d", tc.name, got, tc.want)
		}
	}
}

package routing

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWithdrawn: the kernel state a previous instance left under some
// health says which gateways it had withdrawn, and adopting that verdict
// reproduces the state exactly, so the restart writes nothing.
func TestWithdrawn(t *testing.T) {
	tests := []struct {
		name  string
		left  Snapshot // the health the previous instance ended with
		edit  func(*State)
		want  []string
		exact bool // Desired of the adopted health is what was left
	}{
		{name: "all up", left: Snapshot{}, want: nil, exact: true},
		{name: "isp1 down: out of the multipath, its failover table on isp2", left: Snapshot{"isp1": Down}, want: []string{"isp1"}, exact: true},
		{name: "isp2 down: out of the multipath; its keep table says nothing", left: Snapshot{"isp2": Down}, want: []string{"isp2"}, exact: true},
		{name: "both tier 1 down: the backup carries", left: Snapshot{"isp1": Down, "isp2": Down}, want: []string{"isp1", "isp2"}, exact: true},
		{name: "all down: unreachable", left: Snapshot{"isp1": Down, "isp2": Down, "backup": Down}, want: []string{"backup", "isp1", "isp2"}, exact: true},
		// A dead standby is out of the route either way: no evidence, so it
		// starts unknown and the detector judges it.
		{name: "standby down", left: Snapshot{"backup": Down}, want: nil, exact: true},
		// Degraded still carries: not withdrawn (its weight is the
		// detector's to judge again).
		{name: "isp1 degraded", left: Snapshot{"isp1": Degraded}, want: nil},
		{name: "first start: nothing of ours in the kernel", edit: func(s *State) { *s = State{} }, want: nil},
		{
			name: "another program holds the main default: no evidence there",
			left: Snapshot{"isp1": Down},
			edit: func(s *State) {
				for i, r := range s.Routes {
					if r.Table == 0 || r.Table == 254 {
						s.Routes[i].Protocol = 4 // static
						s.Routes[i].Nexthops = []Nexthop{{Gateway: gw1, Dev: "eth1"}}
					}
				}
			},
			// isp1's failover table still shows it withdrawn.
			want: []string{"isp1"},
		},
	}
	p := mustPolicy(t, twoISPs)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			left := Desired(p, tc.left)
			if tc.edit != nil {
				tc.edit(&left)
			}
			got := Withdrawn(p, left)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Withdrawn (-want +got):\n%s", diff)
			}
			if !tc.exact {
				return
			}
			adopted := Snapshot{}
			for _, name := range got {
				adopted[name] = Down
			}
			if diff := cmp.Diff(Format(left), Format(Desired(p, adopted))); diff != "" {
				t.Errorf("adopting %v does not reproduce what was left (-left +adopted):\n%s", got, diff)
			}
		})
	}
}

// TestWithdrawnLastResortRemove: with last_resort = "remove" a group whose
// every gateway died has no route at all; the rules the instance left
// show it ran, so the missing route is evidence.
func TestWithdrawnLastResortRemove(t *testing.T) {
	p := mustPolicy(t, `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"
sources = ["198.18.1.2"]
table = 201
[gateway.b]
address = "198.18.2.1"
interface = "eth2"
[group.wan]
gateways = ["a", "b"]
last_resort = "remove"
`)
	left := Desired(p, Snapshot{"a": Down, "b": Down})
	if diff := cmp.Diff([]string{"a", "b"}, Withdrawn(p, left)); diff != "" {
		t.Errorf("Withdrawn (-want +got):\n%s", diff)
	}
}

// BenchmarkWithdrawn: the start-up read of 1,000 gateways' routes with
// one gateway withdrawn.
func BenchmarkWithdrawn(b *testing.B) {
	p := benchPolicy(b)
	left := Desired(p, Snapshot{p.Gateways[0].Name: Down})
	b.ResetTimer()
	for range b.N {
		if got := Withdrawn(p, left); len(got) != 1 {
			b.Fatalf("Withdrawn = %v, want one gateway", got)
		}
	}
}

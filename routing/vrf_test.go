package routing_test

import (
	"context"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
)

// withVRFTable is p as the daemon runs it once it has read the VRF's
// table from the kernel (0: the VRF is absent).
func withVRFTable(p *policy.Policy, table uint32) *policy.Policy {
	var groups []*policy.Group
	for _, g := range p.Groups {
		c := *g
		if c.VRF != "" {
			c.Table = table
		}
		groups = append(groups, &c)
	}
	return p.Derive(p.Gateways, groups)
}

// A VRF's group writes its default in the VRF's table, and nothing while
// that table is unknown; the default VRF's group is unaffected. A VRF
// created again with another table moves the route, and a restart adopts
// it with no writes.
func TestVRFGroupRoutes(t *testing.T) {
	data, err := os.ReadFile("../testdata/vrf.toml")
	if err != nil {
		t.Fatal(err)
	}
	p := mustPolicy(t, string(data))
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	steps := []struct {
		name   string
		table  uint32
		health routing.Snapshot
		golden string
	}{{
		name: "vrf absent",
		golden: `
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name:  "vrf blue, table 10",
		table: 10,
		golden: `
			default table 10 proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 2
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name:   "isp1 down",
		table:  10,
		health: routing.Snapshot{"isp1": routing.Down},
		golden: `
			default via 198.18.2.1 dev eth2 table 10 proto 212
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name:   "both down: the VRF's last resort, not main's",
		table:  10,
		health: routing.Snapshot{"isp1": routing.Down, "isp2": routing.Down},
		golden: `
			unreachable default table 10 proto 212
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name:  "vrf created again with table 20",
		table: 20,
		golden: `
			default table 20 proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 2
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}}
	ctx := context.Background()
	var want routing.State
	for _, st := range steps {
		want = routing.Desired(withVRFTable(p, st.table), st.health)
		if _, err := rec.Apply(ctx, want); err != nil {
			t.Fatalf("step %q: %v", st.name, err)
		}
		if diff := cmp.Diff(dump(st.golden), routing.Format(k.State())); diff != "" {
			t.Fatalf("step %q: kernel (-want +got):\n%s", st.name, diff)
		}
	}
	again, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.ReadOwned(want); err != nil {
		t.Fatal(err)
	}
	if n, err := again.Apply(ctx, want); err != nil || n != 0 {
		t.Errorf("restart: %d writes (err %v), want 0", n, err)
	}
}

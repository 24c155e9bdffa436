package policy

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVRFGroups(t *testing.T) {
	data, err := os.ReadFile("../testdata/vrf.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("vrf.toml", data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	type gv struct{ Name, VRF string }
	var gws []gv
	for _, g := range p.Gateways {
		gws = append(gws, gv{g.Name, g.VRF})
	}
	if diff := cmp.Diff([]gv{{"isp1", "blue"}, {"isp2", "blue"}, {"mgmt", ""}}, gws); diff != "" {
		t.Errorf("gateway VRFs (-want +got):\n%s", diff)
	}
	type grp struct {
		Name, VRF  string
		Table      uint32
		Unresolved bool
	}
	var groups []grp
	for _, g := range p.Groups {
		groups = append(groups, grp{g.Name, g.VRF, g.Table, g.Unresolved()})
	}
	// A VRF's group has no table until the daemon reads the VRF's.
	want := []grp{{"blue-wan", "blue", 0, true}, {"office", "", TableMain, false}}
	if diff := cmp.Diff(want, groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

// Two groups of one family in one VRF want the same default route, as
// two groups of the main table would.
func TestVRFGroupsCollide(t *testing.T) {
	src := `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"
vrf = "blue"
[gateway.b]
address = "198.18.2.1"
interface = "eth2"
vrf = "blue"
[gateway.c]
address = "198.18.3.1"
interface = "eth3"
vrf = "red"
[group.one]
gateways = ["a"]
[group.two]
gateways = ["b"]
[group.three]
gateways = ["c"]
`
	_, err := Parse("p.toml", []byte(src), Options{})
	want := `p.toml:16:1: group "two": the IPv4 default route of vrf "blue"'s table (metric 0) is already managed by group "one"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

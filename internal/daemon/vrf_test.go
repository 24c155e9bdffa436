package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

func vrfPol(t *testing.T) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile("../../testdata/vrf.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("vrf.toml", data, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var vrfOnLink = map[string][]netip.Prefix{
	"eth1": {netip.MustParsePrefix("198.18.1.0/24")},
	"eth2": {netip.MustParsePrefix("198.18.2.0/24")},
	"eth3": {netip.MustParsePrefix("198.18.3.0/24")},
}

// What the VRF devices say decides the groups' table, which gateways are
// held down and why, and so the routes: nothing in any table while the
// VRF is absent, the VRF's table once it is there.
func TestResolveVRF(t *testing.T) {
	base := vrfPol(t)
	for _, tc := range []struct {
		name   string
		vrfs   map[string]VRF
		held   map[string]string
		golden string
	}{{
		name: "vrf absent",
		held: map[string]string{"isp1": "vrf blue absent", "isp2": "vrf blue absent"},
		golden: `
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name: "eth2 not enslaved yet",
		vrfs: map[string]VRF{"blue": {Table: 10, Members: []string{"eth1"}}},
		held: map[string]string{"isp2": "eth2 is not in vrf blue"},
		golden: `
			default via 198.18.1.1 dev eth1 table 10 proto 212
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name: "both in vrf blue, table 10",
		vrfs: map[string]VRF{"blue": {Table: 10, Members: []string{"eth1", "eth2"}}},
		held: map[string]string{},
		golden: `
			default table 10 proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 2
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name: "another VRF of the name, table 20",
		vrfs: map[string]VRF{"blue": {Table: 20, Members: []string{"eth1", "eth2"}}},
		held: map[string]string{},
		golden: `
			default table 20 proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 2
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := resolve(base, Facts{VRFs: namedVRFs(base, tc.vrfs), L3mdev: map[int]bool{4: true}})
			if diff := cmp.Diff(tc.held, offLink(p, vrfOnLink)); diff != "" {
				t.Errorf("held (-want +got):\n%s", diff)
			}
			// Health is what the detector makes of the holds: down.
			h := routing.Snapshot{}
			for name := range tc.held {
				h[name] = routing.Down
			}
			p.Daemon.RouteProtocol = 212
			if diff := cmp.Diff(routingDump(tc.golden), routing.Format(routing.Desired(p, h))); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
		})
	}
	if base.Group("blue-wan").Table != 0 || base.Gateway("isp1").VRFProblem != "" {
		t.Error("resolve changed the policy as written")
	}
}

func routingDump(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// fakeVRFs is a VRFDevices whose devices a test sets; every set hints.
type fakeVRFs struct {
	mu     sync.Mutex
	vrfs   map[string]VRF
	l3mdev map[int]bool
	hints  hintFeed
}

// newFakeVRFs has no VRF and both families' l3mdev rules.
func newFakeVRFs() *fakeVRFs {
	return &fakeVRFs{hints: make(hintFeed), l3mdev: map[int]bool{4: true, 6: true}}
}

func (f *fakeVRFs) L3mdev() (map[int]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.l3mdev), nil
}

func (f *fakeVRFs) VRFs() (map[string]VRF, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.vrfs), nil
}

func (f *fakeVRFs) WatchLinks(ctx context.Context, hint func()) error {
	return f.hints.watch(ctx, hint)
}

func (f *fakeVRFs) set(vrfs map[string]VRF) {
	f.mu.Lock()
	f.vrfs = vrfs
	f.mu.Unlock()
	f.hints <- struct{}{}
}

// The learner follows the VRF devices: created, its table changed by a
// new device of the name, deleted; and reports nothing when a link event
// changed nothing it reads.
func TestLearnerFollowsVRFs(t *testing.T) {
	vrfs := newFakeVRFs()
	got := make(chan map[string]VRF, 8)
	l := newLearner(&fakeRoutes{hints: make(hintFeed)}, vrfs, slog.New(slog.DiscardHandler), vrfPol(t), func(f Facts) { got <- f.VRFs })
	l.Prime()
	if n := len(l.Current().VRFs); n != 0 {
		t.Fatalf("primed with no VRF: %v", l.Current().VRFs)
	}
	runLearner(t, l)
	for _, step := range []map[string]VRF{
		{"blue": {Table: 10, Members: []string{"eth1", "eth2"}}, "red": {Table: 11}},
		{"blue": {Table: 20, Members: []string{"eth1", "eth2"}}},
		{},
	} {
		vrfs.set(step)
		want := map[string]VRF{}
		if b, ok := step["blue"]; ok {
			want["blue"] = b // red is not the policy's
		}
		if diff := cmp.Diff(want, receive(t, got)); diff != "" {
			t.Errorf("after %v (-want +got):\n%s", step, diff)
		}
	}
	vrfs.set(map[string]VRF{"red": {Table: 11}})
	select {
	case m := <-got:
		t.Errorf("a change reported with nothing of the policy's changed: %v", m)
	case <-time.After(300 * time.Millisecond):
	}
}

// Through the core and the fake kernel: the VRF's table comes from the
// learner's facts, and each new fact moves the group's default (created,
// created again with another table, deleted) while the default VRF's
// route stays as it was.
func TestCoreFollowsVRFTable(t *testing.T) {
	p := mustParse(t, `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
vrf = "blue"
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[group.blue-wan]
gateways = ["isp1"]
[group.wan]
gateways = ["isp2"]
`)
	h := newHarness(t, p)
	main := "default via 198.18.2.1 dev eth2 table main proto 212\n"
	if d := cmp.Diff(main, h.kernelDump()); d != "" {
		t.Fatalf("with the VRF unread (-want +got):\n%s", d)
	}
	for _, st := range []struct {
		vrfs map[string]VRF
		want string
	}{
		{map[string]VRF{"blue": {Table: 10, Members: []string{"eth1"}}}, "default via 198.18.1.1 dev eth1 table 10 proto 212\n" + main},
		{map[string]VRF{"blue": {Table: 20, Members: []string{"eth1"}}}, "default via 198.18.1.1 dev eth1 table 20 proto 212\n" + main},
		{map[string]VRF{}, main},
	} {
		h.core.Relearn(Facts{VRFs: st.vrfs})
		h.waitFor(fmt.Sprintf("the routes for %v", st.vrfs), func() bool { return h.kernelDump() == st.want })
	}
}

// A VRF that is there, with its gateways' interfaces in it, but no l3mdev
// rule of their family: the gateways are not held (they are fine), each
// carries the warning, and plan says it.
func TestVRFWithoutL3mdevRule(t *testing.T) {
	base := vrfPol(t)
	f := Facts{VRFs: map[string]VRF{"blue": {Table: 10, Members: []string{"eth1", "eth2"}}}, L3mdev: map[int]bool{6: true}}
	p := resolve(base, f)
	if diff := cmp.Diff(map[string]string{}, offLink(p, vrfOnLink)); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	want := "no IPv4 l3mdev rule: traffic in vrf blue never reaches its table 10 (ip rule add l3mdev pref 1000)"
	got := map[string]string{}
	for _, g := range p.Gateways {
		got[g.Name] = g.VRFWarning
	}
	if diff := cmp.Diff(map[string]string{"isp1": want, "isp2": want, "mgmt": ""}, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if n := vrfNote(base.Gateway("isp1"), f); n != "gateway isp1: in vrf blue, table 10; warning: "+want {
		t.Errorf("plan note %q", n)
	}
	if w := vrfWarning(base.Gateway("isp1"), Facts{VRFs: f.VRFs, L3mdev: map[int]bool{4: true}}); w != "" {
		t.Errorf("warning with the rule there: %q", w)
	}
}

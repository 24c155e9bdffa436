package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

const autoPolicy = `
[gateway.isp1]
address = "auto"
interface = "eth1"
[gateway.isp1v6]
address = "auto"
family = "ipv6"
interface = "eth1"
[gateway.ppp]
address = "auto"
interface = "ppp0"
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
table = 202
[group.wan]
gateways = ["isp1", "ppp", "isp2"]
last_resort = "keep"
[group.wan6]
gateways = ["isp1v6"]
`

func autoPol(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("auto.toml", []byte(autoPolicy), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLearn(t *testing.T) {
	a := netip.MustParseAddr
	dhcp := DefaultRoute{Family: 4, Table: 254, Protocol: 16, Metric: 100, Dev: "eth1", Gateway: a("198.18.1.1")}
	for _, tc := range []struct {
		name   string
		routes []DefaultRoute
		want   map[string]Learned
	}{
		{"nothing there", nil, map[string]Learned{}},
		{"a DHCP client's route in main", []DefaultRoute{dhcp},
			map[string]Learned{"isp1": {Addr: a("198.18.1.1"), Source: "default via 198.18.1.1 dev eth1 table main proto dhcp metric 100"}}},
		{"uplinkd's own routes never teach", []DefaultRoute{{Family: 4, Table: 254, Protocol: 212, Dev: "eth1", Gateway: a("198.18.1.9")}},
			map[string]Learned{}},
		{"another interface's route does not count", []DefaultRoute{{Family: 4, Table: 254, Protocol: 16, Dev: "eth2", Gateway: a("198.18.2.1")}},
			map[string]Learned{}},
		{"any table: the client kept out of main", []DefaultRoute{{Family: 4, Table: 100, Protocol: 4, Dev: "eth1", Gateway: a("198.18.1.3")}},
			map[string]Learned{"isp1": {Addr: a("198.18.1.3"), Source: "default via 198.18.1.3 dev eth1 table 100 proto static metric 0"}}},
		{"the lowest metric wins, then main", []DefaultRoute{
			{Family: 4, Table: 100, Protocol: 16, Metric: 100, Dev: "eth1", Gateway: a("198.18.1.7")},
			dhcp,
			{Family: 4, Table: 254, Protocol: 16, Metric: 200, Dev: "eth1", Gateway: a("198.18.1.5")},
		}, map[string]Learned{"isp1": {Addr: a("198.18.1.1"), Source: dhcp.String()}}},
		{"an RA router, link-local, for the IPv6 gateway only", []DefaultRoute{{Family: 6, Table: 254, Protocol: 9, Metric: 1024, Dev: "eth1", Gateway: a("fe80::1")}},
			map[string]Learned{"isp1v6": {Addr: a("fe80::1"), Source: "default via fe80::1 dev eth1 table main proto ra metric 1024"}}},
		{"pppd's device route: the gateway is the link", []DefaultRoute{{Family: 4, Table: 254, Protocol: 3, Dev: "ppp0"}},
			map[string]Learned{"ppp": {Link: true, Source: "default dev ppp0 table main proto boot metric 0"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := learn(autoPol(t), tc.routes, 212)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("learn (-want +got):\n%s", diff)
			}
		})
	}
}

// Resolved, the learned gateway routes like a static one; unresolved, no
// route names it, not even as a kept last resort, and the on-link
// watcher holds it down with the reason operators see.
func TestResolveAndRoutes(t *testing.T) {
	base := autoPol(t)
	none := resolve(base, Facts{})
	if !none.Gateway("isp1").Unresolved() || none.Gateway("isp2").Unresolved() {
		t.Fatal("isp1 should be unresolved, isp2 not")
	}
	all := routing.Snapshot{}
	for _, g := range base.Gateways {
		all[g.Name] = routing.Down // last_resort keep: every member named
	}
	if f := routing.Format(routing.Desired(none, all)); strings.Contains(f, "eth1") || strings.Contains(f, "ppp0") {
		t.Errorf("routes name an unresolved gateway:\n%s", f)
	}
	held := offLink(none, map[string][]netip.Prefix{"eth1": nil, "eth2": {netip.MustParsePrefix("198.18.2.2/24")}})
	if diff := cmp.Diff(map[string]string{"isp1": "no gateway learned on eth1", "isp1v6": "no gateway learned on eth1"}, held); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}

	learned := map[string]Learned{
		"isp1": {Addr: netip.MustParseAddr("198.18.1.1"), Source: "default via 198.18.1.1 dev eth1 table main proto dhcp metric 100"},
		"ppp":  {Link: true, Source: "default dev ppp0 table main proto boot metric 0"},
	}
	p := resolve(base, Facts{Gateways: learned})
	if base.Gateway("isp1").Address.IsValid() {
		t.Fatal("resolve changed the policy as written")
	}
	if got := p.Gateway("isp1"); got.Address.String() != "198.18.1.1" || got.Learned == "" || p.Gateway("ppp").Unresolved() {
		t.Fatalf("resolved isp1 %+v, ppp %+v", got, p.Gateway("ppp"))
	}
	f := routing.Format(routing.Desired(p, nil))
	if strings.Contains(f, "-6 default") {
		t.Errorf("wan6's only member learned nothing, yet it has a default:\n%s", f)
	}
	for _, want := range []string{"nexthop via 198.18.1.1 dev eth1", "nexthop dev ppp0", "nexthop via 198.18.2.1 dev eth2"} {
		if !strings.Contains(f, want) {
			t.Errorf("routes lack %q:\n%s", want, f)
		}
	}
	if s := (statusView{}).gateway(p, p.Gateway("ppp"), nil); s.Address != "dev ppp0" || !s.Auto {
		t.Errorf("status of ppp: address %q auto %v", s.Address, s.Auto)
	}
}

// fakeRoutes is a DefaultRoutes whose routes a test sets; every Set hints.
type fakeRoutes struct {
	mu     sync.Mutex
	routes []DefaultRoute
	hints  hintFeed
}

func (f *fakeRoutes) Defaults(ifaces []string) ([]DefaultRoute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []DefaultRoute
	for _, r := range f.routes {
		if slices.Contains(ifaces, r.Dev) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeRoutes) WatchRoutes(ctx context.Context, hint func()) error {
	return f.hints.watch(ctx, hint)
}

func (f *fakeRoutes) set(rs ...DefaultRoute) {
	f.mu.Lock()
	f.routes = rs
	f.mu.Unlock()
	f.hints <- struct{}{}
}

// hintFeed is the subscription half of the learner's fakes: a hint when
// subscribed, as the kernel's dump after subscribing, then one for each
// value sent, until ctx ends.
type hintFeed chan struct{}

func (f hintFeed) watch(ctx context.Context, hint func()) error {
	hint()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f:
			hint()
		}
	}
}

// runLearner runs l until the test ends, and fails it if Run fails.
func runLearner(t *testing.T, l *learner) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// receive is the next value on ch, or fails the test after 10 s.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
	}
	var zero T
	return zero
}

// The learner tells the core of every change, and only of changes: a
// renewal naming another router, then the lease gone.
func TestLearnerFollowsChanges(t *testing.T) {
	a := netip.MustParseAddr
	src := &fakeRoutes{hints: make(hintFeed)}
	src.routes = []DefaultRoute{{Family: 4, Table: 100, Protocol: 16, Dev: "eth1", Gateway: a("198.18.1.1")}}
	got := make(chan map[string]Learned, 8)
	l := newLearner(src, newFakeVRFs(), slog.New(slog.DiscardHandler), autoPol(t), func(f Facts) { got <- f.Gateways })
	l.Prime()
	if l.Current().Gateways["isp1"].Addr != a("198.18.1.1") {
		t.Fatalf("primed: %v", l.Current())
	}
	runLearner(t, l)
	next := func() map[string]Learned { t.Helper(); return receive(t, got) }
	src.set(DefaultRoute{Family: 4, Table: 100, Protocol: 16, Dev: "eth1", Gateway: a("198.18.1.3")})
	if m := next(); m["isp1"].Addr != a("198.18.1.3") {
		t.Errorf("after the renewal: %v", m)
	}
	src.set()
	if m := next(); len(m) != 0 {
		t.Errorf("after the lease went: %v, want nothing learned", m)
	}
	select {
	case m := <-got:
		t.Errorf("a change reported with nothing changed: %v", m)
	default:
	}
}

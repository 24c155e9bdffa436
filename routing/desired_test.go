package routing

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDesired(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		health Snapshot
		want   string
	}{{
		name:   "all up: tier 1 multipath with weights, own tables with src, source rules",
		policy: twoISPs,
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1`,
	}, {
		name:   "unknown health is up",
		policy: twoISPs,
		health: Snapshot{"isp1": Up},
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1`,
	}, {
		name:   "degraded member keeps its tier with the degraded weight",
		policy: twoISPs,
		health: Snapshot{"isp1": Degraded},
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 1`,
	}, {
		name:   "one down: single nexthop; failover table follows the best healthy gateway, keeps its src",
		policy: twoISPs,
		health: Snapshot{"isp1": Down},
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.2.1 dev eth2 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			default via 198.18.2.1 dev eth2 table main proto 212`,
	}, {
		name:   "keep table stays on its down gateway",
		policy: twoISPs,
		health: Snapshot{"isp2": Down},
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			default via 198.18.1.1 dev eth1 table main proto 212`,
	}, {
		name:   "tier 1 down: tier 2 takes over; failover table picks the backup",
		policy: twoISPs,
		health: Snapshot{"isp1": Down, "isp2": Down},
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.3.1 dev eth3 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name:   "up backup beats degraded-only tier 1",
		policy: twoISPs,
		health: Snapshot{"isp1": Degraded, "isp2": Down},
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			default via 198.18.3.1 dev eth3 table main proto 212`,
	}, {
		name:   "only degraded left: used",
		policy: twoISPs,
		health: Snapshot{"isp1": Degraded, "isp2": Down, "backup": Down},
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			default via 198.18.1.1 dev eth1 table main proto 212`,
	}, {
		name:   "all down: last_resort unreachable; failover table with nothing healthy keeps its gateway",
		policy: twoISPs,
		health: Snapshot{"isp1": Down, "isp2": Down, "backup": Down},
		want: `
			1000: from 198.18.1.2 lookup 201 proto 212
			1001: from 198.18.2.2 lookup 202 proto 212
			default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
			default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
			unreachable default table main proto 212`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.policy)
			got := Format(Desired(p, tt.health))
			if diff := cmp.Diff(dump(tt.want), got); diff != "" {
				t.Errorf("Desired (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredLastResort(t *testing.T) {
	base := `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"
[gateway.b]
address = "2001:db8:2::1"
interface = "eth2"
[group.g4]
gateways = ["a"]
table = 100
metric = 10
last_resort = "%s"
[group.g6]
gateways = ["b"]
table = 100
last_resort = "%s"
`
	down := Snapshot{"a": Down, "b": Down}
	for _, tt := range []struct{ mode, want string }{
		{"keep", `
			default via 198.18.1.1 dev eth1 table 100 proto 212 metric 10
			-6 default via 2001:db8:2::1 dev eth2 table 100 proto 212 metric 1024`},
		{"unreachable", `
			unreachable default table 100 proto 212 metric 10
			-6 unreachable default table 100 proto 212 metric 1024`},
		{"blackhole", `
			blackhole default table 100 proto 212 metric 10
			-6 blackhole default table 100 proto 212 metric 1024`},
		{"remove", ``},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			p := mustPolicy(t, sprintf(base, tt.mode, tt.mode))
			if diff := cmp.Diff(dump(tt.want), Format(Desired(p, down))); diff != "" {
				t.Errorf("Desired (-want +got):\n%s", diff)
			}
			// Healthy, every mode is the same plain route.
			up := Format(Desired(p, nil))
			want := dump(`
				default via 198.18.1.1 dev eth1 table 100 proto 212 metric 10
				-6 default via 2001:db8:2::1 dev eth2 table 100 proto 212 metric 1024`)
			if diff := cmp.Diff(want, up); diff != "" {
				t.Errorf("Desired healthy (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredRulesAndAnnounces(t *testing.T) {
	p := mustPolicy(t, `
[daemon]
route_protocol = 99
rule_priorities = "500-599"

[gateway.v4]
address = "198.18.1.1"
interface = "eth1"
table = 201

[gateway.v6]
address = "fe80::1"
interface = "eth2"
sources = ["2001:db8:2::2"]
table = 202
[gateway.v6.probe]
pin = "mark"
mark = 7

[group.wan6]
gateways = ["v6"]
family = "ipv6"

[rule.marked]
fwmark = "0x2/0xff"
gateway = "v4"
priority = 550

[rule.to]
to = "198.18.50.0/24"
table = 300

[rule.iif]
iif = "eth9"
table = 301
family = "ipv4"

[announce.svc]
prefix = "198.18.50.0/24"
track = "v4"
type = "blackhole"
table = 250

[announce.via]
prefix = "198.18.60.0/24"
track = "v4"

[announce.six]
prefix = "2001:db8:60::/48"
track = "wan6"
metric = 5
`)
	got := Format(Desired(p, nil))
	want := dump(`
		500: from all iif eth9 lookup 301 proto 99
		501: from all to 198.18.50.0/24 lookup 300 proto 99
		-6 502: from all fwmark 0x7 lookup 202 proto 99
		-6 503: from 2001:db8:2::2 lookup 202 proto 99
		550: from all fwmark 0x2/0xff lookup 201 proto 99
		default via 198.18.1.1 dev eth1 table 201 proto 99
		blackhole 198.18.50.0/24 table 250 proto 99
		198.18.60.0/24 via 198.18.1.1 dev eth1 table main proto 99
		-6 default via fe80::1 dev eth2 table 202 proto 99 src 2001:db8:2::2 metric 1024
		-6 default via fe80::1 dev eth2 table main proto 99 metric 1024
		-6 2001:db8:60::/48 via fe80::1 dev eth2 table main proto 99 metric 5`)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Desired healthy (-want +got):\n%s", diff)
	}
	// Announces vanish with their tracked gateway or group; rules and
	// own tables stay (on_down = "keep"), and wan6 keeps its last resort.
	gotDown := Format(Desired(p, Snapshot{"v4": Down, "v6": Down}))
	wantDown := dump(`
		500: from all iif eth9 lookup 301 proto 99
		501: from all to 198.18.50.0/24 lookup 300 proto 99
		-6 502: from all fwmark 0x7 lookup 202 proto 99
		-6 503: from 2001:db8:2::2 lookup 202 proto 99
		550: from all fwmark 0x2/0xff lookup 201 proto 99
		default via 198.18.1.1 dev eth1 table 201 proto 99
		-6 default via fe80::1 dev eth2 table 202 proto 99 src 2001:db8:2::2 metric 1024
		-6 default via fe80::1 dev eth2 table main proto 99 metric 1024`)
	if diff := cmp.Diff(wantDown, gotDown); diff != "" {
		t.Errorf("Desired down (-want +got):\n%s", diff)
	}
}

// An announce on the key of a group's default does not fight it.
func TestDesiredDuplicateKey(t *testing.T) {
	p := mustPolicy(t, `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"
[group.wan]
gateways = ["a"]
[announce.all]
prefix = "0.0.0.0/0"
track = "a"
type = "blackhole"
`)
	want := dump(`default via 198.18.1.1 dev eth1 table main proto 212`)
	if diff := cmp.Diff(want, Format(Desired(p, nil))); diff != "" {
		t.Errorf("Desired (-want +got):\n%s", diff)
	}
}

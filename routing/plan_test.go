package routing

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	gw1  = netip.MustParseAddr("198.18.1.1")
	gw2  = netip.MustParseAddr("198.18.2.1")
	gw6  = netip.MustParseAddr("2001:db8:1::1")
	src  = netip.MustParseAddr("198.18.1.2")
	any4 = netip.MustParsePrefix("0.0.0.0/0")
	any6 = netip.MustParsePrefix("::/0")
)

func mp(w1, w2 int) Route {
	return Route{Family: 4, Table: 254, Dst: any4, Type: Unicast, Protocol: 212,
		Nexthops: []Nexthop{{Gateway: gw1, Dev: "eth1", Weight: w1}, {Gateway: gw2, Dev: "eth2", Weight: w2}}}
}

func own(table uint32, gw netip.Addr, dev string) Route {
	return Route{Family: 4, Table: table, Dst: any4, Type: Unicast, Protocol: 212, Src: src,
		Nexthops: []Nexthop{{Gateway: gw, Dev: dev}}}
}

func srcRule(prio, table uint32) Rule {
	return Rule{Family: 4, Priority: prio, From: netip.PrefixFrom(src, 32), Table: table, Protocol: 212}
}

func opLines(ops []Op) string {
	var b strings.Builder
	for _, op := range ops {
		for _, l := range op.Lines() {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestPlan(t *testing.T) {
	unreach := Route{Family: 4, Table: 254, Dst: any4, Type: Unreachable, Protocol: 212}
	foreign := own(201, gw2, "eth2")
	foreign.Protocol = 4 // static
	foreign.Src = netip.Addr{}
	tests := []struct {
		name       string
		want, have State
		ops        string
	}{{
		name: "empty kernel: routes first, then the rules that use them",
		want: State{Routes: []Route{mp(3, 1), own(201, gw1, "eth1")}, Rules: []Rule{srcRule(1000, 201)}},
		ops: `
			+ default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
			+ default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1
			+ 1000: from 198.18.1.2 lookup 201 proto 212`,
	}, {
		name: "unchanged: nothing, whatever the order of routes and nexthops",
		want: State{Routes: []Route{mp(3, 1), own(201, gw1, "eth1")}, Rules: []Rule{srcRule(1000, 201)}},
		have: State{Routes: []Route{own(201, gw1, "eth1"), {Family: 4, Table: 254, Dst: any4, Type: Unicast, Protocol: 212,
			Nexthops: []Nexthop{{Gateway: gw2, Dev: "eth2", Weight: 1}, {Gateway: gw1, Dev: "eth1", Weight: 3}}}},
			Rules: []Rule{srcRule(1000, 201)}},
	}, {
		name: "weights change: one replace",
		want: State{Routes: []Route{mp(1, 1)}},
		have: State{Routes: []Route{mp(3, 1)}},
		ops: `
			- default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1
			+ default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 1`,
	}, {
		name: "multipath to single nexthop: one replace",
		want: State{Routes: []Route{{Family: 4, Table: 254, Dst: any4, Protocol: 212, Nexthops: []Nexthop{{Gateway: gw2, Dev: "eth2", Weight: 1}}}}},
		have: State{Routes: []Route{mp(3, 1)}},
		ops: `
			- default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1
			+ default via 198.18.2.1 dev eth2 table main proto 212`,
	}, {
		name: "last resort: unicast becomes unreachable on the same key, a replace",
		want: State{Routes: []Route{unreach}},
		have: State{Routes: []Route{mp(1, 1)}},
		ops: `
			- default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 1
			+ unreachable default table main proto 212`,
	}, {
		name: "owned route no longer wanted: deleted last",
		want: State{Rules: []Rule{srcRule(1000, 201)}},
		have: State{Routes: []Route{mp(1, 1)}},
		ops: `
			+ 1000: from 198.18.1.2 lookup 201 proto 212
			- default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 1`,
	}, {
		name: "foreign route on a wanted key: conflict, never a write",
		want: State{Routes: []Route{own(201, gw1, "eth1")}},
		have: State{Routes: []Route{foreign}},
		ops: `
			! default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2 (conflict: held by foreign route "default via 198.18.2.1 dev eth2 table 201 proto 4")`,
	}, {
		name: "foreign route elsewhere: left alone",
		want: State{Routes: []Route{mp(1, 1)}},
		have: State{Routes: []Route{mp(1, 1), foreign}},
	}, {
		name: "rule changes table: new rule added before the old one goes",
		want: State{Rules: []Rule{srcRule(1000, 202)}},
		have: State{Rules: []Rule{srcRule(1000, 201)}},
		ops: `
			+ 1000: from 198.18.1.2 lookup 202 proto 212
			- 1000: from 198.18.1.2 lookup 201 proto 212`,
	}, {
		name: "IPv6 metric 0 is the kernel's 1024",
		want: State{Routes: []Route{{Family: 6, Table: 254, Dst: any6, Protocol: 212, Nexthops: []Nexthop{{Gateway: gw6, Dev: "eth1"}}}}},
		have: State{Routes: []Route{{Family: 6, Table: 254, Dst: any6, Metric: 1024, Protocol: 212, Type: Unicast, Nexthops: []Nexthop{{Gateway: gw6, Dev: "eth1", Weight: 1}}}}},
	}, {
		name: "withdraw: empty want deletes everything owned, rules first",
		have: State{Routes: []Route{mp(1, 1)}, Rules: []Rule{srcRule(1000, 201)}},
		ops: `
			- 1000: from 198.18.1.2 lookup 201 proto 212
			- default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 1`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := opLines(Plan(tt.want, tt.have))
			if diff := cmp.Diff(dump(tt.ops), got); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

// Plan(want, want) is empty and Plan(want, {}) recreates want, for every
// policy in testdata under several health snapshots.
func TestPlanIdempotent(t *testing.T) {
	p := mustPolicy(t, twoISPs)
	for _, h := range []Snapshot{nil, {"isp1": Down}, {"isp1": Down, "isp2": Down, "backup": Down}, {"isp2": Degraded}} {
		want := Desired(p, h)
		if ops := Plan(want, want); len(ops) != 0 {
			t.Errorf("Plan(want, want) with %v = %s, want nothing", h, opLines(ops))
		}
		var adds int
		for _, op := range Plan(want, State{}) {
			if op.Kind != OpAdd {
				t.Errorf("Plan(want, empty) has %v", op)
			}
			adds++
		}
		if adds != len(want.Routes)+len(want.Rules) {
			t.Errorf("Plan(want, empty) has %d adds, want %d", adds, len(want.Routes)+len(want.Rules))
		}
	}
}

package policy

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestConditionsParse(t *testing.T) {
	data, err := os.ReadFile("../testdata/conditions.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("conditions.toml", data, testTables)
	if err != nil {
		t.Fatal(err)
	}
	want := []*Condition{
		{Name: "any-uplink", Match: MatchAny, Terms: []Term{
			{Text: "group wan up", Kind: TermGroup, Name: "wan", State: StateUp},
			{Text: "address 2001:db8::1 on eth0", Kind: TermAddress, Name: "eth0", Addr: netip.MustParseAddr("2001:db8::1"), Family: 6},
		}},
		{Name: "claim", Match: MatchAll, HoldUp: time.Second, Terms: []Term{
			{Text: "address 198.18.0.100 on eth0", Kind: TermAddress, Name: "eth0", Addr: netip.MustParseAddr("198.18.0.100"), Family: 4},
			{Text: "gateway isp1 up", Kind: TermGateway, Name: "isp1", State: StateUp},
			{Text: "condition remote-ok", Kind: TermCondition, Name: "remote-ok"},
		}},
		{Name: "remote-ok", Match: MatchAtLeast, AtLeast: 1, HoldDown: 500 * time.Millisecond, Terms: []Term{
			{Text: "not gateway isp2 down", Not: true, Kind: TermGateway, Name: "isp2", State: StateDown},
			{Text: "file /run/keepalived/peer", Kind: TermFile, Path: "/run/keepalived/peer"},
			{Text: "link eth2 up", Kind: TermLink, Name: "eth2", State: StateUp},
		}},
	}
	if diff := cmp.Diff(want, p.Conditions, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("conditions (-want +got):\n%s", diff)
	}
	var order []string
	for _, c := range p.ConditionOrder() {
		order = append(order, c.Name)
	}
	if diff := cmp.Diff([]string{"any-uplink", "remote-ok", "claim"}, order); diff != "" {
		t.Errorf("evaluation order (-want +got):\n%s", diff)
	}
	if g := p.Group("wan"); g.Condition != "claim" {
		t.Errorf("group wan is gated by %q, want claim", g.Condition)
	}
	if a := p.Announces[0]; a.Track != "claim" {
		t.Errorf("announce vip tracks %q, want claim", a.Track)
	}
	if h := p.Hooks[0]; !cmp.Equal(h.Events, []string{EventConditionUp, EventConditionDown}) || !cmp.Equal(h.Objects, []string{"claim"}) {
		t.Errorf("hook claim: events %v, only %v", h.Events, h.Objects)
	}
}

func TestTermUnmarshalText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Term
		err  string
	}{
		{in: "link eth0 down", want: Term{Text: "link eth0 down", Kind: TermLink, Name: "eth0", State: StateDown}},
		{in: "  not   condition x ", want: Term{Text: "not condition x", Not: true, Kind: TermCondition, Name: "x"}},
		{in: "gateway a degraded", want: Term{Text: "gateway a degraded", Kind: TermGateway, Name: "a", State: StateDegraded}},
		{in: "link eth0 degraded", err: `term "link eth0 degraded": state "degraded" is not one of up, down`},
		{in: "not", err: `term "not" is empty`},
		{in: "gateway a", err: `term "gateway a" is not of the form "gateway NAME up|degraded|down"`},
		{in: "address 198.18.0.1 at eth0", err: `term "address 198.18.0.1 at eth0" is not of the form "address ADDR on IFACE"`},
		{in: "address 224.0.0.18 on eth0", err: `term "address 224.0.0.18 on eth0": 224.0.0.18 is not an address an interface holds`},
		{in: "link this-name-is-too-long up", err: `term "link this-name-is-too-long up": "this-name-is-too-long" is not a valid Linux interface name`},
		{in: "condition", err: `term "condition" is not of the form "condition NAME"`},
	} {
		var got Term
		err := got.UnmarshalText([]byte(tc.in))
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

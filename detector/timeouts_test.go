package detector

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/policy"
)

func TestTimeoutOf(t *testing.T) {
	remote := netip.MustParseAddr("198.18.100.2")
	probe := policy.Probe{Gateway: true, Neigh: true, ICMP: []netip.Addr{remote}}
	tests := []struct {
		name  string
		learn map[string][]time.Duration
		want  []time.Duration // gateway echo, remote, neighbour (the registry's order; the neighbour's floor is 50ms)
	}{
		{name: "nothing learned: the profile's timeout", want: []time.Duration{100 * ms, 100 * ms, 100 * ms}},
		{name: "lan rtts: the floor", learn: map[string][]time.Duration{
			"icmp 198.18.1.1": {200 * time.Microsecond}, "neigh 198.18.1.1": {300 * time.Microsecond}, "icmp 198.18.100.2": {400 * time.Microsecond}},
			want: []time.Duration{20 * ms, 20 * ms, 50 * ms}},
		{name: "the gateway borrows its neighbour's, a remote target does not", learn: map[string][]time.Duration{
			"neigh 198.18.1.1": {300 * time.Microsecond}},
			want: []time.Duration{20 * ms, 100 * ms, 50 * ms}},
		// 8ms: srtt 8, rttvar 4: 2 × 24 = 48ms.
		{name: "a remote target farther away", learn: map[string][]time.Duration{
			"icmp 198.18.1.1": {200 * time.Microsecond}, "icmp 198.18.100.2": {8 * ms}},
			want: []time.Duration{20 * ms, 48 * ms, 100 * ms}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gs := &gwState{g: testGateway(nil), m: NewMachine(testGateway(nil), t0)}
			gs.g.Probe = probe
			for k, rtts := range tc.learn {
				for _, r := range rtts {
					gs.learnRTT(k, r)
				}
			}
			got, longest := gs.timeouts(roundProbes(&gs.g.Probe, gs.g.Address))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("timeouts (-want +got):\n%s", diff)
			}
			// The neighbour probe's own floor does not set the round's bound.
			if w := max(tc.want[0], tc.want[1]); longest != w {
				t.Errorf("round timeout %s, want %s", longest, w)
			}
		})
	}
}

func TestCheckInterval(t *testing.T) {
	mk := func(mod func(*policy.Profile)) *gwState {
		g := testGateway(mod)
		g.Probe = policy.Probe{Gateway: true}
		gs := &gwState{g: g, m: NewMachine(g, t0)}
		gs.m.Observe(good, t0)
		return gs
	}
	tests := []struct {
		name  string
		mod   func(*policy.Profile)
		learn bool
		check bool
		want  time.Duration
	}{
		{name: "up, idle: none", want: 0},
		{name: "a check, nothing learned: fast_interval", check: true, want: 20 * ms},
		{name: "a check, rtt learned: half the floor timeout", learn: true, check: true, want: 10 * ms},
		{name: "the old profile: fast_interval", mod: func(p *policy.Profile) { p.TimeoutFloor = p.Timeout }, learn: true, check: true, want: 20 * ms},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gs := mk(tc.mod)
			if tc.learn {
				gs.learnRTT("icmp 198.18.1.1", 300*time.Microsecond)
			}
			if tc.check {
				gs.m.Observe(silent(60*ms), t0.Add(time.Second))
			}
			if got := gs.interval(t0.Add(time.Second)); got != tc.want {
				t.Errorf("interval %s, want %s", got, tc.want)
			}
		})
	}
}

package detector

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/uplinkd/uplinkd/policy"
)

// TestGatewayUpNotForUnknown: a gateway not judged yet is not counted as
// up; suspect still is (it carries traffic while probes decide).
func TestGatewayUpNotForUnknown(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.initGateway("gw1")
	for _, tc := range []struct {
		s    State
		want float64
	}{{Unknown, 0}, {Up, 1}, {Suspect, 1}, {Degraded, 1}, {Down, 0}} {
		m.setState("gw1", tc.s)
		if v := testutil.ToFloat64(m.up.WithLabelValues("gw1")); v != tc.want {
			t.Errorf("uplinkd_gateway_up in state %s = %v, want %v", tc.s, v, tc.want)
		}
	}
}

// TestProbeTargetSeries: per-target results carry only the policy's
// targets, and a target that leaves the policy loses its series while its
// gateway keeps the rest.
func TestProbeTargetSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	g := &policy.Gateway{Name: "isp1", Address: netip.MustParseAddr("198.18.1.1"),
		Probe: policy.Probe{Gateway: true, ICMP: []netip.Addr{netip.MustParseAddr("198.18.100.1"), netip.MustParseAddr("198.18.100.2")},
			TCP: []netip.AddrPort{netip.MustParseAddrPort("198.18.100.3:443")}}}
	m.setTargets(g)
	m.probe("isp1", KindICMP, "198.18.1.1", true, 2*time.Millisecond)
	m.probe("isp1", KindICMP, "198.18.100.1", true, 10*time.Millisecond)
	m.probe("isp1", KindICMP, "198.18.100.2", false, 0)
	m.probe("isp1", KindTCP, "198.18.100.3:443", true, 20*time.Millisecond)
	m.probe("isp1", KindICMP, "198.18.9.9", true, time.Millisecond) // not a policy target
	want := `
# HELP uplinkd_probe_target_success 1 if the last probe of this target through this gateway was answered, 0 if not; targets are the policy's.
# TYPE uplinkd_probe_target_success gauge
uplinkd_probe_target_success{gateway="isp1",kind="icmp",target="198.18.1.1"} 1
uplinkd_probe_target_success{gateway="isp1",kind="icmp",target="198.18.100.1"} 1
uplinkd_probe_target_success{gateway="isp1",kind="icmp",target="198.18.100.2"} 0
uplinkd_probe_target_success{gateway="isp1",kind="tcp",target="198.18.100.3:443"} 1
# HELP uplinkd_probe_target_rtt_seconds Round-trip time of the last answered probe of this target through this gateway.
# TYPE uplinkd_probe_target_rtt_seconds gauge
uplinkd_probe_target_rtt_seconds{gateway="isp1",kind="icmp",target="198.18.1.1"} 0.002
uplinkd_probe_target_rtt_seconds{gateway="isp1",kind="icmp",target="198.18.100.1"} 0.01
uplinkd_probe_target_rtt_seconds{gateway="isp1",kind="tcp",target="198.18.100.3:443"} 0.02
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "uplinkd_probe_target_success", "uplinkd_probe_target_rtt_seconds"); err != nil {
		t.Error(err)
	}

	// A reload drops 198.18.100.2 and the TCP target.
	g2 := *g
	g2.Probe.ICMP = g.Probe.ICMP[:1]
	g2.Probe.TCP = nil
	m.setTargets(&g2)
	m.probe("isp1", KindICMP, "198.18.100.2", true, time.Millisecond) // in flight across the reload
	want = `
# HELP uplinkd_probe_target_success 1 if the last probe of this target through this gateway was answered, 0 if not; targets are the policy's.
# TYPE uplinkd_probe_target_success gauge
uplinkd_probe_target_success{gateway="isp1",kind="icmp",target="198.18.1.1"} 1
uplinkd_probe_target_success{gateway="isp1",kind="icmp",target="198.18.100.1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "uplinkd_probe_target_success"); err != nil {
		t.Error(err)
	}
	m.forgetGateway("isp1")
	if n := testutil.CollectAndCount(m.targetOK) + testutil.CollectAndCount(m.targetRTT); n != 0 {
		t.Errorf("%d target series left after the gateway left the policy", n)
	}
}

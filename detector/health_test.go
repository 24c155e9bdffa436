package detector

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestScenarioLinkModeRenegotiation(t *testing.T) {
	d := &Detector{met: NewMetrics(prometheus.NewRegistry()), ifaces: map[string]*ifaceState{"eth1": {name: "eth1"}}}
	d.log = slog.New(slog.DiscardHandler)
	d.onMode(modeEvent{Iface: "eth1", Mode: LinkMode{SpeedMbps: 1000, FullDuplex: true, DuplexKnown: true, Autoneg: true}})
	d.onMode(modeEvent{Iface: "eth1", Mode: LinkMode{SpeedMbps: 100, FullDuplex: false, DuplexKnown: true, Autoneg: true}})
	d.onMode(modeEvent{Iface: "eth1", Mode: LinkMode{SpeedMbps: 100, FullDuplex: false, DuplexKnown: true, Autoneg: true}})
	if got := testutil.ToFloat64(d.met.reneg.WithLabelValues("eth1")); got != 1 {
		t.Errorf("renegotiations = %v, want 1", got)
	}
	if got := testutil.ToFloat64(d.met.speed.WithLabelValues("eth1")); got != 100e6/8 {
		t.Errorf("speed = %v", got)
	}
	if got := testutil.ToFloat64(d.met.duplex.WithLabelValues("eth1")); got != 0 {
		t.Errorf("full duplex = %v", got)
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.initGateway("gw1")
	m.transition(Transition{Gateway: "gw1", From: Unknown, To: Up, Cause: CauseStart, At: time.Now()})
	m.evidenceEvent("gw1", SourceProbe, true)
	m.rtt.WithLabelValues("gw1").Observe(0.001)
	m.loss.WithLabelValues("gw1").Set(0)
	m.carrier.WithLabelValues("eth1").Set(1)
	m.speed.WithLabelValues("eth1").Set(1e9)
	m.duplex.WithLabelValues("eth1").Set(1)
	m.reneg.WithLabelValues("eth1")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	want := []string{
		"uplinkd_evidence_events_total", "uplinkd_gateway_damped", "uplinkd_gateway_flap_penalty",
		"uplinkd_gateway_last_transition_timestamp_seconds", "uplinkd_gateway_loss_ratio",
		"uplinkd_gateway_rtt_seconds", "uplinkd_gateway_state", "uplinkd_gateway_transitions_total",
		"uplinkd_gateway_up", "uplinkd_link_carrier", "uplinkd_link_full_duplex",
		"uplinkd_link_renegotiations_total", "uplinkd_link_speed_bytes",
		"uplinkd_neighbour_lladdr_changes_total", "uplinkd_probes_failed_total", "uplinkd_probes_sent_total",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metric names (-want +got):\n%s", diff)
	}
	if v := testutil.ToFloat64(m.state.WithLabelValues("gw1", "up")); v != 1 {
		t.Errorf("state{up} = %v", v)
	}
	if v := testutil.ToFloat64(m.state.WithLabelValues("gw1", "unknown")); v != 0 {
		t.Errorf("state{unknown} = %v", v)
	}
}

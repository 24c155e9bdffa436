package detector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the detector's series, named as in docs/design.md. A nil
// *Metrics is valid and records nothing.
type Metrics struct {
	up             *prometheus.GaugeVec
	state          *prometheus.GaugeVec
	rtt            *prometheus.HistogramVec
	loss           *prometheus.GaugeVec
	probesSent     *prometheus.CounterVec
	probesFailed   *prometheus.CounterVec
	evidence       *prometheus.CounterVec
	transitions    *prometheus.CounterVec
	lastTransition *prometheus.GaugeVec
	penalty        *prometheus.GaugeVec
	damped         *prometheus.GaugeVec
	lladdr         *prometheus.CounterVec
	carrier        *prometheus.GaugeVec
	speed          *prometheus.GaugeVec
	duplex         *prometheus.GaugeVec
	reneg          *prometheus.CounterVec
}

// Evidence sources and polarities, the labels of uplinkd_evidence_events_total.
const (
	SourceLink    = "link"
	SourceNeigh   = "neigh"
	SourceTraffic = "traffic"
	SourceProbe   = "probe"
)

// NewMetrics registers the detector's metrics on reg, once per process.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	gw := []string{"gateway"}
	m := &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_up",
			Help: "1 while the gateway is usable (up or degraded; unknown counts as up)."}, gw),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_state",
			Help: "1 for the gateway's current state."}, []string{"gateway", "state"}),
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "uplinkd_gateway_rtt_seconds",
			Help:    "Round-trip time of answered probe rounds.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}}, gw),
		loss: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_loss_ratio",
			Help: "Ratio of lost probe rounds over the profile's window."}, gw),
		probesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_probes_sent_total",
			Help: "Probes sent, by kind (icmp, tcp, neigh)."}, []string{"gateway", "kind"}),
		probesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_probes_failed_total",
			Help: "Probes that got no valid answer, by kind."}, []string{"gateway", "kind"}),
		evidence: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_evidence_events_total",
			Help: "Evidence about a gateway, by source (link, neigh, traffic, probe) and polarity."}, []string{"gateway", "source", "polarity"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_gateway_transitions_total",
			Help: "State transitions by target state and cause."}, []string{"gateway", "to", "cause"}),
		lastTransition: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_last_transition_timestamp_seconds",
			Help: "Unix time of the gateway's last transition."}, gw),
		penalty: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_flap_penalty",
			Help: "Flap damping penalty, decayed to now."}, gw),
		damped: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_damped",
			Help: "1 while flap damping holds the gateway down."}, gw),
		lladdr: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_neighbour_lladdr_changes_total",
			Help: "Changes of the gateway's link-layer address (e.g. a VRRP failover upstream)."}, gw),
		carrier: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_link_carrier",
			Help: "1 while the interface has carrier."}, []string{"iface"}),
		speed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_link_speed_bits_per_second",
			Help: "Negotiated link speed, where the driver reports it."}, []string{"iface"}),
		duplex: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_link_full_duplex",
			Help: "1 for full duplex, where the driver reports it."}, []string{"iface"}),
		reneg: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_link_renegotiations_total",
			Help: "Changes of speed, duplex or auto-negotiation seen on the interface."}, []string{"iface"}),
	}
	reg.MustRegister(m.up, m.state, m.rtt, m.loss, m.probesSent, m.probesFailed, m.evidence,
		m.transitions, m.lastTransition, m.penalty, m.damped, m.lladdr, m.carrier, m.speed, m.duplex, m.reneg)
	return m
}

func (m *Metrics) initGateway(name string) {
	if m == nil {
		return
	}
	for i := range stateNames {
		m.state.WithLabelValues(name, stateNames[i])
	}
	for _, k := range probeKinds {
		m.probesSent.WithLabelValues(name, string(k.kind))
		m.probesFailed.WithLabelValues(name, string(k.kind))
	}
	m.lladdr.WithLabelValues(name)
	m.setState(name, Unknown)
	m.damped.WithLabelValues(name).Set(0)
	m.penalty.WithLabelValues(name).Set(0)
}

func (m *Metrics) forgetGateway(name string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"gateway": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.up, m.state, m.rtt, m.loss, m.probesSent, m.probesFailed, m.evidence,
		m.transitions, m.lastTransition, m.penalty, m.damped, m.lladdr,
	} {
		v.DeletePartialMatch(l)
	}
}

func (m *Metrics) forgetIface(iface string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"iface": iface}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{m.carrier, m.speed, m.duplex, m.reneg} {
		v.DeletePartialMatch(l)
	}
}

func (m *Metrics) setState(name string, s State) {
	if m == nil {
		return
	}
	for i := range stateNames {
		v := 0.0
		if State(i) == s {
			v = 1
		}
		m.state.WithLabelValues(name, stateNames[i]).Set(v)
	}
	up := 0.0
	if s != Down {
		up = 1
	}
	m.up.WithLabelValues(name).Set(up)
}

func (m *Metrics) transition(t Transition) {
	if m == nil {
		return
	}
	m.setState(t.Gateway, t.To)
	m.transitions.WithLabelValues(t.Gateway, t.To.String(), t.Cause).Inc()
	m.lastTransition.WithLabelValues(t.Gateway).Set(float64(t.At.UnixNano()) / 1e9)
}

func (m *Metrics) evidenceEvent(gw, source string, positive bool) {
	if m == nil {
		return
	}
	pol := "negative"
	if positive {
		pol = "positive"
	}
	m.evidence.WithLabelValues(gw, source, pol).Inc()
}

func (m *Metrics) probe(gw string, kind ProbeKind, ok bool) {
	if m == nil {
		return
	}
	m.probesSent.WithLabelValues(gw, string(kind)).Inc()
	if !ok {
		m.probesFailed.WithLabelValues(gw, string(kind)).Inc()
	}
}

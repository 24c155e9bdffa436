package detector

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/uplinkd/uplinkd/policy"
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
	checks         *prometheus.CounterVec
	targetOK       *prometheus.GaugeVec
	targetRTT      *prometheus.GaugeVec

	// targets holds, per gateway, the (kind, target) pairs its policy
	// probes, so that the series of a target that leaves the policy are
	// deleted while its gateway stays.
	mu      sync.Mutex
	targets map[string]map[targetKey]bool
}

// targetKey is one probe target's labels.
type targetKey struct {
	kind   ProbeKind
	target string
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
		targets: map[string]map[targetKey]bool{},
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_up",
			Help: "1 while the gateway is judged usable (up, degraded, or suspect while probes decide); 0 when down or not judged yet (unknown)."}, gw),
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
		speed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_link_speed_bytes",
			Help: "Negotiated link speed in bytes per second, where the driver reports it (node_exporter's node_network_speed_bytes)."}, []string{"iface"}),
		duplex: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_link_full_duplex",
			Help: "1 for full duplex, where the driver reports it."}, []string{"iface"}),
		reneg: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_link_renegotiations_total",
			Help: "Changes of speed, duplex or auto-negotiation seen on the interface."}, []string{"iface"}),
		targetOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_probe_target_success",
			Help: "1 if the last probe of this target through this gateway was answered, 0 if not; targets are the policy's."}, []string{"gateway", "kind", "target"}),
		targetRTT: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_probe_target_rtt_seconds",
			Help: "Round-trip time of the last answered probe of this target through this gateway."}, []string{"gateway", "kind", "target"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_checks_total",
			Help: "Checks (bursts of fast probes) ended, by what started them (traffic, neigh, loss) and result (answered: the gateway was fine; down)."},
			[]string{"gateway", "reason", "result"}),
	}
	reg.MustRegister(m.up, m.state, m.rtt, m.loss, m.probesSent, m.probesFailed, m.evidence,
		m.transitions, m.lastTransition, m.penalty, m.damped, m.lladdr, m.carrier, m.speed, m.duplex, m.reneg,
		m.targetOK, m.targetRTT, m.checks)
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
		m.transitions, m.lastTransition, m.penalty, m.damped, m.lladdr, m.targetOK, m.targetRTT, m.checks,
	} {
		v.DeletePartialMatch(l)
	}
	m.mu.Lock()
	delete(m.targets, name)
	m.mu.Unlock()
}

// setTargets records the targets g probes now (the probe specs of
// kinds.go, so the label values are exactly the policy's) and deletes the
// series of those it no longer does.
func (m *Metrics) setTargets(g *policy.Gateway) {
	if m == nil {
		return
	}
	want := map[targetKey]bool{}
	for _, ps := range roundProbes(&g.Probe, g.Address) {
		want[targetKey{ps.kind, ps.target}] = true
	}
	m.mu.Lock()
	old := m.targets[g.Name]
	m.targets[g.Name] = want
	m.mu.Unlock()
	for k := range old {
		if !want[k] {
			l := prometheus.Labels{"gateway": g.Name, "kind": string(k.kind), "target": k.target}
			m.targetOK.Delete(l)
			m.targetRTT.Delete(l)
		}
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
	if s != Down && s != Unknown {
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

// probe counts one probe of target through gw and records its result. A
// result for a target the policy no longer names (a probe that was in
// flight across a reload) is counted but not recorded, so it cannot
// resurrect a deleted series.
func (m *Metrics) probe(gw string, kind ProbeKind, target string, ok bool, rtt time.Duration) {
	if m == nil {
		return
	}
	m.probesSent.WithLabelValues(gw, string(kind)).Inc()
	if !ok {
		m.probesFailed.WithLabelValues(gw, string(kind)).Inc()
	}
	m.mu.Lock()
	if m.targets[gw][targetKey{kind, target}] {
		// Under the lock: setTargets cannot delete between the check and
		// the write.
		v := 0.0
		if ok {
			v = 1
			m.targetRTT.WithLabelValues(gw, string(kind), target).Set(rtt.Seconds())
		}
		m.targetOK.WithLabelValues(gw, string(kind), target).Set(v)
	}
	m.mu.Unlock()
}

// check counts one ended check.
func (m *Metrics) check(gw, reason string, answered bool) {
	if m == nil {
		return
	}
	res := "down"
	if answered {
		res = "answered"
	}
	m.checks.WithLabelValues(gw, reason, res).Inc()
}

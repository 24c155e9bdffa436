package routing

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the routing series of docs/design.md. Every label value comes
// from a fixed set, so nothing here grows with the policy.
type Metrics struct {
	writes    *prometheus.CounterVec // object, op, result
	repairs   *prometheus.CounterVec // object
	resyncs   *prometheus.CounterVec // reason
	duration  prometheus.Histogram
	conflicts prometheus.Gauge
	form      *prometheus.GaugeVec // form
}

// Resync reasons, the values of uplinkd_resyncs_total's reason label.
const (
	ReasonTimer           = "timer"
	ReasonEvent           = "event"
	ReasonENOBUFS         = "enobufs"
	ReasonDumpInterrupted = "dump_interrupted"
	ReasonStart           = "start"
)

// NewMetrics registers the routing metrics with reg. A collector that is
// already registered (a second reconciler in one process, a test) is
// reused rather than treated as an error.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uplinkd_netlink_writes_total",
			Help: "Netlink writes of routes, rules and nexthop objects, by object, operation and result.",
		}, []string{"object", "op", "result"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uplinkd_drift_repairs_total",
			Help: "Owned routes and rules put back after something else changed or deleted them.",
		}, []string{"object"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uplinkd_resyncs_total",
			Help: "Full re-reads of owned kernel state, by what triggered them.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "uplinkd_reconcile_duration_seconds",
			Help:    "Time to read, plan and write one reconcile.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "uplinkd_route_conflicts",
			Help: "Wanted routes whose key another program's route or nexthop holds; uplinkd writes none of them and retries on every resync.",
		}),
		form: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "uplinkd_multipath_form",
			Help: "1 for the form group defaults are installed in: resilient (resilient nexthop groups), mpath (nexthop groups without resilience) or classic (RTA_MULTIPATH routes); anything but resilient is a fallback the kernel forced or the configuration asked for.",
		}, []string{"form"}),
	}
	m.writes = register(reg, m.writes)
	m.form = register(reg, m.form)
	for _, f := range []Form{FormClassic, FormGroup, FormResilient} {
		m.form.WithLabelValues(f.String())
	}
	m.conflicts = register(reg, m.conflicts)
	m.repairs = register(reg, m.repairs)
	m.resyncs = register(reg, m.resyncs)
	m.duration = register(reg, m.duration)
	for _, o := range []string{"route", "rule", "nexthop"} {
		m.repairs.WithLabelValues(o)
		for _, op := range []string{"add", "replace", "delete"} {
			m.writes.WithLabelValues(o, op, "ok")
			m.writes.WithLabelValues(o, op, "error")
		}
	}
	for _, r := range []string{ReasonTimer, ReasonEvent, ReasonENOBUFS, ReasonDumpInterrupted, ReasonStart} {
		m.resyncs.WithLabelValues(r)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (m *Metrics) write(object, op string, err error) {
	if m == nil {
		return
	}
	res := "ok"
	if err != nil {
		res = "error"
	}
	m.writes.WithLabelValues(object, op, res).Inc()
}

func (m *Metrics) repair(object string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.repairs.WithLabelValues(object).Add(float64(n))
}

func (m *Metrics) resync(reason string) {
	if m == nil {
		return
	}
	m.resyncs.WithLabelValues(reason).Inc()
}

func (m *Metrics) observe(seconds float64) {
	if m == nil {
		return
	}
	m.duration.Observe(seconds)
}

func (m *Metrics) setConflicts(n int) {
	if m == nil {
		return
	}
	m.conflicts.Set(float64(n))
}

func (m *Metrics) setForm(f Form) {
	if m == nil {
		return
	}
	for _, x := range []Form{FormClassic, FormGroup, FormResilient} {
		v := 0.0
		if x == f {
			v = 1
		}
		m.form.WithLabelValues(x.String()).Set(v)
	}
}

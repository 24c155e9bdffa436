package daemon

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/uplinkd/uplinkd/policy"
)

// Metrics are the daemon's own series of docs/design.md.
type Metrics struct {
	groupUp      *prometheus.GaugeVec
	groupHealthy *prometheus.GaugeVec
	conditionUp  *prometheus.GaugeVec
	reloadOK     prometheus.Gauge
	reloadTime   prometheus.Gauge
	buildInfo    *prometheus.GaugeVec
	gatewayInfo  *prometheus.GaugeVec
	inRoute      *prometheus.GaugeVec
	activeTier   *prometheus.GaugeVec
	ctFlushed    *prometheus.CounterVec

	// The loop's goroutine alone calls the setters: these remember what
	// was exported, to delete what left the policy.
	info  map[string]prometheus.Labels
	gws   map[string]bool
	tiers map[string]bool
}

// BuildInfo labels uplinkd_build_info.
type BuildInfo struct {
	Version, Commit, GoVersion string
}

// NewMetrics registers the daemon's metrics on reg.
func NewMetrics(reg prometheus.Registerer, bi BuildInfo) *Metrics {
	m := &Metrics{
		groupUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_group_up",
			Help: "1 while the group has at least one healthy (up or degraded) gateway."}, []string{"group"}),
		groupHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_group_healthy_gateways",
			Help: "Healthy (up or degraded) gateways in the group."}, []string{"group"}),
		conditionUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_condition_up",
			Help: "1 while the condition is up (its terms hold, after its hold times)."}, []string{"condition"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "uplinkd_config_last_reload_successful",
			Help: "1 if the last policy load or reload succeeded; 0 if it was refused and the previous policy still runs."}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "uplinkd_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful policy load or reload."}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_build_info",
			Help: "Always 1; the labels say which build runs."}, []string{"version", "commit", "goversion"}),
		gatewayInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_info",
			Help: "Always 1; the labels join a gateway to its interface (node_exporter's device), address, family and tables."},
			[]string{"gateway", "iface", "address", "family", "table"}),
		inRoute: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_gateway_in_route",
			Help: "1 while the gateway carries traffic (in its group's active tier, its own table, or a failed-over table), 0 while it does not (down, or standby in a worse tier)."}, []string{"gateway"}),
		activeTier: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_group_active_tier",
			Help: "The tier whose gateways carry the group's default route; -1 while none of its healthy gateways does."}, []string{"group"}),
		ctFlushed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uplinkd_conntrack_flushed_entries_total",
			Help: "Conntrack entries of the gateway's uplink deleted by flush_conntrack, by the transition that caused it (down, up)."}, []string{"gateway", "event"}),
		info:  map[string]prometheus.Labels{},
		gws:   map[string]bool{},
		tiers: map[string]bool{},
	}
	reg.MustRegister(m.groupUp, m.groupHealthy, m.conditionUp, m.reloadOK, m.reloadTime, m.buildInfo, m.gatewayInfo, m.inRoute, m.activeTier, m.ctFlushed)
	m.buildInfo.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	return m
}

func (m *Metrics) setGroup(name string, healthy int) {
	if m == nil {
		return
	}
	up := 0.0
	if healthy > 0 {
		up = 1
	}
	m.groupUp.WithLabelValues(name).Set(up)
	m.groupHealthy.WithLabelValues(name).Set(float64(healthy))
}

func (m *Metrics) forgetGroup(name string) {
	if m == nil {
		return
	}
	m.groupUp.DeleteLabelValues(name)
	m.groupHealthy.DeleteLabelValues(name)
}

func (m *Metrics) setCondition(name string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.conditionUp.WithLabelValues(name).Set(v)
}

func (m *Metrics) forgetCondition(name string) {
	if m != nil {
		m.conditionUp.DeleteLabelValues(name)
	}
}

func (m *Metrics) reloaded(ok bool, unix float64) {
	if m == nil {
		return
	}
	if ok {
		m.reloadOK.Set(1)
		m.reloadTime.Set(unix)
	} else {
		m.reloadOK.Set(0)
	}
}

// setPolicy exports uplinkd_gateway_info for p's gateways and deletes the
// series (info, in_route) of gateways that left it.
func (m *Metrics) setPolicy(p *policy.Policy) {
	if m == nil {
		return
	}
	keep := map[string]bool{}
	for _, g := range p.Gateways {
		keep[g.Name] = true
		l := prometheus.Labels{"gateway": g.Name, "iface": g.Interface, "address": g.Address.String(),
			"family": "ipv" + strconv.Itoa(familyOf(g)), "table": gatewayTables(p, g)}
		if old, ok := m.info[g.Name]; ok && !sameLabels(old, l) {
			m.gatewayInfo.Delete(old)
		}
		m.info[g.Name] = l
		m.gatewayInfo.With(l).Set(1)
	}
	for name, l := range m.info {
		if !keep[name] {
			m.gatewayInfo.Delete(l)
			delete(m.info, name)
		}
	}
	for name := range m.gws {
		if !keep[name] {
			m.inRoute.DeleteLabelValues(name)
			delete(m.gws, name)
		}
	}
}

func familyOf(g *policy.Gateway) int {
	if g.Address.Is4() {
		return 4
	}
	return 6
}

func sameLabels(a, b prometheus.Labels) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// setCarriage exports which gateways carry traffic and each group's active
// tier; groups that left the policy lose their series.
func (m *Metrics) setCarriage(c carriage) {
	if m == nil {
		return
	}
	for name, in := range c.inRoute {
		v := 0.0
		if in {
			v = 1
		}
		m.inRoute.WithLabelValues(name).Set(v)
		m.gws[name] = true
	}
	for grp, t := range c.tier {
		m.activeTier.WithLabelValues(grp).Set(float64(t))
		m.tiers[grp] = true
	}
	for grp := range m.tiers {
		if _, ok := c.tier[grp]; !ok {
			m.activeTier.DeleteLabelValues(grp)
			delete(m.tiers, grp)
		}
	}
}

func (m *Metrics) conntrackFlushed(gateway, event string, n int) {
	if m == nil {
		return
	}
	m.ctFlushed.WithLabelValues(gateway, event).Add(float64(n))
}

// initConntrack creates a gateway's flush series at 0, so they exist
// before the first flush.
func (m *Metrics) initConntrack(gateway string) {
	if m == nil {
		return
	}
	m.ctFlushed.WithLabelValues(gateway, "down")
	m.ctFlushed.WithLabelValues(gateway, "up")
}

func (m *Metrics) forgetConntrack(gateway string) {
	if m == nil {
		return
	}
	m.ctFlushed.DeleteLabelValues(gateway, "down")
	m.ctFlushed.DeleteLabelValues(gateway, "up")
}

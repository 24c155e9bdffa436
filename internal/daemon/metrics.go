package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the daemon's own series of docs/design.md.
type Metrics struct {
	groupUp      *prometheus.GaugeVec
	groupHealthy *prometheus.GaugeVec
	reloadOK     prometheus.Gauge
	reloadTime   prometheus.Gauge
	buildInfo    *prometheus.GaugeVec
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
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "uplinkd_config_last_reload_successful",
			Help: "1 if the last policy load or reload succeeded; 0 if it was refused and the previous policy still runs."}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "uplinkd_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful policy load or reload."}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "uplinkd_build_info",
			Help: "Always 1; the labels say which build runs."}, []string{"version", "commit", "goversion"}),
	}
	reg.MustRegister(m.groupUp, m.groupHealthy, m.reloadOK, m.reloadTime, m.buildInfo)
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

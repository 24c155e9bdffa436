package bfd

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports every session of a Server at scrape time, read from
// its status snapshot. Series exist exactly while their session does, so a
// gateway leaving the policy (or losing its bfd section) takes its series
// with it; the only label beyond the bounded enums is the gateway name.
type Collector struct {
	s *Server
}

// NewCollector returns a Collector for s; register it once.
func NewCollector(s *Server) *Collector { return &Collector{s: s} }

var (
	descState = prometheus.NewDesc("uplinkd_bfd_session_state",
		"1 for the BFD session's current state (admin-down, down, init, up).", []string{"gateway", "state"}, nil)
	descDiag = prometheus.NewDesc("uplinkd_bfd_session_diag",
		"The session's local diagnostic code (RFC 5880 §4.1): why it last went down; 0 none.", []string{"gateway"}, nil)
	descRemoteDiag = prometheus.NewDesc("uplinkd_bfd_session_remote_diag",
		"The diagnostic code the peer last sent.", []string{"gateway"}, nil)
	descTx = prometheus.NewDesc("uplinkd_bfd_session_tx_interval_seconds",
		"Negotiated interval between periodic packets, before jitter.", []string{"gateway"}, nil)
	descDetect = prometheus.NewDesc("uplinkd_bfd_session_detection_time_seconds",
		"Negotiated detection time.", []string{"gateway"}, nil)
	descDemand = prometheus.NewDesc("uplinkd_bfd_session_demand",
		"1 while demand mode is active: the peer sends no periodic packets.", []string{"gateway"}, nil)
	descPackets = prometheus.NewDesc("uplinkd_bfd_packets_total",
		"BFD control packets by direction (sent, received) and, for those dropped, why (auth, discarded, send_error).", []string{"gateway", "result"}, nil)
	descUnknown = prometheus.NewDesc("uplinkd_bfd_packets_unmatched_total",
		"BFD packets that matched no session or did not decode.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descDiag, descRemoteDiag, descTx, descDetect, descDemand, descPackets, descUnknown} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	g := prometheus.GaugeValue
	for _, st := range c.s.Status() {
		for _, s := range []State{AdminDown, Down, Init, Up} {
			v := 0.0
			if st.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, g, v, st.Name, s.String())
		}
		ch <- prometheus.MustNewConstMetric(descDiag, g, float64(st.Diag), st.Name)
		ch <- prometheus.MustNewConstMetric(descRemoteDiag, g, float64(st.RemoteDiag), st.Name)
		ch <- prometheus.MustNewConstMetric(descTx, g, st.TxInterval.Seconds(), st.Name)
		ch <- prometheus.MustNewConstMetric(descDetect, g, st.DetectTime.Seconds(), st.Name)
		ch <- prometheus.MustNewConstMetric(descDemand, g, b2f(st.DemandActive), st.Name)
		k := st.Counters
		for _, r := range []struct {
			name string
			v    uint64
		}{{"sent", k.Sent}, {"received", k.Received}, {"auth", k.AuthFailures}, {"discarded", k.Discarded}, {"send_error", k.SendErrors}} {
			ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(r.v), st.Name, r.name)
		}
	}
	ch <- prometheus.MustNewConstMetric(descUnknown, prometheus.CounterValue, float64(c.s.Unknown()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

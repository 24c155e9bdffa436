package routing_test

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/uplinkd/uplinkd/routing"
)

// The fixtures of helpers_test.go, by their internal names (export_test.go).
var (
	mustPolicy = routing.MustPolicy
	dump       = routing.Dump
	startRun   = routing.StartRun
	eventually = routing.Eventually
)

const twoISPs = routing.TwoISPs

type silentWatcher = routing.SilentWatcher

// series is the value of the series of the metric name whose labels
// include every name/value pair given, as a scrape of reg shows it: the
// tests read the names operators see. It is 0 when no series matches.
func series(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func hasLabels(have []*dto.LabelPair, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		if !slices.ContainsFunc(have, func(l *dto.LabelPair) bool { return l.GetName() == want[i] && l.GetValue() == want[i+1] }) {
			return false
		}
	}
	return true
}

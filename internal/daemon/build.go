package daemon

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/policy"
)

func newDetector(p *policy.Policy, log *slog.Logger, reg prometheus.Registerer, startDown map[string]string, b detector.BFD) (HealthSource, error) {
	return detector.New(detector.Config{Policy: p, Logger: log, Metrics: detector.NewMetrics(reg), StartDown: startDown, BFD: b})
}

package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/policy"
)

// detectorKernel is what the daemon opens for the detector and closes
// after it: the netlink adapter and the per-gateway traffic source, whose
// nftables table the daemon withdraws on exit when the policy says so.
type detectorKernel struct {
	nl      *detector.Netlink
	traffic *detector.GatewayTraffic
	once    sync.Once
}

// Close is idempotent and safe on nil.
func (k *detectorKernel) Close() error {
	if k == nil {
		return nil
	}
	var err error
	k.once.Do(func() { err = errors.Join(k.traffic.Close(), k.nl.Close()) })
	return err
}

// startProbed names the gateways whose first verdict must come from the
// probes: after a restart over owned routes (adopted), every one not
// adopted down (detector.Config.StartProbed), so that a dead gateway still
// answering ARP does not start up, and startHold has true verdicts to wait
// for.
func startProbed(p *policy.Policy, startDown map[string]string, adopted bool) []string {
	var probed []string
	if adopted {
		for _, g := range p.Gateways {
			if _, down := startDown[g.Name]; !down {
				probed = append(probed, g.Name)
			}
		}
	}
	return probed
}

func newDetector(p *policy.Policy, log *slog.Logger, reg prometheus.Registerer, startDown map[string]string, adopted bool, b detector.BFD) (HealthSource, *detectorKernel, error) {
	nl, err := detector.NewNetlink(netns.None())
	if err != nil {
		return nil, nil, err
	}
	traffic, err := detector.NewGatewayTraffic(netns.None(), nl, log)
	if err != nil {
		nl.Close()
		return nil, nil, err
	}
	k := &detectorKernel{nl: nl, traffic: traffic}
	det, err := detector.New(detector.Config{Policy: p, Logger: log, Metrics: detector.NewMetrics(reg), StartDown: startDown,
		StartProbed: startProbed(p, startDown, adopted), Kernel: nl, Traffic: traffic, BFD: b})
	if err != nil {
		k.Close()
		return nil, nil, err
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "uplinkd_traffic_per_neighbour",
		Help: "1 while traffic evidence is counted per gateway (its MAC, by uplinkd's tcx programs or its nftables table); 0 on the interface-counter fallback.",
	}, func() float64 {
		if ok, _ := traffic.PerGateway(); ok {
			return 1
		}
		return 0
	})); err != nil {
		det.Close()
		k.Close()
		return nil, nil, fmt.Errorf("registering the traffic counting metric: %w", err)
	}
	backend, _ := traffic.Backend()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "uplinkd_traffic_counting_info",
		Help:        "Always 1; backend is how traffic is counted per gateway: tcx (uplinkd's eBPF programs) or nftables (the fallback where eBPF cannot be loaded, several times the cost per packet).",
		ConstLabels: prometheus.Labels{"backend": backend},
	})
	info.Set(1)
	if err := reg.Register(info); err != nil {
		det.Close()
		k.Close()
		return nil, nil, fmt.Errorf("registering the traffic counting metric: %w", err)
	}
	return det, k, nil
}

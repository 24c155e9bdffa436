package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// soakResult is a long run with no fault but ordinary trouble: traffic on
// both gateways, 1 % random loss on each, and a CPU hog in the host's
// namespace for scheduler jitter. Every down is false; every check is
// spurious.
type soakResult struct {
	Mode           string  `json:"mode"`
	DurationS      float64 `json:"duration_s"`
	LossPercent    int     `json:"loss_percent"`
	FalseDowns     int     `json:"false_downs"`
	Suspects       int     `json:"suspects"`
	SpuriousChecks int     `json:"spurious_checks"`
	ChecksPerMin   float64 `json:"spurious_checks_per_minute"`
	ProbesPerS     float64 `json:"probes_per_s"` // both gateways together
	DaemonCPUPct   float64 `json:"daemon_cpu_percent_of_core"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	Delivered      float64 `json:"udp_delivered_ratio"`
}

// soakLoss is the random loss of the soak, on each gateway.
const soakLoss = 1

func benchSoak(ctx context.Context, e *env, o benchOpts, p benchProfile, w io.Writer) (*soakResult, error) {
	res := &soakResult{Mode: p.mode(len(o.profiles)), LossPercent: soakLoss}
	h := e.tu.Host
	d, err := freshDaemon(ctx, e, o, p.cfg)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	for n := 1; n <= 2; n++ {
		if err := e.tu.Inject(n, netlab.FaultLoss, netlab.FaultOptions{LossPercent: soakLoss}); err != nil {
			return nil, err
		}
		defer e.tu.Inject(n, netlab.FaultRecover, netlab.FaultOptions{})
	}
	// One busy process, bounded by timeout(1) as well as stopped by PID.
	hog, err := h.Start("timeout", strconv.Itoa(int(o.soak.Seconds())+30), "sha256sum", "/dev/zero")
	if err != nil {
		return nil, fmt.Errorf("starting the CPU hog: %w", err)
	}
	defer hog.Stop()
	ports, _, err := e.flows(demoFlows, "udp", netlab.EchoPort, 43000)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "  soak     %s for %v: %d pkt/s over %d UDP flows on both gateways, %d %% loss on each, a CPU hog in the host\n",
		res.Mode, o.soak, demoRate, demoFlows, soakLoss)
	m0, err := d.metrics()
	if err != nil {
		return nil, err
	}
	u0, _ := netlab.ReadUsage(d.p.Pid)
	t0 := time.Now()
	prog := &netlab.Progress{}
	run := startUDPProgress(ctx, h, ports, o.soak+30*time.Second, prog)
	sleepCtx(ctx, o.soak)
	tr, err := run.stop()
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	el := time.Since(t0)
	res.DurationS = el.Seconds()
	m1, err := d.metrics()
	if err != nil {
		return nil, err
	}
	if u1, err := netlab.ReadUsage(d.p.Pid); err == nil {
		res.DaemonCPUPct = (u1.CPU - u0.CPU).Seconds() / el.Seconds() * 100
		res.PeakRSSMB = float64(u1.PeakRSS) / (1 << 20)
	}
	res.SpuriousChecks = int(m1.sum("uplinkd_checks_total", "result", "answered") - m0.sum("uplinkd_checks_total", "result", "answered"))
	res.ChecksPerMin = float64(res.SpuriousChecks) / el.Minutes()
	res.ProbesPerS = (m1.sum("uplinkd_probes_sent_total", "", "") - m0.sum("uplinkd_probes_sent_total", "", "")) / el.Seconds()
	for _, l := range d.logs() {
		if l.Time.Before(t0) || l.attr("iface") == "" {
			continue
		}
		switch l.Msg {
		case "gateway down":
			res.FalseDowns++
		case "gateway suspect":
			res.Suspects++
		}
	}
	if dl := tr.Delivered(0, tr.End+time.Millisecond); dl.Sent > 0 {
		res.Delivered = float64(dl.Sent-dl.Lost) / float64(dl.Sent)
	}
	fmt.Fprintf(w, "  soak     %s: %d false downs, %d suspects, %d spurious checks (%.1f/min), %.2f probes/s, daemon CPU %.2f %% of a core, peak RSS %.1f MB, %.2f %% of UDP delivered\n",
		res.Mode, res.FalseDowns, res.Suspects, res.SpuriousChecks, res.ChecksPerMin, res.ProbesPerS, res.DaemonCPUPct, res.PeakRSSMB, res.Delivered*100)
	return res, nil
}

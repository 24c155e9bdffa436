package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// qualityResult is how long sustained random loss on gw1, under traffic,
// takes to make it degraded: the quality sampling of a gated gateway.
type qualityResult struct {
	Mode        string  `json:"mode"`
	LossPercent int     `json:"loss_percent"`
	Degraded    bool    `json:"degraded"`
	AfterS      float64 `json:"after_s"` // the limit when not degraded
	Reason      string  `json:"reason,omitempty"`
	ProbesPerS  float64 `json:"probes_per_s_gw1"`
}

// qualityLimit is how long the loss lasts at most: the target is degraded
// within 60 s.
const qualityLimit = 90 * time.Second

func benchQuality(ctx context.Context, e *env, o benchOpts, p benchProfile, loss int, w io.Writer) (*qualityResult, error) {
	res := &qualityResult{Mode: p.mode(len(o.profiles)), LossPercent: loss}
	h := e.tu.Host
	d, err := freshDaemon(ctx, e, o, p.cfg)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	ports, _, err := e.flows(demoFlows, "udp", netlab.EchoPort, 44000+100*p.idx)
	if err != nil {
		return nil, err
	}
	prog := &netlab.Progress{}
	run := startUDPProgress(ctx, h, ports, qualityLimit+30*time.Second, prog)
	defer run.stop()
	sleepCtx(ctx, 3*time.Second)
	fmt.Fprintf(w, "  quality  %s: %d %% random loss on gw1 under traffic, up to %v ...\n", res.Mode, loss, qualityLimit)
	m0, _ := d.metrics()
	if err := e.tu.Inject(1, netlab.FaultLoss, netlab.FaultOptions{LossPercent: loss}); err != nil {
		return nil, err
	}
	defer e.tu.Inject(1, netlab.FaultRecover, netlab.FaultOptions{})
	t0 := time.Now()
	res.Degraded = poll(ctx, qualityLimit, func() bool {
		s, err := d.status()
		if err != nil {
			return false
		}
		for _, g := range s.Gateways {
			if g.Name == "gw1" && g.State == "degraded" {
				res.Reason = g.Reason
				return true
			}
		}
		return false
	})
	el := time.Since(t0)
	res.AfterS = el.Seconds()
	if m1, err := d.metrics(); err == nil {
		sent := func(ss samples) float64 { return ss.sum("uplinkd_probes_sent_total", "gateway", "gw1") }
		res.ProbesPerS = (sent(m1) - sent(m0)) / el.Seconds()
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	verdict := fmt.Sprintf("not degraded within %.0f s", res.AfterS)
	if res.Degraded {
		verdict = fmt.Sprintf("degraded after %.1f s (%s)", res.AfterS, res.Reason)
	}
	fmt.Fprintf(w, "  quality  %s: %s; %.2f probes/s to gw1\n", res.Mode, verdict, res.ProbesPerS)
	return res, nil
}

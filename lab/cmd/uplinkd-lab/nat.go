package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// The NAT rows of the bench: a router with four uplinks, NAT out of each
// (masquerade, or `snat to` each uplink's address), 32 UDP flows and 4 TCP
// streams from a LAN client; g1 dies silently and comes back. uplinkd with
// its default policy (resilient groups on a router), uplinkd with classic
// multipath, and the kernel alone with a classic multipath default.

// natWith are the rows, each in a fresh NAT lab.
var natWith = []string{"uplinkd", "uplinkd-classic", "kernel"}

// natTimes: the fault at 2 s (the daemon has seen traffic by then), the
// return at 4 s, the end at 15 s, time enough for the slow recovery
// probes and the window after it.
const (
	natDieAt    = 2 * time.Second
	natReturnAt = 4 * time.Second
	natDuration = 15 * time.Second
)

type natResult struct {
	NAT          string `json:"nat"`
	With         string `json:"with"`
	Form         string `json:"form,omitempty"` // the form uplinkd reported
	Flows        int    `json:"flows"`
	Uplink1Flows int    `json:"uplink1_flows"`
	// Flows of g2..g4 that changed uplink (and so public address) at the
	// failover, and flows that changed uplink when g1 returned.
	MovedAtFailover   int `json:"moved_at_failover"`
	MovedAtReturn     int `json:"moved_at_return"`
	BusyMovedAtReturn int `json:"busy_moved_at_return"`
	// AnsweredMs: the outage of g1's flows, measured as the fault matrix
	// does (-1: none answered while g1 was dead); DetectMs: the first
	// packet lost to uplinkd's verdict.
	DetectMs   float64 `json:"detect_ms"`
	AnsweredMs float64 `json:"answered_ms"`
	// Conntrack: entries uplinkd flushed for g1, and of g2..g4's entries
	// before the fault, how many were the same entries after the route
	// change.
	Flushed      int `json:"conntrack_flushed"`
	OthersBefore int `json:"conntrack_others_before"`
	OthersKept   int `json:"conntrack_others_kept"`
	TCPErrors    int `json:"tcp_streams_broken"`
	HealthyTCP   int `json:"tcp_streams_broken_through_g2_g4"`
	// Kernel writes (routes and nexthop objects) at the failover and at
	// the return.
	WritesDown int `json:"writes_at_failover"`
	WritesUp   int `json:"writes_at_return"`
}

func (r *natResult) answered() string {
	if r.AnsweredMs < 0 {
		return "the whole fault"
	}
	return fmt.Sprintf("%.0f ms", r.AnsweredMs)
}

func (r *natResult) detected() string {
	if r.With == "kernel" {
		return "-"
	}
	if r.DetectMs < 0 {
		return "none"
	}
	return fmt.Sprintf("%.0f ms", r.DetectMs)
}

func (r *natResult) writes() string {
	if r.With == "kernel" {
		return "-"
	}
	return fmt.Sprintf("%d, %d", r.WritesDown, r.WritesUp)
}

// natWith names the row with the form uplinkd chose.
func (r *natResult) natWith() string {
	switch r.With {
	case "kernel":
		return "kernel alone (classic)"
	case "uplinkd":
		return "uplinkd default (" + r.Form + ")"
	}
	return "uplinkd " + r.Form
}

// benchNAT runs every row for both NAT modes.
func benchNAT(o benchOpts, stdout, stderr io.Writer) ([]*natResult, error) {
	var out []*natResult
	for _, mode := range []netlab.NATMode{netlab.NATMasquerade, netlab.NATSNAT} {
		for _, with := range natWith {
			r, err := natRun(o, mode, with, stdout, stderr)
			if err != nil {
				return out, fmt.Errorf("NAT lab, %s, %s: %w", mode, with, err)
			}
			fmt.Fprintf(stdout, "  nat      %-10s %-16s healthy flows moved %d at failover, %d at return; outage of g1's %d flows %s; conntrack of g2..g4 kept %d/%d, %d flushed; writes %d/%d\n",
				mode, with, r.MovedAtFailover, r.MovedAtReturn, r.Uplink1Flows, r.answered(), r.OthersKept, r.OthersBefore, r.Flushed, r.WritesDown, r.WritesUp)
			out = append(out, r)
		}
	}
	return out, nil
}

func natRun(o benchOpts, mode netlab.NATMode, with string, stdout, stderr io.Writer) (*natResult, error) {
	lab, err := netlab.New()
	if err != nil {
		return nil, fmt.Errorf("creating lab: %w", err)
	}
	ctx, stopSignals := lab.HandleSignals(context.Background(), 10*time.Second)
	defer stopSignals()
	res, err := natRunIn(ctx, lab, o, mode, with)
	if cerr := lab.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("tearing down: %w", cerr))
	}
	return res, err
}

func natRunIn(ctx context.Context, lab *netlab.Lab, o benchOpts, mode netlab.NATMode, with string) (*natResult, error) {
	n, err := netlab.NewNATLab(lab, mode)
	if err != nil {
		return nil, err
	}
	stopEcho, err := n.StartEcho()
	if err != nil {
		return nil, err
	}
	defer stopEcho()
	res := &natResult{NAT: string(mode), With: with, Flows: 32}
	cfg := netlab.FailoverConfig{Flows: 32, TCP: 4, Rate: 32 * 50, Duration: natDuration,
		DieAt: natDieAt, RouteDownAt: natDieAt + 300*time.Millisecond, ReturnAt: natReturnAt, RouteUpAt: natReturnAt + 10*time.Millisecond,
		Down: func() error { return nil }, Up: func() error { return nil }}
	var d *daemon
	if with == "kernel" {
		if err := n.ClassicDefault(1, 2, 3, 4); err != nil {
			return nil, err
		}
	} else {
		if d, err = natDaemon(ctx, n, o, mode, with); err != nil {
			return nil, err
		}
		defer d.stop()
		s, err := d.status()
		if err != nil {
			return nil, err
		}
		res.Form = s.Multipath
		w0, _ := natWrites(d)
		cfg.Down = func() error {
			_, err := waitState(ctx, d, "g1", "down", 3*time.Second)
			w, _ := natWrites(d)
			res.WritesDown = w - w0
			w0 = w
			return err
		}
		cfg.Up = func() error {
			_, err := waitState(ctx, d, "g1", "up", 9*time.Second)
			// The group write follows the verdict within milliseconds.
			sleepCtx(ctx, 100*time.Millisecond)
			w, _ := natWrites(d)
			res.WritesUp = w - w0
			return err
		}
	}
	fr, err := n.RunFailover(ctx, cfg)
	if err != nil {
		if d != nil {
			err = fmt.Errorf("%w\ndaemon output:\n%s", err, netlab.Tail(d.p.Output(), 3000))
		}
		return nil, err
	}
	res.Uplink1Flows, res.MovedAtFailover = fr.Uplink1Flows, fr.MovedAtFailover
	res.MovedAtReturn, res.BusyMovedAtReturn = fr.MovedAtReturn, fr.BusyMovedAtReturn
	res.OthersBefore, res.OthersKept, res.TCPErrors, res.HealthyTCP = fr.OthersBefore, fr.OthersKept, len(fr.TCPErrors), fr.HealthyTCPBroken
	outage, lost := uplink1Outage(fr)
	res.AnsweredMs = ms(outage)
	if outage < 0 {
		res.AnsweredMs = -1
	}
	res.DetectMs = -1
	if d != nil && lost >= 0 {
		fault := fr.Traffic.Start.Add(lost)
		for _, l := range d.logs() {
			if l.Msg == "gateway down" && l.attr("gateway") == "g1" && l.Time.After(fault) {
				res.DetectMs = ms(l.Time.Sub(fault))
				break
			}
		}
	}
	if d != nil {
		if m, err := d.metrics(); err == nil {
			res.Flushed = int(m.sum("uplinkd_conntrack_flushed_entries_total", "gateway", "g1"))
		}
	}
	return res, nil
}

// uplink1Outage measures g1's flows as the fault matrix measures every
// flow: for each, the longest stretch of sending time, from natDieAt-1s
// to natReturnAt, whose packets all went unanswered, from the last
// answered packet before it to the first answered one after it; the worst
// flow counts. lost is the send time of the first unanswered packet of
// any of them: the fault as the traffic saw it (the injection itself takes
// a few ms). outage is -1 if a flow got no answer before g1 came back
// (the kernel alone: those flows wait out the fault).
func uplink1Outage(fr *netlab.FailoverResult) (outage, lost time.Duration) {
	lost = -1
	for f, via := range fr.Before {
		if via != netlab.NATServerIf(1) {
			continue
		}
		fl := fr.Traffic.Flows[f]
		last := time.Duration(-1) // send time of the last answered packet
		gapFrom := time.Duration(-1)
		for seq, sent := range fl.Sent {
			if sent < natDieAt-time.Second || sent >= natReturnAt {
				continue
			}
			if fl.Recv[seq] < 0 || fl.Recv[seq] >= natReturnAt {
				if gapFrom < 0 {
					gapFrom = sent
					if lost < 0 || sent < lost {
						lost = sent
					}
				}
				continue
			}
			if gapFrom >= 0 && last >= 0 {
				outage = max(outage, sent-last)
			}
			gapFrom, last = -1, sent
		}
		if gapFrom >= 0 {
			return -1, lost
		}
	}
	return outage, lost
}

// natDaemon starts uplinkd on the NAT router with the default policy
// (with = "uplinkd") or classic multipath, and waits for all four
// gateways to be up.
func natDaemon(ctx context.Context, n *netlab.NATLab, o benchOpts, mode netlab.NATMode, with string) (*daemon, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "[daemon]\nlisten = %q\nlog_format = \"json\"\ncontrol_socket = \"\"\non_exit = \"leave\"\n", listen)
	if with == "uplinkd-classic" {
		b.WriteString("multipath = \"classic\"\n")
	}
	for u := 1; u <= netlab.NATUplinks; u++ {
		fmt.Fprintf(&b, "\n[gateway.g%d]\naddress = %q\ninterface = %q\n", u, netlab.NATGateway(u), netlab.NATRouterIf(u))
		if mode == netlab.NATSNAT {
			fmt.Fprintf(&b, "flush_conntrack = \"on_down\"\nsnat_addresses = [%q]\n", netlab.NATAddr(u))
		}
	}
	b.WriteString("\n[group.wan]\ngateways = [\"g1\", \"g2\", \"g3\", \"g4\"]\n")
	dir, err := os.MkdirTemp("", "uplinkd-lab-nat-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // read once, at start
	cfg := filepath.Join(dir, "uplinkd.toml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	d, err := startDaemon(ctx, n.Router, o.bin, cfg, listen)
	if err != nil {
		return nil, err
	}
	for u := 1; u <= netlab.NATUplinks; u++ {
		if _, err := waitState(ctx, d, fmt.Sprintf("g%d", u), "up", 15*time.Second); err != nil {
			d.stop()
			return nil, err
		}
	}
	return d, nil
}

// natWrites is uplinkd's successful route and nexthop writes so far.
func natWrites(d *daemon) (int, error) {
	m, err := d.metrics()
	if err != nil {
		return 0, err
	}
	n := 0.0
	for _, s := range m {
		if s.name == "uplinkd_netlink_writes_total" && s.labels["result"] == "ok" && (s.labels["object"] == "route" || s.labels["object"] == "nexthop") {
			n += s.value
		}
	}
	return int(n), nil
}

// waitState polls uplinkd's status until gateway name is in state want,
// and returns when it saw it.
func waitState(ctx context.Context, d *daemon, name, want string, max time.Duration) (time.Time, error) {
	var at time.Time
	last := ""
	ok := poll(ctx, max, func() bool {
		s, err := d.status()
		if err != nil {
			return false
		}
		for _, g := range s.Gateways {
			if g.Name == name {
				last = g.State
			}
		}
		at = time.Now()
		return last == want
	})
	if !ok {
		return at, fmt.Errorf("gateway %s not %s within %v (last %q)", name, want, max, last)
	}
	return at, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

const (
	demoRate  = 1000
	demoFlows = 4
	listen    = "127.0.0.1:9474" // as in contrib/examples/demo.toml
	proto212  = 212
)

func defaultUplinkd() string {
	exe, err := os.Executable()
	if err != nil {
		return "bin/uplinkd"
	}
	return filepath.Join(filepath.Dir(exe), "uplinkd")
}

var faultText = map[netlab.Fault]string{
	netlab.FaultBlackhole:    "drops every IP packet silently; carrier stays up, ARP still answered",
	netlab.FaultBlackholeARP: "drops everything, ARP included; carrier stays up",
	netlab.FaultLinkDown:     "carrier lost",
	netlab.FaultUpstream:     "alive and answering, but its path to the server is cut",
	netlab.FaultFlap:         "link down and up every second for 6 s",
	netlab.FaultLoss:         "drops 30 % of IP packets at random",
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "A gateway dies silently while traffic flows; uplinkd moves the traffic and brings it back.", stderr)
	bin := fs.String("uplinkd", defaultUplinkd(), "the uplinkd binary")
	cfg := fs.String("config", "contrib/examples/demo.toml", "the policy uplinkd runs with")
	faultName := fs.String("fault", "blackhole", "the fault: blackhole, blackhole-arp, linkdown, upstream, flap, loss")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fault, err := netlab.ParseFault(*faultName)
	if err != nil || fault == netlab.FaultRecover {
		fmt.Fprintf(stderr, "uplinkd-lab demo: bad --fault %q\n", *faultName)
		return 2
	}
	for _, f := range []string{*bin, *cfg} {
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(stderr, "uplinkd-lab demo: %v (run `make build` first?)\n", err)
			return 1
		}
	}
	cfgAbs, _ := filepath.Abs(*cfg)
	binAbs, _ := filepath.Abs(*bin)

	began := time.Now()
	st := newStyle(stdout)
	e, ctx, err := setupLab(context.Background(), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd-lab demo: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", st.bold("uplinkd demo"))
	fmt.Fprintf(stdout, "  lab        namespaces %s-{host,gw1,gw2,srv}, 198.18.0.0/15 only\n", e.lab.Prefix)
	fmt.Fprintf(stdout, "             host eth1 ── gw1 198.18.1.1 ──┐\n")
	fmt.Fprintf(stdout, "             host eth2 ── gw2 198.18.2.1 ──┴── srv 198.18.100.1 (service), 198.18.100.2 (probe target)\n")
	runErr := demo(ctx, e, stdout, st, binAbs, cfgAbs, fault)
	cerr := e.close()
	code := 0
	switch {
	case errors.Is(runErr, context.Canceled):
		fmt.Fprintf(stderr, "uplinkd-lab demo: interrupted\n")
		code = 130
	case runErr != nil:
		fmt.Fprintf(stderr, "uplinkd-lab demo: %v\n", runErr)
		code = 1
	}
	if cerr != nil {
		fmt.Fprintf(stderr, "uplinkd-lab demo: tearing down: %v\n", cerr)
		code = 1
	} else {
		fmt.Fprintf(stdout, "\n  cleanup    lab removed (namespaces, processes); %.1f s in all\n", time.Since(began).Seconds())
	}
	return code
}

// udpRun is traffic running in the background until stop is called.
type udpRun struct {
	stopc chan struct{}
	once  sync.Once
	done  chan struct{}
	res   *netlab.Traffic
	err   error
	start time.Time
}

func startUDP(ctx context.Context, h *netlab.Host, ports []int, max time.Duration, oneWay bool) *udpRun {
	u := &udpRun{stopc: make(chan struct{}), done: make(chan struct{})}
	startedc := make(chan time.Time, 1)
	go func() {
		defer close(u.done)
		u.res, u.err = netlab.RunUDP(ctx, h, netlab.UDPConfig{
			Target:   netip.AddrPortFrom(netlab.TargetAddr4, netlab.EchoPort),
			Flows:    len(ports),
			Ports:    ports,
			Rate:     demoRate,
			Duration: max,
			OneWay:   oneWay,
			Stop:     u.stopc,
		}, func(t time.Time) { startedc <- t })
		if u.err != nil {
			startedc <- time.Now()
		}
	}()
	u.start = <-startedc
	return u
}

func (u *udpRun) stop() (*netlab.Traffic, error) {
	u.once.Do(func() { close(u.stopc) })
	<-u.done
	return u.res, u.err
}

// pollMetrics samples uplinkd's counters every 25 ms until stop.
func pollMetrics(d *daemon) (p *metricsPoller, stop func()) {
	p = &metricsPoller{}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			if ss, err := d.metrics(); err == nil {
				p.add(snap{at: time.Now(), v: counterKeys(ss)})
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return p, func() { once.Do(func() { close(quit) }); <-done }
}

func demo(ctx context.Context, e *env, w io.Writer, st style, bin, cfg string, fault netlab.Fault) error {
	h := e.tu.Host
	mon, err := netlab.MonitorRoutes(h)
	if err != nil {
		return err
	}
	defer mon.Close()
	d, err := startDaemon(ctx, h, bin, cfg, listen)
	if err != nil {
		return err
	}
	defer d.stop()
	if !poll(ctx, 15*time.Second, e.routeUsesBoth) {
		return fmt.Errorf("uplinkd did not install a default route over both gateways within 15s; route now:\n%s\n%s", e.defaultRoute(), netlab.Tail(d.p.Output(), 3000))
	}
	fmt.Fprintf(w, "  uplinkd    running in the host namespace (pid %d), policy %s\n", d.p.Pid, relPath(cfg))
	ports, devOf, err := e.flows(demoFlows, "udp", netlab.EchoPort, 40000)
	if err != nil {
		return err
	}
	names := ifNames(h)

	// Phase 1: the fault.
	fmt.Fprintf(w, "\n%s\n", st.bold(fmt.Sprintf("1. gw1 fails: %s (%s)", fault, faultText[fault])))
	u := startUDP(ctx, h, ports, 60*time.Second, false)
	mp, stopPoll := pollMetrics(d)
	defer stopPoll()
	if !sleepCtx(ctx, 1500*time.Millisecond) {
		return ctx.Err()
	}
	before := e.defaultRoute()
	tf := time.Now()
	if err := e.tu.Inject(1, fault, netlab.FaultOptions{}); err != nil {
		return err
	}
	moved := poll(ctx, 20*time.Second, func() bool { return !e.routeUses(1) })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	sleepCtx(ctx, time.Second)
	after := e.defaultRoute()
	tr1, err := u.stop()
	if err != nil {
		return err
	}
	t1 := &timeline{origin: tf}
	var g1, g2 []string
	for _, p := range ports {
		if devOf[p] == netlab.HostUplink1If {
			g1 = append(g1, fmt.Sprint(p))
		} else {
			g2 = append(g2, fmt.Sprint(p))
		}
	}
	t1.add(u.start, "traffic", "%d pkt/s to %v:%d over %d UDP flows: ports %s via gw1, %s via gw2",
		demoRate, netlab.TargetAddr4, netlab.EchoPort, len(ports), strings.Join(g1, ","), strings.Join(g2, ","))
	t1.add(tf.Add(-time.Millisecond), "route", "before (ip route show default):\n%s", before)
	t1.addKey(tf, "FAULT", "gw1 %s", fault)
	now := time.Now()
	mp.rows(t1, "gw1", tf, firstRouteChange(mon, tf, now).Add(30*time.Millisecond), now)
	addLogRows(t1, d, tf, now)
	addRouteRows(t1, mon, names, tf, now)
	gap := tr1.LongestGap(tr1.Start.Sub(tr1.Start)+tf.Sub(tr1.Start)-200*time.Millisecond, tr1.End+time.Millisecond)
	del := tr1.Delivered(tf.Sub(tr1.Start)+gap.Len+200*time.Millisecond, tr1.End)
	if moved {
		t1.add(time.Now(), "route", "after (ip route show default):\n%s", after)
	}
	if gap.Valid && !gap.Open {
		t1.addKey(tr1.Start.Add(gap.Resumed), "traffic", "flowing again: flow :%d answered after %s; now %s",
			tr1.Flows[gap.Flow].Port, packets(gap.Lost, "lost packet"), viaText(del))
	}
	t1.print(w, st)
	fmt.Fprintln(w)
	switch {
	case !moved:
		fmt.Fprintf(w, "  %s  uplinkd did not move the default route off gw1 within 20 s\n", st.red("OUTAGE"))
	case gap.Open:
		fmt.Fprintf(w, "  %s  traffic did not come back before the end of the run (%d ms and counting)\n", st.red("OUTAGE"), gap.Len.Milliseconds())
	default:
		fmt.Fprintf(w, "  %s  %s  (the longest gap in replies, flow :%d, %s)\n",
			st.red("OUTAGE"), st.red(fmt.Sprintf("%d ms", gap.Len.Milliseconds())), tr1.Flows[gap.Flow].Port, packets(gap.Lost, "packet lost"))
	}

	// Phase 2: recovery and switch-back.
	fmt.Fprintf(w, "\n%s\n", st.bold("2. gw1 recovers: the fault is undone"))
	u = startUDP(ctx, h, ports, 60*time.Second, false)
	if !sleepCtx(ctx, time.Second) {
		return ctx.Err()
	}
	if err := e.tu.Inject(1, netlab.FaultRecover, netlab.FaultOptions{}); err != nil {
		return err
	}
	trec := time.Now()
	back := poll(ctx, 30*time.Second, func() bool { return e.routeUses(1) })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	sleepCtx(ctx, 1500*time.Millisecond)
	end := time.Now()
	tr2, err := u.stop()
	if err != nil {
		return err
	}
	t2 := &timeline{origin: trec}
	t2.addKey(trec, "RECOVER", "gw1 fault removed")
	mp.rows(t2, "gw1", trec, firstRouteChange(mon, trec, end).Add(30*time.Millisecond), end)
	addLogRows(t2, d, trec, end)
	addRouteRows(t2, mon, names, trec, end)
	from := trec.Sub(tr2.Start)
	if first := tr2.FirstVia(netlab.ServerGW1If, from); first >= 0 {
		t2.addKey(tr2.Start.Add(first), "traffic", "flows back on gw1; %s", viaText(tr2.Delivered(first+100*time.Millisecond, tr2.End)))
	}
	t2.add(end, "route", "after (ip route show default):\n%s", e.defaultRoute())
	t2.print(w, st)
	sb := tr2.LongestGap(from, tr2.End+time.Millisecond)
	changes := mon.Count(proto212, trec, end)
	fmt.Fprintln(w)
	if back {
		d2 := tr2.Delivered(from, tr2.End+time.Millisecond)
		verdict := st.green("no packet lost")
		if sb.Lost > 0 {
			verdict = fmt.Sprintf("longest gap in replies %s (%s)", st.red(fmt.Sprintf("%d ms", sb.Len.Milliseconds())), packets(sb.Lost, "packet lost"))
		}
		fmt.Fprintf(w, "  %s  %s, slowest reply %.1f ms; %s\n",
			st.bold("SWITCH-BACK"), verdict, float64(d2.MaxRTT.Microseconds())/1000,
			st.bold(fmt.Sprintf("%d route change(s)", changes)))
	} else {
		fmt.Fprintf(w, "  %s  gw1 was not back in the default route within 30 s\n", st.red("SWITCH-BACK"))
	}
	stopPoll()

	if s, err := d.status(); err == nil {
		fmt.Fprintf(w, "\n%s\n", st.bold("3. uplinkd's view (/status)"))
		for _, g := range s.Gateways {
			fmt.Fprintf(w, "  %-4s %-4s %-6s %-40q probes/s %.2f  flap penalty %.0f\n", g.Name, g.Interface, g.State, g.Reason, g.ProbesPerSecond, g.FlapPenalty)
		}
	}
	if u, err := netlab.ReadUsage(d.p.Pid); err == nil {
		fmt.Fprintf(w, "  daemon: %.2f s CPU in %.1f s, peak RSS %.1f MB\n", u.CPU.Seconds(), time.Since(d.startedAt()).Seconds(), float64(u.PeakRSS)/(1<<20))
	}
	if err := mon.Err(); err != nil {
		fmt.Fprintf(w, "  note: the route monitor reported %v; route counts may be low\n", err)
	}
	if !moved || !back {
		return errors.New("failover or switch-back did not happen")
	}
	return nil
}

// packets renders "1 packet lost", "3 packets lost": noun is the singular
// phrase, whose first word takes the plural.
func packets(n int, noun string) string {
	if n != 1 {
		first, rest, _ := strings.Cut(noun, " ")
		if first == "packet" {
			first = "packets"
		}
		noun = strings.TrimSpace(first + " " + rest)
		if strings.HasSuffix(noun, "lost packet") {
			noun = strings.TrimSuffix(noun, "packet") + "packets"
		}
	}
	return fmt.Sprintf("%d %s", n, noun)
}

func relPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// viaText says where replies came through, by gateway.
func viaText(d netlab.Delivery) string {
	var parts []string
	for _, gw := range []string{netlab.ServerGW1If, netlab.ServerGW2If} {
		if n := d.Via[gw]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d%% via %s", n*100/max(1, d.Sent-d.Lost), ifaceGateway(gw)))
		}
	}
	if len(parts) == 0 {
		return "no replies"
	}
	return strings.Join(parts, ", ")
}

// firstRouteChange is the time of uplinkd's first route change in
// [from, to), or to.
func firstRouteChange(mon *netlab.RouteMonitor, from, to time.Time) time.Time {
	for _, ev := range mon.Events() {
		if ev.Protocol == proto212 && !ev.At.Before(from) && ev.At.Before(to) {
			return ev.At
		}
	}
	return to
}

// addLogRows adds uplinkd's Info/Warn records between from and to.
func addLogRows(t *timeline, d *daemon, from, to time.Time) {
	var lastKey string
	for _, l := range d.logs() {
		if l.Time.IsZero() || l.Time.Before(from.Add(-5*time.Millisecond)) || l.Time.After(to) {
			continue
		}
		kind := "uplinkd"
		switch {
		case strings.Contains(l.Msg, "route") || l.attr("line") != "":
			// The kernel rows show the same change as the kernel saw it.
			continue
		case strings.HasPrefix(l.Msg, "gateway ") && l.attr("to") != "":
			kind = strings.ToUpper(l.attr("to"))
		case strings.Contains(l.Msg, "carrier") || strings.Contains(l.Msg, "link"):
			kind = "evidence"
		}
		// The detector and the daemon both report a transition; once is
		// enough for a person.
		key := l.Msg + "|" + l.attr("gateway") + "|" + l.attr("to")
		if key == lastKey {
			continue
		}
		lastKey = key
		if kind == "DOWN" || kind == "UP" {
			t.addKey(l.Time, kind, "%s", l.text())
		} else {
			t.add(l.Time, kind, "%s", l.text())
		}
	}
}

// addRouteRows adds the route changes uplinkd made (proto 212).
func addRouteRows(t *timeline, mon *netlab.RouteMonitor, names map[int]string, from, to time.Time) {
	for _, ev := range mon.Events() {
		if ev.Protocol != proto212 || ev.At.Before(from) || ev.At.After(to) {
			continue
		}
		t.addKey(ev.At, "kernel", "%s", fmtRoute(ev, names))
	}
}

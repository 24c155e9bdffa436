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

type benchOpts struct {
	bin          string
	profiles     []benchProfile // uplinkd's policies, each a mode of its own
	reps         int
	kernelReps   int
	nat          bool // the NAT rows (nat.go)
	faults       []netlab.Fault
	window       time.Duration // how long uplinkd may take to restore traffic
	kernelWindow time.Duration // how long the kernel alone may take
	steady       time.Duration // each steady-state measurement (idle, TCP, UDP)
	outDir       string
	skipKernel   bool
	logDir       string // each run's daemon output, when set
	soak         time.Duration
	bfdReps      int
	qualityLoss  int // percent; 0 skips the quality phase
}

// benchProfile is one policy the matrix runs uplinkd with.
type benchProfile struct {
	name, cfg string
	idx       int // its place in --config: ports of its own, clear of the previous one's TIME_WAIT
}

// mode is the run mode of a profile: "uplinkd" for the only one, else
// "uplinkd:<name>".
func (p benchProfile) mode(n int) string {
	if n == 1 {
		return "uplinkd"
	}
	return "uplinkd:" + p.name
}

// parseProfiles reads "name=path,name=path" (or a lone path).
func parseProfiles(v string) ([]benchProfile, error) {
	var out []benchProfile
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, path, ok := strings.Cut(part, "=")
		if !ok {
			name, path = strings.TrimSuffix(filepath.Base(part), ".toml"), part
		}
		out = append(out, benchProfile{name: name, cfg: path, idx: len(out)})
	}
	if len(out) == 0 {
		return nil, errors.New("no policy to run")
	}
	return out, nil
}

// modeBFD is the mode of the FRR bfdd row.
const modeBFD = "bfd"

// isUplinkd says the mode runs uplinkd (not the kernel alone or BFD).
func isUplinkd(mode string) bool { return mode == "uplinkd" || strings.HasPrefix(mode, "uplinkd:") }

// runResult is one fault run.
type runResult struct {
	Mode  string `json:"mode"` // "uplinkd", "uplinkd:<profile>", "kernel"
	Fault string `json:"fault"`
	Rep   int    `json:"rep"`

	Recovered   bool    `json:"recovered"`    // traffic flowed on every flow again within the window
	OutageMs    float64 `json:"outage_ms"`    // longest gap in replies (sender clock); the window length if not recovered
	ReplyGapMs  float64 `json:"reply_gap_ms"` // the same gap by receive times
	LostPackets int     `json:"lost_packets"` // in that gap

	SwitchedBack     bool    `json:"switched_back"`      // gw1 carried traffic again after recovery
	SwitchbackMs     float64 `json:"switchback_gap_ms"`  // longest gap in replies after recovery; 0: nothing lost
	SwitchbackLost   int     `json:"switchback_lost"`    // packets lost after recovery
	SwitchbackAfterS float64 `json:"switchback_after_s"` // recovery to first reply via gw1
	RouteChanges     int     `json:"recovery_route_changes"`
	MaxRTTms         float64 `json:"max_rtt_ms"`

	Transitions []string `json:"transitions,omitempty"` // uplinkd's gateway transitions, relative to the fault

	SpuriousChecks int `json:"spurious_checks"` // checks answered: the gateways were fine
	FalseDowns     int `json:"false_downs"`     // gw2 down at all, or gw1 down after the fault was removed

	DaemonCPUms  float64 `json:"daemon_cpu_ms,omitempty"`
	DaemonPeakMB float64 `json:"daemon_peak_rss_mb,omitempty"`
	Note         string  `json:"note,omitempty"`
}

// steadyResult is uplinkd without faults.
type steadyResult struct {
	Mode          string     `json:"mode"`
	ProbesIdle    [2]float64 `json:"probes_per_s_idle"` // gw1, gw2
	ProbesTCP     [2]float64 `json:"probes_per_s_tcp"`
	ProbesUDP     [2]float64 `json:"probes_per_s_udp_one_way"` // after a warm-up of one window, over three
	IdleCPUPct    float64    `json:"idle_cpu_percent_of_core"`
	PeakRSSMB     float64    `json:"peak_rss_mb"`
	WindowSeconds float64    `json:"window_s"`
	TCPBytes      int64      `json:"tcp_bytes"`
	// SpuriousChecks are the checks answered over the three phases.
	SpuriousChecks int `json:"spurious_checks"`
}

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", "The fault matrix at 1,000 packets/s over 4 UDP flows, uplinkd against the kernel alone.", stderr)
	var o benchOpts
	fs.StringVar(&o.bin, "uplinkd", defaultUplinkd(), "the uplinkd binary")
	cfg := fs.String("config", "new=contrib/examples/demo.toml,old=contrib/examples/demo-v1.toml",
		"the policies uplinkd runs with, name=path separated by commas: every fault runs with each")
	fs.IntVar(&o.reps, "reps", 5, "runs of each fault with uplinkd (each policy); 0 skips them")
	fs.IntVar(&o.kernelReps, "kernel-reps", 2, "runs of each fault with the kernel alone")
	faults := fs.String("faults", "blackhole,blackhole-arp,linkdown,upstream,flap,loss", "faults to run")
	fs.DurationVar(&o.window, "window", 20*time.Second, "how long uplinkd may take to restore traffic")
	fs.DurationVar(&o.kernelWindow, "kernel-window", 60*time.Second, "how long the kernel alone may take")
	fs.DurationVar(&o.steady, "steady", 10*time.Second, "length of each probe-rate measurement")
	fs.StringVar(&o.outDir, "out", "out", "directory for bench.csv and bench.json")
	fs.BoolVar(&o.skipKernel, "no-kernel", false, "skip the kernel baseline")
	fs.IntVar(&o.qualityLoss, "quality-loss", 20, "sustained random loss (percent) on gw1 under traffic, per policy: how soon it is degraded; 0 skips it")
	fs.IntVar(&o.bfdReps, "bfd-reps", 3, "runs of each fault with FRR's BGP and BFD at 50 ms × 3 instead of uplinkd; 0 skips them")
	fs.StringVar(&o.logDir, "logs", "", "keep each run's daemon output in this directory")
	fs.BoolVar(&o.nat, "nat", true, "the NAT rows: a four-uplink NAT router, g1 dies and returns under 32 UDP flows (uplinkd's default, uplinkd classic, the kernel alone; masquerade and snat)")
	fs.DurationVar(&o.soak, "soak", 10*time.Minute, "the soak with the first policy (traffic on both gateways, 1 % loss, a CPU hog); 0 skips it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, name := range strings.Split(*faults, ",") {
		if name == "none" {
			continue
		}
		f, err := netlab.ParseFault(strings.TrimSpace(name))
		if err != nil || f == netlab.FaultRecover {
			fmt.Fprintf(stderr, "uplinkd-lab bench: bad fault %q\n", name)
			return 2
		}
		o.faults = append(o.faults, f)
	}
	if o.reps < 0 || o.kernelReps < 0 || o.bfdReps < 0 {
		fmt.Fprintf(stderr, "uplinkd-lab bench: --reps, --kernel-reps and --bfd-reps must be >= 0\n")
		return 2
	}
	var err error
	if o.profiles, err = parseProfiles(*cfg); err != nil {
		fmt.Fprintf(stderr, "uplinkd-lab bench: --config: %v\n", err)
		return 2
	}
	for i, f := range append([]string{o.bin}, profilePaths(o.profiles)...) {
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(stderr, "uplinkd-lab bench: %v (run `make build` first?)\n", err)
			return 1
		}
		abs, _ := filepath.Abs(f)
		if i == 0 {
			o.bin = abs
		} else {
			o.profiles[i-1].cfg = abs
		}
	}

	began := time.Now()
	var runs []runResult
	var steady []*steadyResult
	var soak *soakResult
	var quality []*qualityResult
	code := 0
	st := newStyle(stdout)
	fmt.Fprintf(stdout, "%s: %d faults × %d runs with uplinkd", st.bold("uplinkd bench"), len(o.faults), o.reps)
	if !o.skipKernel && o.kernelReps > 0 {
		fmt.Fprintf(stdout, ", × %d with the kernel alone (window %v)", o.kernelReps, o.kernelWindow)
	}
	fmt.Fprintf(stdout, "; %d pkt/s over %d UDP flows\n", demoRate, demoFlows)

	// uplinkd: one lab for the matrix and the steady-state figures; the
	// profiles take turns run by run, so that other load on the machine
	// hits them alike.
	err = withLab(stdout, stderr, func(ctx context.Context, e *env) error {
		for _, p := range o.profiles {
			if o.steady <= 0 {
				break
			}
			s, err := benchSteady(ctx, e, o, p, stdout)
			if err != nil {
				return fmt.Errorf("measuring steady state with %s: %w", p.name, err)
			}
			steady = append(steady, s)
		}
		for _, f := range o.faults {
			for rep := 1; rep <= repsOf(f, o.reps); rep++ {
				for _, p := range o.profiles {
					r, err := benchRun(ctx, e, o, p.mode(len(o.profiles)), p.cfg, f, rep)
					if err != nil {
						return fmt.Errorf("running %s #%d with uplinkd (%s): %w", f, rep, p.name, err)
					}
					printRun(stdout, r)
					runs = append(runs, r)
				}
			}
		}
		for _, p := range o.profiles {
			if o.qualityLoss <= 0 {
				break
			}
			q, err := benchQuality(ctx, e, o, p, o.qualityLoss, stdout)
			if err != nil {
				return fmt.Errorf("measuring quality sampling with %s: %w", p.name, err)
			}
			quality = append(quality, q)
		}
		if o.soak > 0 {
			var err error
			if soak, err = benchSoak(ctx, e, o, o.profiles[0], stdout); err != nil {
				return fmt.Errorf("soaking: %w", err)
			}
		}
		return nil
	})
	code = max(code, labCode(stderr, err))
	// FRR's BFD, in a fresh lab: nothing of uplinkd's left behind.
	if code == 0 && o.bfdReps > 0 {
		err := withLab(stdout, stderr, func(ctx context.Context, e *env) error {
			f, err := startFRR(e)
			if err != nil {
				return err
			}
			defer f.stop()
			if !poll(ctx, 60*time.Second, e.routeUsesBoth) {
				return fmt.Errorf("FRR: no BGP multipath default within 60s:\n%s\n%s", e.defaultRoute(), f.output())
			}
			for _, fl := range o.faults {
				for rep := 1; rep <= min(o.bfdReps, repsOf(fl, o.bfdReps)); rep++ {
					r, err := benchRun(ctx, e, o, modeBFD, "", fl, rep)
					if err != nil {
						return fmt.Errorf("running %s #%d with BFD: %w", fl, rep, err)
					}
					printRun(stdout, r)
					runs = append(runs, r)
				}
			}
			return nil
		})
		code = max(code, labCode(stderr, err))
	}
	// The kernel alone, in a fresh lab: nothing of uplinkd's left behind.
	if code == 0 && !o.skipKernel && o.kernelReps > 0 {
		err := withLab(stdout, stderr, func(ctx context.Context, e *env) error {
			if err := e.kernelBaseline(); err != nil {
				return err
			}
			for _, f := range o.faults {
				for rep := 1; rep <= o.kernelReps; rep++ {
					r, err := benchRun(ctx, e, o, "kernel", "", f, rep)
					if err != nil {
						return fmt.Errorf("running %s #%d with the kernel alone: %w", f, rep, err)
					}
					printRun(stdout, r)
					runs = append(runs, r)
				}
			}
			return nil
		})
		code = max(code, labCode(stderr, err))
	}
	var nat []*natResult
	if code == 0 && o.nat {
		var err error
		nat, err = benchNAT(o, stdout, stderr)
		code = max(code, labCode(stderr, err))
	}
	if len(runs) == 0 && soak == nil && len(quality) == 0 && len(nat) == 0 {
		return code
	}
	rep := newReport(runs, steady, o, time.Since(began))
	rep.Soak, rep.Quality, rep.NAT = soak, quality, nat
	fmt.Fprintln(stdout)
	rep.printTable(stdout, st)
	if err := rep.write(o.outDir); err != nil {
		fmt.Fprintf(stderr, "uplinkd-lab bench: %v\n", err)
		code = 1
	} else {
		fmt.Fprintf(stdout, "\nwritten: %s, %s (%.1f min in all)\n", filepath.Join(o.outDir, "bench.csv"), filepath.Join(o.outDir, "bench.json"), time.Since(began).Minutes())
	}
	return code
}

// repsOf bounds the runs of a flap, each of which waits for flap damping
// to release the gateway, to keep the bench under a quarter of an hour.
func repsOf(f netlab.Fault, reps int) int {
	if f == netlab.FaultFlap {
		return min(reps, 3)
	}
	return reps
}

// withLab runs fn in a fresh lab and always tears it down.
func withLab(stdout, stderr io.Writer, fn func(ctx context.Context, e *env) error) error {
	e, ctx, err := setupLab(context.Background(), stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  lab      %s-{host,gw1,gw2,srv}\n", e.lab.Prefix)
	err = fn(ctx, e)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // interrupted
	}
	if cerr := e.close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("tearing down: %w", cerr))
	}
	return err
}

func printRun(w io.Writer, r runResult) {
	out := "never (>" + fmt.Sprintf("%.0f s", r.OutageMs/1000) + ")"
	if r.Recovered {
		out = fmt.Sprintf("%.0f ms", r.OutageMs)
	}
	back := "not back"
	if r.SwitchedBack {
		gap := "no loss"
		if r.SwitchbackLost > 0 {
			gap = fmt.Sprintf("gap %.0f ms (%d lost)", r.SwitchbackMs, r.SwitchbackLost)
		}
		back = fmt.Sprintf("%s after %.2f s, %d route change(s)", gap, r.SwitchbackAfterS, r.RouteChanges)
	}
	note := ""
	if r.Note != "" {
		note = "  [" + r.Note + "]"
	}
	fmt.Fprintf(w, "  %-8s %-13s #%d  outage %-14s switch-back %s%s\n", r.Mode, r.Fault, r.Rep, out, back, note)
}

// resetHost clears what a previous run left in the host's neighbour cache,
// so each run starts from the same state.
func resetHost(e *env) error {
	for _, dev := range []string{netlab.HostUplink1If, netlab.HostUplink2If} {
		if _, err := e.tu.Host.MustRun("ip", "neigh", "flush", "dev", dev); err != nil {
			return err
		}
	}
	for _, gw := range []netip.Addr{netlab.GW1Addr4, netlab.GW2Addr4} {
		_ = e.tu.Host.Ping("-c", "1", "-W", "1", gw.String())
	}
	return nil
}

// benchRun is one fault on gw1 while traffic flows: inject, wait until
// every flow is answered again (or the window ends), recover, wait for the
// switch-back, and measure.
func benchRun(ctx context.Context, e *env, o benchOpts, mode, cfg string, f netlab.Fault, rep int) (runResult, error) {
	r := runResult{Mode: mode, Fault: string(f), Rep: rep}
	if err := resetHost(e); err != nil {
		return r, err
	}
	h := e.tu.Host
	window := o.kernelWindow
	if mode == modeBFD {
		window = o.window
	}
	var d *daemon
	if isUplinkd(mode) {
		window = o.window
		var err error
		// A fresh daemon per run: no flap penalty carried over from the
		// previous run of the same fault.
		if d, err = startDaemon(ctx, h, o.bin, cfg, listen); err != nil {
			return r, err
		}
		defer d.stop()
		if o.logDir != "" {
			defer func() {
				_ = os.MkdirAll(o.logDir, 0o755)
				_ = os.WriteFile(filepath.Join(o.logDir, fmt.Sprintf("%s-%s-%d.log", strings.ReplaceAll(mode, ":", "-"), f, rep)), []byte(d.p.Output()), 0o644)
			}()
		}
	}
	if !poll(ctx, 30*time.Second, e.routeUsesBoth) {
		return r, fmt.Errorf("no default route over both gateways within 30s:\n%s", e.defaultRoute())
	}
	ports, _, err := e.flows(demoFlows, "udp", netlab.EchoPort, 40000)
	if err != nil {
		return r, err
	}
	mon, err := netlab.MonitorRoutes(h)
	if err != nil {
		return r, err
	}
	defer mon.Close()
	var u0 netlab.Usage
	if d != nil {
		u0, _ = netlab.ReadUsage(d.p.Pid)
	}
	prog := &netlab.Progress{}
	run := startUDPProgress(ctx, h, ports, 2*window+60*time.Second, prog)
	defer run.stop()
	if !sleepCtx(ctx, 1500*time.Millisecond) {
		return r, ctx.Err()
	}
	tf := time.Now()
	if err := e.tu.Inject(1, f, netlab.FaultOptions{}); err != nil {
		return r, err
	}
	// Survived: every flow answered within the last 40 ms (10 of its
	// packets), and for a flap only once the flapping is over. Loss is
	// never "survived": it lasts a fixed 5 s.
	switch f {
	case netlab.FaultLoss:
		sleepCtx(ctx, 5*time.Second)
		r.Recovered = true
	default:
		flapDone := e.tu.GW1.FlapDone(netlab.GWDownlinkIf)
		r.Recovered = poll(ctx, window, func() bool {
			if flapDone != nil {
				select {
				case <-flapDone:
				default:
					return false
				}
			}
			return time.Since(tf) > 100*time.Millisecond && prog.Flowing(40*time.Millisecond)
		})
		if r.Recovered {
			sleepCtx(ctx, time.Second)
		}
	}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	if err := e.tu.Inject(1, netlab.FaultRecover, netlab.FaultOptions{}); err != nil {
		return r, err
	}
	// Recovery starts once the fault is gone: removing it takes a few ms
	// (nft in the gateway's namespace), during which it still applies.
	trec := time.Now()
	backWait := 15 * time.Second
	if f == netlab.FaultFlap {
		// Flap damping keeps a flapping gateway out until its penalty
		// has decayed below reuse_below: close to a minute after three
		// flaps with the default profile.
		backWait = 75 * time.Second
	}
	r.SwitchedBack = poll(ctx, backWait, func() bool {
		return prog.LastVia(netlab.ServerGW1If).After(trec) && (d == nil || e.routeUses(1))
	})
	if r.SwitchedBack {
		sleepCtx(ctx, 1500*time.Millisecond)
	}
	end := time.Now()
	tr, err := run.stop()
	if err != nil {
		return r, err
	}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	off := func(t time.Time) time.Duration { return t.Sub(tr.Start) }
	gap := tr.LongestGap(off(tf)-200*time.Millisecond, off(trec))
	if gap.Open && f != netlab.FaultLoss {
		r.Recovered = false
	}
	r.OutageMs = ms(gap.Len)
	r.ReplyGapMs = ms(gap.RecvLen)
	r.LostPackets = gap.Lost
	if !r.Recovered {
		r.OutageMs = ms(trec.Sub(tf))
		r.ReplyGapMs = r.OutageMs
	}
	sb := tr.LongestGap(off(trec), tr.End+time.Millisecond)
	r.SwitchbackMs, r.SwitchbackLost = ms(sb.Len), 0
	dl := tr.Delivered(off(trec), tr.End+time.Millisecond)
	r.SwitchbackLost = dl.Lost
	r.MaxRTTms = ms(dl.MaxRTT)
	if first := tr.FirstVia(netlab.ServerGW1If, off(trec)); first >= 0 {
		r.SwitchbackAfterS = (first - off(trec)).Seconds()
	}
	proto := proto212
	if !isUplinkd(mode) {
		proto = -1 // any route change at all
	}
	r.RouteChanges = mon.Count(proto, trec, end)
	if d != nil {
		if u1, err := netlab.ReadUsage(d.p.Pid); err == nil {
			r.DaemonCPUms = ms(u1.CPU - u0.CPU)
			r.DaemonPeakMB = float64(u1.PeakRSS) / (1 << 20)
		}
		for _, l := range d.logs() {
			if !strings.HasPrefix(l.Msg, "gateway ") || l.attr("to") == "" || l.attr("iface") == "" {
				continue
			}
			if !l.Time.Before(tf) {
				r.Transitions = append(r.Transitions, fmt.Sprintf("%s %s %s→%s (%s) %s",
					offset(l.Time, tf), l.attr("gateway"), l.attr("from"), l.attr("to"), l.attr("cause"), l.attr("reason")))
			}
			if falseDown(l, trec) {
				r.FalseDowns++
			}
		}
		if ms, err := d.metrics(); err == nil {
			r.SpuriousChecks = int(ms.sum("uplinkd_checks_total", "result", "answered"))
		}
		if s, err := d.status(); err == nil && !r.SwitchedBack {
			for _, g := range s.Gateways {
				if g.Name == "gw1" && g.Damped {
					r.Note = "gw1 damped (flap penalty " + fmt.Sprintf("%.0f", g.FlapPenalty) + ")"
				}
			}
		}
	}
	if err := mon.Err(); err != nil {
		r.Note = strings.TrimSpace(r.Note + " route monitor: " + err.Error())
	}
	if tr.Errors > 0 {
		r.Note = strings.TrimSpace(fmt.Sprintf("%s %d send errors", r.Note, tr.Errors))
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// falseDown says a transition is a down the faults do not explain: gw2
// is never faulted, and gw1's fault is gone from trec on.
func falseDown(l logLine, trec time.Time) bool {
	if l.attr("to") != "down" {
		return false
	}
	return l.attr("gateway") == "gw2" || (l.attr("gateway") == "gw1" && !l.Time.Before(trec))
}

// startUDPProgress is startUDP with a live view.
func startUDPProgress(ctx context.Context, h *netlab.Host, ports []int, max time.Duration, p *netlab.Progress) *udpRun {
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
			Stop:     u.stopc,
			Progress: p,
		}, func(t time.Time) { startedc <- t })
		if u.err != nil {
			startedc <- time.Now()
		}
	}()
	u.start = <-startedc
	return u
}

// benchSteady measures uplinkd with no fault: probes toward each gateway
// while idle, under TCP traffic and under one-way UDP traffic, and its CPU
// use while idle.
func benchSteady(ctx context.Context, e *env, o benchOpts, p benchProfile, w io.Writer) (*steadyResult, error) {
	h := e.tu.Host
	d, err := freshDaemon(ctx, e, o, p.cfg)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	// Start-up probes and neighbour resolution are not steady state.
	sleepCtx(ctx, 3*time.Second)
	s := &steadyResult{Mode: p.mode(len(o.profiles)), WindowSeconds: o.steady.Seconds()}
	measure := func(load func() error) ([2]float64, time.Duration, error) {
		c0, err := e.counts()
		if err != nil {
			return [2]float64{}, 0, err
		}
		u0, _ := netlab.ReadUsage(d.p.Pid)
		t0 := time.Now()
		if err := load(); err != nil {
			return [2]float64{}, 0, err
		}
		el := time.Since(t0)
		c1, err := e.counts()
		if err != nil {
			return [2]float64{}, 0, err
		}
		u1, _ := netlab.ReadUsage(d.p.Pid)
		var rate [2]float64
		for i := range rate {
			rate[i] = float64(c1[i].Sub(c0[i]).Echo()) / el.Seconds()
		}
		// CPU time per second of wall time.
		return rate, time.Duration(float64(u1.CPU-u0.CPU) / el.Seconds()), nil
	}
	fmt.Fprintf(w, "  steady   idle for %v ...\n", o.steady)
	var cpuShare time.Duration
	s.ProbesIdle, cpuShare, err = measure(func() error { sleepCtx(ctx, o.steady); return ctx.Err() })
	if err != nil {
		return nil, err
	}
	s.IdleCPUPct = cpuShare.Seconds() * 100

	fmt.Fprintf(w, "  steady   TCP streams through both gateways for %v ...\n", o.steady)
	tports, _, err := e.flows(2, "tcp", netlab.DiscardPort, 41000+100*p.idx)
	if err != nil {
		return nil, err
	}
	s.ProbesTCP, _, err = measure(func() error {
		var wg sync.WaitGroup
		errs := make([]error, len(tports))
		sent := make([]int64, len(tports))
		for i, p := range tports {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent[i], errs[i] = netlab.RunTCP(ctx, h, netlab.TCPConfig{
					Target:    netip.AddrPortFrom(netlab.TargetAddr4, netlab.DiscardPort),
					LocalPort: p, Chunk: 1000, Rate: 100, Duration: o.steady,
				})
			}()
		}
		wg.Wait()
		for _, n := range sent {
			s.TCPBytes += n
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(w, "  steady   one-way UDP (no replies) through both gateways for %v, measured over the last %v ...\n", 4*o.steady, 3*o.steady)
	uports, _, err := e.flows(demoFlows, "udp", netlab.EchoPort, 42000+100*p.idx)
	if err != nil {
		return nil, err
	}
	// The hold-off backs off while checks keep being answered: what one-way
	// traffic costs in the long run is measured after a warm-up of one
	// steady period, over three.
	udpDone := make(chan error, 1)
	go func() {
		_, err := netlab.RunUDP(ctx, h, netlab.UDPConfig{
			Target: netip.AddrPortFrom(netlab.TargetAddr4, netlab.EchoPort),
			Flows:  len(uports), Ports: uports, Rate: demoRate, Duration: 4 * o.steady, OneWay: true,
		}, nil)
		udpDone <- err
	}()
	sleepCtx(ctx, o.steady)
	s.ProbesUDP, _, err = measure(func() error { return <-udpDone })
	if err != nil {
		return nil, err
	}
	if u, err := netlab.ReadUsage(d.p.Pid); err == nil {
		s.PeakRSSMB = float64(u.PeakRSS) / (1 << 20)
	}
	if ms, err := d.metrics(); err == nil {
		s.SpuriousChecks = int(ms.sum("uplinkd_checks_total", "result", "answered"))
	}
	fmt.Fprintf(w, "  steady   %s: %d spurious checks; probes/s gw1,gw2: idle %.2f,%.2f  TCP %.2f,%.2f  UDP one-way %.2f,%.2f; idle CPU %.2f %%, peak RSS %.1f MB\n",
		s.Mode, s.SpuriousChecks, s.ProbesIdle[0], s.ProbesIdle[1], s.ProbesTCP[0], s.ProbesTCP[1], s.ProbesUDP[0], s.ProbesUDP[1], s.IdleCPUPct, s.PeakRSSMB)
	return s, nil
}

// labCode reports a lab's error and returns the exit code it calls for:
// 0, 1, or 130 when interrupted.
func labCode(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "uplinkd-lab bench: %v\n", err)
	if errors.Is(err, context.Canceled) {
		return 130
	}
	return 1
}

// freshDaemon resets the host's neighbours, starts uplinkd with cfg in
// the host and waits for its
// default route over both gateways; the caller stops it.
func freshDaemon(ctx context.Context, e *env, o benchOpts, cfg string) (*daemon, error) {
	if err := resetHost(e); err != nil {
		return nil, err
	}
	d, err := startDaemon(ctx, e.tu.Host, o.bin, cfg, listen)
	if err != nil {
		return nil, err
	}
	if !poll(ctx, 15*time.Second, e.routeUsesBoth) {
		d.stop()
		return nil, fmt.Errorf("no default route over both gateways within 15s:\n%s", e.defaultRoute())
	}
	return d, nil
}

func profilePaths(ps []benchProfile) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.cfg
	}
	return out
}

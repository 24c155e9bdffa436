package detector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/uplinkd/uplinkd/policy"
)

// Config is what New needs.
type Config struct {
	Policy  *policy.Policy
	Logger  *slog.Logger
	Metrics *Metrics // may be nil; NewMetrics(prometheus.Registerer)
	Netlink Netlink  // may be nil: the real kernel of the current namespace
	// Prober may be nil: raw sockets in the namespace of Netlink when it
	// is a *Kernel, else in the current namespace.
	Prober Prober
	// Now may be nil: time.Now. Tests inject a clock; only monotonic
	// differences of its readings are used for timing.
	Now func() time.Time
	// TransitionBuffer is the capacity of Transitions(); 0 means 1024.
	TransitionBuffer int
}

// Detector watches every gateway of the policy and reports transitions.
type Detector struct {
	log   *slog.Logger
	met   *Metrics
	nl    Netlink
	pr    Prober
	ownNL bool
	ownPr bool
	now   func() time.Time

	trans chan Transition
	kick  chan struct{}
	set   watchSet

	mu             sync.Mutex
	pendingPolicy  *policy.Policy
	pendingStandby map[string]bool
	status         []statusEntry
	started        bool
	cancel         context.CancelFunc
	done           chan struct{}

	closeOnce sync.Once
	closeErr  error

	// owned by the health goroutine
	pol     *policy.Policy
	gws     map[string]*gwState
	ifaces  map[string]*ifaceState
	standby map[string]bool
	results chan probeResult
	wg      sync.WaitGroup
}

type gwState struct {
	g         *policy.Gateway
	m         *Machine
	nextProbe time.Time
	lastSent  time.Time
	inflight  int
	gen       int // bumped when the gateway is replaced, so stale results are dropped
	rounds    []time.Time
	hw        net.HardwareAddr
	silent    bool // last traffic sample was silent
}

type ifaceState struct {
	name      string
	index     int
	carrier   bool
	known     bool
	deleted   bool
	lastTx    time.Time
	lastRx    time.Time
	mode      LinkMode
	modeKnown bool
}

type statusEntry struct {
	GatewayStatus
	lastConf, lastRx, lastTx, lastGood time.Time
}

// maxInflight bounds concurrent probe rounds per gateway: with a fast
// interval shorter than the timeout, rounds overlap.
const maxInflight = 8

// housekeeping is the longest the health goroutine sleeps: damping decay
// and the status snapshot (flap penalty, loss window) are refreshed at
// least this often. Everything with a deadline (probes, link hold) is
// woken for at its time; each wake-up of an idle daemon costs ~0.1 % of
// a core, so this is as long as a stale penalty figure can be.
const housekeeping = time.Second

// New validates the policy and prepares a detector; Run starts it.
func New(cfg Config) (*Detector, error) {
	if cfg.Policy == nil {
		return nil, errors.New("creating detector: no policy")
	}
	d := &Detector{log: cfg.Logger, met: cfg.Metrics, nl: cfg.Netlink, pr: cfg.Prober, now: cfg.Now,
		kick: make(chan struct{}, 1), gws: map[string]*gwState{}, ifaces: map[string]*ifaceState{},
		standby: map[string]bool{}, results: make(chan probeResult, 64), done: make(chan struct{})}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	n := cfg.TransitionBuffer
	if n <= 0 {
		n = 1024
	}
	d.trans = make(chan Transition, n)
	if d.nl == nil {
		k, err := NewKernel(netns.None())
		if err != nil {
			return nil, fmt.Errorf("creating detector: %w", err)
		}
		d.nl, d.ownNL = k, true
	}
	if d.pr == nil {
		ns := netns.None()
		if k, ok := d.nl.(*Kernel); ok {
			ns = k.Namespace()
		}
		p, err := NewSocketProber(ns, d.log)
		if err != nil {
			if d.ownNL {
				d.nl.Close()
			}
			return nil, fmt.Errorf("creating detector: %w", err)
		}
		d.pr, d.ownPr = p, true
	}
	d.apply(cfg.Policy, d.now())
	return d, nil
}

// Transitions returns the channel of state changes. It is buffered; the
// daemon must drain it promptly, or the health goroutine waits.
func (d *Detector) Transitions() <-chan Transition { return d.trans }

// Update hands a reloaded policy to the detector. Gateways whose name,
// address and interface are unchanged keep their state; it never blocks.
func (d *Detector) Update(p *policy.Policy) error {
	if p == nil {
		return errors.New("updating detector: no policy")
	}
	d.mu.Lock()
	d.pendingPolicy = p
	d.mu.Unlock()
	d.wake()
	return nil
}

// SetStandby names the gateways that carry no traffic by policy (a backup
// tier): they get only the profile's slow standby check.
func (d *Detector) SetStandby(names map[string]bool) {
	d.mu.Lock()
	d.pendingStandby = maps.Clone(names)
	if d.pendingStandby == nil {
		d.pendingStandby = map[string]bool{}
	}
	d.mu.Unlock()
	d.wake()
}

func (d *Detector) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Status returns a snapshot of every gateway, sorted by name. Safe from any
// goroutine.
func (d *Detector) Status() []GatewayStatus {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]GatewayStatus, len(d.status))
	age := func(t time.Time) time.Duration {
		if t.IsZero() {
			return -1
		}
		return now.Sub(t)
	}
	for i, e := range d.status {
		s := e.GatewayStatus
		s.LastConfirmedAge, s.LastRxAge, s.LastTxAge, s.LastGoodProbeAge = age(e.lastConf), age(e.lastRx), age(e.lastTx), age(e.lastGood)
		out[i] = s
	}
	return out
}

// Close stops Run (if running), waits for it and releases what New opened.
// Idempotent.
func (d *Detector) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		cancel, started := d.cancel, d.started
		d.started = true // a Run after Close returns at once
		d.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		if started && cancel != nil {
			<-d.done
		}
		var errs []error
		if d.ownPr {
			errs = append(errs, d.pr.Close())
		}
		if d.ownNL {
			errs = append(errs, d.nl.Close())
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// Run starts the watchers, the probers and the health loop, and returns
// once ctx is done (or Close is called) and every goroutine has stopped.
func (d *Detector) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.started {
		d.mu.Unlock()
		return errors.New("running detector: already started or closed")
	}
	d.started = true
	ctx, cancel := context.WithCancel(ctx)
	d.cancel = cancel
	d.mu.Unlock()
	defer close(d.done)
	defer cancel()

	linkCh := make(chan linkInfo, 64)
	neighCh := make(chan neighInfo, 256)
	trafficCh := make(chan trafficEvent, 64)
	modeCh := make(chan modeEvent, 16)
	watchers := []interface{ Run(context.Context) error }{
		&linkWatcher{nl: d.nl, log: d.log, set: &d.set, out: linkCh},
		&neighWatcher{nl: d.nl, log: d.log, set: &d.set, out: neighCh},
		&trafficPoller{nl: d.nl, log: d.log, set: &d.set, out: trafficCh, now: d.now},
		&modePoller{nl: d.nl, log: d.log, set: &d.set, out: modeCh, every: 10 * time.Second},
	}
	for _, w := range watchers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := w.Run(ctx); err != nil {
				d.log.Error("watcher stopped", "err", err)
			}
		}()
	}
	defer d.wg.Wait()

	now := d.now()
	d.initialRead(ctx, now)
	d.publish(now)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case li := <-linkCh:
			d.onLink(ctx, li, d.now())
		case ni := <-neighCh:
			d.onNeigh(ctx, ni, d.now())
		case te := <-trafficCh:
			d.onTraffic(ctx, te, d.now())
		case me := <-modeCh:
			d.onMode(me)
		case r := <-d.results:
			d.onResult(ctx, r, d.now())
		case <-d.kick:
			d.takePending(ctx, d.now())
		case <-timer.C:
		}
		now := d.now()
		for _, gs := range d.sorted() {
			d.observe(ctx, gs, Event{Kind: EvTick}, now)
		}
		next := d.schedule(ctx, now)
		d.publish(now)
		wait := housekeeping
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(now), time.Millisecond))
		}
		timer.Reset(wait)
	}
}

func (d *Detector) sorted() []*gwState {
	out := make([]*gwState, 0, len(d.gws))
	for _, name := range slices.Sorted(maps.Keys(d.gws)) {
		out = append(out, d.gws[name])
	}
	return out
}

// apply installs a policy: new gateways start Unknown, unchanged ones
// keep their machine (with the new profile), removed ones are forgotten.
func (d *Detector) apply(p *policy.Policy, now time.Time) []Transition {
	var out []Transition
	keep := map[string]bool{}
	for _, g := range p.Gateways {
		keep[g.Name] = true
		old := d.gws[g.Name]
		if old != nil && old.g.Address == g.Address && old.g.Interface == g.Interface {
			if g.Profile != nil {
				old.m.SetProfile(*g.Profile)
			}
			old.g = g
			continue
		}
		m := NewMachine(g, now)
		m.SetStandby(d.standby[g.Name])
		gs := &gwState{g: g, m: m, nextProbe: now.Add(startGrace)}
		if old != nil {
			gs.gen = old.gen + 1
			out = append(out, Transition{Gateway: g.Name, From: old.m.State(), To: Unknown, Cause: CauseConfig,
				Reason: fmt.Sprintf("gateway changed to %s on %s", g.Address, g.Interface), At: now})
		}
		d.gws[g.Name] = gs
		d.met.initGateway(g.Name)
	}
	for name := range d.gws {
		if !keep[name] {
			delete(d.gws, name)
			d.met.forgetGateway(name)
		}
	}
	// Counters are per interface: gateways sharing one cannot be told
	// apart by traffic (the rx of one masks the silence of the other).
	gated := map[string][]string{}
	for _, g := range p.Gateways {
		if g.Profile == nil || g.Profile.Gating == policy.GatingGated {
			gated[g.Interface] = append(gated[g.Interface], g.Name)
		}
	}
	for _, iface := range slices.Sorted(maps.Keys(gated)) {
		if names := gated[iface]; len(names) > 1 {
			d.log.Warn("gated gateways share an interface: traffic on one hides the silence of another; consider gating = \"always\" for them",
				"iface", iface, "gateways", strings.Join(names, ","))
		}
	}
	ifs := map[string]time.Duration{}
	for _, g := range p.Gateways {
		thr, ok := ifs[g.Interface]
		if !ok {
			ifs[g.Interface] = 0
		}
		if g.Profile != nil && g.Profile.Gating != policy.GatingNever && (thr == 0 || g.Profile.TxWithoutRx < thr) {
			ifs[g.Interface] = g.Profile.TxWithoutRx
		}
	}
	var ws []watchedIface
	for _, name := range slices.Sorted(maps.Keys(ifs)) {
		ws = append(ws, watchedIface{Name: name, TxWithoutRx: ifs[name]})
		if d.ifaces[name] == nil {
			d.ifaces[name] = &ifaceState{name: name}
		}
	}
	for name := range d.ifaces {
		if _, ok := ifs[name]; !ok {
			delete(d.ifaces, name)
			d.met.forgetIface(name)
		}
	}
	d.set.set(ws)
	addrs := map[netip.Addr]bool{}
	for _, g := range p.Gateways {
		addrs[g.Address] = true
	}
	d.set.setAddrs(addrs)
	d.pol = p
	return out
}

// startGrace lets the initial link and neighbour dumps arrive before a
// gateway of unknown health gets its first probe: a REACHABLE neighbour
// makes the probe unnecessary.
const startGrace = 100 * time.Millisecond

func (d *Detector) takePending(ctx context.Context, now time.Time) {
	d.mu.Lock()
	p, sb := d.pendingPolicy, d.pendingStandby
	d.pendingPolicy, d.pendingStandby = nil, nil
	d.mu.Unlock()
	if p != nil {
		for _, t := range d.apply(p, now) {
			d.emit(ctx, t)
		}
		d.initialRead(ctx, now)
	}
	if sb != nil {
		d.standby = sb
		for name, gs := range d.gws {
			gs.m.SetStandby(sb[name])
		}
	}
	if p != nil && sb == nil {
		for name, gs := range d.gws {
			gs.m.SetStandby(d.standby[name])
		}
	}
}

// initialRead reads links and neighbours directly, so that a gateway
// leaves Unknown from existing evidence without waiting for events.
func (d *Detector) initialRead(ctx context.Context, now time.Time) {
	for name, is := range d.ifaces {
		if is.known {
			continue
		}
		l, err := d.nl.LinkByName(name)
		if err != nil {
			d.onLink(ctx, linkInfo{Name: name, Deleted: true}, now)
			continue
		}
		li := linkFromLink(l)
		d.onLink(ctx, li, now)
		ns, err := d.nl.NeighList(li.Index, 0)
		if err != nil {
			d.log.Debug("listing neighbours", "iface", name, "err", err)
			continue
		}
		for k := range ns {
			if ni, ok := neighFromNeigh(&ns[k]); ok {
				d.onNeigh(ctx, ni, now)
			}
		}
	}
}

func (d *Detector) emit(ctx context.Context, t Transition) {
	if t.At.IsZero() {
		t.At = time.Now()
	}
	d.met.transition(t)
	d.log.Info("gateway "+t.To.String(), "gateway", t.Gateway, "from", t.From.String(), "to", t.To.String(), "cause", t.Cause, "reason", t.Reason)
	select {
	case d.trans <- t:
	case <-ctx.Done():
	}
}

func (d *Detector) observe(ctx context.Context, gs *gwState, ev Event, now time.Time) {
	t, ok := gs.m.Observe(ev, now)
	if !ok {
		return
	}
	// Transition.At is wall-clock for display; timing never uses it.
	t.At = time.Now()
	d.emit(ctx, t)
	if t.To == Down || t.To == Up {
		// A fresh state starts its own probe cadence.
		gs.nextProbe = time.Time{}
	}
}

func (d *Detector) onLink(ctx context.Context, li linkInfo, now time.Time) {
	is := d.ifaces[li.Name]
	if is == nil {
		return
	}
	was, wasDeleted, known := is.carrier, is.deleted, is.known
	if li.Deleted {
		is.index, is.carrier, is.deleted = 0, false, true
	} else {
		if is.index != 0 && is.index != li.Index {
			d.log.Info("interface re-created", "iface", li.Name, "index", li.Index)
		}
		is.index, is.carrier, is.deleted = li.Index, li.Carrier, false
	}
	is.known = true
	if d.met != nil {
		v := 0.0
		if is.carrier {
			v = 1
		}
		d.met.carrier.WithLabelValues(li.Name).Set(v)
	}
	if known && was == is.carrier && wasDeleted == is.deleted {
		return
	}
	detail := ""
	switch {
	case li.Deleted && !known:
		detail = "interface " + li.Name + " not present"
	case li.Deleted:
		detail = "interface " + li.Name + " deleted"
	case !li.AdminUp:
		detail = "interface " + li.Name + " is administratively down"
	case !li.Carrier:
		detail = "carrier lost on " + li.Name
	}
	if known || !is.carrier {
		d.log.Info("link carrier", "iface", li.Name, "carrier", is.carrier)
	}
	for _, gs := range d.sorted() {
		if gs.g.Interface != li.Name {
			continue
		}
		d.met.evidenceEvent(gs.g.Name, SourceLink, is.carrier)
		d.observe(ctx, gs, Event{Kind: EvCarrier, Iface: li.Name, OK: is.carrier, Detail: detail}, now)
	}
}

func (d *Detector) gatewaysAt(index int, addr netip.Addr) []*gwState {
	var out []*gwState
	for _, gs := range d.sorted() {
		is := d.ifaces[gs.g.Interface]
		if is != nil && is.index == index && index != 0 && gs.g.Address == addr {
			out = append(out, gs)
		}
	}
	return out
}

func (d *Detector) onNeigh(ctx context.Context, ni neighInfo, now time.Time) {
	for _, gs := range d.gatewaysAt(ni.Index, ni.Addr) {
		if len(ni.HwAddr) > 0 && !ni.Deleted {
			if len(gs.hw) > 0 && gs.hw.String() != ni.HwAddr.String() {
				d.log.Info("gateway link-layer address changed", "gateway", gs.g.Name, "iface", gs.g.Interface,
					"from", gs.hw.String(), "to", ni.HwAddr.String())
				if d.met != nil {
					d.met.lladdr.WithLabelValues(gs.g.Name).Inc()
				}
			}
			gs.hw = ni.HwAddr
		}
		adv := adviceOf(ni)
		switch adv {
		case NeighNone:
			continue
		case NeighConfirmed:
			d.met.evidenceEvent(gs.g.Name, SourceNeigh, true)
		default:
			d.met.evidenceEvent(gs.g.Name, SourceNeigh, false)
		}
		d.log.Debug("neighbour advice", "gateway", gs.g.Name, "iface", gs.g.Interface, "state", nudName(ni.State), "advice", adv.String())
		d.observe(ctx, gs, Event{Kind: EvNeigh, Iface: gs.g.Interface, Advice: adv, State: nudName(ni.State), Age: ni.ConfirmedAge}, now)
	}
}

func (d *Detector) onTraffic(ctx context.Context, te trafficEvent, now time.Time) {
	is := d.ifaces[te.Iface]
	if is == nil {
		return
	}
	is.lastRx, is.lastTx = te.LastRx, te.LastTx
	for _, ni := range te.Neighs {
		// A confirmation from TCP progress raises no netlink event: only
		// the cache ages show it. Fresh ones close the gate.
		if ni.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) == 0 {
			continue
		}
		for _, gs := range d.gatewaysAt(ni.Index, ni.Addr) {
			if ni.ConfirmedAge < te.SilentFor {
				d.observe(ctx, gs, Event{Kind: EvNeigh, Iface: te.Iface, Advice: NeighConfirmed, State: nudName(ni.State), Age: ni.ConfirmedAge}, now)
			}
		}
	}
	for _, gs := range d.sorted() {
		if gs.g.Interface != te.Iface {
			continue
		}
		if te.RxAdvanced {
			if gs.silent {
				d.met.evidenceEvent(gs.g.Name, SourceTraffic, true)
			}
			gs.silent = false
			d.observe(ctx, gs, Event{Kind: EvRx, Iface: te.Iface}, now)
		}
		if te.SilentFor >= gs.m.prof.TxWithoutRx && gs.m.prof.TxWithoutRx > 0 {
			checking := gs.m.Checking()
			d.observe(ctx, gs, Event{Kind: EvTxWithoutRx, Iface: te.Iface, For: te.SilentFor}, now)
			if !checking && gs.m.Checking() {
				gs.silent = true
				d.met.evidenceEvent(gs.g.Name, SourceTraffic, false)
				d.log.Debug("tx without rx, probing", "gateway", gs.g.Name, "iface", te.Iface, "for", te.SilentFor)
			}
		}
	}
}

func (d *Detector) onMode(me modeEvent) {
	is := d.ifaces[me.Iface]
	if is == nil {
		return
	}
	if is.modeKnown && is.mode != me.Mode {
		d.log.Info("link renegotiated", "iface", me.Iface,
			"speed_mbps", me.Mode.SpeedMbps, "full_duplex", me.Mode.FullDuplex, "autoneg", me.Mode.Autoneg,
			"was_speed_mbps", is.mode.SpeedMbps, "was_full_duplex", is.mode.FullDuplex, "was_autoneg", is.mode.Autoneg)
		if d.met != nil {
			d.met.reneg.WithLabelValues(me.Iface).Inc()
		}
	}
	is.mode, is.modeKnown = me.Mode, true
	if d.met != nil {
		d.met.reneg.WithLabelValues(me.Iface)
		if me.Mode.SpeedMbps > 0 {
			d.met.speed.WithLabelValues(me.Iface).Set(float64(me.Mode.SpeedMbps) * 1e6)
		}
		if me.Mode.DuplexKnown {
			v := 0.0
			if me.Mode.FullDuplex {
				v = 1
			}
			d.met.duplex.WithLabelValues(me.Iface).Set(v)
		}
	}
}

// schedule launches the probe rounds that are due and returns when the
// next one is.
func (d *Detector) schedule(ctx context.Context, now time.Time) time.Time {
	var next time.Time
	for _, gs := range d.sorted() {
		if hu := gs.m.HoldUntil(); hu.After(now) && (next.IsZero() || hu.Before(next)) {
			next = hu
		}
		iv := gs.m.ProbeInterval(now)
		if iv <= 0 {
			gs.nextProbe = time.Time{}
			continue
		}
		due := gs.lastSent.Add(iv)
		if gs.lastSent.IsZero() || (!gs.nextProbe.IsZero() && gs.nextProbe.Before(due)) {
			due = gs.nextProbe
		}
		if due.IsZero() || due.Before(now) {
			due = now
		}
		gs.nextProbe = due
		if !now.Before(due) && gs.inflight < maxInflight {
			if d.launch(ctx, gs, now) {
				gs.lastSent = now
				gs.nextProbe = now.Add(iv)
			} else {
				gs.nextProbe = now.Add(max(iv, time.Second))
			}
		}
		if next.IsZero() || gs.nextProbe.Before(next) {
			next = gs.nextProbe
		}
	}
	return next
}

func (d *Detector) publish(now time.Time) {
	out := make([]statusEntry, 0, len(d.gws))
	for _, gs := range d.sorted() {
		m := gs.m
		avg, loss, n := m.Window(now)
		is := d.ifaces[gs.g.Interface]
		e := statusEntry{GatewayStatus: GatewayStatus{
			Name: gs.g.Name, Interface: gs.g.Interface, State: m.State(), Reason: m.Reason(),
			Carrier: m.Carrier(), Standby: m.standby,
			RTTLast: m.RTTLast(), RTTAvg: avg, Loss: loss, Samples: n,
			FlapPenalty: m.Penalty(now), Damped: m.Damped(),
		}, lastConf: m.LastConfirmed(), lastGood: m.LastGood()}
		e.Since = time.Now().Add(-now.Sub(m.Since()))
		if is != nil {
			e.lastRx, e.lastTx = is.lastRx, is.lastTx
		}
		cut := 0
		for cut < len(gs.rounds) && now.Sub(gs.rounds[cut]) > time.Minute {
			cut++
		}
		gs.rounds = gs.rounds[cut:]
		if len(gs.rounds) > 0 {
			e.ProbesPerSecond = float64(len(gs.rounds)) / time.Minute.Seconds()
		}
		out = append(out, e)
		if d.met != nil {
			d.met.loss.WithLabelValues(gs.g.Name).Set(loss)
			d.met.penalty.WithLabelValues(gs.g.Name).Set(e.FlapPenalty)
			dv := 0.0
			if e.Damped {
				dv = 1
			}
			d.met.damped.WithLabelValues(gs.g.Name).Set(dv)
		}
	}
	d.mu.Lock()
	d.status = out
	d.mu.Unlock()
}

// reasonList joins failure details for a reason text.
func reasonList(parts []string) string { return strings.Join(parts, "; ") }

package detector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/uplinkd/uplinkd/policy"
)

// Config is what New needs.
type Config struct {
	Policy  *policy.Policy
	Logger  *slog.Logger
	Metrics *Metrics // may be nil; NewMetrics(prometheus.Registerer)
	// Kernel serves every kernel interface left nil below; nil: the
	// real kernel of the current namespace (NewNetlink).
	Kernel     Kernel
	Links      Links
	Neighbours Neighbours
	Addresses  Addresses
	LinkModes  LinkModes
	// Traffic is the source of traffic evidence; nil: Kernel's, the
	// interface counters. A per-gateway source plugs in here.
	Traffic TrafficCounters
	// BFD is the BFD evidence source; nil: none (gateways' bfd sections
	// are then ignored).
	BFD BFD
	// Prober may be nil: raw sockets in the namespace of Kernel when it
	// is a *Netlink, else in the current namespace.
	Prober Prober
	// Now may be nil: time.Now. Tests inject a clock. Only monotonic
	// differences of its readings are used for timing; its readings are
	// also the wall clock of transitions and status.
	Now func() time.Time
	// TransitionBuffer is the capacity of Transitions(); 0 means 1024.
	TransitionBuffer int
	// StartDown names gateways that start Down, with the reason status
	// shows, instead of Unknown: those a previous instance had withdrawn
	// (the daemon reads them from the routes it owns, e.g. "absent from
	// owned routes at start"). They rejoin after up_count good probes, as
	// any down gateway does, and not on a neighbour confirmation. It is
	// their starting state, so no transition is reported for it.
	StartDown map[string]string
	// StartProbed names gateways whose first verdict must come from the
	// probes, not from a neighbour confirmation: after a restart over
	// routes a previous instance left, a gateway that black-holes IP but
	// answers ARP would otherwise start up and be taken down again a few
	// hundred milliseconds later, moving routes twice for nothing.
	// Passive-only gateways (gating = "never") have no probes and keep
	// the neighbour.
	StartProbed []string
}

// Detector watches every gateway of the policy and reports transitions.
type Detector struct {
	log     *slog.Logger
	met     *Metrics
	kernel  Kernel // the one New opened, closed by Close; nil when given
	links   Links
	neigh   Neighbours
	addrs   Addresses
	modes   LinkModes
	traffic TrafficCounters
	pr      Prober
	ownPr   bool
	bfd     BFD
	now     func() time.Time

	live       []*beat // health loop and watchers, in Liveness order
	roundsLive roundBeats

	trans chan Transition
	kick  chan struct{}
	set   watchSet

	mu             sync.Mutex
	pendingPolicy  *policy.Policy
	pendingStandby map[string]bool
	pendingHeld    map[string]string
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
	held    map[string]string // gateway: reason it is held down (see SetHeld)
	results chan probeResult
	wg      sync.WaitGroup
}

type gwState struct {
	g           *policy.Gateway
	m           *Machine
	nextProbe   time.Time
	lastSent    time.Time
	inflight    int
	gen         int // bumped when the gateway is replaced, so stale results are dropped
	rounds      []time.Time
	hw          net.HardwareAddr
	silent      bool                  // last traffic sample was silent
	bfdVerified bool                  // the BFD session was asked to verify this silence
	lastTx      time.Time             // when traffic last left for it (by its traffic counters)
	lastRx      time.Time             // when traffic last came from it
	rtts        map[string]*estimator // by rttKey: each target's RTTs, for its probe timeout
	calibrated  bool                  // a calibration round was sent (timeouts.go)
	qualityNext int                   // the remote target of the next quality sample
}

type ifaceState struct {
	name      string
	index     int
	carrier   bool
	known     bool
	deleted   bool
	mode      LinkMode
	modeKnown bool
	shared    bool // more than one gateway of the policy on it
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
	d := &Detector{log: cfg.Logger, met: cfg.Metrics, pr: cfg.Prober, bfd: cfg.BFD, now: cfg.Now,
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
	for _, name := range workerNames {
		d.live = append(d.live, newBeat(name))
	}
	if err := d.openKernel(cfg); err != nil {
		return nil, fmt.Errorf("creating detector: %w", err)
	}
	if err := d.openProber(cfg); err != nil {
		if d.kernel != nil {
			d.kernel.(*Netlink).Close()
		}
		return nil, fmt.Errorf("creating detector: %w", err)
	}
	d.apply(cfg.Policy, d.now())
	for name, reason := range cfg.StartDown {
		if gs := d.gws[name]; gs != nil {
			gs.m.StartDown(reason)
			d.met.setState(name, Down)
		}
	}
	for _, name := range cfg.StartProbed {
		if gs := d.gws[name]; gs != nil {
			gs.m.StartProbed()
		}
	}
	d.publish(d.now()) // Status is meaningful before Run
	return d, nil
}

// openKernel picks each kernel interface: the one given, else Kernel,
// else a Netlink of the current namespace opened here.
func (d *Detector) openKernel(cfg Config) error {
	k := cfg.Kernel
	if k == nil && (cfg.Links == nil || cfg.Neighbours == nil || cfg.Addresses == nil || cfg.LinkModes == nil || cfg.Traffic == nil) {
		nl, err := NewNetlink(netns.None())
		if err != nil {
			return err
		}
		k, d.kernel = nl, nl
	}
	d.links, d.neigh, d.addrs, d.modes, d.traffic = cfg.Links, cfg.Neighbours, cfg.Addresses, cfg.LinkModes, cfg.Traffic
	if d.links == nil {
		d.links = k
	}
	if d.neigh == nil {
		d.neigh = k
	}
	if d.addrs == nil {
		d.addrs = k
	}
	if d.modes == nil {
		d.modes = k
	}
	if d.traffic == nil {
		d.traffic = k
	}
	return nil
}

// openProber opens raw sockets in the kernel's namespace unless a Prober
// was given.
func (d *Detector) openProber(cfg Config) error {
	if d.pr != nil {
		return nil
	}
	ns := netns.None()
	if k, ok := cfg.Kernel.(*Netlink); ok {
		ns = k.Namespace()
	}
	p, err := newSocketProber(ns, d.log, false, d.now)
	if err != nil {
		return err
	}
	d.pr, d.ownPr = p, true
	return nil
}

// Liveness reports the progress of every long-lived worker: the health
// loop, the watchers, the counter poller, the probe rounds and, when the
// Prober reports its own (SocketProber does), the prober's readers. Safe
// from any goroutine; see Worker.Stalled.
func (d *Detector) Liveness() []Worker {
	out := make([]Worker, 0, len(d.live)+3)
	for _, b := range d.live {
		out = append(out, b.report())
	}
	out = append(out, d.roundsLive.report())
	if lr, ok := d.pr.(LivenessReporter); ok {
		out = append(out, lr.Liveness()...)
	}
	return out
}

// workerNames are the detector's own long-lived workers, as Liveness
// names them; the index constants below pick their beats.
var workerNames = []string{"health loop", "link watcher", "neighbour watcher", "traffic poller", "link mode poller"}

const (
	liveHealth = iota
	liveLinks
	liveNeigh
	liveTraffic
	liveModes
)

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
		if d.kernel != nil {
			errs = append(errs, d.kernel.(*Netlink).Close())
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

	in := d.startWatchers(ctx)
	defer d.wg.Wait()

	var bfdUpdates <-chan struct{} // nil without BFD: never ready
	if d.bfd != nil {
		bfdUpdates = d.bfd.Updates()
	}
	live := d.live[liveHealth]
	now := d.now()
	live.begin(now)
	d.mu.Lock()
	if d.pendingHeld != nil { // held before the first evidence: no Up, then Down
		d.held, d.pendingHeld = d.pendingHeld, nil
	}
	d.mu.Unlock()
	d.initialRead(ctx, now)
	d.publish(now)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		live.idle(d.now())
		var handle func(now time.Time)
		select {
		case <-ctx.Done():
			return nil
		case li := <-in.links:
			handle = func(now time.Time) { d.onLink(ctx, li, now) }
		case ni := <-in.neighs:
			handle = func(now time.Time) { d.onNeigh(ctx, ni, now) }
		case te := <-in.traffic:
			handle = func(now time.Time) { d.onTraffic(ctx, te, now) }
		case me := <-in.modes:
			handle = func(time.Time) { d.onMode(me) }
		case <-bfdUpdates:
			handle = func(now time.Time) { d.onBFD(ctx, now) }
		case r := <-d.results:
			handle = func(now time.Time) { d.onResult(ctx, r, now) }
		case <-d.kick:
			handle = func(now time.Time) { d.takePending(ctx, now) }
		case <-timer.C:
		}
		// Busy from here: a handler blocked (on a full Transitions
		// channel, say) shows as a stalled health loop.
		now := d.now()
		live.begin(now)
		if handle != nil {
			handle(now)
		}
		d.tick(ctx, now, timer)
	}
}

// inputs are the channels the watchers send their typed events on.
type inputs struct {
	links   chan Link
	neighs  chan Neighbour
	traffic chan trafficEvent
	modes   chan modeEvent
}

// startWatchers starts the link and neighbour watchers and the counter
// and link mode pollers, each owned by d.wg and stopped by ctx.
func (d *Detector) startWatchers(ctx context.Context) inputs {
	in := inputs{links: make(chan Link, 64), neighs: make(chan Neighbour, 256),
		traffic: make(chan trafficEvent, 64), modes: make(chan modeEvent, 16)}
	watchers := []interface{ Run(context.Context) error }{
		&linkWatcher{links: d.links, log: d.log, set: &d.set, out: in.links, now: d.now, live: d.live[liveLinks]},
		&neighWatcher{neigh: d.neigh, log: d.log, set: &d.set, out: in.neighs, now: d.now, live: d.live[liveNeigh]},
		&trafficPoller{links: d.links, neigh: d.neigh, src: d.traffic, log: d.log, set: &d.set, out: in.traffic,
			now: d.now, live: d.live[liveTraffic]},
		&modePoller{modes: d.modes, log: d.log, set: &d.set, out: in.modes, every: 10 * time.Second, now: d.now, live: d.live[liveModes]},
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
	return in
}

// tick is the end of every pass of the health loop: time passes for
// every machine, due probe rounds start, the status is published and the
// timer is set for the next deadline.
func (d *Detector) tick(ctx context.Context, now time.Time, timer *time.Timer) {
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

func (d *Detector) sorted() []*gwState {
	out := make([]*gwState, 0, len(d.gws))
	for _, name := range slices.Sorted(maps.Keys(d.gws)) {
		out = append(out, d.gws[name])
	}
	return out
}

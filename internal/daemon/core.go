package daemon

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/condition"
	"github.com/uplinkd/uplinkd/internal/hooks"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// HealthSource is what the daemon needs of the detector; *detector.Detector
// implements it, and loop tests use a fake.
type HealthSource interface {
	Run(ctx context.Context) error
	Transitions() <-chan detector.Transition
	Update(p *policy.Policy) error
	SetStandby(names map[string]bool)
	Holder
	Status() []detector.GatewayStatus
	// Liveness is the progress of the detector's own workers (health
	// loop, watchers, pollers, probe rounds, prober readers).
	Liveness() []detector.Worker
	Close() error
}

// RouteSink is what the daemon needs of the reconciler; *routing.Reconciler
// implements it.
type RouteSink interface {
	Apply(ctx context.Context, want routing.State) (int, error)
	Set(want routing.State)
	Run(ctx context.Context) error
	Installed() routing.State
	Conflicts() []routing.Op
	Form() routing.Form
	FormReason() string
	Withdraw(ctx context.Context) error
	Close() error
}

// DefaultReloadDebounce folds reload requests arriving this close together
// into one reload.
const DefaultReloadDebounce = 100 * time.Millisecond

// Core is the loop that owns health: the part of the daemon that joins
// detector and routing, testable with fakes of both.
type Core struct {
	log     *slog.Logger
	det     HealthSource
	bfd     BFDSessions // nil without BFD
	traffic func() (string, string)
	rec     RouteSink
	hooks   *hooks.Runner
	metrics *Metrics
	track   *trackFiles
	flush   *conntrackFlusher // nil: no conntrack socket
	load    func() (*policy.Policy, error)
	now     func() time.Time

	// Debounce for reloads; DefaultReloadDebounce if 0.
	Debounce time.Duration
	// Watchdog, if positive, is how often the loop tells systemd it is alive.
	Watchdog  time.Duration
	notify    func(state string) // sd_notify; nil outside systemd
	tune      func(p *policy.Policy) ([]routing.SysctlChange, error)
	onReload  func(p *policy.Policy) // told of every reloaded policy (the on-link watcher); may be nil
	conflicts int                    // route conflicts as STATUS last said; loop only

	reloadc chan chan error
	learnc  chan Facts             // the learner's latest (Relearn)
	base    *policy.Policy         // the policy as written; pol is it resolved (learn.go); loop only
	learned Facts                  // what the learner read; loop only
	onBase  func(p *policy.Policy) // told of every reloaded policy as written (the learner); may be nil
	beat    chanHeartbeat
	hold    startHold        // loop-owned: routes wait for a restart's first verdicts
	live    []LivenessSource // every other long-lived worker, for Healthy
	conds   *conditions      // the loop's; status reads condStatus

	// mu guards what status readers see. The loop holds it only to copy
	// values in, never across a channel operation or a kernel call.
	mu          sync.RWMutex
	pol         *policy.Policy
	states      map[string]detector.State // every policy gateway; Unknown until the detector says
	health      map[string]routing.Health // what routing does with each gateway
	groupHealth map[string]int            // healthy gateways per group
	standby     map[string]bool
	started     time.Time
	lastReload  time.Time
	reloadErr   error
	reloads     int
	version     string
	condStatus  []condition.Status
}

// chanHeartbeat records when the loop last went round, for /healthz.
type chanHeartbeat struct {
	mu sync.Mutex
	at time.Time
}

func (h *chanHeartbeat) mark(t time.Time) { h.mu.Lock(); h.at = t; h.mu.Unlock() }
func (h *chanHeartbeat) last() time.Time  { h.mu.Lock(); defer h.mu.Unlock(); return h.at }

// CoreConfig configures a Core.
type CoreConfig struct {
	Policy   *policy.Policy
	Logger   *slog.Logger
	Detector HealthSource
	BFD      BFDSessions // may be nil: no BFD sessions
	// TrafficBackend says how traffic is counted per gateway ("tcx",
	// "nftables") and why not with tcx; nil: not reported.
	TrafficBackend func() (backend, why string)
	Routes         RouteSink
	Hooks          *hooks.Runner // may be nil
	Metrics        *Metrics      // may be nil
	TrackDir       string
	// Conntrack is where flush_conntrack deletes entries; nil disables it.
	Conntrack routing.Conntrack
	// Load re-reads and validates the policy on reload.
	Load    func() (*policy.Policy, error)
	Now     func() time.Time // nil: time.Now
	Version string
	// Liveness are the other long-lived workers Healthy and the watchdog
	// follow, beside the health loop itself.
	Liveness []LivenessSource
	// StartDown names the gateways that start Down (the detector starts
	// them Down too): those a previous instance had withdrawn, so the
	// initial apply matches what it left.
	StartDown map[string]string
	// StartUp names the conditions that start up: those the routes a
	// previous instance left show up (routing.Adopt), so the initial apply
	// keeps what they gate instead of withdrawing it until the terms are
	// evaluated again.
	StartUp []string
	// ConditionFacts watches the links, addresses and track files the
	// policy's conditions name; nil in tests that have none.
	ConditionFacts ConditionFacts
	// Adopted says the start found an owned kernel state a previous
	// instance left: route changes then wait for every gateway's first
	// verdict (startHold).
	Adopted bool
	// Base is the policy as written when Policy is it resolved with the
	// Facts the learner read (learn.go); nil: Policy.
	Base    *policy.Policy
	Learned Facts
}

// NewCore builds the loop. It does not start anything.
func NewCore(cfg CoreConfig) (*Core, error) {
	c := &Core{
		log:         cfg.Logger,
		det:         cfg.Detector,
		bfd:         cfg.BFD,
		traffic:     cfg.TrafficBackend,
		rec:         cfg.Routes,
		hooks:       cfg.Hooks,
		metrics:     cfg.Metrics,
		load:        cfg.Load,
		now:         cfg.Now,
		reloadc:     make(chan chan error, 64),
		learnc:      make(chan Facts, 1),
		pol:         cfg.Policy,
		base:        cmp.Or(cfg.Base, cfg.Policy),
		learned:     cfg.Learned,
		states:      map[string]detector.State{},
		health:      map[string]routing.Health{},
		groupHealth: map[string]int{},
		standby:     map[string]bool{},
		version:     cfg.Version,
		live:        cfg.Liveness,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.hooks == nil {
		c.hooks = hooks.New(hooks.Config{Logger: c.log})
	}
	if cfg.Conntrack != nil {
		c.flush = newConntrackFlusher(cfg.Conntrack, c.log, c.metrics)
	}
	var err error
	if c.track, err = newTrackFiles(cfg.TrackDir); err != nil {
		return nil, err
	}
	for _, g := range c.pol.Gateways {
		c.states[g.Name] = detector.Unknown
		c.health[g.Name] = routing.Up
		if _, down := cfg.StartDown[g.Name]; down {
			c.states[g.Name] = detector.Down
			c.health[g.Name] = routing.Down
		}
	}
	c.started = c.now()
	c.conds = newConditions(c.pol, cfg.ConditionFacts)
	c.conds.adopt(cfg.StartUp, c.started)
	c.hold = newStartHold(c.pol, cfg.Adopted, cfg.StartDown, c.started)
	c.lastReload = c.started
	c.hooks.SetHooks(c.pol.Hooks)
	c.metrics.reloaded(true, float64(c.started.UnixNano())/1e9)
	c.metrics.setPolicy(c.pol)
	if c.flush != nil {
		for _, g := range c.pol.Gateways {
			c.metrics.initConntrack(g.Name)
		}
	}
	c.beat.mark(c.started)
	return c, nil
}

// healthOf maps a detector state to routing health, given the health the
// gateway had. Suspect keeps it (a suspect gateway still carries traffic,
// with its degraded weight if it was degraded, until the detector declares
// it down), and Unknown is optimistic, so a restart never withdraws a
// working route on a guess.
func healthOf(s detector.State, prev routing.Health) routing.Health {
	switch s {
	case detector.Suspect:
		return prev
	case detector.Degraded:
		return routing.Degraded
	case detector.Down:
		return routing.Down
	}
	return routing.Up
}

// snapshot returns the routing view of the current states. Called by the
// loop only.
func (c *Core) snapshot() routing.Snapshot {
	s := routing.Snapshot{}
	for name, h := range c.health {
		s[name] = h
	}
	for name, up := range c.conds.up {
		s[routing.ConditionKey(name)] = routing.Down
		if up {
			s[routing.ConditionKey(name)] = routing.Up
		}
	}
	return s
}

// Desired is the routing state for the current health, for the initial
// apply.
func (c *Core) Desired() routing.State {
	return routing.Desired(c.pol, c.snapshot())
}

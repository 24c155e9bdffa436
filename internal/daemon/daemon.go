package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/detector"
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
	Status() []detector.GatewayStatus
	Close() error
}

// RouteSink is what the daemon needs of the reconciler; *routing.Reconciler
// implements it.
type RouteSink interface {
	Apply(ctx context.Context, want routing.State) (int, error)
	Set(want routing.State)
	Run(ctx context.Context) error
	Installed() routing.State
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
	rec     RouteSink
	hooks   *hooks.Runner
	metrics *Metrics
	track   *trackFiles
	load    func() (*policy.Policy, error)
	now     func() time.Time

	// Debounce for reloads; DefaultReloadDebounce if 0.
	Debounce time.Duration
	// Watchdog, if positive, is how often the loop tells systemd it is alive.
	Watchdog time.Duration
	notify   func(state string) // sd_notify; nil outside systemd
	tune     func(p *policy.Policy) ([]routing.SysctlChange, error)

	reloadc chan chan error
	beat    chanHeartbeat

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
	Routes   RouteSink
	Hooks    *hooks.Runner // may be nil
	Metrics  *Metrics      // may be nil
	TrackDir string
	// Load re-reads and validates the policy on reload.
	Load    func() (*policy.Policy, error)
	Now     func() time.Time // nil: time.Now
	Version string
}

// NewCore builds the loop. It does not start anything.
func NewCore(cfg CoreConfig) (*Core, error) {
	c := &Core{
		log:         cfg.Logger,
		det:         cfg.Detector,
		rec:         cfg.Routes,
		hooks:       cfg.Hooks,
		metrics:     cfg.Metrics,
		load:        cfg.Load,
		now:         cfg.Now,
		reloadc:     make(chan chan error, 64),
		pol:         cfg.Policy,
		states:      map[string]detector.State{},
		health:      map[string]routing.Health{},
		groupHealth: map[string]int{},
		standby:     map[string]bool{},
		version:     cfg.Version,
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
	var err error
	if c.track, err = newTrackFiles(cfg.TrackDir); err != nil {
		return nil, err
	}
	for _, g := range c.pol.Gateways {
		c.states[g.Name] = detector.Unknown
		c.health[g.Name] = routing.Up
	}
	c.started = c.now()
	c.lastReload = c.started
	c.hooks.SetHooks(c.pol.Hooks)
	c.metrics.reloaded(true, float64(c.started.UnixNano())/1e9)
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
	return s
}

// Desired is the routing state for the current health, for the initial
// apply.
func (c *Core) Desired() routing.State {
	return routing.Desired(c.pol, c.snapshot())
}

// standbySet is the gateways that carry no traffic by policy: in every
// group they belong to, a better tier has a healthy member. Down gateways
// are not standby: the detector probes those for recovery anyway.
func standbySet(p *policy.Policy, h routing.Snapshot) map[string]bool {
	inGroup := map[string]int{}
	standbyIn := map[string]int{}
	for _, grp := range p.Groups {
		best := -1
		tier := map[string]int{}
		for _, name := range grp.Gateways {
			g := p.Gateway(name)
			if g == nil {
				continue
			}
			t := g.Tier
			if h[name] == routing.Degraded {
				t = g.DegradedTier
			}
			tier[name] = t
			if h[name].Healthy() && (best < 0 || t < best) {
				best = t
			}
		}
		for _, name := range grp.Gateways {
			if _, ok := tier[name]; !ok {
				continue
			}
			inGroup[name]++
			if best >= 0 && h[name].Healthy() && tier[name] > best {
				standbyIn[name]++
			}
		}
	}
	out := map[string]bool{}
	for name, n := range inGroup {
		if standbyIn[name] == n {
			out[name] = true
		}
	}
	return out
}

func groupHealthy(p *policy.Policy, grp *policy.Group, h routing.Snapshot) int {
	n := 0
	for _, name := range grp.Gateways {
		if p.Gateway(name) != nil && h[name].Healthy() {
			n++
		}
	}
	return n
}

func groupsOf(p *policy.Policy, gw string) []string {
	var out []string
	for _, grp := range p.Groups {
		if slices.Contains(grp.Gateways, gw) {
			out = append(out, grp.Name)
		}
	}
	return out
}

func tableText(t uint32) string {
	if t == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(t), 10)
}

// gatewayTables is where a gateway's routes live: its own table and its
// groups' tables.
func gatewayTables(p *policy.Policy, g *policy.Gateway) string {
	var ts []string
	if g.Table != 0 {
		ts = append(ts, tableText(g.Table))
	}
	for _, grp := range p.Groups {
		if slices.Contains(grp.Gateways, g.Name) && !slices.Contains(ts, tableText(grp.Table)) {
			ts = append(ts, tableText(grp.Table))
		}
	}
	return strings.Join(ts, ",")
}

// update pushes the current health to routing, the detector and the group
// bookkeeping. initial suppresses group hooks: at start-up nothing changed.
func (c *Core) update(initial bool) {
	snap := c.pushRoutes()
	c.updateGroups(snap, initial)
}

// pushRoutes hands the desired state for the current health to the
// reconciler (it applies at once, on its own goroutine) and tells the
// detector which gateways idle as backups.
func (c *Core) pushRoutes() routing.Snapshot {
	snap := c.snapshot()
	c.rec.Set(routing.Desired(c.pol, snap))
	sb := standbySet(c.pol, snap)
	if !maps.Equal(sb, c.standby) {
		c.det.SetStandby(sb)
		c.mu.Lock()
		c.standby = sb
		c.mu.Unlock()
	}
	return snap
}

// updateGroups recounts healthy gateways per group: metrics, track files,
// and group_up/group_down hooks when a count crosses zero.
func (c *Core) updateGroups(snap routing.Snapshot, initial bool) {
	gh := map[string]int{}
	for _, grp := range c.pol.Groups {
		n := groupHealthy(c.pol, grp, snap)
		gh[grp.Name] = n
		prev, known := c.groupHealth[grp.Name]
		c.metrics.setGroup(grp.Name, n)
		if err := c.track.set(grp.Name, n > 0); err != nil {
			c.log.Error("writing track file", "group", grp.Name, "err", err)
		}
		if initial || !known || (prev > 0) == (n > 0) {
			continue
		}
		ev := policy.EventGroupUp
		prevState, state := "down", "up"
		if n == 0 {
			ev, prevState, state = policy.EventGroupDown, "up", "down"
		}
		c.log.Info("group "+state, "group", grp.Name, "healthy", n, "table", grp.Table)
		c.hooks.Fire(hooks.Event{Name: ev, Group: grp.Name, PrevState: prevState, State: state,
			Reason: fmt.Sprintf("%d of %d gateways healthy", n, len(grp.Gateways)), Table: tableText(grp.Table)})
	}
	c.mu.Lock()
	c.groupHealth = gh
	c.mu.Unlock()
	c.notifyStatus()
}

func (c *Core) notifyStatus() {
	if c.notify == nil {
		return
	}
	up := 0
	for _, h := range c.health {
		if h.Healthy() {
			up++
		}
	}
	var down []string
	for _, grp := range c.pol.Groups {
		if c.groupHealth[grp.Name] == 0 {
			down = append(down, grp.Name)
		}
	}
	text := fmt.Sprintf("STATUS=%d/%d gateways healthy", up, len(c.states))
	if len(down) > 0 {
		text += "; groups without a healthy gateway: " + strings.Join(down, ", ")
	}
	c.notify(text)
}

// transition handles one detector transition: routes first, then hooks.
func (c *Core) transition(tr detector.Transition) {
	g := c.pol.Gateway(tr.Gateway)
	if g == nil {
		// A transition queued before a reload removed the gateway.
		return
	}
	prev := c.health[tr.Gateway]
	next := healthOf(tr.To, prev)
	c.mu.Lock()
	c.states[tr.Gateway] = tr.To
	c.health[tr.Gateway] = next
	c.mu.Unlock()
	// The detector logs the transition itself at Info.
	c.log.Debug("gateway "+tr.To.String(), "gateway", tr.Gateway, "iface", g.Interface, "from", tr.From.String(),
		"to", tr.To.String(), "cause", tr.Cause, "reason", tr.Reason)
	// Routes first; hooks and bookkeeping only queue work.
	snap := c.pushRoutes()
	if err := c.track.set(g.Name, next.Healthy()); err != nil {
		c.log.Error("writing track file", "gateway", g.Name, "err", err)
	}
	if prev != next {
		ev := policy.EventGatewayUp
		switch next {
		case routing.Down:
			ev = policy.EventGatewayDown
		case routing.Degraded:
			ev = policy.EventGatewayDegraded
		}
		c.hooks.Fire(hooks.Event{
			Name: ev, Gateway: g.Name, Group: strings.Join(groupsOf(c.pol, g.Name), ","),
			Interface: g.Interface, Address: g.Address.String(),
			PrevState: prev.String(), State: next.String(), Reason: tr.Reason, Table: gatewayTables(c.pol, g),
		})
	}
	c.updateGroups(snap, false)
}

// OnApplied is the reconciler's callback: it fires route_changed hooks. It
// runs on the reconciler's goroutine and never blocks.
func (c *Core) OnApplied(ops []routing.Op) {
	if len(ops) == 0 {
		return
	}
	var lines, tables, gws, grps []string
	add := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for _, op := range ops {
		lines = append(lines, op.Lines()...)
		var owner string
		switch {
		case op.Route != nil:
			add(&tables, tableText(op.Route.Table))
			owner = op.Route.Owner
		case op.Rule != nil:
			add(&tables, tableText(op.Rule.Table))
			owner = op.Rule.Owner
		}
		kind, rest, _ := strings.Cut(owner, "/")
		name, _, _ := strings.Cut(rest, "/")
		switch kind {
		case "group":
			add(&grps, name)
		case "gateway":
			add(&gws, name)
		}
	}
	c.log.Info("routes changed", "table", strings.Join(tables, ","), "ops", len(ops))
	c.hooks.Fire(hooks.Event{Name: policy.EventRouteChanged, Gateway: strings.Join(gws, ","), Group: strings.Join(grps, ","),
		Table: strings.Join(tables, ","), Changes: strings.Join(lines, "\n"), State: "applied",
		Reason: fmt.Sprintf("%d route/rule operations applied", len(ops))})
}

// Reload asks the loop to reload the policy and waits for the result. Calls
// that arrive while a reload is pending share it.
func (c *Core) Reload(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case c.reloadc <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RequestReload asks for a reload without waiting (SIGHUP). It never blocks;
// if the request queue is full, a reload is already pending.
func (c *Core) RequestReload() {
	select {
	case c.reloadc <- nil:
	default:
	}
}

// reload re-reads the policy and applies it as a diff. Called by the loop.
func (c *Core) reload() error {
	start := c.now()
	if c.notify != nil {
		// MONOTONIC_USEC lets Type=notify-reload units match the reload.
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		c.notify(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", sd.SdNotifyReloading, ts.Nano()/1000))
		defer c.notify(sd.SdNotifyReady)
	}
	p, err := c.load()
	if err == nil && p.Daemon.RouteProtocol != c.pol.Daemon.RouteProtocol {
		err = fmt.Errorf("route_protocol changed from %d to %d: restart uplinkd to change it, a reload would orphan every route it owns",
			c.pol.Daemon.RouteProtocol, p.Daemon.RouteProtocol)
	}
	if err == nil {
		if uerr := c.det.Update(p); uerr != nil {
			err = fmt.Errorf("updating detector: %w", uerr)
		}
	}
	if err != nil {
		c.metrics.reloaded(false, 0)
		c.mu.Lock()
		c.reloadErr = err
		c.mu.Unlock()
		c.log.Error("reload refused, the previous policy keeps running", "err", err)
		return err
	}
	old := c.pol
	for _, w := range restartOnly(old.Daemon, p.Daemon) {
		c.log.Warn("reload: this setting only changes on restart", "setting", w)
	}
	c.hooks.SetHooks(p.Hooks)
	if c.tune != nil {
		// Opt-in sysctls follow the policy; values already right are not
		// rewritten, so an unchanged [kernel] section writes nothing.
		if changes, err := c.tune(p); err != nil {
			c.log.Error("reload: applying [kernel] settings", "err", err)
		} else if len(changes) > 0 {
			c.log.Info("reload: kernel settings applied", "changes", len(changes))
		}
	}
	states := map[string]detector.State{}
	health := map[string]routing.Health{}
	for _, g := range p.Gateways {
		if st, ok := c.states[g.Name]; ok {
			states[g.Name], health[g.Name] = st, c.health[g.Name]
		} else {
			states[g.Name], health[g.Name] = detector.Unknown, routing.Up
		}
	}
	keep := map[string]bool{}
	for _, g := range p.Gateways {
		keep[g.Name] = true
	}
	gh := maps.Clone(c.groupHealth)
	for _, grp := range p.Groups {
		keep[grp.Name] = true
	}
	for _, grp := range old.Groups {
		if p.Group(grp.Name) == nil {
			c.metrics.forgetGroup(grp.Name)
			delete(gh, grp.Name)
		}
	}
	if err := c.track.prune(keep); err != nil {
		c.log.Error("pruning track files", "err", err)
	}
	c.mu.Lock()
	c.pol = p
	c.states = states
	c.health = health
	c.groupHealth = gh
	c.reloadErr = nil
	c.lastReload = c.now()
	c.reloads++
	c.mu.Unlock()
	for _, g := range p.Gateways {
		if err := c.track.set(g.Name, health[g.Name].Healthy()); err != nil {
			c.log.Error("writing track file", "gateway", g.Name, "err", err)
		}
	}
	c.update(false)
	c.metrics.reloaded(true, float64(c.now().UnixNano())/1e9)
	c.log.Info("policy reloaded", "gateways", len(p.Gateways), "groups", len(p.Groups), "took", c.now().Sub(start))
	return nil
}

// restartOnly lists the [daemon] settings a reload cannot change.
func restartOnly(a, b policy.Daemon) []string {
	var out []string
	if a.Listen != b.Listen {
		out = append(out, "listen")
	}
	if a.ControlSocket != b.ControlSocket {
		out = append(out, "control_socket")
	}
	if a.LogFormat != b.LogFormat {
		out = append(out, "log_format")
	}
	if a.LogLevel != b.LogLevel {
		out = append(out, "log_level")
	}
	if a.TrackDir != b.TrackDir {
		out = append(out, "track_dir")
	}
	if a.ResyncEvery != b.ResyncEvery {
		out = append(out, "resync_interval")
	}
	if a.RulePriority != b.RulePriority {
		out = append(out, "rule_priorities (validated against the new rules, but the old band stays owned)")
	}
	return out
}

// Loop is the goroutine that owns health. It returns when ctx ends.
func (c *Core) Loop(ctx context.Context) error {
	for _, g := range c.pol.Gateways {
		if err := c.track.set(g.Name, true); err != nil {
			c.log.Error("writing track file", "gateway", g.Name, "err", err)
		}
	}
	c.update(true)
	debounce := c.Debounce
	if debounce <= 0 {
		debounce = DefaultReloadDebounce
	}
	var (
		pending []chan error
		armed   bool
		timer   = time.NewTimer(time.Hour)
		wd      <-chan time.Time
		beat    = time.NewTicker(time.Second)
	)
	timer.Stop()
	defer timer.Stop()
	defer beat.Stop()
	if c.Watchdog > 0 {
		t := time.NewTicker(c.Watchdog)
		defer t.Stop()
		wd = t.C
	}
	trc := c.det.Transitions()
	for {
		select {
		case <-ctx.Done():
			for _, ch := range pending {
				if ch != nil {
					ch <- ctx.Err()
				}
			}
			return nil
		case tr, ok := <-trc:
			if !ok {
				trc = nil
				continue
			}
			c.transition(tr)
		case ch := <-c.reloadc:
			pending = append(pending, ch)
			if !armed {
				timer.Reset(debounce)
				armed = true
			}
		case <-timer.C:
			armed = false
			// Fold everything that queued up meanwhile into this reload.
		drain:
			for {
				select {
				case ch := <-c.reloadc:
					pending = append(pending, ch)
				default:
					break drain
				}
			}
			err := c.reload()
			for _, ch := range pending {
				if ch != nil {
					ch <- err
				}
			}
			pending = pending[:0]
		case <-wd:
			if c.notify != nil {
				c.notify(sd.SdNotifyWatchdog)
			}
		case now := <-beat.C:
			c.beat.mark(now)
		}
		c.beat.mark(c.now())
	}
}

// Status builds the status document. Safe from any goroutine.
func (c *Core) Status() *Status {
	det := c.det.Status()
	installed := c.rec.Installed()
	c.mu.RLock()
	p := c.pol
	states := maps.Clone(c.states)
	health := maps.Clone(c.health)
	gh := maps.Clone(c.groupHealth)
	standby := maps.Clone(c.standby)
	s := &Status{
		Version: c.version, Policy: p.File, Now: c.now(), Started: c.started, LastReload: c.lastReload,
		LastReloadOK: c.reloadErr == nil, RouteProtocol: p.Daemon.RouteProtocol,
	}
	if c.reloadErr != nil {
		s.LastReloadError = c.reloadErr.Error()
	}
	c.mu.RUnlock()

	byName := map[string]detector.GatewayStatus{}
	for _, d := range det {
		byName[d.Name] = d
	}
	// Each route is rendered once, however many gateways it goes through.
	type hop struct {
		addr string
		dev  string
	}
	held := map[hop][]string{}
	for _, r := range installed.Routes {
		text := routing.RouteString(r)
		s.Routes = append(s.Routes, text)
		seen := map[hop]bool{}
		for _, nh := range r.Nexthops {
			k := hop{nh.Gateway.String(), nh.Dev}
			if nh.Gateway.IsValid() && !seen[k] {
				seen[k] = true
				held[k] = append(held[k], text)
			}
		}
	}
	for _, r := range installed.Rules {
		s.Rules = append(s.Rules, routing.RuleString(r))
	}
	sec := func(d time.Duration) float64 {
		if d < 0 {
			return -1
		}
		return d.Seconds()
	}
	for _, g := range p.Gateways {
		st := states[g.Name]
		gs := GatewayStatus{
			Name: g.Name, Interface: g.Interface, Address: g.Address.String(), Groups: groupsOf(p, g.Name),
			State: st.String(), Health: health[g.Name].String(), Up: health[g.Name].Healthy(), Standby: standby[g.Name],
			LastConfirmedAge: -1, LastRxAge: -1, LastTxAge: -1, LastGoodProbeAge: -1,
		}
		if d, ok := byName[g.Name]; ok {
			gs.Since, gs.Reason, gs.Carrier, gs.Damped = d.Since, d.Reason, d.Carrier, d.Damped
			gs.RTTLast, gs.RTTAvg, gs.Loss, gs.Samples = d.RTTLast.Seconds(), d.RTTAvg.Seconds(), d.Loss, d.Samples
			gs.LastConfirmedAge, gs.LastRxAge = sec(d.LastConfirmedAge), sec(d.LastRxAge)
			gs.LastTxAge, gs.LastGoodProbeAge = sec(d.LastTxAge), sec(d.LastGoodProbeAge)
			gs.ProbesPerSecond, gs.FlapPenalty = d.ProbesPerSecond, d.FlapPenalty
		}
		gs.Routes = held[hop{g.Address.String(), g.Interface}]
		s.Gateways = append(s.Gateways, gs)
	}
	for _, grp := range p.Groups {
		s.Groups = append(s.Groups, GroupStatus{Name: grp.Name, Family: grp.Family, Table: grp.Table,
			Up: gh[grp.Name] > 0, Healthy: gh[grp.Name], Gateways: slices.Clone(grp.Gateways)})
	}
	return s
}

// Healthy reports whether the loop went round recently, for /healthz.
func (c *Core) Healthy(maxAge time.Duration) bool {
	return c.now().Sub(c.beat.last()) < maxAge
}

// Options configure Run.
type Options struct {
	ConfigPath string
	// LogFormat and LogLevel override the policy's [daemon] settings.
	LogFormat, LogLevel string
	Stderr              *os.File
	Build               BuildInfo
}

// StartError is a refusal to start: nothing was touched.
type StartError struct{ Err error }

func (e *StartError) Error() string { return "refusing to start: " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// loadChecked reads and validates a policy and everything it names.
func loadChecked(path string) (*policy.Policy, error) {
	p, err := policy.Load(path)
	if err != nil {
		var perrs policy.Errors
		if errors.As(err, &perrs) {
			lines := make([]string, len(perrs))
			for i, e := range perrs {
				lines[i] = e.Error()
			}
			return nil, fmt.Errorf("policy %s is invalid:\n  %s", path, strings.Join(lines, "\n  "))
		}
		return nil, err
	}
	if err := errors.Join(checkPolicyFiles(p), checkInterfaces(p)); err != nil {
		return nil, err
	}
	return p, nil
}

// Run is `uplinkd run`: it starts the daemon and returns when ctx ends
// (SIGTERM, SIGINT) or a component fails. SIGHUP reloads.
func Run(ctx context.Context, opts Options) error {
	stderr := opts.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	// Everything up to the initial apply refuses to start without having
	// touched the kernel.
	p, err := loadChecked(opts.ConfigPath)
	if err != nil {
		return &StartError{err}
	}
	format, level := p.Daemon.LogFormat, p.Daemon.LogLevel
	if opts.LogFormat != "" {
		format = opts.LogFormat
	}
	if opts.LogLevel != "" {
		level = opts.LogLevel
	}
	log, err := NewLogger(stderr, format, level)
	if err != nil {
		return &StartError{err}
	}
	if err := checkPrivileges(); err != nil {
		return &StartError{err}
	}
	if builtWithCgo {
		return &StartError{errors.New("this binary was built with cgo, which makes dropping capabilities on every thread impossible; build it with CGO_ENABLED=0 (make build does)")}
	}
	if opts.Build.GoVersion == "" {
		opts.Build.GoVersion = runtime.Version()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dm := NewMetrics(reg, opts.Build)
	// Paused until the capabilities are dropped: the initial apply already
	// fires route_changed.
	hr := hooks.New(hooks.Config{Logger: log, Metrics: hooks.NewMetrics(reg), Paused: true})
	defer hr.Close()

	var core *Core
	rec, err := routing.NewReconciler(routing.Config{
		Protocol:    p.Daemon.RouteProtocol,
		Logger:      log,
		Metrics:     routing.NewMetrics(reg),
		ResyncEvery: p.Daemon.ResyncEvery,
		OnApplied:   func(ops []routing.Op) { core.OnApplied(ops) },
	})
	if err != nil {
		return &StartError{err}
	}
	defer rec.Close()
	det, err := newDetector(p, log, reg)
	if err != nil {
		return &StartError{fmt.Errorf("creating detector: %w", err)}
	}
	defer det.Close()

	core, err = NewCore(CoreConfig{
		Policy: p, Logger: log, Detector: det, Routes: rec, Hooks: hr, Metrics: dm,
		TrackDir: p.Daemon.TrackDir, Load: func() (*policy.Policy, error) { return loadChecked(opts.ConfigPath) },
		Version: opts.Build.Version,
	})
	if err != nil {
		return &StartError{err}
	}

	// Sockets first, while every capability is still there.
	var hl net.Listener
	if p.Daemon.Listen != "" {
		if hl, err = net.Listen("tcp", p.Daemon.Listen); err != nil {
			return &StartError{fmt.Errorf("listening for metrics and status: %w", err)}
		}
		defer hl.Close()
	}
	var ctl *controlServer
	if p.Daemon.ControlSocket != "" {
		ln, err := listenControl(p.Daemon.ControlSocket)
		if err != nil {
			return &StartError{err}
		}
		ctl = &controlServer{ln: ln, path: p.Daemon.ControlSocket, log: log, handle: core.control}
		defer ctl.close()
	}

	if host, _, err := net.SplitHostPort(p.Daemon.Listen); err == nil && p.Daemon.Listen != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			log.Warn("metrics and status are served beyond loopback; they are read-only but reveal the network's health", "listen", p.Daemon.Listen)
		}
	}

	// The kernel is touched from here on.
	core.tune = func(p *policy.Policy) ([]routing.SysctlChange, error) {
		return routing.TuneKernel(p.Kernel, p.Interfaces(), log)
	}
	if changes, err := core.tune(p); err != nil {
		return fmt.Errorf("applying [kernel] settings: %w", err)
	} else if len(changes) > 0 {
		log.Info("kernel settings applied", "changes", len(changes))
	}
	writes, err := rec.Apply(ctx, core.Desired())
	if err != nil {
		// Partial failures are repaired by Run; the daemon must still come
		// up and watch the gateways.
		log.Error("initial apply incomplete", "err", err, "writes", writes)
	} else {
		log.Info("initial state applied", "writes", writes)
	}

	if err := DropCapabilities(KeptCapabilities); err != nil {
		return err
	}
	log.Info("capabilities dropped", "kept", "CAP_NET_ADMIN,CAP_NET_RAW")
	hr.Start()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}

	if ok, _ := sd.SdWatchdogEnabled(false); ok > 0 {
		core.Watchdog = ok / 2
	}
	core.notify = func(state string) { _, _ = sd.SdNotify(false, state) }

	start("detector", det.Run)
	start("reconciler", rec.Run)
	start("health loop", core.Loop)
	var srv *http.Server
	if hl != nil {
		srv = newHTTPServer(core, reg, log)
		start("status server", func(ctx context.Context) error {
			if err := srv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		log.Info("serving metrics and status", "addr", hl.Addr().String())
	}
	if ctl != nil {
		start("control socket", ctl.serve)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	start("signals", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				log.Info("SIGHUP: reloading policy")
				core.RequestReload()
			}
		}
	})

	_, _ = sd.SdNotify(false, sd.SdNotifyReady)
	log.Info("uplinkd running", "policy", p.File, "gateways", len(p.Gateways), "groups", len(p.Groups),
		"proto", p.Daemon.RouteProtocol, "version", opts.Build.Version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		log.Error("stopping after a component failed", "err", runErr)
	}
	_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
	cancel()
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	if ctl != nil {
		ctl.close()
	}
	det.Close()
	rec.Close()
	wg.Wait()
	core.mu.RLock()
	onExit := core.pol.Daemon.OnExit
	core.mu.RUnlock()
	if onExit == policy.OnExitWithdraw {
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := rec.Withdraw(wctx)
		wcancel()
		if err != nil {
			log.Error("withdrawing routes on exit", "err", err)
			runErr = errors.Join(runErr, err)
		} else {
			log.Info("routes and rules withdrawn (on_exit = withdraw)")
		}
	} else {
		log.Info("leaving routes in place (on_exit = leave)")
	}
	hr.Close()
	return runErr
}

// control handles one control-socket command.
func (c *Core) control(ctx context.Context, cmd string) (string, error) {
	switch cmd {
	case CmdReload:
		if err := c.Reload(ctx); err != nil {
			return "", fmt.Errorf("reload refused: %w", err)
		}
		return "policy reloaded\n", nil
	case CmdStatus:
		return statusJSON(c.Status())
	}
	return "", fmt.Errorf("unknown command %q (want %s or %s)", cmd, CmdReload, CmdStatus)
}

package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/hooks"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// Loop is the goroutine that owns health. It returns when ctx ends.
func (c *Core) Loop(ctx context.Context) error {
	// Track files start from the health the loop starts with: a gateway
	// adopted as down stays down for keepalived too.
	for _, g := range c.pol.Gateways {
		if err := c.track.set(g.Name, c.health[g.Name].Healthy()); err != nil {
			c.log.Error("writing track file", "gateway", g.Name, "err", err)
		}
	}
	c.initConditions(c.pol)
	c.update(true)
	debounce := c.Debounce
	if debounce <= 0 {
		debounce = DefaultReloadDebounce
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	var wd <-chan time.Time
	if c.Watchdog > 0 {
		t := time.NewTicker(c.Watchdog)
		defer t.Stop()
		wd = t.C
	}
	var holdEnd <-chan time.Time
	if d := c.hold.remaining(c.now()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		holdEnd = t.C
	}
	var pending reloadWaiters
	if c.flush != nil {
		fctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = c.flush.Run(fctx) }()
		defer func() { stop(); <-done }()
	}
	trc := c.det.Transitions()
	for {
		select {
		case <-ctx.Done():
			pending.answer(ctx.Err())
			if err := c.track.markDown(); err != nil {
				c.log.Error("marking track files down on exit", "err", err)
			}
			return nil
		case tr, ok := <-trc:
			if !ok {
				trc = nil
				continue
			}
			c.transition(tr)
		case <-c.conds.changed():
			c.conditionsChanged()
		case <-c.conds.timer.C:
			c.conditionsChanged()
		case m := <-c.learnc:
			c.relearn(m)
		case ch := <-c.reloadc:
			if len(pending) == 0 {
				timer.Reset(debounce)
			}
			pending = append(pending, ch)
		case <-timer.C:
			pending = c.drainReloads(pending)
			pending.answer(c.reload())
			pending = pending[:0]
		case <-holdEnd:
			// A gateway still unjudged: apply what the verdicts so far say.
			holdEnd = nil
			c.hold.release()
			changes := c.evalConditions()
			c.updateGroups(c.pushRoutes(), false)
			c.announceConditions(changes)
		case <-wd:
			c.watchdog()
		case now := <-beat.C:
			c.beat.mark(now)
			if err := c.track.refresh(now); err != nil {
				c.log.Error("refreshing track files", "err", err)
			}
			c.noteConflicts()
		}
		c.beat.mark(c.now())
	}
}

// watchdog tells systemd the daemon is alive, but only while every worker
// makes progress: withholding the ping is how a wedged detector round,
// prober, kernel call or hook gets the daemon restarted.
func (c *Core) watchdog() {
	if c.notify == nil {
		return
	}
	if ok, reason := c.Healthy(); !ok {
		c.log.Error("withholding the watchdog ping", "err", reason)
		c.notify("STATUS=" + reason)
		return
	}
	c.notify(sd.SdNotifyWatchdog)
}

// reloadWaiters are the callers of one pending reload; a nil entry is a
// request nobody waits for (SIGHUP).
type reloadWaiters []chan error

func (w reloadWaiters) answer(err error) {
	for _, ch := range w {
		if ch != nil {
			ch <- err
		}
	}
}

// drainReloads folds every request that queued up while the debounce ran
// into the reload about to start.
func (c *Core) drainReloads(w reloadWaiters) reloadWaiters {
	for {
		select {
		case ch := <-c.reloadc:
			w = append(w, ch)
		default:
			return w
		}
	}
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
	if !c.hold.holding(c.now()) {
		c.rec.Set(routing.Desired(c.pol, snap))
	}
	c.metrics.setCarriage(carrying(c.pol, snap))
	sb := routing.Standby(c.pol, snap)
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
	if c.conflicts > 0 {
		text += fmt.Sprintf("; degraded: %d route conflicts, not written (uplinkd status)", c.conflicts)
	}
	c.notify(text)
}

// noteConflicts follows the reconciler's conflicts (a DHCP client's or
// networkd's own default on uplinkd's key, say) into systemd's STATUS,
// once a second: READY=1 must not read as if all were fine. The log line
// and the metric are the reconciler's; /healthz asks it directly.
func (c *Core) noteConflicts() {
	n := len(c.rec.Conflicts())
	if n == c.conflicts {
		return
	}
	c.conflicts = n
	c.notifyStatus()
}

// transition handles one detector transition: routes first, then hooks.
func (c *Core) transition(tr detector.Transition) {
	g := c.pol.Gateway(tr.Gateway)
	if g == nil {
		// A transition queued before a reload removed the gateway.
		return
	}
	c.hold.judged(tr.Gateway)
	prev := c.health[tr.Gateway]
	next := healthOf(tr.To, prev)
	c.mu.Lock()
	c.states[tr.Gateway] = tr.To
	c.health[tr.Gateway] = next
	c.mu.Unlock()
	// The detector logs the transition itself at Info.
	c.log.Debug("gateway "+tr.To.String(), "gateway", tr.Gateway, "iface", g.Interface, "from", tr.From.String(),
		"to", tr.To.String(), "cause", tr.Cause, "reason", tr.Reason)
	// Conditions follow health before routes are pushed, so a route gated
	// by a condition changes in the same push as the gateway's own.
	changes := c.evalConditions()
	// Routes first; hooks and bookkeeping only queue work. A conntrack
	// flush waits for the reconciler to have applied the routes (see
	// conntrackFlusher), so it is asked for before they are handed over.
	c.flush.want(g, prev.Healthy(), next.Healthy())
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
	c.announceConditions(changes)
}

// OnApplied is the reconciler's callback: it fires route_changed hooks. It
// runs on the reconciler's goroutine and never blocks.
func (c *Core) OnApplied(ops []routing.Op) {
	if len(ops) == 0 {
		return
	}
	if c.flush != nil {
		c.flush.applied(c.rec.Installed())
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
		case op.Nexthop != nil:
			// A group's members changed in its nexthop object: its
			// route did not need a write.
			owner = op.Nexthop.Owner
			if name, ok := strings.CutPrefix(owner, "group/"); ok {
				c.mu.RLock()
				if g := c.pol.Group(name); g != nil {
					add(&tables, tableText(g.Table))
				}
				c.mu.RUnlock()
			}
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

package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

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
// A refused policy changes nothing: the previous one keeps running.
func (c *Core) reload() error {
	start := c.now()
	if c.notify != nil {
		// MONOTONIC_USEC lets Type=notify-reload units match the reload.
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		c.notify(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", sd.SdNotifyReloading, ts.Nano()/1000))
		defer c.notify(sd.SdNotifyReady)
	}
	base, p, err := c.loadForReload()
	if err != nil {
		c.metrics.reloaded(false, 0)
		c.mu.Lock()
		c.reloadErr = err
		c.mu.Unlock()
		c.log.Error("reload refused, the previous policy keeps running", "err", err)
		return err
	}
	c.base = base
	if c.onBase != nil {
		c.onBase(base)
	}
	c.adopt(p)
	c.metrics.reloaded(true, float64(c.now().UnixNano())/1e9)
	if c.flush != nil {
		for _, g := range p.Gateways {
			c.metrics.initConntrack(g.Name)
		}
	}
	c.log.Info("policy reloaded", "gateways", len(p.Gateways), "groups", len(p.Groups), "took", c.now().Sub(start))
	return nil
}

// loadForReload reads the new policy and hands it, resolved with what the
// auto gateways learned, to the detector, or says why it cannot run. It
// returns the policy as written and as it runs.
func (c *Core) loadForReload() (base, p *policy.Policy, err error) {
	base, err = c.load()
	if err != nil {
		return nil, nil, err
	}
	p, err = c.runnable(resolve(base, c.learned))
	return base, p, err
}

// runnable checks what a reload cannot change and hands p to the
// detector and BFD.
func (c *Core) runnable(p *policy.Policy) (*policy.Policy, error) {
	if p.Daemon.RouteProtocol != c.pol.Daemon.RouteProtocol {
		return nil, fmt.Errorf("route_protocol changed from %d to %d: restart uplinkd to change it, a reload would orphan every route it owns",
			c.pol.Daemon.RouteProtocol, p.Daemon.RouteProtocol)
	}
	peers, err := bfdPeers(p)
	if err != nil {
		return nil, err
	}
	if err := c.det.Update(p); err != nil {
		return nil, fmt.Errorf("updating detector: %w", err)
	}
	if c.bfd != nil {
		c.bfd.Set(peers) // kept sessions renegotiate their timers by poll
	}
	return p, nil
}

// Relearn hands the core what the learner read now. It never blocks:
// newer facts replace those the loop has not taken yet.
func (c *Core) Relearn(m Facts) {
	for {
		select {
		case c.learnc <- m:
			return
		default:
		}
		select {
		case <-c.learnc:
		default:
		}
	}
}

// relearn runs the policy with what the learner read: a gateway whose
// address changed starts its health afresh in the detector (a new
// machine), and its routes are rewritten, as are a VRF's groups when its
// table changed.
func (c *Core) relearn(m Facts) {
	c.learned = m
	p, err := c.runnable(resolve(c.base, m))
	if err != nil {
		c.log.Error("running with the learned gateway addresses", "err", err)
		return
	}
	c.adoptPolicy(p, false)
}

// adopt makes p the running policy after a reload (adoptPolicy).
func (c *Core) adopt(p *policy.Policy) { c.adoptPolicy(p, true) }

// adoptPolicy makes p the running policy: gateways it keeps keep their
// health, new ones start unknown (optimistic), and the groups and
// gateways it dropped lose their series and track files. Then routes
// follow. reload says an operator asked: the start hold ends, and the
// reload is counted.
func (c *Core) adoptPolicy(p *policy.Policy, reload bool) {
	old := c.pol
	if reload {
		c.hold.release() // a reload is an operator's word: apply it now
		for _, w := range restartOnly(old.Daemon, p.Daemon) {
			c.log.Warn("reload: this setting only changes on restart", "setting", w)
		}
	}
	c.hooks.SetHooks(p.Hooks)
	if c.onReload != nil {
		c.onReload(p)
	}
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
	keep := map[string]bool{}
	for _, g := range p.Gateways {
		keep[g.Name] = true
		if st, ok := c.states[g.Name]; ok {
			states[g.Name], health[g.Name] = st, c.health[g.Name]
		} else {
			states[g.Name], health[g.Name] = detector.Unknown, routing.Up
		}
	}
	gh := maps.Clone(c.groupHealth)
	for _, grp := range p.Groups {
		keep[grp.Name] = true
	}
	for _, cd := range p.Conditions {
		keep[cd.Name] = true
	}
	for _, grp := range old.Groups {
		if p.Group(grp.Name) == nil {
			c.metrics.forgetGroup(grp.Name)
			delete(gh, grp.Name)
		}
	}
	for _, g := range old.Gateways {
		if p.Gateway(g.Name) == nil {
			c.flush.forget(g.Name)
		}
	}
	if c.flush == nil {
		for _, g := range p.Gateways {
			if g.Conntrack.Flush != policy.FlushNever {
				c.log.Error("reload: flush_conntrack needs a conntrack socket, which this process has not got; the gateway's entries are not flushed", "gateway", g.Name)
			}
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
	if reload {
		c.reloadErr = nil
		c.lastReload = c.now()
		c.reloads++
	}
	c.mu.Unlock()
	c.metrics.setPolicy(p)
	for _, g := range p.Gateways {
		if err := c.track.set(g.Name, health[g.Name].Healthy()); err != nil {
			c.log.Error("writing track file", "gateway", g.Name, "err", err)
		}
	}
	c.adoptConditions(p)
	changes := c.evalConditions()
	c.update(false)
	c.announceConditions(changes)
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
	if !slices.Equal(a.HTTPHosts, b.HTTPHosts) {
		out = append(out, "http_hosts")
	}
	if a.WebConfigFile != b.WebConfigFile {
		out = append(out, "web_config_file (the file's contents apply at once)")
	}
	if a.TrackDir != b.TrackDir {
		out = append(out, "track_dir")
	}
	if a.Multipath != b.Multipath {
		out = append(out, "multipath")
	}
	if a.ResyncEvery != b.ResyncEvery {
		out = append(out, "resync_interval")
	}
	if a.RulePriority != b.RulePriority {
		out = append(out, "rule_priorities (validated against the new rules, but the old band stays owned)")
	}
	return out
}

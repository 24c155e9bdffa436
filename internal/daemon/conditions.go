package daemon

import (
	"time"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/condition"
	"github.com/uplinkd/uplinkd/internal/condwatch"
	"github.com/uplinkd/uplinkd/internal/hooks"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// ConditionFacts is what the loop needs of the watcher of links, addresses
// and track files; *condwatch.Watcher implements it.
type ConditionFacts interface {
	Set(ifaces, files []string)
	Changed() <-chan struct{}
	Facts() condwatch.Facts
}

// conditions is the loop's share of condition state. Only the loop
// touches it; status reads the copy published under Core.mu.
type conditions struct {
	eval   *condition.Evaluator
	facts  ConditionFacts // nil: no links, addresses or files (tests)
	up     map[string]bool
	inited map[string]bool // metric and track file set (initConditions)
	timer  *time.Timer     // fires when a hold time ends
}

func newConditions(p *policy.Policy, facts ConditionFacts) *conditions {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &conditions{eval: condition.New(p), facts: facts, up: map[string]bool{}, inited: map[string]bool{}, timer: t}
}

// adopt starts the named conditions up (CoreConfig.StartUp).
func (cs *conditions) adopt(names []string, now time.Time) {
	cs.eval.Adopt(names, now)
	for _, name := range names {
		if cs.eval.Up(name) {
			cs.up[name] = true
		}
	}
}

// watch tells the watcher what the policy's conditions look at.
func (cs *conditions) watch(p *policy.Policy) {
	if cs.facts != nil {
		cs.facts.Set(condition.Watched(p))
	}
}

func (cs *conditions) changed() <-chan struct{} {
	if cs.facts == nil {
		return nil
	}
	return cs.facts.Changed()
}

// conditionHealth is a gateway as conditions see it: not yet judged
// (Unknown) is neither up nor down, although routing keeps it (it is
// optimistic so a restart withdraws nothing, but claiming a failover IP on
// that optimism would be wrong).
func conditionHealth(st detector.State, h routing.Health) condition.Health {
	if st == detector.Unknown {
		return condition.Unknown
	}
	switch h {
	case routing.Degraded:
		return condition.Degraded
	case routing.Down:
		return condition.Down
	}
	return condition.Up
}

// evalConditions evaluates every condition against the current facts and
// records what changed; the caller pushes routes, then fires the hooks.
// Called by the loop only.
//
// While the start hold lasts (gateways a restart adopted are not judged
// yet) nothing is evaluated: an unjudged gateway's term does not hold, so
// a condition adopted up would go down, fire its hooks and mark its track
// file down, only to come back once the verdicts are in. The hold ends
// with the last verdict (transition) or its bound (Loop), and both
// evaluate then.
func (c *Core) evalConditions() []condition.Change {
	if c.hold.holding(c.now()) {
		return nil
	}
	cs := c.conds
	f := condition.Facts{Gateways: map[string]condition.Health{}}
	for name, st := range c.states {
		if h := conditionHealth(st, c.health[name]); h != condition.Unknown {
			f.Gateways[name] = h
		}
	}
	if cs.facts != nil {
		w := cs.facts.Facts()
		f.Links, f.Addrs, f.Files = w.Links, w.Addrs, w.Files
	}
	now := c.now()
	changes := cs.eval.Observe(f, now)
	for _, ch := range changes {
		cs.up[ch.Name] = ch.Up
	}
	cs.timer.Stop()
	if at, ok := cs.eval.Deadline(); ok {
		cs.timer.Reset(max(at.Sub(now), 0))
	}
	st := cs.eval.Status()
	c.mu.Lock()
	c.condStatus = st
	c.mu.Unlock()
	return changes
}

// announceConditions logs, counts, writes the track files of and fires
// the hooks for condition changes, after routes were pushed.
func (c *Core) announceConditions(changes []condition.Change) {
	for _, ch := range changes {
		state, prev, ev := "up", "down", policy.EventConditionUp
		if !ch.Up {
			state, prev, ev = "down", "up", policy.EventConditionDown
		}
		c.log.Info("condition "+state, "condition", ch.Name, "reason", ch.Reason)
		c.metrics.setCondition(ch.Name, ch.Up)
		if err := c.track.set(ch.Name, ch.Up); err != nil {
			c.log.Error("writing track file", "condition", ch.Name, "err", err)
		}
		c.hooks.Fire(hooks.Event{Name: ev, Condition: ch.Name, PrevState: prev, State: state, Reason: ch.Reason})
	}
}

// conditionsChanged is the loop's answer to a watcher hint or a hold
// time's end.
func (c *Core) conditionsChanged() {
	if changes := c.evalConditions(); len(changes) > 0 {
		c.pushRoutes()
		c.announceConditions(changes)
	}
}

// initConditions starts every condition down in its metric and track file
// (nothing is claimed before the terms hold), or up where a restart
// adopted it (the claim the previous instance left stands), and tells the
// watcher what to look at.
func (c *Core) initConditions(p *policy.Policy) {
	for _, cd := range p.Conditions {
		if c.conds.inited[cd.Name] {
			continue
		}
		c.conds.inited[cd.Name] = true
		up := c.conds.up[cd.Name]
		c.conds.up[cd.Name] = up
		c.metrics.setCondition(cd.Name, up)
		if err := c.track.set(cd.Name, up); err != nil {
			c.log.Error("writing track file", "condition", cd.Name, "err", err)
		}
		if up {
			c.log.Info("condition starts up", "condition", cd.Name, "reason", reasonAdoptedUp)
		}
	}
	st := c.conds.eval.Status()
	c.mu.Lock()
	c.condStatus = st
	c.mu.Unlock()
	c.conds.watch(p)
}

// reasonAdoptedUp is why a condition starts up.
const reasonAdoptedUp = "shown up by the owned routes at start"

// adoptConditions switches the evaluator to p on reload: kept conditions
// keep their state, dropped ones lose their series (their track files go
// with the prune of objects that left the policy).
func (c *Core) adoptConditions(p *policy.Policy) {
	for _, name := range c.conds.eval.Update(p) {
		delete(c.conds.up, name)
		delete(c.conds.inited, name)
		c.metrics.forgetCondition(name)
	}
	c.initConditions(p)
}

// conditionStatus is the status of every condition of p, from the loop's
// last evaluation; a condition not yet evaluated (just added by a reload)
// shows down with its terms unknown, as not holding.
func conditionStatus(p *policy.Policy, st []condition.Status) []ConditionStatus {
	byName := map[string]condition.Status{}
	for _, s := range st {
		byName[s.Name] = s
	}
	out := []ConditionStatus{}
	for _, cd := range p.Conditions {
		s := byName[cd.Name]
		cs := ConditionStatus{Name: cd.Name, Up: s.Up, Since: s.Since, Pending: s.Pending, Until: s.Until, Terms: []ConditionTerm{}}
		for i, t := range cd.Terms {
			holds := i < len(s.Terms) && s.Terms[i].Term == t.Text && s.Terms[i].Holds
			cs.Terms = append(cs.Terms, ConditionTerm{Term: t.Text, Holds: holds})
		}
		out = append(out, cs)
	}
	return out
}

// conditionLiveness reports the condition watcher to /healthz and the
// watchdog: a re-read of links, addresses or track files that never
// returns is a stall.
func conditionLiveness(w *condwatch.Watcher) LivenessSource {
	return func() []Worker {
		p := w.Liveness()
		return []Worker{{Name: "condition watcher", LastProgress: p.LastProgress, Busy: p.Busy}}
	}
}

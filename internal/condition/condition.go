package condition

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// Health is a gateway's health as conditions see it.
type Health int

// A gateway missing from Facts is Unknown: not yet judged, neither up nor
// down.
const (
	Unknown Health = iota
	Up
	Degraded
	Down
)

// Addr is an address on an interface.
type Addr struct {
	Iface string
	IP    netip.Addr
}

// Facts is everything conditions look at, as it is now.
type Facts struct {
	Gateways map[string]Health
	Links    map[string]bool // interface name -> exists, admin up and carrier
	Addrs    map[Addr]bool   // usable (not tentative) addresses on their interfaces
	Files    map[string]bool // track file path -> holds 0 or "up"
}

// Change is a condition going up or down.
type Change struct {
	Name   string
	Up     bool
	Reason string // which terms hold or fail, for logs and hooks
}

// Status is one condition's state, for the status document.
type Status struct {
	Name string
	Up   bool
	// Since is when it last changed; zero if it never came up.
	Since time.Time
	// Pending is set while the terms disagree with Up and a hold time runs;
	// Until is when the change will be believed.
	Pending bool
	Until   time.Time
	Terms   []TermStatus
}

// TermStatus is one term and whether it holds now.
type TermStatus struct {
	Term  string
	Holds bool
}

type state struct {
	up      bool
	raw     bool      // what the terms say now
	rawAt   time.Time // when raw last changed: the start of a hold
	since   time.Time // when up last changed
	holds   []bool    // per term, from the last Observe
	pending time.Duration
}

// Evaluator holds every condition's state. It is not safe for concurrent
// use: one goroutine (the daemon's health loop) owns it.
type Evaluator struct {
	pol   *policy.Policy
	order []*policy.Condition
	st    map[string]*state
}

// New returns an evaluator for p's conditions, all down.
func New(p *policy.Policy) *Evaluator {
	e := &Evaluator{st: map[string]*state{}}
	e.Update(p)
	return e
}

// Update switches to a new policy. Conditions that remain keep their state
// (a reload does not re-run condition_up hooks); new ones start down. It
// returns the names of the conditions that left the policy.
func (e *Evaluator) Update(p *policy.Policy) (removed []string) {
	e.pol, e.order = p, p.ConditionOrder()
	keep := map[string]bool{}
	for _, c := range e.order {
		keep[c.Name] = true
		if e.st[c.Name] == nil {
			e.st[c.Name] = &state{}
		}
	}
	for name := range e.st {
		if !keep[name] {
			delete(e.st, name)
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	return removed
}

// Observe evaluates every condition against f at now and returns those
// whose state changed, in dependency order.
func (e *Evaluator) Observe(f Facts, now time.Time) []Change {
	var out []Change
	for _, c := range e.order {
		st := e.st[c.Name]
		st.holds = st.holds[:0]
		n := 0
		for _, t := range c.Terms {
			h := e.term(t, f)
			st.holds = append(st.holds, h)
			if h {
				n++
			}
		}
		raw := combine(c, n)
		if raw != st.raw {
			st.raw, st.rawAt = raw, now
		}
		st.pending = 0
		if st.up == raw {
			continue
		}
		hold := c.HoldDown
		if raw {
			hold = c.HoldUp
		}
		if left := hold - now.Sub(st.rawAt); left > 0 {
			st.pending = left
			continue
		}
		st.up, st.since = raw, now
		out = append(out, Change{Name: c.Name, Up: raw, Reason: reason(c, st.holds, n)})
	}
	return out
}

func combine(c *policy.Condition, n int) bool {
	switch c.Match {
	case policy.MatchAll:
		return n == len(c.Terms)
	case policy.MatchAny:
		return n > 0
	default:
		return n >= c.AtLeast
	}
}

// reason says why a condition is what it is: the failing terms when some
// fail, else that all hold.
func reason(c *policy.Condition, holds []bool, n int) string {
	var fail []string
	for i, h := range holds {
		if !h {
			fail = append(fail, c.Terms[i].Text)
		}
	}
	s := fmt.Sprintf("%d of %d terms hold", n, len(c.Terms))
	if c.Match == policy.MatchAtLeast {
		s += fmt.Sprintf(" (at least %d needed)", c.AtLeast)
	}
	if len(fail) > 0 {
		s += "; not holding: " + strings.Join(fail, ", ")
	}
	return s
}

func (e *Evaluator) term(t policy.Term, f Facts) bool {
	var v bool
	switch t.Kind {
	case policy.TermGateway:
		v = gatewayIs(f.Gateways[t.Name], t.State)
	case policy.TermGroup:
		v = e.groupIs(t.Name, t.State, f)
	case policy.TermLink:
		v = f.Links[t.Name] == (t.State == policy.StateUp)
	case policy.TermAddress:
		v = f.Addrs[Addr{t.Name, t.Addr}]
	case policy.TermCondition:
		v = e.st[t.Name] != nil && e.st[t.Name].up
	case policy.TermFile:
		v = f.Files[t.Path]
	}
	return v != t.Not
}

func gatewayIs(h Health, state string) bool {
	switch state {
	case policy.StateUp:
		return h == Up || h == Degraded
	case policy.StateDegraded:
		return h == Degraded
	default:
		return h == Down
	}
}

// groupIs: a group is up while a member is up and down while every member
// is down; with members not yet judged it may be neither.
func (e *Evaluator) groupIs(name, state string, f Facts) bool {
	g := e.pol.Group(name)
	if g == nil {
		return false
	}
	up, down := 0, 0
	for _, m := range g.Gateways {
		switch f.Gateways[m] {
		case Up, Degraded:
			up++
		case Down:
			down++
		}
	}
	if state == policy.StateUp {
		return up > 0
	}
	return down == len(g.Gateways)
}

// Deadline is the earliest time a pending hold ends, when Observe must be
// called again even if no fact changes.
func (e *Evaluator) Deadline() (time.Time, bool) {
	var at time.Time
	for _, c := range e.order {
		if t, ok := e.deadlineOf(c, e.st[c.Name]); ok && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	return at, !at.IsZero()
}

// Adopt starts the named conditions up, as a previous instance left them
// (routing.Adopt): no hold_up is waited for and no change is reported.
// Terms that fail afterwards take the condition down after hold_down,
// like any up condition's. Names not in the policy are ignored.
func (e *Evaluator) Adopt(names []string, now time.Time) {
	for _, name := range names {
		if st := e.st[name]; st != nil {
			st.up, st.raw, st.rawAt, st.since = true, true, now, now
		}
	}
}

// Up reports whether the named condition is up.
func (e *Evaluator) Up(name string) bool { return e.st[name] != nil && e.st[name].up }

// States returns every condition's state, by name.
func (e *Evaluator) States() map[string]bool {
	out := make(map[string]bool, len(e.st))
	for name, st := range e.st {
		out[name] = st.up
	}
	return out
}

// Status returns every condition's state and terms, in policy (name)
// order.
func (e *Evaluator) Status() []Status {
	var out []Status
	for _, c := range e.pol.Conditions {
		st := e.st[c.Name]
		s := Status{Name: c.Name, Up: st.up, Since: st.since}
		if st.pending > 0 {
			s.Pending = true
			s.Until, _ = e.deadlineOf(c, st)
		}
		for i, t := range c.Terms {
			s.Terms = append(s.Terms, TermStatus{Term: t.Text, Holds: i < len(st.holds) && st.holds[i]})
		}
		out = append(out, s)
	}
	return out
}

func (e *Evaluator) deadlineOf(c *policy.Condition, st *state) (time.Time, bool) {
	hold := c.HoldDown
	if st.raw {
		hold = c.HoldUp
	}
	return st.rawAt.Add(hold), st.pending > 0
}

// Watched is what the conditions of p look at besides health: the
// interfaces whose links or addresses they name and the track files they
// read, each sorted and once.
func Watched(p *policy.Policy) (ifaces, files []string) {
	for _, c := range p.Conditions {
		for _, t := range c.Terms {
			switch t.Kind {
			case policy.TermLink, policy.TermAddress:
				if !slices.Contains(ifaces, t.Name) {
					ifaces = append(ifaces, t.Name)
				}
			case policy.TermFile:
				if !slices.Contains(files, t.Path) {
					files = append(files, t.Path)
				}
			}
		}
	}
	slices.Sort(ifaces)
	slices.Sort(files)
	return ifaces, files
}

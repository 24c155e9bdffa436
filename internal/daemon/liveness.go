package daemon

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/uplinkd/uplinkd/routing"
	"github.com/vishvananda/netlink"
)

// StallAfter is how long a worker may be busy with one piece of work (a
// kernel call, a request, a loop turn) before /healthz and the systemd
// watchdog fail. Hooks get their own timeout on top of it.
const StallAfter = 10 * time.Second

// Worker is one long-lived worker's progress, as /healthz and the watchdog
// judge it. A worker waiting for work is never stalled, however long it
// waits; one busy with a piece of work since long ago is.
type Worker struct {
	Name string
	// LastProgress is when the worker last finished a piece of work or
	// started the one it is busy with.
	LastProgress time.Time
	Busy         bool
	// Limit is how long one piece of work may take; 0 means StallAfter.
	Limit time.Duration
}

// Stalled reports whether w has been busy for longer than its limit.
func (w Worker) Stalled(now time.Time) bool {
	limit := w.Limit
	if limit <= 0 {
		limit = StallAfter
	}
	return w.Busy && now.Sub(w.LastProgress) > limit
}

// LivenessSource reports the workers of one component. The detector's
// workers, the reconciler's kernel calls, the hook runs and the HTTP
// server each have one.
type LivenessSource func() []Worker

// detectorLiveness reports the detector's workers, named "detector ...".
func detectorLiveness(det HealthSource) LivenessSource {
	return func() []Worker {
		ws := det.Liveness()
		out := make([]Worker, len(ws))
		for i, w := range ws {
			out[i] = Worker{Name: "detector " + w.Name, LastProgress: w.LastProgress, Busy: w.Busy}
		}
		return out
	}
}

// progress is the progress of one worker that the daemon instruments
// itself: it is busy between begin and end. Several pieces of work may
// overlap (HTTP requests); finishing any of them is progress.
type progress struct {
	name string
	now  func() time.Time

	mu   sync.Mutex
	last time.Time
	busy int
}

func newProgress(name string, now func() time.Time) *progress {
	return &progress{name: name, now: now, last: now()}
}

func (p *progress) begin() {
	p.mu.Lock()
	if p.busy == 0 {
		p.last = p.now()
	}
	p.busy++
	p.mu.Unlock()
}

func (p *progress) end() {
	p.mu.Lock()
	p.busy--
	p.last = p.now()
	p.mu.Unlock()
}

func (p *progress) report() []Worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return []Worker{{Name: p.name, LastProgress: p.last, Busy: p.busy > 0}}
}

// stalled lists the workers that stopped making progress, the health
// loop first, as "name (busy 12s)", sorted after the loop.
func (c *Core) stalled() []string {
	now := c.now()
	var out []string
	// The loop goes round at least every second; it is busy by definition.
	if loop := (Worker{Name: "health loop", LastProgress: c.beat.last(), Busy: true}); loop.Stalled(now) {
		out = append(out, fmt.Sprintf("%s (no turn for %s)", loop.Name, now.Sub(loop.LastProgress).Round(time.Second)))
	}
	var rest []string
	for _, src := range c.live {
		for _, w := range src() {
			if w.Stalled(now) {
				rest = append(rest, fmt.Sprintf("%s (busy %s)", w.Name, now.Sub(w.LastProgress).Round(time.Second)))
			}
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// Healthy reports whether every worker makes progress, for /healthz and
// the watchdog; the reason names the stalled ones.
func (c *Core) Healthy() (ok bool, reason string) {
	if s := c.stalled(); len(s) > 0 {
		return false, "stalled: " + strings.Join(s, ", ")
	}
	return true, ""
}

// withProgress marks the HTTP server busy while it serves a request, so a
// handler wedged on a lock or a component shows as a stalled server.
func withProgress(p *progress, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.begin()
		defer p.end()
		h.ServeHTTP(w, r)
	})
}

// watchedNetlink marks the reconciler busy during every kernel call it
// makes, so a netlink call that never returns fails /healthz and the
// watchdog instead of silently freezing route repairs.
type watchedNetlink struct {
	routing.Netlink
	p *progress
}

func (w watchedNetlink) call(fn func() error) error {
	w.p.begin()
	defer w.p.end()
	return fn()
}

func (w watchedNetlink) RouteListFilteredIter(family int, filter *netlink.Route, mask uint64, f func(netlink.Route) bool) error {
	return w.call(func() error { return w.Netlink.RouteListFilteredIter(family, filter, mask, f) })
}
func (w watchedNetlink) RouteAdd(r *netlink.Route) error {
	return w.call(func() error { return w.Netlink.RouteAdd(r) })
}
func (w watchedNetlink) RouteReplace(r *netlink.Route) error {
	return w.call(func() error { return w.Netlink.RouteReplace(r) })
}
func (w watchedNetlink) RouteDel(r *netlink.Route) error {
	return w.call(func() error { return w.Netlink.RouteDel(r) })
}
func (w watchedNetlink) RuleListFiltered(family int, filter *netlink.Rule, mask uint64) (rules []netlink.Rule, err error) {
	err = w.call(func() error { rules, err = w.Netlink.RuleListFiltered(family, filter, mask); return err })
	return rules, err
}
func (w watchedNetlink) RuleAdd(r *netlink.Rule) error {
	return w.call(func() error { return w.Netlink.RuleAdd(r) })
}
func (w watchedNetlink) RuleDel(r *netlink.Rule) error {
	return w.call(func() error { return w.Netlink.RuleDel(r) })
}
func (w watchedNetlink) LinkList() (links []netlink.Link, err error) {
	err = w.call(func() error { links, err = w.Netlink.LinkList(); return err })
	return links, err
}

// RuleBatch forwards pipelined rule writes when the kernel can do them
// (routing.Kernel can), as one watched call; otherwise each rule goes on
// its own, as the reconciler would have sent it.
func (w watchedNetlink) RuleBatch(del bool, rules []routing.Rule) []error {
	b, ok := w.Netlink.(routing.RuleBatcher)
	errs := make([]error, len(rules))
	_ = w.call(func() error {
		if ok {
			errs = b.RuleBatch(del, rules)
			return nil
		}
		for i, r := range rules {
			if del {
				errs[i] = w.Netlink.RuleDel(routing.ToNetlinkRule(r))
			} else {
				errs[i] = w.Netlink.RuleAdd(routing.ToNetlinkRule(r))
			}
		}
		return nil
	})
	return errs
}

// watchedNexthops reports progress on every nexthop call, like
// watchedNetlink.
type watchedNexthops struct {
	routing.NexthopKernel
	p *progress
}

func (w watchedNexthops) call(fn func() error) error {
	w.p.begin()
	defer w.p.end()
	return fn()
}

func (w watchedNexthops) Nexthops() (out []routing.NexthopObj, err error) {
	err = w.call(func() error { out, err = w.NexthopKernel.Nexthops(); return err })
	return out, err
}

func (w watchedNexthops) WriteNexthop(kind routing.OpKind, o routing.NexthopObj) error {
	return w.call(func() error { return w.NexthopKernel.WriteNexthop(kind, o) })
}

func (w watchedNexthops) RouteNHIDs(family int, proto uint8) (out map[routing.RouteKey]uint32, err error) {
	err = w.call(func() error { out, err = w.NexthopKernel.RouteNHIDs(family, proto); return err })
	return out, err
}

func (w watchedNexthops) WriteRouteVia(kind routing.OpKind, r routing.Route) error {
	return w.call(func() error { return w.NexthopKernel.WriteRouteVia(kind, r) })
}

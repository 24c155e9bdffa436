package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/vishvananda/netns"
)

// conntrackFlusher runs a gateway's scoped conntrack flush
// (flush_conntrack) once routing has acted on its transition: routes
// first, then the flush. Flushed before the route change, the next packet
// of each flow would recreate the old mapping through the old route.
//
// The loop says what it wants (want, on a transition); the reconciler's
// callback says what is installed (applied, after each apply); a pending
// flush is run when the installed routes agree: a gateway that went down
// no longer carries any route, one that came back carries one. A
// transition the other way before that cancels the pending flush. The
// flushes themselves run on the flusher's own goroutine (Run), since a
// conntrack dump of a busy router takes a while and neither the loop nor
// the reconciler may wait for it.
type conntrackFlusher struct {
	ct      routing.Conntrack
	log     *slog.Logger
	metrics *Metrics

	mu      sync.Mutex
	pending map[string]flushJob // by gateway

	jobs chan flushJob
}

type flushJob struct {
	gw   *policy.Gateway
	down bool // the gateway left its routes (on_down); else it rejoined them (on_up)
}

func (j flushJob) event() string {
	if j.down {
		return "down"
	}
	return "up"
}

// flushQueue bounds the flushes waiting for the worker: one per gateway
// and direction is the most that can be useful.
const flushQueue = 64

func newConntrackFlusher(ct routing.Conntrack, log *slog.Logger, m *Metrics) *conntrackFlusher {
	return &conntrackFlusher{ct: ct, log: log, metrics: m, pending: map[string]flushJob{}, jobs: make(chan flushJob, flushQueue)}
}

// want records a transition of g between healthy and not. Called by the
// loop. A nil flusher (no conntrack access) does nothing.
func (f *conntrackFlusher) want(g *policy.Gateway, wasHealthy, healthy bool) {
	if f == nil || wasHealthy == healthy {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pending, g.Name)
	if (!healthy && g.Conntrack.Flush.OnDown()) || (healthy && g.Conntrack.Flush.OnUp()) {
		f.pending[g.Name] = flushJob{gw: g, down: !healthy}
	}
}

// applied hands the pending flushes that installed now agrees with to the
// worker. Called after every apply, on the reconciler's goroutine; it
// never blocks: a full queue leaves the flush pending for the next apply.
func (f *conntrackFlusher) applied(installed routing.State) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, j := range f.pending {
		if carries(installed, j.gw) == j.down {
			continue
		}
		select {
		case f.jobs <- j:
			delete(f.pending, name)
		default:
		}
	}
}

// forget drops pending flushes of gateways no longer in the policy and
// their series.
func (f *conntrackFlusher) forget(name string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	delete(f.pending, name)
	f.mu.Unlock()
	f.metrics.forgetConntrack(name)
}

// carries reports whether any installed route goes through g.
func carries(s routing.State, g *policy.Gateway) bool {
	for _, r := range s.Routes {
		if slices.ContainsFunc(r.Nexthops, func(nh routing.Nexthop) bool {
			return nh.Gateway == g.Address && (nh.Dev == "" || nh.Dev == g.Interface)
		}) {
			return true
		}
	}
	return false
}

// Run flushes until ctx ends.
func (f *conntrackFlusher) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-f.jobs:
			f.flush(j)
		}
	}
}

func (f *conntrackFlusher) flush(j flushJob) {
	g := j.gw
	c := g.Conntrack
	scope := routing.ConntrackScope{Gateway: g.Name, Family: familyOfAddr(g), SNAT: c.SNAT, Mark: c.Mark, Mask: c.Mask, Interface: g.Interface}
	n, err := routing.FlushConntrack(f.ct, scope)
	f.metrics.conntrackFlushed(g.Name, j.event(), n)
	if err != nil {
		f.log.Error("flushing conntrack entries", "gateway", g.Name, "iface", g.Interface, "event", j.event(), "match", scope.Match(), "flushed", n, "err", err)
		return
	}
	f.log.Info("gateway "+j.event()+": flushed its conntrack entries after the route change", "gateway", g.Name, "iface", g.Interface,
		"event", j.event(), "match", scope.Match(), "flushed", n)
}

func familyOfAddr(g *policy.Gateway) int {
	if g.Address.Is6() {
		return 6
	}
	return 4
}

// openConntrack opens the conntrack socket, once, before the capabilities
// are dropped, so that a reload may turn flush_conntrack on. A kernel
// without NETLINK_NETFILTER fails the start only if p asks for flushes: a
// flush the policy wants must not become a silent no-op.
func openConntrack(p *policy.Policy, log *slog.Logger) (*routing.KernelConntrack, error) {
	ct, err := routing.NewKernelConntrack(netns.None())
	if err == nil {
		return ct, nil
	}
	if slices.ContainsFunc(p.Gateways, func(g *policy.Gateway) bool { return g.Conntrack.Flush != policy.FlushNever }) {
		return nil, fmt.Errorf("flush_conntrack: %w", err)
	}
	log.Info("no conntrack socket; flush_conntrack cannot be turned on by a reload", "err", err)
	return nil, nil
}

// conntrackOrNil keeps a nil *KernelConntrack from becoming a non-nil
// interface.
func conntrackOrNil(ct *routing.KernelConntrack) routing.Conntrack {
	if ct == nil {
		return nil
	}
	return ct
}

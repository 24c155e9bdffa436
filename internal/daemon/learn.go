package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// A gateway with address = "auto" learns its address from its interface:
// the nexthop of the default route another program installed there (a
// DHCP client, the kernel from router advertisements, pppd), in any
// table, of any protocol but uplinkd's own. The learner follows those
// routes and hands the core the addresses; the core runs the policy with
// them filled in (resolve), which rewrites the gateway's routes and, as
// for any changed address, starts its health afresh (detector.apply).

// DefaultRoute is one nexthop of a default route, as the learner sees it.
type DefaultRoute struct {
	Family   int
	Table    uint32
	Protocol uint8
	Metric   uint32
	Dev      string
	Gateway  netip.Addr // invalid: a device route ("default dev ppp0")
}

// DefaultRoutes is the learner's kernel boundary.
type DefaultRoutes interface {
	// Defaults lists the default routes of every table through the
	// given interfaces, one entry per nexthop.
	Defaults(ifaces []string) ([]DefaultRoute, error)
	// WatchRoutes calls hint on every route change until ctx ends or the
	// subscription fails (ENOBUFS included), and says why.
	WatchRoutes(ctx context.Context, hint func()) error
}

// Learned is what an auto gateway learned.
type Learned struct {
	Addr   netip.Addr // invalid with Link
	Link   bool       // the default is a device route: the gateway is the link
	Source string     // the route it came from, as ip prints it
}

// learn picks, for every auto gateway of p, the default route it learns
// from: of its family, through its interface, not of protocol own. The
// lowest metric wins (what the kernel itself would use), then the main
// table, then the lowest table and address, so the choice is stable.
func learn(p *policy.Policy, routes []DefaultRoute, own uint8) map[string]Learned {
	out := map[string]Learned{}
	for _, g := range p.Gateways {
		if !g.Auto {
			continue
		}
		var cands []DefaultRoute
		for _, r := range routes {
			if r.Family == g.Family() && r.Dev == g.Interface && r.Protocol != own {
				cands = append(cands, r)
			}
		}
		if len(cands) == 0 {
			continue
		}
		best := slices.MinFunc(cands, func(a, b DefaultRoute) int {
			return cmp.Or(cmp.Compare(a.Metric, b.Metric), cmp.Compare(tableRank(a.Table), tableRank(b.Table)), a.Gateway.Compare(b.Gateway))
		})
		out[g.Name] = Learned{Addr: best.Gateway, Link: !best.Gateway.IsValid(), Source: best.String()}
	}
	return out
}

// tableRank orders main first, then by number.
func tableRank(t uint32) int64 {
	if t == 254 {
		return -1
	}
	return int64(t)
}

func (r DefaultRoute) String() string {
	via := ""
	if r.Gateway.IsValid() {
		via = " via " + r.Gateway.String()
	}
	return fmt.Sprintf("default%s dev %s table %s proto %s metric %d", via, r.Dev, policy.TableName(r.Table), protoName(r.Protocol), r.Metric)
}

// protoName names the route protocols of the programs auto learns from,
// as /etc/iproute2/rt_protos does.
func protoName(p uint8) string {
	switch p {
	case 2:
		return "kernel"
	case 3:
		return "boot"
	case 4:
		return "static"
	case 9:
		return "ra"
	case 16:
		return "dhcp"
	}
	return fmt.Sprint(p)
}

// resolve is base with every auto gateway's learned address filled in;
// one that learned nothing stays unresolved (policy.Gateway.Unresolved):
// routing leaves it out and the on-link watcher holds it down. base is
// not changed; without auto gateways it is returned as is.
func resolve(base *policy.Policy, learned map[string]Learned) *policy.Policy {
	auto := false
	gws := make([]*policy.Gateway, len(base.Gateways))
	for i, g := range base.Gateways {
		gws[i] = g
		if !g.Auto {
			continue
		}
		auto = true
		c := *g
		l := learned[g.Name]
		c.Address, c.Link, c.Learned = l.Addr, l.Link, l.Source
		gws[i] = &c
	}
	if !auto {
		return base
	}
	return base.Derive(gws, base.Groups)
}

// autoIfaces lists the interfaces of p's auto gateways, once each.
func autoIfaces(p *policy.Policy) []string {
	var out []string
	for _, g := range p.Gateways {
		if g.Auto && !slices.Contains(out, g.Interface) {
			out = append(out, g.Interface)
		}
	}
	return out
}

// hasAuto says whether p has an auto gateway.
func hasAuto(p *policy.Policy) bool {
	return slices.ContainsFunc(p.Gateways, func(g *policy.Gateway) bool { return g.Auto })
}

// learnResync re-reads the routes even without events: they are hints.
const learnResync = 10 * time.Second

// learner follows the default routes for the auto gateways. Run owns it;
// Update, Current and Run may be called concurrently.
type learner struct {
	src     DefaultRoutes
	log     *slog.Logger
	own     uint8
	pol     atomic.Pointer[policy.Policy] // the policy as written (auto unresolved)
	kick    chan struct{}
	changed func(map[string]Learned) // told of every change; must not block

	mu   sync.Mutex
	last map[string]Learned
	busy *progress // liveness: a route dump that never returns stalls it
}

func newLearner(src DefaultRoutes, log *slog.Logger, p *policy.Policy, changed func(map[string]Learned)) *learner {
	l := &learner{src: src, log: log, own: p.Daemon.RouteProtocol, kick: make(chan struct{}, 1), changed: changed, busy: newProgress("auto gateway learner", time.Now)}
	l.pol.Store(p)
	return l
}

// Update hands a reloaded policy (as written) to the learner.
func (l *learner) Update(p *policy.Policy) {
	l.pol.Store(p)
	l.hint()
}

func (l *learner) hint() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Current is what the auto gateways have learned so far.
func (l *learner) Current() map[string]Learned {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.last)
}

// Prime learns once, before anything runs, so that the first routes and
// the restart's adoption already use the learned addresses.
func (l *learner) Prime() { l.recompute(false) }

// Run follows route changes until ctx ends.
func (l *learner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		keepWatching(ctx, l.log, "route subscription for auto gateways", l.src.WatchRoutes, l.hint)
	}()
	resync := time.NewTicker(learnResync)
	defer resync.Stop()
	// A burst of route events (a lease renewed: address, then route)
	// settles for this long before the routes are read.
	const settle = 50 * time.Millisecond
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.kick:
			debounce.Reset(settle)
			continue
		case <-resync.C:
		case <-debounce.C:
		}
		l.recompute(true)
	}
}

// Liveness reports the learner as a worker, busy while it reads routes.
func (l *learner) Liveness() []Worker { return l.busy.report() }

func (l *learner) recompute(notify bool) {
	p := l.pol.Load()
	if !hasAuto(p) {
		return
	}
	l.busy.begin()
	routes, err := l.src.Defaults(autoIfaces(p))
	l.busy.end()
	if err != nil {
		l.log.Warn("reading default routes for auto gateways", "err", err)
		return
	}
	now := learn(p, routes, l.own)
	l.mu.Lock()
	prev := l.last
	same := prev != nil && maps.Equal(prev, now)
	l.last = now
	l.mu.Unlock()
	if same {
		return
	}
	for _, g := range p.Gateways {
		if !g.Auto {
			continue
		}
		was, had := prev[g.Name]
		got, has := now[g.Name]
		switch {
		case has && (!had || was.Addr != got.Addr || was.Link != got.Link):
			l.log.Info("auto gateway learned", "gateway", g.Name, "iface", g.Interface, "address", addrText(got), "source", got.Source)
		case !has && (had || prev == nil):
			l.log.Info("auto gateway: nothing learned", "gateway", g.Name, "iface", g.Interface, "reason", unlearnedReason(g))
		}
	}
	if notify && l.changed != nil {
		l.changed(maps.Clone(now))
	}
}

func addrText(l Learned) string {
	if l.Link {
		return "the link itself"
	}
	return l.Addr.String()
}

// unlearnedReason is why an auto gateway is down before it learns.
func unlearnedReason(g *policy.Gateway) string {
	return "no gateway learned on " + g.Interface
}

// ResolveAuto reads this namespace's default routes once and resolves
// p's auto gateways as the daemon would at start, for `uplinkd plan`. The
// notes say, per auto gateway, what it learned or that it learned nothing.
func ResolveAuto(p *policy.Policy) (*policy.Policy, []string, error) {
	if !hasAuto(p) {
		return p, nil, nil
	}
	routes, err := netlinkRoutes{}.Defaults(autoIfaces(p))
	if err != nil {
		return nil, nil, fmt.Errorf("reading default routes for auto gateways: %w", err)
	}
	learned := learn(p, routes, p.Daemon.RouteProtocol)
	var notes []string
	for _, g := range p.Gateways {
		if !g.Auto {
			continue
		}
		if l, ok := learned[g.Name]; ok {
			notes = append(notes, fmt.Sprintf("gateway %s: %s, learned from %s", g.Name, addrText(l), l.Source))
		} else {
			notes = append(notes, fmt.Sprintf("gateway %s: %s (down, its routes left out)", g.Name, unlearnedReason(g)))
		}
	}
	return resolve(p, learned), notes, nil
}

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
// table, of any protocol but uplinkd's own. A gateway in a VRF routes in
// the VRF's table, which the VRF device holds (vrf.go). The learner
// follows those routes and devices and hands the core the Facts; the core
// runs the policy with them filled in (resolve), which rewrites the
// gateway's routes and, as for any changed address, starts its health
// afresh (detector.apply).

// Facts is what the learner read from the kernel for a policy that leaves
// things to it. The zero value knows nothing.
type Facts struct {
	Gateways map[string]Learned // the auto gateways that learned an address
	VRFs     map[string]VRF     // the VRF devices the policy names that exist
	L3mdev   map[int]bool       // the families (4, 6) with an l3mdev rule; read with VRFs
}

func (f Facts) clone() Facts {
	return Facts{Gateways: maps.Clone(f.Gateways), VRFs: maps.Clone(f.VRFs), L3mdev: maps.Clone(f.L3mdev)}
}

func (f Facts) equal(o Facts) bool {
	return maps.Equal(f.Gateways, o.Gateways) && maps.EqualFunc(f.VRFs, o.VRFs, VRF.equal) && maps.Equal(f.L3mdev, o.L3mdev)
}

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

// resolve is base with the facts filled in: every auto gateway's learned
// address (one that learned nothing stays unresolved, Gateway.Unresolved:
// routing leaves it out and the on-link watcher holds it down), and for
// a VRF's gateways and groups the VRF's state and table (resolveVRFs).
// base is not changed; without auto gateways or VRFs it is returned as is.
func resolve(base *policy.Policy, f Facts) *policy.Policy {
	if !hasAuto(base) && !hasVRF(base) {
		return base
	}
	gws := make([]*policy.Gateway, len(base.Gateways))
	for i, g := range base.Gateways {
		gws[i] = g
		if !g.Auto && g.VRF == "" {
			continue
		}
		c := *g
		if g.Auto {
			l := f.Gateways[g.Name]
			c.Address, c.Link, c.Learned = l.Addr, l.Link, l.Source
		}
		c.VRFProblem = vrfProblem(g, f.VRFs)
		c.VRFWarning = vrfWarning(g, f)
		gws[i] = &c
	}
	return base.Derive(gws, resolveVRFs(base.Groups, f.VRFs))
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
	vrfs    VRFDevices
	log     *slog.Logger
	own     uint8
	pol     atomic.Pointer[policy.Policy] // the policy as written (auto unresolved)
	kick    chan struct{}
	changed func(Facts) // told of every change; must not block

	mu    sync.Mutex
	last  Facts
	known bool      // last has been read once
	busy  *progress // liveness: a route dump that never returns stalls it
}

func newLearner(src DefaultRoutes, vrfs VRFDevices, log *slog.Logger, p *policy.Policy, changed func(Facts)) *learner {
	l := &learner{src: src, vrfs: vrfs, log: log, own: p.Daemon.RouteProtocol, kick: make(chan struct{}, 1), changed: changed, busy: newProgress("auto gateway and VRF learner", time.Now)}
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

// Current is what the learner has read so far.
func (l *learner) Current() Facts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last.clone()
}

// Prime learns once, before anything runs, so that the first routes and
// the restart's adoption already use the learned addresses.
func (l *learner) Prime() { l.recompute(false) }

// Run follows route changes until ctx ends.
func (l *learner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		keepWatching(ctx, l.log, "route subscription for auto gateways", l.src.WatchRoutes, l.hint)
	}()
	go func() {
		defer wg.Done()
		keepWatching(ctx, l.log, "link subscription for VRFs", l.vrfs.WatchLinks, l.hint)
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
	if !hasAuto(p) && !hasVRF(p) {
		return
	}
	now, err := l.read(p)
	if err != nil {
		l.log.Warn("reading the kernel for auto gateways and VRFs", "err", err)
		return
	}
	l.mu.Lock()
	prev, known := l.last, l.known
	same := known && prev.equal(now)
	l.last, l.known = now, true
	l.mu.Unlock()
	if same {
		return
	}
	logLearned(l.log, p, prev.Gateways, now.Gateways, known)
	logVRFs(l.log, p, prev.VRFs, now.VRFs, known)
	logL3mdev(l.log, p, prev, now, known)
	if notify && l.changed != nil {
		l.changed(now.clone())
	}
}

// read reads what p needs: the default routes of its auto gateways'
// interfaces, the VRF devices it names.
func (l *learner) read(p *policy.Policy) (Facts, error) {
	l.busy.begin()
	defer l.busy.end()
	var f Facts
	if hasAuto(p) {
		routes, err := l.src.Defaults(autoIfaces(p))
		if err != nil {
			return Facts{}, fmt.Errorf("reading default routes for auto gateways: %w", err)
		}
		f.Gateways = learn(p, routes, l.own)
	}
	if hasVRF(p) {
		vrfs, err := l.vrfs.VRFs()
		if err != nil {
			return Facts{}, fmt.Errorf("reading VRF devices: %w", err)
		}
		f.VRFs = namedVRFs(p, vrfs)
		if f.L3mdev, err = l.vrfs.L3mdev(); err != nil {
			return Facts{}, fmt.Errorf("reading l3mdev rules: %w", err)
		}
	}
	return f, nil
}

// logLearned says what changed for each auto gateway.
func logLearned(log *slog.Logger, p *policy.Policy, prev, now map[string]Learned, known bool) {
	for _, g := range p.Gateways {
		if !g.Auto {
			continue
		}
		was, had := prev[g.Name]
		got, has := now[g.Name]
		switch {
		case has && (!had || was.Addr != got.Addr || was.Link != got.Link):
			log.Info("auto gateway learned", "gateway", g.Name, "iface", g.Interface, "address", addrText(got), "source", got.Source)
		case !has && (had || !known):
			log.Info("auto gateway: nothing learned", "gateway", g.Name, "iface", g.Interface, "reason", unlearnedReason(g))
		}
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

// Resolve reads this namespace's default routes and VRF devices once and
// resolves p's auto gateways and VRFs as the daemon would at start, for
// `uplinkd plan`. The notes say, per auto gateway, what it learned or that
// it learned nothing, and per VRF gateway its VRF's table or problem.
func Resolve(p *policy.Policy) (*policy.Policy, []string, error) {
	if !hasAuto(p) && !hasVRF(p) {
		return p, nil, nil
	}
	lr := newLearner(netlinkRoutes{}, netlinkVRFs{}, slog.New(slog.DiscardHandler), p, nil)
	f, err := lr.read(p)
	if err != nil {
		return nil, nil, err
	}
	var notes []string
	for _, g := range p.Gateways {
		switch l, ok := f.Gateways[g.Name]; {
		case !g.Auto:
		case ok:
			notes = append(notes, fmt.Sprintf("gateway %s: %s, learned from %s", g.Name, addrText(l), l.Source))
		default:
			notes = append(notes, fmt.Sprintf("gateway %s: %s (down, its routes left out)", g.Name, unlearnedReason(g)))
		}
		if g.VRF != "" {
			notes = append(notes, vrfNote(g, f))
		}
	}
	return resolve(p, f), notes, nil
}

package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Defaults of Config.
const (
	DefaultResyncEvery = 30 * time.Second
	DefaultDebounce    = 50 * time.Millisecond

	// Repairs are rate-limited with a token bucket so that uplinkd does not
	// spin against another program fighting over the same routes: a burst
	// is repaired at once, then at most repairRate per second.
	repairBurst = 5
	repairRate  = 2.0

	dumpRetries = 3
)

// Config configures a Reconciler.
type Config struct {
	Netlink     Netlink       // nil: a handle on the current network namespace
	Protocol    uint8         // policy.Daemon.RouteProtocol; marks everything uplinkd owns
	Logger      *slog.Logger  // nil: slog.Default()
	Metrics     *Metrics      // may be nil
	ResyncEvery time.Duration // periodic full resync; 0: DefaultResyncEvery
	OnApplied   func([]Op)    // called after each apply that wrote something, outside any lock

	// Watcher feeds Run with change hints. Nil: Netlink itself if it
	// implements Watcher (MemKernel does), otherwise subscriptions in the
	// current network namespace.
	Watcher Watcher
	// Debounce coalesces bursts of hints into one resync; 0: DefaultDebounce.
	Debounce time.Duration

	// SocketFilter, with a KernelWatcher, compiles what the reconciler
	// wants to hear about into a BPF filter on the route notification
	// socket, so that a BGP table churning beside uplinkd is dropped in
	// the kernel: never read, never parsed, never an overflow (ENOBUFS).
	// Without it the same events are dropped after reading, in the
	// watcher. Off by default for now: internal/reliability provokes a
	// route socket overflow with foreign routes in an unmanaged table,
	// which this filter drops before they can overflow anything.
	SocketFilter bool
}

// Reconciler makes the kernel match a desired State and keeps it so.
type Reconciler struct {
	cfg     Config
	nl      *countingNetlink
	log     *slog.Logger
	watcher Watcher
	kernel  *Kernel // created by NewReconciler, closed by Close
	keep    atomic.Pointer[interest]
	keepc   chan struct{} // keep changed: the watcher recompiles its socket filter
	// suspect: a foreign route may share a key with an owned one (ip
	// route prepend/append), so the next read also dumps the tables of
	// held keys. Set at start, by a foreign route event on a wanted key,
	// after lost events, and while a conflict lasts; see dumpForeign.
	suspect atomic.Bool

	applyMu sync.Mutex // serialises reconciles; never held while waiting on a channel

	mu         sync.Mutex
	want       *State
	wantGen    uint64
	appliedGen uint64
	installed  State   // owned state as last read or written
	foreign    []Route // routes of other protocols on keys uplinkd wants
	conflicts  []Op    // OpConflict of the last reconcile that got as far as a plan
	closing    bool    // set by Close; Run refuses to start after it
	cacheOK    bool    // installed is known to match the kernel
	hintGen    uint64  // bumped by every hint; a reconcile that saw one mid-way leaves the cache invalid

	setc      chan struct{}
	retryc    chan struct{} // an add met EEXIST: the key's holder must be read
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	vanished string // nexthops left out for a missing interface, as last logged; applyMu held
	// ownNH is, per IPv6 key, the nexthops uplinkd wrote there (or found
	// at its first read); applyMu held. The kernel merges any IPv6 route
	// with a gateway appended on a key into the route already there, and
	// a dump shows the merged route with the first sibling's protocol:
	// only this record tells a merged foreign nexthop from an owned one.
	ownNH map[RouteKey][]Nexthop

	tokens   float64
	tokensAt time.Time
	now      func() time.Time
}

// NewReconciler checks cfg and returns a Reconciler. It does not touch the
// kernel until Apply or Run.
func NewReconciler(cfg Config) (*Reconciler, error) {
	if cfg.Protocol == 0 {
		return nil, errors.New("creating reconciler: route protocol 0 would claim every route without a protocol")
	}
	r := &Reconciler{
		cfg:    cfg,
		log:    cfg.Logger,
		setc:   make(chan struct{}, 1),
		retryc: make(chan struct{}, 1),
		keepc:  make(chan struct{}, 1),
		closed: make(chan struct{}),
		tokens: repairBurst,
		now:    time.Now,
		ownNH:  map[RouteKey][]Nexthop{},
	}
	r.suspect.Store(true)
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.cfg.ResyncEvery <= 0 {
		r.cfg.ResyncEvery = DefaultResyncEvery
	}
	if r.cfg.Debounce <= 0 {
		r.cfg.Debounce = DefaultDebounce
	}
	nl := cfg.Netlink
	if nl == nil {
		k, err := NewKernel(netns.None(), r.log)
		if err != nil {
			return nil, fmt.Errorf("creating reconciler: %w", err)
		}
		r.kernel, nl = k, k
	}
	r.nl = &countingNetlink{Netlink: nl}
	r.watcher = cfg.Watcher
	if r.watcher == nil {
		if w, ok := nl.(Watcher); ok {
			r.watcher = w
		} else {
			r.watcher = NewKernelWatcher(netns.None())
		}
	}
	r.tokensAt = r.now()
	r.keep.Store(&interest{proto: cfg.Protocol})
	return r, nil
}

// Writes returns how many netlink writes the reconciler has made so far.
func (r *Reconciler) Writes() int { return int(r.nl.writes.Load()) }

// Apply reads the owned kernel state, plans against want and writes the
// difference. It also makes want the state Run maintains. It returns the
// number of netlink writes made; errors of single ops are joined, and the
// other ops are still applied.
func (r *Reconciler) Apply(ctx context.Context, want State) (int, error) {
	r.mu.Lock()
	w := Normalize(want)
	r.want = &w
	r.wantGen++
	r.setInterest(w)
	r.mu.Unlock()
	return r.reconcile(ctx, true, ReasonStart, false)
}

// Set makes want the desired state. A running Run applies it at once,
// coalescing a burst of Sets into one apply. Set never blocks.
func (r *Reconciler) Set(want State) {
	w := Normalize(want)
	r.mu.Lock()
	r.want = &w
	r.wantGen++
	r.setInterest(w)
	r.mu.Unlock()
	select {
	case r.setc <- struct{}{}:
	default:
	}
}

// Installed returns the owned state as the reconciler last read or wrote
// it, for status displays.
func (r *Reconciler) Installed() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return State{Routes: slices.Clone(r.installed.Routes), Rules: slices.Clone(r.installed.Rules)}
}

// Conflicts returns the clashes the last reconcile found: wanted routes
// (Route) whose key a route or nexthop of another program (Old) holds.
// None of them was written; each is retried on every resync. For status
// and /healthz.
func (r *Reconciler) Conflicts() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.conflicts)
}

// Withdraw deletes every route and rule uplinkd owns (on_exit = "withdraw")
// and leaves an empty desired state, so a running Run does not put them
// back.
func (r *Reconciler) Withdraw(ctx context.Context) error {
	_, err := r.Apply(ctx, State{})
	if err != nil {
		return fmt.Errorf("withdrawing owned routes and rules: %w", err)
	}
	return nil
}

// Close stops Run and releases what NewReconciler opened. It is idempotent.
func (r *Reconciler) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closing = true
		r.mu.Unlock()
		close(r.closed)
		r.wg.Wait()
		if r.kernel != nil {
			r.kernel.Close()
		}
	})
	return nil
}

// readOwned reads the owned routes and rules, and the routes of other
// protocols on keys want uses that no owned route holds. An interrupted
// dump is retried.
//
// Owned routes come from one dump per family that asks the kernel for
// Protocol only (rtm_protocol with NETLINK_GET_STRICT_CHK, see Kernel), so
// a full BGP table elsewhere is walked in the kernel and never copied out.
// Foreign routes matter only on a key uplinkd wants but does not hold: that
// is where an add would meet EEXIST, and where a foreign route that replaced
// an owned one now sits. Only the tables of such keys are dumped, and only
// when there are any, so a steady-state resync reads nothing foreign. A
// foreign route sharing a key with an owned one (ip route prepend/append)
// is looked for, with all, in the tables of every wanted key: a replace
// would take over the first route on the key, which may be the foreign
// one. The reconciler asks for that only when it suspects one (see
// Reconciler.suspect).
func (r *Reconciler) readOwned(want *State, l links, all bool) (State, []Route, error) {
	var err error
	for attempt := 0; attempt < dumpRetries; attempt++ {
		var s State
		var foreign []Route
		s, err = r.dumpOwned(l)
		if err == nil {
			foreign, err = r.dumpForeign(want, s.Routes, l, all)
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			r.cfg.Metrics.resync(ReasonDumpInterrupted)
			continue
		}
		if err != nil {
			return State{}, nil, fmt.Errorf("reading owned routes and rules: %w", err)
		}
		return Normalize(s), foreign, nil
	}
	return State{}, nil, fmt.Errorf("reading owned routes and rules: %w", err)
}

// dumpOwned dumps the routes (every table, both families) and rules of
// the reconciler's protocol. Rule dumps cannot be filtered by the kernel
// (a strict kernel rejects any selector in a rule dump request), but they
// are small: a rule list never holds a routing table.
func (r *Reconciler) dumpOwned(l links) (State, error) {
	proto := r.cfg.Protocol
	var s State
	for _, fam := range []int{4, 6} {
		err := r.nl.RouteListFilteredIter(afOf(fam), &netlink.Route{Protocol: netlink.RouteProtocol(proto)}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL, func(nr netlink.Route) bool {
			if nr.Family == afOf(fam) && uint8(nr.Protocol) == proto {
				s.Routes = append(s.Routes, fromNetlinkRoute(nr, l))
			}
			return true
		})
		if err != nil {
			return State{}, fmt.Errorf("dumping IPv%d routes of protocol %d: %w", fam, proto, err)
		}
	}
	rules, err := r.nl.RuleListFiltered(netlink.FAMILY_ALL, nil, 0)
	if err != nil {
		return State{}, fmt.Errorf("dumping rules: %w", err)
	}
	for _, nr := range rules {
		if nr.Protocol == proto && (nr.Family == afOf(4) || nr.Family == afOf(6)) {
			s.Rules = append(s.Rules, fromNetlinkRule(nr))
		}
	}
	return s, nil
}

// famTable is one routing table of one family.
type famTable struct {
	family int
	table  uint32
}

// dumpForeign returns the routes of other protocols on keys of want that
// no owned route holds, dumping only the tables of those keys; with all,
// on every key of want, held or not, since `ip route prepend` and
// `append` put a foreign route beside an owned one on its key. That costs
// a dump of each wanted table (main beside a BGP table), so it is done
// only when the reconciler suspects one (see Reconciler.suspect).
func (r *Reconciler) dumpForeign(want *State, owned []Route, l links, all bool) ([]Route, error) {
	if want == nil || len(want.Routes) == 0 {
		return nil, nil
	}
	held := make(map[RouteKey]bool, len(owned))
	for _, o := range owned {
		held[o.Key()] = true
	}
	missing := map[RouteKey]bool{}
	var tables []famTable
	seen := map[famTable]bool{}
	for _, w := range want.Routes {
		k := w.Key()
		if held[k] && !all {
			continue
		}
		missing[k] = true
		if ft := (famTable{w.Family, w.Table}); !seen[ft] {
			seen[ft] = true
			tables = append(tables, ft)
		}
	}
	proto := r.cfg.Protocol
	var foreign []Route
	for _, ft := range tables {
		err := r.nl.RouteListFilteredIter(afOf(ft.family), &netlink.Route{Table: int(ft.table)}, netlink.RT_FILTER_TABLE, func(nr netlink.Route) bool {
			if nr.Family != afOf(ft.family) || uint8(nr.Protocol) == proto {
				return true
			}
			if rt := fromNetlinkRoute(nr, l); missing[rt.Key()] {
				foreign = append(foreign, rt)
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("dumping IPv%d table %d for routes on wanted keys: %w", ft.family, ft.table, err)
		}
	}
	return foreign, nil
}

// ReadOwned returns the routes and rules of the reconciler's protocol
// currently in the kernel, with any foreign routes on keys of want.
func (r *Reconciler) ReadOwned(want State) (State, error) {
	l, err := readLinks(r.nl)
	if err != nil {
		return State{}, err
	}
	w := Normalize(want)
	s, foreign, err := r.readOwned(&w, l, true)
	if err != nil {
		return State{}, err
	}
	s, merged := splitMerged(s, nil)
	foreign = append(foreign, merged...)
	s.Routes = append(s.Routes, foreign...)
	return Normalize(s), nil
}

// reconcile brings the kernel to the current want. full forces a re-read of
// the kernel; otherwise the cached installed state is trusted if valid.
// repair marks writes as drift repairs (want itself did not change).
func (r *Reconciler) reconcile(ctx context.Context, full bool, reason string, repair bool) (int, error) {
	r.applyMu.Lock()
	n, applied, err := r.reconcileLocked(ctx, full, reason, repair)
	r.applyMu.Unlock()
	// Outside the lock, so that the callback may call back into the
	// reconciler (Installed, Set, even Apply).
	if len(applied) > 0 && r.cfg.OnApplied != nil {
		r.cfg.OnApplied(applied)
	}
	return n, err
}

func (r *Reconciler) reconcileLocked(ctx context.Context, full bool, reason string, repair bool) (int, []Op, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	start := time.Now()
	r.mu.Lock()
	want, gen, hints := r.want, r.wantGen, r.hintGen
	have, foreign, cached := r.installed, r.foreign, r.cacheOK && !full
	r.mu.Unlock()
	if want == nil {
		return 0, nil, nil
	}
	l, err := readLinks(r.nl)
	if err != nil {
		return 0, nil, err
	}
	if !cached {
		r.cfg.Metrics.resync(reason)
		all := r.suspect.Swap(false)
		have, foreign, err = r.readOwned(want, l, all)
		if err != nil {
			r.suspect.Store(all || r.suspect.Load())
			r.invalidate()
			return 0, nil, err
		}
		var merged []Route
		have, merged = splitMerged(have, r.ownNH)
		foreign = append(foreign, merged...)
	}
	w := r.writable(*want, l)
	want = &w
	planHave := have
	if len(foreign) > 0 {
		planHave = State{Routes: append(slices.Clone(have.Routes), foreign...), Rules: have.Rules}
	}
	ops := Plan(*want, planHave)
	before := r.nl.writes.Load()
	errs, applied, retry := r.execute(ops, l, repair)
	writes := int(r.nl.writes.Load() - before)

	var conflicts []Op
	for _, op := range ops {
		if op.Kind == OpConflict {
			conflicts = append(conflicts, op)
		}
	}
	r.cfg.Metrics.setConflicts(len(conflicts))
	if len(conflicts) > 0 || retry {
		r.suspect.Store(true) // look again on the next read
	}
	r.recordNexthops(applied)
	r.mu.Lock()
	r.conflicts = conflicts
	if len(errs) == 0 && !retry {
		r.installed = ownedAfter(*want, ops)
		r.foreign = foreign
		r.cacheOK = r.hintGen == hints
		r.appliedGen = gen
	} else {
		r.installed = have
		r.cacheOK = false
	}
	r.mu.Unlock()
	if retry {
		// Something took a key between the read and the add; only a read
		// of that key's table tells whose it is, and nothing else may
		// come along to ask for one before the periodic resync.
		select {
		case r.retryc <- struct{}{}:
		default:
		}
	}
	r.cfg.Metrics.observe(time.Since(start).Seconds())
	if repair {
		var routes, rules int
		for _, op := range applied {
			if op.Rule != nil {
				rules++
			} else {
				routes++
			}
		}
		r.cfg.Metrics.repair("route", routes)
		r.cfg.Metrics.repair("rule", rules)
	}
	return writes, applied, errors.Join(errs...)
}

// splitMerged takes out of each owned IPv6 route the nexthops ownNH does
// not know for its key, and returns them as foreign routes on that key
// (protocol 0: the kernel does not say whose a sibling is). A key ownNH
// has no record of is adopted as read, as at the first read after a start;
// a nil ownNH (a one-off read) adopts everything. Keys with no owned route
// lose their record.
func splitMerged(have State, ownNH map[RouteKey][]Nexthop) (State, []Route) {
	if ownNH == nil {
		return have, nil
	}
	var merged []Route
	seen := map[RouteKey]bool{}
	out := State{Rules: have.Rules, Routes: make([]Route, 0, len(have.Routes))}
	for _, rt := range have.Routes {
		k := rt.Key()
		seen[k] = true
		rec, ok := ownNH[k]
		if rt.Family != 6 || rt.Type != Unicast {
			out.Routes = append(out.Routes, rt)
			continue
		}
		if !ok {
			ownNH[k] = rt.Nexthops
			out.Routes = append(out.Routes, rt)
			continue
		}
		var mine, theirs []Nexthop
		for _, nh := range rt.Nexthops {
			if slices.ContainsFunc(rec, func(o Nexthop) bool { return o.Gateway == nh.Gateway && o.Dev == nh.Dev }) {
				mine = append(mine, nh)
			} else {
				theirs = append(theirs, nh)
			}
		}
		if len(theirs) == 0 {
			out.Routes = append(out.Routes, rt)
			continue
		}
		f := rt
		f.Protocol, f.Owner, f.Nexthops = 0, "merged", normNexthops(theirs)
		merged = append(merged, f)
		if len(mine) > 0 {
			rt.Nexthops = normNexthops(mine)
			out.Routes = append(out.Routes, rt)
		}
	}
	for k := range ownNH {
		if !seen[k] {
			delete(ownNH, k)
		}
	}
	return out, merged
}

// recordNexthops notes in ownNH what the applied ops wrote on IPv6 keys.
func (r *Reconciler) recordNexthops(applied []Op) {
	for _, op := range applied {
		if op.Route == nil || op.Route.Family != 6 {
			continue
		}
		if op.Kind == OpDelete || op.Route.Type != Unicast {
			delete(r.ownNH, op.Route.Key())
		} else {
			r.ownNH[op.Route.Key()] = op.Route.Nexthops
		}
	}
}

// ownedAfter is the owned state once ops succeeded: want without the
// routes left to a foreign owner.
func ownedAfter(want State, ops []Op) State {
	conflicts := map[RouteKey]bool{}
	for _, op := range ops {
		if op.Kind == OpConflict {
			conflicts[op.Route.Key()] = true
		}
	}
	if len(conflicts) == 0 {
		return want
	}
	out := State{Rules: want.Rules}
	for _, rt := range want.Routes {
		if !conflicts[rt.Key()] {
			out.Routes = append(out.Routes, rt)
		}
	}
	return out
}

// writable is want without the nexthops whose interface does not exist.
// The kernel refuses a route naming a missing device, and drops a whole
// multipath route when one of its devices goes away; asking for the
// missing member anyway would leave the host with no route at all where
// the other members could still carry one (last_resort "keep" with every
// gateway down and one interface unplugged). A route left with no nexthop
// cannot exist and is not wanted. The cut is logged once per change.
func (r *Reconciler) writable(want State, l links) State {
	var gone []string
	out := State{Rules: want.Rules, Routes: make([]Route, 0, len(want.Routes))}
	for _, rt := range want.Routes {
		keep := rt.Nexthops[:0:0]
		for _, nh := range rt.Nexthops {
			if _, ok := l.byName[nh.Dev]; nh.Dev != "" && !ok {
				gone = append(gone, nh.Dev+" ("+RouteString(rt)+")")
				continue
			}
			keep = append(keep, nh)
		}
		if len(keep) == len(rt.Nexthops) {
			out.Routes = append(out.Routes, rt)
			continue
		}
		if len(keep) > 0 {
			rt.Nexthops = normNexthops(keep)
			out.Routes = append(out.Routes, rt)
		}
	}
	if len(gone) == 0 {
		r.vanished = ""
		return want
	}
	if msg := strings.Join(gone, "; "); msg != r.vanished {
		r.vanished = msg
		r.log.Warn("leaving out nexthops whose interface is gone", "nexthops", msg)
	}
	return out
}

func (r *Reconciler) invalidate() {
	r.mu.Lock()
	r.cacheOK = false
	r.hintGen++
	r.mu.Unlock()
}

// execute runs ops in order. retry reports an add that found its key taken
// since the read: success for now, but the cache is stale.
func (r *Reconciler) execute(ops []Op, l links, repair bool) (errs []error, applied []Op, retry bool) {
	verbose := len(ops) <= 20 || repair
	for _, op := range ops {
		var err error
		kind := op.Kind.String()
		switch {
		case op.Kind == OpConflict:
			err = fmt.Errorf("installing %s: key held by foreign route %q (proto %d); not replacing what uplinkd does not own",
				RouteString(*op.Route), RouteString(*op.Old), op.Old.Protocol)
			r.log.Error("route conflict", "table", op.Route.Table, "route", RouteString(*op.Route), "foreign", RouteString(*op.Old), "err", err)
			errs = append(errs, err)
			continue
		case op.Route != nil:
			err = r.writeRoute(op, l, &retry)
		default:
			err = r.writeRule(op)
		}
		if err != nil {
			errs = append(errs, err)
			r.log.Error("netlink write failed", "op", kind, "object", op.Object(), "table", tableOf(op), "err", err)
			continue
		}
		applied = append(applied, op)
		msg := "changed route"
		if repair {
			msg = "repaired drift"
		}
		if verbose {
			r.log.Info(msg, "op", kind, "object", op.Object(), "table", tableOf(op), "line", op.String())
		} else {
			r.log.Debug(msg, "op", kind, "object", op.Object(), "table", tableOf(op), "line", op.String())
		}
	}
	if !verbose && len(applied) > 0 {
		r.log.Info("applied routing changes", "writes", len(applied))
	}
	return errs, applied, retry
}

func tableOf(op Op) uint32 {
	if op.Rule != nil {
		return op.Rule.Table
	}
	return op.Route.Table
}

func (r *Reconciler) writeRoute(op Op, l links, retry *bool) error {
	rt := *op.Route
	switch op.Kind {
	case OpDelete:
		// Delete by key, type and protocol only: the kernel then removes
		// every nexthop of a multipath route (IPv6 siblings included) and
		// never matches a route of another protocol. Scope NOWHERE is the
		// kernel's "any scope", as `ip route del` sends it; the zero value
		// would ask for universe scope, and an IPv4 route without a
		// gateway (link scope) would then meet ESRCH, which reads as
		// already gone.
		nr := &netlink.Route{
			Family:   afOf(rt.Family),
			Dst:      ipNet(rt.Dst),
			Table:    int(rt.Table),
			Priority: int(rt.Metric),
			Tos:      int(rt.Tos),
			Type:     int(rt.Type),
			Protocol: netlink.RouteProtocol(rt.Protocol),
			Scope:    netlink.SCOPE_NOWHERE,
		}
		err := r.nl.RouteDel(nr)
		r.cfg.Metrics.write("route", "delete", ignore(err, isGone))
		if err != nil && !isGone(err) {
			return fmt.Errorf("deleting route %s: %w", RouteString(rt), err)
		}
		return nil
	case OpAdd:
		nr, err := toNetlinkRoute(rt, l)
		if err != nil {
			return fmt.Errorf("adding route %s: %w", RouteString(rt), err)
		}
		// NLM_F_EXCL, not replace: the key was free when read, and if
		// something took it since, replacing could take over a route
		// uplinkd does not own. EEXIST is success; the resync that
		// follows sorts out whose it is.
		err = r.nl.RouteAdd(nr)
		r.cfg.Metrics.write("route", "add", ignore(err, isExist))
		if isExist(err) {
			*retry = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("adding route %s: %w", RouteString(rt), err)
		}
		return nil
	default:
		nr, err := toNetlinkRoute(rt, l)
		if err != nil {
			return fmt.Errorf("replacing route %s: %w", RouteString(rt), err)
		}
		err = r.nl.RouteReplace(nr)
		r.cfg.Metrics.write("route", "replace", err)
		if err != nil {
			return fmt.Errorf("replacing route %s: %w", RouteString(rt), err)
		}
		return nil
	}
}

func (r *Reconciler) writeRule(op Op) error {
	ru := *op.Rule
	nr := toNetlinkRule(ru)
	if op.Kind == OpDelete {
		err := r.nl.RuleDel(nr)
		r.cfg.Metrics.write("rule", "delete", ignore(err, isGone))
		if err != nil && !isGone(err) {
			return fmt.Errorf("deleting rule %s: %w", RuleString(ru), err)
		}
		return nil
	}
	err := r.nl.RuleAdd(nr)
	r.cfg.Metrics.write("rule", "add", ignore(err, isExist))
	if err != nil && !isExist(err) {
		return fmt.Errorf("adding rule %s: %w", RuleString(ru), err)
	}
	return nil
}

func ignore(err error, benign func(error) bool) error {
	if err != nil && benign(err) {
		return nil
	}
	return err
}

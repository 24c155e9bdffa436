package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	Netlink     Netlink          // nil: a handle on the current network namespace
	Protocol    uint8            // policy.Daemon.RouteProtocol; marks everything uplinkd owns
	Logger      *slog.Logger     // nil: discard, as everywhere in uplinkd
	Clock       func() time.Time // nil: time.Now; the repair budget and reconcile timings read it
	Metrics     *Metrics         // may be nil
	ResyncEvery time.Duration    // periodic full resync; 0: DefaultResyncEvery
	OnApplied   func([]Op)       // called after each apply that wrote something, outside any lock

	// Watcher feeds Run with change hints. Nil: Netlink itself if it
	// implements Watcher (routingtest.MemKernel does), otherwise
	// NewKernelWatcher in the current network namespace (route socket
	// filter on).
	Watcher Watcher
	// Debounce coalesces bursts of hints into one resync; 0: DefaultDebounce.
	Debounce time.Duration

	// Nexthops is where group defaults become kernel nexthop objects. Nil:
	// with Netlink nil, nexthop objects in the current namespace; with a
	// Netlink given (a test), classic multipath routes only.
	Nexthops NexthopKernel
	// Form caps the form of group defaults; FormAuto takes the best the
	// kernel offers (resilient groups on Linux 5.13+).
	Form Form
	// FormReason says why the caller chose Form, for the log, status and
	// FormReason(); empty: nothing beyond what the kernel offers.
	FormReason string
}

// orDiscard is the tree's one logger default: a nil logger discards, as
// in detector and internal/daemon, so a library never writes to the
// process's default logger behind its caller's back.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Reconciler makes the kernel match a desired State and keeps it so.
type Reconciler struct {
	cfg     Config
	nl      *countingNetlink
	log     *slog.Logger
	watcher Watcher
	kernel  *Kernel // created by NewReconciler, closed by Close
	nh      NexthopKernel
	nhOwn   *KernelNexthops // created by NewReconciler, closed by Close
	formSet bool            // chooseForm ran; under applyMu
	keep    atomic.Pointer[interest]
	keepc   chan struct{} // keep changed: the watcher recompiles its socket filter
	// suspect: a foreign route may share a key with an owned one (ip
	// route prepend/append), so the next read also dumps the tables of
	// held keys. Set at start, by a foreign route event on a wanted key,
	// after lost events, and while a conflict lasts; see dumpForeign.
	suspect atomic.Bool

	applyMu sync.Mutex // serialises reconciles; never held while waiting on a channel

	mu          sync.Mutex
	want        *State
	wantGen     uint64
	appliedGen  uint64
	installed   State // owned state as last read or written
	installedNH nexthopState
	form        Form
	formWhy     string  // why form is what it is; under mu
	foreign     []Route // routes of other protocols on keys uplinkd wants
	conflicts   []Op    // OpConflict of the last reconcile that got as far as a plan
	closing     bool    // set by Close; Run refuses to start after it
	cacheOK     bool    // installed is known to match the kernel
	hintGen     uint64  // bumped by every hint; a reconcile that saw one mid-way leaves the cache invalid

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

	failures int // consecutive failed reconciles in Run, for the retry backoff

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
		now:    cfg.Clock,
		ownNH:  map[RouteKey][]Nexthop{},
	}
	r.suspect.Store(true)
	r.log = orDiscard(r.log)
	if r.now == nil {
		r.now = time.Now
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
		if cfg.Nexthops == nil {
			nk, err := NewKernelNexthops(netns.None(), k.Handle)
			if err != nil {
				k.Close()
				return nil, fmt.Errorf("creating reconciler: %w", err)
			}
			r.nhOwn, r.nh = nk, nk
		}
	}
	if cfg.Nexthops != nil {
		r.nh = cfg.Nexthops
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
		if r.nhOwn != nil {
			r.nhOwn.Close()
		}
	})
	return nil
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
	start := r.now()
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
	if !r.formSet {
		r.chooseForm()
		r.formSet = true
	}
	r.mu.Lock()
	haveNH := r.installedNH
	r.mu.Unlock()
	if !cached {
		r.cfg.Metrics.resync(reason)
		if have, foreign, err = r.readFresh(want, l); err != nil {
			return 0, nil, err
		}
		if haveNH, err = r.readNexthops(&have); err != nil {
			r.invalidate()
			return 0, nil, err
		}
	}
	w := r.writable(*want, l)
	want = &w
	planHave := have
	if len(foreign) > 0 {
		planHave = State{Routes: append(slices.Clone(have.Routes), foreign...), Rules: have.Rules}
	}
	lowered, lw := r.lower(*want, haveNH)
	want = &lowered
	nhBefore, nhAfter := planNexthops(lw.objs, haveNH.owned)
	ops := append(append(nexthopOps(nhBefore), Plan(*want, planHave)...), nexthopOps(nhAfter)...)
	before := r.nl.writes.Load()
	errs, applied, retry := r.execute(ops, l, repair)
	writes := int(r.nl.writes.Load() - before)

	conflicts := r.noteConflicts(ops, retry)
	r.recordNexthops(applied)
	r.mu.Lock()
	r.conflicts = conflicts
	if len(errs) == 0 && !retry {
		r.installed = ownedAfter(*want, ops)
		r.installedNH = nexthopState{owned: lw.objs, foreign: haveNH.foreign}
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
	r.cfg.Metrics.observe(r.now().Sub(start).Seconds())
	if repair {
		r.countRepairs(applied)
	}
	return writes, applied, errors.Join(errs...)
}

// readFresh re-reads the kernel for reconcileLocked: owned state, with
// foreign routes on wanted keys and the foreign nexthops merged into
// owned IPv6 routes apart.
func (r *Reconciler) readFresh(want *State, l links) (have State, foreign []Route, err error) {
	all := r.suspect.Swap(false)
	have, foreign, err = r.readOwned(want, l, all)
	if err != nil {
		r.suspect.Store(all || r.suspect.Load())
		r.invalidate()
		return State{}, nil, err
	}
	have, merged := splitMerged(have, r.ownNH)
	return have, append(foreign, merged...), nil
}

// noteConflicts returns the conflicts of ops, counts them, and asks the
// next read to look for foreign routes again while any lasts (or an add
// met a key taken since the read).
func (r *Reconciler) noteConflicts(ops []Op, retry bool) []Op {
	var conflicts []Op
	for _, op := range ops {
		if op.Kind == OpConflict {
			conflicts = append(conflicts, op)
		}
	}
	r.cfg.Metrics.setConflicts(len(conflicts))
	if len(conflicts) > 0 || retry {
		r.suspect.Store(true)
	}
	return conflicts
}

// countRepairs counts applied drift repairs by object.
func (r *Reconciler) countRepairs(applied []Op) {
	var routes, rules, nexthops int
	for _, op := range applied {
		switch op.Object {
		case ObjRule:
			rules++
		case ObjRoute:
			routes++
		case ObjNexthop:
			nexthops++
		}
	}
	r.cfg.Metrics.repair("route", routes)
	r.cfg.Metrics.repair("rule", rules)
	r.cfg.Metrics.repair("nexthop", nexthops)
}

func (r *Reconciler) invalidate() {
	r.mu.Lock()
	r.cacheOK = false
	r.hintGen++
	r.mu.Unlock()
}

// Run keeps the kernel at the desired state until ctx ends or Close is
// called: it applies each Set at once, and re-reads and repairs owned state
// after change hints (debounced), after ENOBUFS or an interrupted dump, and
// every ResyncEvery. Repairs are rate-limited.
func (r *Reconciler) Run(ctx context.Context) error {
	// Registering with wg under mu, checked against closing, keeps Close's
	// wg.Wait from racing with a Run that is just starting.
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return errors.New("running reconciler: closed")
	}
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	hints := make(chan Hint, 64)
	r.startWatch(ctx, cancel, &wg, hints)

	ticker := time.NewTicker(r.cfg.ResyncEvery)
	defer ticker.Stop()
	l := &runLoop{r: r, debounce: time.NewTimer(time.Hour)}
	l.debounce.Stop()
	defer l.debounce.Stop()
	full := true // the next reconcile must re-read the kernel
	l.arm(r.runOnce(ctx, full, ReasonStart), ReasonStart)
	full = false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.setc:
			l.arm(r.runOnce(ctx, false, ReasonEvent), ReasonEvent)
		case <-r.retryc:
			// Once: if the re-read does not show who holds the key
			// either, another try at once would only spin.
			if l.retried = !l.retried; l.retried {
				l.arm(r.cfg.Debounce, ReasonEvent)
			}
		case h := <-hints:
			l.hint(h)
		case <-l.debounce.C:
			l.debouncing = false
			why := l.pending
			l.pending = ""
			l.arm(r.runOnce(ctx, true, why), why)
		case <-ticker.C:
			l.arm(r.runOnce(ctx, true, ReasonTimer), ReasonTimer)
		}
	}
}

// startWatch runs, until ctx ends, the goroutines Run owns: one that ends
// ctx when Close is called and the watcher.
func (r *Reconciler) startWatch(ctx context.Context, cancel func(), wg *sync.WaitGroup, hints chan<- Hint) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		select {
		case <-r.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		defer wg.Done()
		err := r.watcher.Watch(ctx, hints, reconcilerInterest{r})
		if err != nil && ctx.Err() == nil {
			r.log.Error("watching kernel events; relying on periodic resync", "err", err)
		}
	}()
}

// runLoop is Run's timer state: one debounce timer that runs the next
// full reconcile, for hints, rate-limited repairs and retries after a
// failed write alike.
type runLoop struct {
	r          *Reconciler
	debounce   *time.Timer
	debouncing bool
	pending    string // reason of the resync the debounce timer will run
	retried    bool
}

// hint invalidates the cache and arms a debounced full re-read for h.
func (l *runLoop) hint(h Hint) {
	l.retried = false
	if l.pending == "" || h.Reason != ReasonEvent {
		l.pending = h.Reason
	}
	if h.Reason != ReasonEvent || h.Missed {
		l.r.suspect.Store(true) // lost events may have hidden a foreign route
	}
	l.r.invalidate()
	l.arm(l.r.cfg.Debounce, h.Reason)
}

// arm makes the debounce timer run a full reconcile in wait (none if wait
// is 0), for why unless a reason is already pending.
func (l *runLoop) arm(wait time.Duration, why string) {
	if wait <= 0 {
		return
	}
	if l.pending == "" {
		l.pending = why
	}
	if !l.debouncing {
		l.debounce.Reset(wait)
		l.debouncing = true
	}
}

// runOnce reconciles once. Writes that want did not cause are drift
// repairs; when the repair budget is spent it writes nothing and returns
// how long to wait.
func (r *Reconciler) runOnce(ctx context.Context, full bool, reason string) time.Duration {
	r.mu.Lock()
	repair := r.want != nil && r.wantGen == r.appliedGen
	r.mu.Unlock()
	if reason == "" {
		reason = ReasonEvent
	}
	if repair {
		if wait := r.repairBudget(); wait > 0 {
			r.log.Warn("drift repairs rate-limited; something keeps changing owned routes or rules", "retry_in", wait)
			return wait
		}
	}
	n, err := r.reconcile(ctx, full, reason, repair)
	if err != nil && ctx.Err() == nil {
		r.log.Error("reconciling routes and rules", "err", err)
	}
	if repair && n > 0 {
		r.spendRepair()
	}
	if !failed(err) || ctx.Err() != nil {
		r.failures = 0
		return 0
	}
	// A write or read failed (ENOMEM, EBUSY, EPERM, ...): nothing in the
	// kernel changed, so no event will come; retry with backoff, from
	// twice the debounce up to the resync period.
	r.failures = min(r.failures+1, 30)
	return min(r.cfg.Debounce<<r.failures, r.cfg.ResyncEvery)
}

// failed reports whether err holds a failure other than a conflict.
// A conflict is no failure to retry at once: the foreign route stays
// until its owner removes it, which an event or the resync will show.
func failed(err error) bool {
	if err == nil {
		return false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if failed(e) {
				return true
			}
		}
		return false
	}
	return !errors.Is(err, ErrConflict)
}

// repairBudget refills the token bucket and returns 0 if a repair may run,
// or how long until one may.
func (r *Reconciler) repairBudget() time.Duration {
	now := r.now()
	r.tokens = min(repairBurst, r.tokens+now.Sub(r.tokensAt).Seconds()*repairRate)
	r.tokensAt = now
	if r.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - r.tokens) / repairRate * float64(time.Second))
}

func (r *Reconciler) spendRepair() { r.tokens-- }

// relevant is the reconciler's RouteFilter: its interest as of the last
// Set or Apply.
// A route of another protocol on a wanted key may now share that key
// with an owned route: the next read looks (see suspect).
func (r *Reconciler) relevant(ev RouteEvent) bool {
	in := r.keep.Load()
	if ev.Protocol != in.proto && in.keys[ev.Key()] {
		r.suspect.Store(true)
		return true
	}
	return in.relevant(ev)
}

// reconcilerInterest is the Interest Run hands its watcher: Relevant, and
// for a KernelWatcher's socket filter the interest itself and a signal
// when it changed.
type reconcilerInterest struct{ r *Reconciler }

func (i reconcilerInterest) Relevant(ev RouteEvent) bool      { return i.r.relevant(ev) }
func (i reconcilerInterest) interest() *interest              { return i.r.keep.Load() }
func (i reconcilerInterest) interestChanged() <-chan struct{} { return i.r.keepc }

// setInterest records want's interest and tells the watcher; mu held.
func (r *Reconciler) setInterest(want State) {
	r.keep.Store(newInterest(r.cfg.Protocol, want))
	select {
	case r.keepc <- struct{}{}:
	default:
	}
}

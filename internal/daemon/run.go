package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/vishvananda/netns"

	"github.com/uplinkd/uplinkd/bfd"
	"github.com/uplinkd/uplinkd/internal/condwatch"
	"github.com/uplinkd/uplinkd/internal/hooks"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// Options configure Run.
type Options struct {
	ConfigPath string
	// LogFormat and LogLevel override the policy's [daemon] settings.
	LogFormat, LogLevel string
	Stderr              *os.File
	Build               BuildInfo
	// RequireInterfaces refuses, at start and on reload, a policy whose
	// non-optional interfaces do not exist (the strictness of old). By
	// default an absent interface is a down gateway, logged as a warning.
	RequireInterfaces bool
}

// StartError is a refusal to start: nothing was touched.
type StartError struct{ Err error }

func (e *StartError) Error() string { return "refusing to start: " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Run is `uplinkd run`: it starts the daemon and returns when ctx ends
// (SIGTERM, SIGINT) or a component fails. SIGHUP reloads.
//
// The steps run in this order, and the order is the point: everything up
// to the sockets refuses to start without having touched the kernel; the
// sockets are opened while every capability is still there; the kernel is
// written once; then the capabilities go, and only then do hooks run.
func Run(ctx context.Context, opts Options) error {
	d := &daemon{opts: opts}
	defer d.close()
	if err := d.preflight(); err != nil {
		return &StartError{err}
	}
	if err := d.build(); err != nil {
		return &StartError{err}
	}
	if err := d.listen(); err != nil {
		return &StartError{err}
	}
	// The kernel is touched from here on.
	if err := d.applyInitial(ctx); err != nil {
		return err
	}
	if err := d.dropCapabilities(); err != nil {
		return err
	}
	d.hooks.Start()
	return d.serve(ctx)
}

// daemon is one `uplinkd run`: what Run wires together, in the order it
// creates it. close releases whatever was created.
type daemon struct {
	opts Options
	p    *policy.Policy
	log  *slog.Logger

	reg    *prometheus.Registry
	hooks  *hooks.Runner
	rec    *routing.Reconciler
	det    HealthSource
	ct     *routing.KernelConntrack // nil without a conntrack socket
	conds  *condwatch.Watcher       // links, addresses and track files for conditions
	bfd    *bfd.Server
	dk     *detectorKernel // the detector's netlink and traffic sources
	onlink *onLinkWatcher  // holds down gateways that are not on-link
	learn  *learner        // follows the default routes auto gateways learn from
	base   *policy.Policy  // the policy as written; p is it with auto gateways resolved
	core   *Core

	kernel   *routing.Kernel // the reconciler's netlink handle, closed by close
	nexthops *routing.KernelNexthops
	httpBusy *progress // the HTTP server's requests

	httpLn net.Listener   // nil without [daemon] listen
	ctl    *controlServer // nil without [daemon] control_socket
}

// preflight reads and checks the policy, makes the logger and refuses a
// process or binary that could not run safely.
func (d *daemon) preflight() error {
	p, err := loadChecked(d.opts.ConfigPath, d.opts.RequireInterfaces)
	if err != nil {
		return err
	}
	format, level := p.Daemon.LogFormat, p.Daemon.LogLevel
	if d.opts.LogFormat != "" {
		format = d.opts.LogFormat
	}
	if d.opts.LogLevel != "" {
		level = d.opts.LogLevel
	}
	stderr := d.opts.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	if d.log, err = newRunLogger(stderr, format, level); err != nil {
		return err
	}
	// Auto gateways learn their address before anything reads the
	// policy, so that a restart adopts routes through them too.
	d.base = p
	d.learn = newLearner(netlinkRoutes{}, netlinkVRFs{}, d.log, p, func(f Facts) { d.core.Relearn(f) })
	d.learn.Prime()
	d.p = resolve(p, d.learn.Current())
	warnAbsent(d.log, p)
	if err := checkPrivileges(); err != nil {
		return err
	}
	if builtWithCgo {
		return errors.New("this binary was built with cgo, which makes dropping capabilities on every thread impossible; build it with CGO_ENABLED=0 (make build does)")
	}
	if d.opts.Build.GoVersion == "" {
		d.opts.Build.GoVersion = runtime.Version()
	}
	return nil
}

// build creates the components, none of them running yet: metrics, the
// hook runner (paused until the capabilities are dropped: the initial
// apply already fires route_changed), the reconciler, the detector and the
// health loop that joins them.
func (d *daemon) build() error {
	d.reg = prometheus.NewRegistry()
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dm := NewMetrics(d.reg, d.opts.Build)
	d.hooks = hooks.New(hooks.Config{Logger: d.log, Metrics: hooks.NewMetrics(d.reg), Paused: true})

	// The reconciler's kernel calls report progress: a netlink call that
	// never returns must fail /healthz and the watchdog.
	kernel, err := routing.NewKernel(netns.None(), d.log)
	if err != nil {
		return fmt.Errorf("creating reconciler: %w", err)
	}
	d.kernel = kernel
	recCalls := newProgress("reconciler kernel calls", time.Now)
	d.httpBusy = newProgress("http server", time.Now)
	// Nexthop objects are read even with multipath = "classic", so that a
	// switch back from "auto" deletes the objects an earlier run left.
	nk, err := routing.NewKernelNexthops(netns.None(), kernel.Handle)
	if err != nil {
		return fmt.Errorf("creating reconciler: %w", err)
	}
	d.nexthops = nk
	form, formWhy := multipathForm(d.p, procForwarding)
	d.rec, err = routing.NewReconciler(routing.Config{
		Netlink:     watchedNetlink{Netlink: kernel, p: recCalls},
		Nexthops:    watchedNexthops{NexthopKernel: nk, p: recCalls},
		Protocol:    d.p.Daemon.RouteProtocol,
		Logger:      d.log,
		Metrics:     routing.NewMetrics(d.reg),
		ResyncEvery: d.p.Daemon.ResyncEvery,
		Form:        form,
		FormReason:  formWhy,
		// d.core is set below, before anything can apply.
		OnApplied: func(ops []routing.Op) { d.core.OnApplied(ops) },
	})
	if err != nil {
		return err
	}
	peers, err := bfdPeers(d.p)
	if err != nil {
		return err
	}
	d.bfd = bfd.New(bfd.Options{Logger: d.log})
	d.bfd.Set(peers)
	d.reg.MustRegister(bfd.NewCollector(d.bfd))
	startDown, startUp, adopted := adoptWithdrawn(d.p, d.rec, d.log)
	if d.det, d.dk, err = newDetector(d.p, d.log, d.reg, startDown, adopted, bfdEvidence{d.bfd}); err != nil {
		return fmt.Errorf("creating detector: %w", err)
	}
	if d.ct, err = openConntrack(d.p, d.log); err != nil {
		return err
	}
	d.conds = condwatch.New(condwatch.Config{Logger: d.log, Resync: d.p.Daemon.ResyncEvery})
	d.onlink = newOnLinkWatcher(netlinkAddresses{}, d.det, d.log, d.p)
	path, strict, log := d.opts.ConfigPath, d.opts.RequireInterfaces, d.log
	d.core, err = NewCore(CoreConfig{
		Policy: d.p, Logger: d.log, Detector: d.det, Routes: d.rec, Hooks: d.hooks, Metrics: dm, BFD: d.bfd,
		TrafficBackend: d.dk.traffic.Backend,
		Conntrack:      conntrackOrNil(d.ct),
		TrackDir:       d.p.Daemon.TrackDir, Load: func() (*policy.Policy, error) {
			p, err := loadChecked(path, strict)
			if err == nil {
				warnAbsent(log, p)
			}
			return p, err
		},
		Version: d.opts.Build.Version, StartDown: startDown, StartUp: startUp, Adopted: adopted, ConditionFacts: d.conds,
		Liveness: []LivenessSource{detectorLiveness(d.det), recCalls.report, d.httpBusy.report, hookLiveness(d.hooks),
			conditionLiveness(d.conds), bfdLiveness(d.bfd), d.learn.Liveness},
		Base: d.base, Learned: d.learn.Current(),
	})
	if err == nil {
		d.core.onReload = d.onlink.Update
		d.core.onBase = d.learn.Update
	}
	return err
}

// reasonAbsent is the reason a gateway adopted as down shows until the
// detector judges it.
const reasonAbsent = "absent from owned routes at start"

// ownedReader reads the routes and rules uplinkd owns; *routing.Reconciler
// is one.
type ownedReader interface {
	ReadOwned(want routing.State) (routing.State, error)
}

// adoptWithdrawn reads the routes and rules uplinkd owns, as a previous
// instance left them, and returns the gateways they show withdrawn and the
// conditions they show up (routing.Adopt): those gateways start Down and
// rejoin after up_count good probes, those conditions start up, so a
// restart neither puts a dead gateway back for the few hundred
// milliseconds it takes to find it dead again, nor withdraws what a
// condition gates until its terms are evaluated again, nor writes
// anything over a kernel that already matches. A failed read adopts
// nothing: every gateway starts unknown and every condition down, as on a
// first start, and the reconciler repairs what it must. adopted says
// whether a previous instance left anything of ours (startHold).
//
// A condition that gates no route leaves only its track file (and what
// its hooks did, out of sight). A stopping daemon marks its track files
// down (trackFiles.markDown), so one still up was left by an instance
// that died holding the condition: it starts up too, rather than tell
// keepalived "down" and fire condition_up again once the terms hold.
func adoptWithdrawn(p *policy.Policy, rec ownedReader, log *slog.Logger) (down map[string]string, up []string, adopted bool) {
	installed, err := rec.ReadOwned(routing.Desired(p, allConditionsUp(p)))
	if err != nil {
		log.Error("reading the routes a previous instance left; starting every gateway unknown", "err", err)
		return nil, nil, false
	}
	a := routing.Adopt(p, installed)
	down = map[string]string{}
	for _, name := range a.Withdrawn {
		down[name] = reasonAbsent
		log.Info("gateway starts down", "gateway", name, "reason", reasonAbsent)
	}
	left := trackLeftUp(p.Daemon.TrackDir, a.Routeless)
	up = append(slices.Clone(a.Conditions), left...)
	slices.Sort(up)
	return down, up, len(left) > 0 || ownsAny(installed, p.Daemon.RouteProtocol)
}

// trackLeftUp returns the names whose track file in dir says up.
func trackLeftUp(dir string, names []string) []string {
	if dir == "" {
		return nil
	}
	var out []string
	for _, name := range names {
		if condwatch.ReadTrack(filepath.Join(dir, name)) {
			out = append(out, name)
		}
	}
	return out
}

// allConditionsUp is the snapshot that wants every key a condition can
// gate, so that the start's read sees a foreign route on any of them.
func allConditionsUp(p *policy.Policy) routing.Snapshot {
	h := routing.Snapshot{}
	for _, c := range p.Conditions {
		h[routing.ConditionKey(c.Name)] = routing.Up
	}
	return h
}

// ownsAny reports whether s holds a route or rule of protocol proto.
func ownsAny(s routing.State, proto uint8) bool {
	for _, r := range s.Routes {
		if r.Protocol == proto {
			return true
		}
	}
	for _, r := range s.Rules {
		if r.Protocol == proto {
			return true
		}
	}
	return false
}

// listen opens the status listener and the control socket.
func (d *daemon) listen() error {
	p := d.p.Daemon
	if p.Listen != "" {
		ln, err := net.Listen("tcp", p.Listen)
		if err != nil {
			return fmt.Errorf("listening for metrics and status: %w", err)
		}
		d.httpLn = ln
		if host, _, err := net.SplitHostPort(p.Listen); err == nil {
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				d.log.Warn("metrics and status are served beyond loopback; they are read-only but reveal the network's health", "listen", p.Listen)
			}
		}
	}
	if p.ControlSocket != "" {
		ln, err := listenControl(p.ControlSocket)
		if err != nil {
			return err
		}
		d.ctl = &controlServer{ln: ln, path: p.ControlSocket, log: d.log, handle: d.core.control}
	}
	return nil
}

// applyInitial applies the [kernel] settings and the desired routes for
// the health the daemon starts with.
func (d *daemon) applyInitial(ctx context.Context) error {
	log := d.log
	d.core.tune = func(p *policy.Policy) ([]routing.SysctlChange, error) {
		return routing.TuneKernel(p.Kernel, p.Interfaces(), log)
	}
	if changes, err := d.core.tune(d.p); err != nil {
		return fmt.Errorf("applying [kernel] settings: %w", err)
	} else if len(changes) > 0 {
		log.Info("kernel settings applied", "changes", len(changes))
	}
	writes, err := d.rec.Apply(ctx, d.core.Desired())
	if err != nil {
		// Partial failures are repaired by Run; the daemon must still come
		// up and watch the gateways.
		log.Error("initial apply incomplete", "err", err, "writes", writes)
	} else {
		log.Info("initial state applied", "writes", writes)
	}
	return nil
}

// dropCapabilities keeps only CAP_NET_ADMIN and CAP_NET_RAW on every
// thread; the race-detector test build cannot (see racetest.go) and says so.
func (d *daemon) dropCapabilities() error {
	if raceTestBuild {
		d.log.Warn("race-detector test build: capabilities are NOT dropped (AllThreadsSyscall needs a binary without cgo); never run this build in production")
		return nil
	}
	if err := DropCapabilities(KeptCapabilities); err != nil {
		return err
	}
	d.log.Info("capabilities dropped", "kept", "CAP_NET_ADMIN,CAP_NET_RAW")
	return nil
}

// serve runs every long-lived worker until ctx ends or one of them fails,
// then stops them all and leaves or withdraws the routes as the policy
// says.
func (d *daemon) serve(ctx context.Context) error {
	w := newWorkers(ctx)
	if ok, _ := sd.SdWatchdogEnabled(false); ok > 0 {
		d.core.Watchdog = ok / 2
	}
	d.core.notify = func(state string) { _, _ = sd.SdNotify(false, state) }

	d.onlink.Prime() // before the detector's first evidence
	w.start("on-link watcher", d.onlink.Run)
	w.start("auto gateway and VRF learner", d.learn.Run)
	w.start("detector", d.det.Run)
	w.start("bfd", d.bfd.Run)
	w.start("reconciler", d.rec.Run)
	w.start("condition watcher", d.conds.Run)
	w.start("health loop", d.core.Loop)
	var srv *http.Server
	if d.httpLn != nil {
		srv = newHTTPServer(d.core, d.reg, d.log, newHostAllow(d.httpLn.Addr(), d.p.Daemon.Listen, d.p.Daemon.HTTPHosts), d.httpBusy)
		w.start("status server", func(context.Context) error {
			if err := serveHTTP(srv, d.httpLn, d.p.Daemon.WebConfigFile, d.log); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		d.log.Info("serving metrics and status", "addr", d.httpLn.Addr().String())
	}
	if d.ctl != nil {
		w.start("control socket", d.ctl.serve)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	w.start("signals", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				d.log.Info("SIGHUP: reloading policy")
				d.core.RequestReload()
			}
		}
	})

	_, _ = sd.SdNotify(false, sd.SdNotifyReady)
	d.log.Info("uplinkd running", "policy", d.p.File, "gateways", len(d.p.Gateways), "groups", len(d.p.Groups),
		"proto", d.p.Daemon.RouteProtocol, "version", d.opts.Build.Version)

	runErr := w.wait()
	if runErr != nil {
		d.log.Error("stopping after a component failed", "err", runErr)
	}
	_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
	w.cancel()
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	if d.ctl != nil {
		d.ctl.close()
	}
	d.det.Close()
	w.wg.Wait()
	// Withdraw before the reconciler closes its sockets.
	runErr = errors.Join(runErr, d.onExit())
	d.rec.Close()
	d.hooks.Close()
	return runErr
}

// onExit leaves the routes in place or withdraws them, as the running
// policy's on_exit says.
func (d *daemon) onExit() error {
	d.core.mu.RLock()
	onExit := d.core.pol.Daemon.OnExit
	d.core.mu.RUnlock()
	if onExit != policy.OnExitWithdraw {
		d.log.Info("leaving routes in place (on_exit = leave)")
		return nil
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	var errs []error
	if err := d.rec.Withdraw(wctx); err != nil {
		d.log.Error("withdrawing routes on exit", "err", err)
		errs = append(errs, err)
	} else {
		d.log.Info("routes and rules withdrawn (on_exit = withdraw)")
	}
	if err := d.dk.traffic.Withdraw(); err != nil {
		d.log.Error("withdrawing the per-gateway counters on exit", "err", err)
		errs = append(errs, err)
	} else {
		d.log.Info("nftables table uplinkd withdrawn (on_exit = withdraw)")
	}
	return errors.Join(errs...)
}

// close releases what was created, in reverse order. Every Close it calls
// is idempotent, so it is safe after serve has stopped the components.
func (d *daemon) close() {
	if d.ctl != nil {
		d.ctl.close()
	}
	if d.httpLn != nil {
		d.httpLn.Close()
	}
	if d.det != nil {
		d.det.Close()
	}
	d.dk.Close() // after the detector, which reads through it
	if d.bfd != nil {
		d.bfd.Close() // peers are told AdminDown, not left to time out
	}
	if d.rec != nil {
		d.rec.Close()
	}
	if d.nexthops != nil {
		d.nexthops.Close()
	}
	if d.kernel != nil {
		d.kernel.Close()
	}
	if d.ct != nil {
		d.ct.Close()
	}
	if d.hooks != nil {
		d.hooks.Close()
	}
}

// hookLiveness reports every hook run in progress; one still running well
// past its timeout (the runner kills it then) is a wedged runner.
func hookLiveness(r *hooks.Runner) LivenessSource {
	return func() []Worker {
		var out []Worker
		for _, run := range r.Running() {
			out = append(out, Worker{Name: "hook " + run.Hook, LastProgress: run.Since, Busy: true, Limit: run.Timeout + StallAfter})
		}
		return out
	}
}

// workers runs the daemon's long-lived goroutines under one context: the
// first one to fail stops the daemon.
type workers struct {
	ctx    context.Context
	cancel context.CancelFunc
	errc   chan error
	wg     sync.WaitGroup
}

func newWorkers(parent context.Context) *workers {
	ctx, cancel := context.WithCancel(parent)
	return &workers{ctx: ctx, cancel: cancel, errc: make(chan error, 8)}
}

// start runs fn until the context ends; an error it returns before that
// ends the daemon.
func (w *workers) start(name string, fn func(context.Context) error) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if err := fn(w.ctx); err != nil && w.ctx.Err() == nil {
			select {
			case w.errc <- fmt.Errorf("%s: %w", name, err):
			default: // another failure is already stopping the daemon
			}
		}
	}()
}

// wait returns when the context ends (nil) or a worker fails (its error).
func (w *workers) wait() error {
	select {
	case <-w.ctx.Done():
		return nil
	case err := <-w.errc:
		return err
	}
}

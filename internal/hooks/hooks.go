package hooks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/uplinkd/uplinkd/internal/securefile"
	"github.com/uplinkd/uplinkd/policy"
)

// Path is the only variable a hook inherits besides the event's.
const Path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// Defaults for Config.
const (
	DefaultQueueLen  = 64
	DefaultMaxOutput = 64 << 10
)

// Results counted in uplinkd_hook_runs_total.
const (
	ResultOK      = "ok"      // exit status 0
	ResultFailed  = "failed"  // non-zero exit status or killed by a signal
	ResultTimeout = "timeout" // killed at its timeout
	ResultError   = "error"   // could not be started
	ResultDropped = "dropped" // queue full: the event never reached the hook
)

// Event is what a hook is told. Every field becomes one UPLINKD_* variable.
type Event struct {
	Name      string // policy.Event*: gateway_up, group_down, route_changed...
	Gateway   string
	Group     string
	Interface string
	Address   string
	PrevState string
	State     string
	Reason    string
	Table     string
	Changes   string // route_changed: the operations applied, one per line
	Condition string // condition_up, condition_down: the condition's name
}

// Env returns the hook's complete environment.
func (e Event) Env() []string {
	return []string{
		Path,
		"UPLINKD_EVENT=" + e.Name,
		"UPLINKD_GATEWAY=" + e.Gateway,
		"UPLINKD_GROUP=" + e.Group,
		"UPLINKD_INTERFACE=" + e.Interface,
		"UPLINKD_ADDRESS=" + e.Address,
		"UPLINKD_PREV_STATE=" + e.PrevState,
		"UPLINKD_STATE=" + e.State,
		"UPLINKD_REASON=" + sanitize(e.Reason),
		"UPLINKD_TABLE=" + e.Table,
		"UPLINKD_CHANGES=" + e.Changes,
		"UPLINKD_CONDITION=" + e.Condition,
	}
}

// sanitize keeps the environment printable: a reason is human text and
// should never carry control characters into a script's logs or terminal.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// Matches reports whether hook h wants event e.
func Matches(h *policy.Hook, e Event) bool {
	if !slices.Contains(h.Events, e.Name) {
		return false
	}
	if len(h.Objects) == 0 {
		return true
	}
	return e.Gateway != "" && slices.Contains(h.Objects, e.Gateway) ||
		e.Group != "" && slices.Contains(h.Objects, e.Group) ||
		e.Condition != "" && slices.Contains(h.Objects, e.Condition)
}

// Metrics is uplinkd_hook_runs_total.
type Metrics struct {
	runs *prometheus.CounterVec
}

// NewMetrics registers the hook metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{runs: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "uplinkd_hook_runs_total",
		Help: "Hook runs by result (ok, failed, timeout, error, dropped).",
	}, []string{"hook", "result"})}
	reg.MustRegister(m.runs)
	return m
}

func (m *Metrics) inc(hook, result string) {
	if m != nil {
		m.runs.WithLabelValues(hook, result).Inc()
	}
}

// Init creates the series of a hook at zero, so that rate() works from its
// first run.
func (m *Metrics) init(hook string) {
	if m == nil {
		return
	}
	for _, r := range []string{ResultOK, ResultFailed, ResultTimeout, ResultError, ResultDropped} {
		m.runs.WithLabelValues(hook, r)
	}
}

func (m *Metrics) forget(hook string) {
	if m != nil {
		m.runs.DeletePartialMatch(prometheus.Labels{"hook": hook})
	}
}

// Config configures a Runner.
type Config struct {
	Logger    *slog.Logger
	Metrics   *Metrics // may be nil
	QueueLen  int      // events queued per hook before they are dropped; DefaultQueueLen if 0
	MaxOutput int      // bytes of combined stdout+stderr kept per run; DefaultMaxOutput if 0
	// Paused queues events without running anything until Start: the
	// daemon fires hooks for its initial apply before it has dropped its
	// capabilities, and no hook may run with more than it keeps.
	Paused bool
}

// Result describes one finished run, for logs and tests.
type Result struct {
	Hook     string
	Event    Event
	Result   string // Result*
	ExitCode int    // -1 when killed by a signal or not started
	Output   string // combined stdout and stderr, truncated to MaxOutput with a note
	Err      error
	Duration time.Duration
}

// Runner owns one queue and one worker goroutine per hook.
type Runner struct {
	cfg  Config
	log  *slog.Logger
	done func(Result) // test observer; nil in production

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	ready     chan struct{} // closed by Start
	startOnce sync.Once

	pending atomic.Int64 // events queued or running, for Wait

	mu      sync.Mutex
	workers map[string]*worker
	closed  bool
}

type worker struct {
	hook  *policy.Hook
	queue chan Event
	stop  chan struct{} // closed when the hook leaves the policy

	runMu sync.Mutex
	since time.Time // start of the run in progress; zero while waiting
}

// Running is one hook run in progress, for the daemon's liveness: a run
// far past its timeout means the runner is wedged (a kill that did not end
// it, a pipe an escaped child holds).
type Running struct {
	Hook    string
	Since   time.Time
	Timeout time.Duration
}

// Running returns the runs in progress, by hook name. Safe from any
// goroutine.
func (r *Runner) Running() []Running {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Running
	for _, w := range r.workers {
		w.runMu.Lock()
		if !w.since.IsZero() {
			out = append(out, Running{Hook: w.hook.Name, Since: w.since, Timeout: w.hook.Timeout})
		}
		w.runMu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hook < out[j].Hook })
	return out
}

func (w *worker) running(since time.Time) {
	w.runMu.Lock()
	w.since = since
	w.runMu.Unlock()
}

// New returns a Runner with no hooks; call SetHooks.
func New(cfg Config) *Runner {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.MaxOutput <= 0 {
		cfg.MaxOutput = DefaultMaxOutput
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{cfg: cfg, log: log, ctx: ctx, cancel: cancel, workers: map[string]*worker{}, ready: make(chan struct{})}
	if !cfg.Paused {
		r.Start()
	}
	return r
}

// Start lets a Runner created with Paused run what it has queued and
// everything after. It is idempotent.
func (r *Runner) Start() { r.startOnce.Do(func() { close(r.ready) }) }

// OnResult sets an observer called after every run (and every drop). It is
// for tests and must be set before SetHooks.
func (r *Runner) OnResult(fn func(Result)) { r.done = fn }

// SetHooks replaces the set of hooks, as on a reload. A hook whose
// definition is unchanged keeps its queue; a changed one gets a fresh
// worker, and the old worker finishes the run in progress and drops what
// it had queued. Removed hooks lose their metric series.
func (r *Runner) SetHooks(hs []*policy.Hook) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	keep := map[string]bool{}
	for _, h := range hs {
		keep[h.Name] = true
		if w, ok := r.workers[h.Name]; ok {
			if sameHook(w.hook, h) {
				continue
			}
			close(w.stop)
			delete(r.workers, h.Name)
		}
		w := &worker{hook: h, queue: make(chan Event, r.cfg.QueueLen), stop: make(chan struct{})}
		r.workers[h.Name] = w
		r.cfg.Metrics.init(h.Name)
		r.wg.Add(1)
		go r.work(w)
	}
	for name, w := range r.workers {
		if !keep[name] {
			close(w.stop)
			delete(r.workers, name)
			r.cfg.Metrics.forget(name)
		}
	}
}

func sameHook(a, b *policy.Hook) bool {
	return slices.Equal(a.Command, b.Command) && a.Timeout == b.Timeout &&
		slices.Equal(a.Events, b.Events) && slices.Equal(a.Objects, b.Objects)
}

// Fire queues e for every hook that wants it. It never blocks.
func (r *Runner) Fire(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	// Deterministic order across hooks only matters for logs; each hook's
	// own order is what the queue guarantees.
	for _, w := range r.workers {
		if !Matches(w.hook, e) {
			continue
		}
		select {
		case w.queue <- e:
			r.pending.Add(1)
		default:
			r.log.Warn("hook queue full, event dropped", "hook", w.hook.Name, "event", e.Name,
				"gateway", e.Gateway, "group", e.Group, "queued", cap(w.queue))
			r.cfg.Metrics.inc(w.hook.Name, ResultDropped)
			if r.done != nil {
				r.done(Result{Hook: w.hook.Name, Event: e, Result: ResultDropped, ExitCode: -1})
			}
		}
	}
}

func (r *Runner) work(w *worker) {
	defer r.wg.Done()
	defer func() {
		// Whatever is still queued will never run.
		for {
			select {
			case <-w.queue:
				r.pending.Add(-1)
			default:
				return
			}
		}
	}()
	select {
	case <-r.ready:
	case <-r.ctx.Done():
		return
	case <-w.stop:
		return
	}
	for {
		// Stop wins over a full queue: a hook that left the policy must not
		// keep running old events.
		select {
		case <-r.ctx.Done():
			return
		case <-w.stop:
			return
		default:
		}
		select {
		case <-r.ctx.Done():
			return
		case <-w.stop:
			return
		case e := <-w.queue:
			w.running(time.Now())
			res := r.run(r.ctx, w.hook, e)
			w.running(time.Time{})
			r.record(res)
			r.pending.Add(-1)
		}
	}
}

func (r *Runner) record(res Result) {
	r.cfg.Metrics.inc(res.Hook, res.Result)
	attrs := []any{"hook", res.Hook, "event", res.Event.Name, "result", res.Result,
		"exit", res.ExitCode, "duration", res.Duration.Round(time.Millisecond)}
	if res.Event.Gateway != "" {
		attrs = append(attrs, "gateway", res.Event.Gateway)
	}
	if res.Event.Group != "" {
		attrs = append(attrs, "group", res.Event.Group)
	}
	if res.Output != "" {
		// The runner keeps up to MaxOutput per run, but a chatty hook
		// firing on every event must not flood the log at Info: the tail
		// is where a failing script says why. Debug gets all of it.
		attrs = append(attrs, "output", logTail(res.Output, LogOutputMax))
	}
	if res.Err != nil {
		attrs = append(attrs, "err", res.Err)
	}
	if res.Result == ResultOK {
		r.log.Info("hook ran", attrs...)
	} else {
		r.log.Warn("hook failed", attrs...)
	}
	if len(res.Output) > LogOutputMax {
		r.log.Debug("hook output", "hook", res.Hook, "event", res.Event.Name, "output", res.Output)
	}
	if r.done != nil {
		r.done(res)
	}
}

// LogOutputMax is how much of a hook's output the Info/Warn log line
// carries; the rest is logged at Debug.
const LogOutputMax = 4 << 10

// logTail returns the last max bytes of s, starting at a line boundary when
// one is near, with a note of what was cut.
func logTail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := len(s) - max
	if i := strings.IndexByte(s[cut:], '\n'); i >= 0 && i < 256 {
		cut += i + 1
	}
	return fmt.Sprintf("[%d earlier bytes at debug level]\n%s", cut, s[cut:])
}

// run executes one hook for one event through a reaper (see reaper.go) and
// waits for it. The executable is opened and checked first, and the
// reaper executes that descriptor, so what runs is what was checked. At
// the timeout the reaper is told (SIGTERM) to kill the hook and everything
// it started.
func (r *Runner) run(ctx context.Context, h *policy.Hook, e Event) (res Result) {
	res = Result{Hook: h.Name, Event: e, ExitCode: -1}
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	exe, err := securefile.Open(h.Command[0], securefile.Trusted)
	if err != nil {
		res.Result, res.Err = ResultError, fmt.Errorf("starting hook %s: %w", h.Name, err)
		return res
	}
	defer exe.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		res.Result, res.Err = ResultError, fmt.Errorf("starting hook %s: %w", h.Name, err)
		return res
	}
	defer statusR.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		statusW.Close()
		res.Result, res.Err = ResultError, fmt.Errorf("starting hook %s: %w", h.Name, err)
		return res
	}
	defer lifeW.Close() // held until the reaper is reaped
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	out := &limitedBuffer{max: r.cfg.MaxOutput}
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = append([]string{reaperArg0}, h.Command...)
	cmd.Env = append(e.Env(), reaperEnv)
	cmd.Dir = "/"
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.ExtraFiles = []*os.File{exe, statusW, lifeR} // hookFD, statusFD, lifeFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	// The reaper closes the output pipe only after the last descendant is
	// dead; a reaper that does not come back by then is killed.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Start()
	statusW.Close()
	lifeR.Close()
	if err != nil {
		res.Result, res.Err = ResultError, fmt.Errorf("starting hook %s: %w", h.Name, err)
		return res
	}
	waitErr := cmd.Wait()
	res.Output = out.String()
	st, _ := io.ReadAll(io.LimitReader(statusR, 4096))
	code, signaled, startErr, ok := parseStatus(string(st))
	timedOut := ctx.Err() == context.DeadlineExceeded
	switch {
	case !ok:
		res.Result, res.Err = ResultError, fmt.Errorf("running hook %s: reaper ended without a status: %v", h.Name, waitErr)
		if timedOut {
			res.Result = ResultTimeout
		}
	case startErr != "":
		res.Result, res.Err = ResultError, fmt.Errorf("starting hook %s: %s", h.Name, startErr)
	case timedOut:
		res.Result = ResultTimeout
		res.Err = fmt.Errorf("running hook %s: killed after timeout %s", h.Name, h.Timeout)
	case signaled:
		res.Result = ResultFailed
		res.Err = fmt.Errorf("running hook %s: signal: %v", h.Name, syscall.Signal(code))
	case code != 0:
		res.Result, res.ExitCode = ResultFailed, code
		res.Err = fmt.Errorf("running hook %s: exit status %d", h.Name, code)
	default:
		res.Result, res.ExitCode = ResultOK, 0
	}
	return res
}

// Close stops every worker, killing runs in progress, and waits for them.
// Queued events are dropped. It is idempotent.
func (r *Runner) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.workers = map[string]*worker{}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// Wait blocks until every queue is empty and no hook runs, or ctx ends.
// For tests and orderly shutdown.
func (r *Runner) Wait(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if r.idle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (r *Runner) idle() bool { return r.pending.Load() == 0 }

// limitedBuffer keeps the first max bytes and counts the rest, so a chatty
// hook cannot make the daemon's memory grow.
type limitedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	max     int
	dropped int64
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - b.buf.Len()
	if room >= len(p) {
		b.buf.Write(p)
		return len(p), nil
	}
	if room > 0 {
		b.buf.Write(p[:room])
	}
	b.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if b.dropped > 0 {
		s += fmt.Sprintf("\n[output truncated: %d more bytes]", b.dropped)
	}
	return s
}

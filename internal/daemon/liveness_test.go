package daemon

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
	"github.com/uplinkd/uplinkd/internal/hooks"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
)

// fakeClock is the daemon's clock in liveness tests: a wedge is "busy for
// longer than StallAfter" without the test waiting that long.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// It starts at the real time: hook runs are stamped by the real clock.
func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// gate blocks whoever passes it while armed, until released.
type gate struct {
	mu      sync.Mutex
	armed   bool
	release chan struct{}
	entered chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{}), entered: make(chan struct{}, 16)} }

func (g *gate) arm() { g.mu.Lock(); g.armed = true; g.mu.Unlock() }
func (g *gate) pass() {
	g.mu.Lock()
	armed := g.armed
	g.mu.Unlock()
	if armed {
		g.entered <- struct{}{}
		<-g.release
	}
}
func (g *gate) open() { close(g.release) }
func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached the blocking fake")
	}
}

// blockingSink is a RouteSink whose Set blocks at the gate: the health
// loop wedged in a call.
type blockingSink struct {
	RouteSink
	g *gate
}

func (b blockingSink) Set(want routing.State) { b.g.pass(); b.RouteSink.Set(want) }

// blockingKernel is a reconciler kernel whose route writes block at the
// gate: a netlink call that never returns.
type blockingKernel struct {
	*routingtest.MemKernel
	g *gate
}

func (k blockingKernel) RouteReplace(r *netlink.Route) error {
	k.g.pass()
	return k.MemKernel.RouteReplace(r)
}
func (k blockingKernel) RouteAdd(r *netlink.Route) error { k.g.pass(); return k.MemKernel.RouteAdd(r) }

// blockingStatus is a detector whose Status blocks at the gate: a /status
// request wedged inside the HTTP server.
type blockingStatus struct {
	*fakeDetector
	g *gate
}

func (b blockingStatus) Status() []detector.GatewayStatus { b.g.pass(); return nil }

// livenessRig runs a Core, its reconciler and its HTTP handler with the
// daemon's own liveness sources, on a fake clock.
type livenessRig struct {
	t     *testing.T
	clock *fakeClock
	det   *fakeDetector
	core  *Core
	http  http.Handler

	mu    sync.Mutex
	notes []string // what the daemon told systemd
}

// wedgeOnTransition arms g, sends the transition that makes the loop and
// the reconciler work, waits until that work blocks at g, and moves the
// clock past StallAfter.
func (r *livenessRig) wedgeOnTransition(g *gate) {
	r.t.Helper()
	r.waitHealthz(http.StatusOK, "ok")
	g.arm()
	r.det.send("isp1", detector.Up, detector.Down, "3 probes lost")
	g.waitEntered(r.t)
	r.clock.add(StallAfter + time.Second)
}

// wantWatchdogWithheld runs a watchdog turn during a stall: it must not
// ping systemd, and must say which worker is stalled.
func (r *livenessRig) wantWatchdogWithheld(name string) {
	r.t.Helper()
	r.core.watchdog()
	r.mu.Lock()
	last := r.notes[len(r.notes)-1]
	r.mu.Unlock()
	if last == "WATCHDOG=1" || !strings.Contains(last, name) {
		r.t.Errorf("watchdog during a stall of %s told systemd %q, want no ping and a STATUS naming it", name, last)
	}
}

func newLivenessRig(t *testing.T, p *policy.Policy, wrapSink func(RouteSink) RouteSink, wrapDet func(*fakeDetector) HealthSource,
	nl routing.Netlink, extra ...LivenessSource) *livenessRig {
	t.Helper()
	return newLivenessRigAt(t, newFakeClock(), p, wrapSink, wrapDet, nl, extra...)
}

func newLivenessRigAt(t *testing.T, clock *fakeClock, p *policy.Policy, wrapSink func(RouteSink) RouteSink, wrapDet func(*fakeDetector) HealthSource,
	nl routing.Netlink, extra ...LivenessSource) *livenessRig {
	t.Helper()
	r := &livenessRig{t: t, clock: clock, det: newFakeDetector()}
	calls := newProgress("reconciler kernel calls", r.clock.now)
	busy := newProgress("http server", r.clock.now)
	if nl == nil {
		nl = routingtest.NewMemKernel("eth1", "eth2")
	}
	rec, err := routing.NewReconciler(routing.Config{Netlink: watchedNetlink{Netlink: nl, p: calls}, Protocol: 212, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	var sink RouteSink = rec
	if wrapSink != nil {
		sink = wrapSink(rec)
	}
	var det HealthSource = r.det
	if wrapDet != nil {
		det = wrapDet(r.det)
	}
	r.core, err = NewCore(CoreConfig{Policy: p, Detector: det, Routes: sink, Now: r.clock.now, Logger: discard(),
		Liveness: append([]LivenessSource{calls.report, busy.report}, extra...)})
	if err != nil {
		t.Fatal(err)
	}
	// httptest requests name example.com.
	allow := newHostAllow(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9474}, "127.0.0.1:9474", []string{"example.com"})
	r.http = newHTTPServer(r.core, prometheus.NewRegistry(), discard(), allow, busy).Handler
	r.core.notify = func(state string) {
		r.mu.Lock()
		r.notes = append(r.notes, state)
		r.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); rec.Run(ctx) }()
	go func() { defer wg.Done(); r.core.Loop(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); rec.Close() })
	return r
}

func (r *livenessRig) healthz() (int, string) {
	w := httptest.NewRecorder()
	r.http.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	return w.Code, strings.TrimSpace(w.Body.String())
}

// waitHealthz waits until /healthz answers code with a body holding want.
func (r *livenessRig) waitHealthz(code int, want string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, body := r.healthz()
		if c == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("/healthz = %d %q, want %d with %q", c, body, code, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 11.9: each long-lived worker, wedged by a fake that blocks, fails
// /healthz (and so the watchdog, which follows the same verdict) once it
// has been busy for longer than its limit, naming itself; it recovers
// when the fake lets go.
func TestLivenessWedgedWorkers(t *testing.T) {
	p := mustParse(t, twoISPs(2, `"gateway_down"`))
	t.Run("health loop", func(t *testing.T) {
		g := newGate()
		r := newLivenessRig(t, p, func(s RouteSink) RouteSink { return blockingSink{s, g} }, nil, nil)
		r.wedgeOnTransition(g)
		r.waitHealthz(http.StatusServiceUnavailable, "health loop")
		r.wantWatchdogWithheld("health loop")
		g.open()
		r.waitHealthz(http.StatusOK, "ok")
		r.core.watchdog()
		r.mu.Lock()
		last := r.notes[len(r.notes)-1]
		r.mu.Unlock()
		if last != "WATCHDOG=1" {
			t.Errorf("watchdog after the stall told systemd %q, want WATCHDOG=1", last)
		}
	})
	t.Run("reconciler kernel calls", func(t *testing.T) {
		g := newGate()
		r := newLivenessRig(t, p, nil, nil, blockingKernel{routingtest.NewMemKernel("eth1", "eth2"), g})
		r.wedgeOnTransition(g)
		r.waitHealthz(http.StatusServiceUnavailable, "reconciler kernel calls (busy 11s)")
		// The loop handed the state over and went on: only the call is
		// stuck (the loop may be named for a moment after the clock jump,
		// until its next turn).
		r.waitHealthz(http.StatusServiceUnavailable, "stalled: reconciler kernel calls")
		r.wantWatchdogWithheld("reconciler kernel calls")
		g.open()
		r.waitHealthz(http.StatusOK, "ok")
	})
	t.Run("http server", func(t *testing.T) {
		g := newGate()
		r := newLivenessRig(t, p, nil, func(f *fakeDetector) HealthSource { return blockingStatus{f, g} }, nil)
		r.waitHealthz(http.StatusOK, "ok")
		g.arm()
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.http.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/status", nil))
		}()
		g.waitEntered(t)
		r.clock.add(StallAfter + time.Second)
		// /healthz itself is served (and finishes, which is progress), so
		// the stuck /status shows only until then: read the verdict
		// without a request of our own.
		waitStalled(t, r.core, "http server")
		r.wantWatchdogWithheld("http server")
		g.open()
		<-done
		r.waitHealthz(http.StatusOK, "ok")
	})
	t.Run("detector workers", func(t *testing.T) {
		// The real detector over its fake kernel, on the daemon's clock;
		// its traffic poller's counter read blocks.
		clock := newFakeClock()
		k, pr := detectortest.NewKernel(), detectortest.NewProber()
		k.AddLink("eth1", 4, "198.18.1.2/24")
		k.AddLink("eth2", 5, "198.18.2.2/24")
		pr.Set("eth1", true)
		pr.Set("eth2", true)
		det, err := detector.New(detector.Config{Policy: p, Kernel: k, Prober: pr, Now: clock.now})
		if err != nil {
			t.Fatal(err)
		}
		defer det.Close()
		r := newLivenessRigAt(t, clock, p, nil, func(*fakeDetector) HealthSource { return det }, nil, detectorLiveness(det))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- det.Run(ctx) }()
		defer func() { cancel(); <-done }()
		r.waitHealthz(http.StatusOK, "ok")
		release := k.Block(detectortest.OpCounters)
		defer release()
		waitTrue(t, "the poller to block", func() bool {
			for _, w := range det.Liveness() {
				if w.Name == "traffic poller" && w.Busy {
					return true
				}
			}
			return false
		})
		clock.add(StallAfter + time.Second)
		r.waitHealthz(http.StatusServiceUnavailable, "detector traffic poller")
		r.wantWatchdogWithheld("detector traffic poller")
	})
	t.Run("hook runner", func(t *testing.T) {
		hr := hooks.New(hooks.Config{Logger: discard()})
		defer hr.Close()
		hr.SetHooks([]*policy.Hook{{Name: "slow", Command: []string{"/bin/sleep", "30"}, Events: []string{"gateway_down"}, Timeout: time.Minute}})
		r := newLivenessRig(t, p, nil, nil, nil, hookLiveness(hr))
		hr.Fire(hooks.Event{Name: "gateway_down", Gateway: "isp1"})
		waitTrue(t, "the hook to run", func() bool { return len(hr.Running()) == 1 })
		r.clock.add(time.Minute) // within its timeout: busy, not stalled
		r.waitHealthz(http.StatusOK, "ok")
		r.clock.add(StallAfter + time.Second)
		r.waitHealthz(http.StatusServiceUnavailable, "hook slow")
		r.wantWatchdogWithheld("hook slow")
	})
}

func waitStalled(t *testing.T, c *Core, name string) {
	t.Helper()
	waitTrue(t, name+" reported stalled", func() bool {
		ok, reason := c.Healthy()
		return !ok && strings.Contains(reason, name)
	})
}

// TestWorkerStalled: waiting is never a stall; busy past the limit is.
func TestWorkerStalled(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		w    Worker
		want bool
	}{
		{Worker{LastProgress: now.Add(-time.Hour)}, false},
		{Worker{LastProgress: now.Add(-StallAfter), Busy: true}, false},
		{Worker{LastProgress: now.Add(-StallAfter - time.Millisecond), Busy: true}, true},
		{Worker{LastProgress: now.Add(-time.Minute), Busy: true, Limit: 2 * time.Minute}, false},
	} {
		if got := tc.w.Stalled(now); got != tc.want {
			t.Errorf("%+v.Stalled = %v, want %v", tc.w, got, tc.want)
		}
	}
}

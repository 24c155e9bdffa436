package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/hooks"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
)

// fakeDetector is a HealthSource driven by the test.
type fakeDetector struct {
	trans chan detector.Transition

	mu      sync.Mutex
	updates []*policy.Policy
	standby []map[string]bool
	failOn  func(*policy.Policy) error
}

func newFakeDetector() *fakeDetector {
	return &fakeDetector{trans: make(chan detector.Transition, 64)}
}

func (f *fakeDetector) Run(ctx context.Context) error           { <-ctx.Done(); return nil }
func (f *fakeDetector) Transitions() <-chan detector.Transition { return f.trans }
func (f *fakeDetector) Status() []detector.GatewayStatus        { return nil }
func (f *fakeDetector) Close() error                            { return nil }
func (f *fakeDetector) Liveness() []detector.Worker             { return nil }
func (f *fakeDetector) SetStandby(m map[string]bool) {
	f.mu.Lock()
	f.standby = append(f.standby, m)
	f.mu.Unlock()
}
func (f *fakeDetector) SetHeld(map[string]string) {}
func (f *fakeDetector) send(gw string, from, to detector.State, r string) {
	f.trans <- detector.Transition{Gateway: gw, From: from, To: to, Cause: "probe", Reason: r, At: time.Now()}
}

func (f *fakeDetector) Update(p *policy.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failOn != nil {
		if err := f.failOn(p); err != nil {
			return err
		}
	}
	f.updates = append(f.updates, p)
	return nil
}

func mustParse(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.toml", []byte(text), policy.Options{})
	if err != nil {
		t.Fatalf("parsing policy: %v", err)
	}
	return p
}

func twoISPs(w1 int, hookEvents string) string {
	return fmt.Sprintf(`
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
weight = %d
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[group.wan]
gateways = ["isp1", "isp2"]
[hook.h]
command = ["/bin/true"]
events = [%s]
`, w1, hookEvents)
}

// harness runs a Core over the real reconciler and the in-memory kernel.
type harness struct {
	t       *testing.T
	kernel  *routingtest.MemKernel
	rec     *routing.Reconciler
	det     *fakeDetector
	core    *Core
	reg     *prometheus.Registry
	loads   atomic.Int32
	next    atomic.Pointer[policy.Policy]
	loadErr atomic.Pointer[error]

	mu     sync.Mutex
	events []hooks.Event

	ct *recordingConntrack

	stop func() // ends the instance, as kill -9 would; idempotent
}

func newHarness(t *testing.T, p *policy.Policy) *harness {
	t.Helper()
	return newHarnessFacts(t, p, nil)
}

// newHarnessFacts is newHarness with a watcher of condition facts.
func newHarnessFacts(t *testing.T, p *policy.Policy, facts ConditionFacts) *harness {
	t.Helper()
	h := &harness{t: t, kernel: routingtest.NewMemKernel("eth1", "eth2"), det: newFakeDetector(), reg: prometheus.NewRegistry(),
		ct: &recordingConntrack{n: 7, called: make(chan struct{}, 8)}}
	hr := hooks.New(hooks.Config{Metrics: hooks.NewMetrics(h.reg)})
	hr.OnResult(func(r hooks.Result) {
		h.mu.Lock()
		h.events = append(h.events, r.Event)
		h.mu.Unlock()
	})
	var err error
	h.rec, err = routing.NewReconciler(routing.Config{Netlink: h.kernel, Protocol: 212, OnApplied: func(ops []routing.Op) { h.core.OnApplied(ops) }})
	if err != nil {
		t.Fatal(err)
	}
	h.next.Store(p)
	h.core, err = NewCore(CoreConfig{
		Policy: p, Detector: h.det, Routes: h.rec, Hooks: hr, Metrics: NewMetrics(h.reg, BuildInfo{"v", "c", "go"}),
		TrackDir: filepath.Join(t.TempDir(), "track"), Conntrack: h.ct, ConditionFacts: facts,
		Load: func() (*policy.Policy, error) {
			h.loads.Add(1)
			if e := h.loadErr.Load(); e != nil {
				return nil, *e
			}
			return h.next.Load(), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.rec.Apply(context.Background(), h.core.Desired()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.rec.Run(ctx) }()
	go func() { defer wg.Done(); h.core.Loop(ctx) }()
	h.stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		h.rec.Close()
		hr.Close()
	})
	t.Cleanup(h.stop)
	return h
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; kernel:\n%s", what, routing.Format(h.kernel.State()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) hookEvents() []hooks.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hooks.Event(nil), h.events...)
}

func (h *harness) kernelDump() string { return routing.Format(h.kernel.State()) }

func TestCoreGatewayDownChangesRoutesAndFiresHooks(t *testing.T) {
	h := newHarness(t, mustParse(t, twoISPs(2, `"gateway_down", "gateway_up", "group_down", "group_up"`)))
	both := h.kernelDump()
	if !strings.Contains(both, "nexthop via 198.18.1.1 dev eth1 weight 2") || !strings.Contains(both, "nexthop via 198.18.2.1 dev eth2 weight 1") {
		t.Fatalf("initial state:\n%s", both)
	}
	// Unknown -> up changes nothing and fires nothing.
	h.det.send("isp1", detector.Unknown, detector.Up, "neighbour reachable")
	h.det.send("isp2", detector.Unknown, detector.Up, "neighbour reachable")
	// Suspect still carries traffic.
	h.det.send("isp1", detector.Up, detector.Suspect, "tx without rx")
	h.det.send("isp1", detector.Suspect, detector.Down, "3 probes lost")
	want := "default via 198.18.2.1 dev eth2 table main proto 212"
	h.waitFor("isp1 out of the route", func() bool { return strings.Contains(h.kernelDump(), want) })
	h.det.send("isp2", detector.Up, detector.Down, "carrier lost on eth2")
	wantEv := []hooks.Event{
		{Name: "gateway_down", Gateway: "isp1", Group: "wan", Interface: "eth1", Address: "198.18.1.1", PrevState: "up", State: "down", Reason: "3 probes lost", Table: "254"},
		{Name: "gateway_down", Gateway: "isp2", Group: "wan", Interface: "eth2", Address: "198.18.2.1", PrevState: "up", State: "down", Reason: "carrier lost on eth2", Table: "254"},
	}
	h.waitFor("three hook runs", func() bool { return len(h.hookEvents()) >= 3 })
	time.Sleep(100 * time.Millisecond) // a duplicate would show up now
	got := h.hookEvents()
	// The group goes down with its last gateway, right after it.
	wantEv = append(wantEv, hooks.Event{Name: "group_down", Group: "wan", PrevState: "up", State: "down", Reason: "0 of 2 gateways healthy", Table: "254"})
	if d := cmp.Diff(wantEv, got); d != "" {
		t.Errorf("hook events (-want +got):\n%s", d)
	}
	if v := testutil.ToFloat64(h.core.metrics.groupUp.WithLabelValues("wan")); v != 0 {
		t.Errorf("group_up{wan} = %v, want 0", v)
	}
	if s := h.core.Status(); s.Groups[0].Up || s.Gateways[0].State != "down" || s.Gateways[0].Up {
		t.Errorf("status %+v", s)
	}
	data, _ := os.ReadFile(filepath.Join(h.core.track.dir, "wan"))
	if string(data) != "1\n" {
		t.Errorf("track file wan = %q", data)
	}
}

func TestCoreReloadStormIsCoalesced(t *testing.T) {
	h := newHarness(t, mustParse(t, twoISPs(2, `"route_changed"`)))
	w0 := h.rec.Writes()
	for range 100 {
		h.core.RequestReload()
	}
	h.waitFor("a reload", func() bool { return h.loads.Load() >= 1 })
	time.Sleep(3 * DefaultReloadDebounce)
	if n := h.loads.Load(); n < 1 || n > 2 {
		t.Errorf("100 reload requests caused %d loads, want 1 (2 at most if the burst straddled the debounce)", n)
	}
	if d := h.rec.Writes() - w0; d != 0 {
		t.Errorf("unchanged reloads wrote %d times", d)
	}
}

func TestCoreReloadChangesOneRoute(t *testing.T) {
	h := newHarness(t, mustParse(t, twoISPs(2, `"route_changed"`)))
	h.det.send("isp1", detector.Unknown, detector.Up, "ok")
	w0 := h.rec.Writes()
	h.next.Store(mustParse(t, twoISPs(7, `"route_changed"`)))
	if err := h.core.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.waitFor("weight 7", func() bool { return strings.Contains(h.kernelDump(), "weight 7") })
	if d := h.rec.Writes() - w0; d != 1 {
		t.Errorf("one weight change made %d writes, want 1", d)
	}
	if st := h.core.Status(); st.Gateways[0].State != "up" {
		t.Errorf("isp1 lost its state on reload: %q", st.Gateways[0].State)
	}
	if len(h.det.updates) != 1 {
		t.Errorf("detector updated %d times, want 1", len(h.det.updates))
	}
}

func TestCoreInvalidReloadKeepsPolicy(t *testing.T) {
	p := mustParse(t, twoISPs(2, `"route_changed"`))
	h := newHarness(t, p)
	before := h.kernelDump()
	bad := errors.New("test.toml:3:11: gateway \"isp1\": address \"x\" is not an IPv4 or IPv6 address")
	h.loadErr.Store(&bad)
	if err := h.core.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "is not an IPv4") {
		t.Fatalf("Reload = %v, want the policy error", err)
	}
	if v := testutil.ToFloat64(h.core.metrics.reloadOK); v != 0 {
		t.Errorf("reload metric %v, want 0", v)
	}
	if h.core.pol != p || h.kernelDump() != before {
		t.Errorf("refused reload changed the policy or the kernel")
	}
	if s := h.core.Status(); s.LastReloadOK || s.LastReloadError != bad.Error() {
		t.Errorf("status reload fields: ok=%v err=%q", s.LastReloadOK, s.LastReloadError)
	}
	// A detector that refuses the new policy also keeps the old one.
	h.loadErr.Store(nil)
	h.det.failOn = func(*policy.Policy) error { return errors.New("no") }
	if err := h.core.Reload(context.Background()); err == nil {
		t.Fatal("reload accepted although the detector refused it")
	}
	// And a route_protocol change is refused: it would orphan every route.
	h.det.failOn = nil
	h.next.Store(mustParse(t, "[daemon]\nroute_protocol = 213\n"+twoISPs(2, `"route_changed"`)))
	if err := h.core.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "route_protocol changed") {
		t.Errorf("route_protocol change: %v", err)
	}
	h.next.Store(p)
	if err := h.core.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(h.core.metrics.reloadOK); v != 1 {
		t.Errorf("reload metric %v after a good reload, want 1", v)
	}
}

func TestCoreReloadRemovesGroupSeriesAndTrackFiles(t *testing.T) {
	h := newHarness(t, mustParse(t, twoISPs(2, `"route_changed"`)))
	// The loop publishes group series when it starts.
	h.waitFor("the group_up series", func() bool { return testutil.CollectAndCount(h.core.metrics.groupUp) == 1 })
	h.next.Store(mustParse(t, `
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[group.other]
gateways = ["isp2"]
`))
	if err := h.core.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(h.core.metrics.groupUp, "uplinkd_group_up"); n != 1 {
		t.Errorf("%d group_up series after the group was replaced, want 1", n)
	}
	if v := testutil.ToFloat64(h.core.metrics.groupUp.WithLabelValues("other")); v != 1 {
		t.Errorf("group_up{other} = %v", v)
	}
	entries, _ := os.ReadDir(h.core.track.dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if d := cmp.Diff([]string{"isp2", "other"}, names); d != "" {
		t.Errorf("track files (-want +got):\n%s", d)
	}
	h.waitFor("isp1 out of the kernel", func() bool { return !strings.Contains(h.kernelDump(), "198.18.1.1") })
}

func TestHealthOf(t *testing.T) {
	for _, tc := range []struct {
		s    detector.State
		prev routing.Health
		want routing.Health
	}{
		{detector.Unknown, routing.Up, routing.Up},
		{detector.Up, routing.Down, routing.Up},
		{detector.Degraded, routing.Up, routing.Degraded},
		{detector.Down, routing.Up, routing.Down},
		// Suspect carries traffic as it did before it became suspect.
		{detector.Suspect, routing.Up, routing.Up},
		{detector.Suspect, routing.Degraded, routing.Degraded},
	} {
		if got := healthOf(tc.s, tc.prev); got != tc.want {
			t.Errorf("healthOf(%v, %v) = %v, want %v", tc.s, tc.prev, got, tc.want)
		}
	}
}

func TestOnAppliedEvent(t *testing.T) {
	p := mustParse(t, twoISPs(2, `"route_changed"`))
	var got []hooks.Event
	hr := hooks.New(hooks.Config{})
	hr.OnResult(func(r hooks.Result) { got = append(got, r.Event) })
	c, err := NewCore(CoreConfig{Policy: p, Detector: newFakeDetector(), Hooks: hr})
	if err != nil {
		t.Fatal(err)
	}
	rt := routing.Route{Family: 4, Table: 254, Dst: mustPrefix("0.0.0.0/0"), Protocol: 212, Type: routing.Unicast, Owner: "group/wan",
		Nexthops: []routing.Nexthop{{Gateway: mustAddr("198.18.2.1"), Dev: "eth2", Weight: 1}}}
	c.OnApplied([]routing.Op{{Kind: routing.OpReplace, Object: routing.ObjRoute, Route: &rt}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hr.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	hr.Close()
	want := []hooks.Event{{Name: "route_changed", Group: "wan", Table: "254", State: "applied",
		Reason: "1 route/rule operations applied", Changes: "+ " + routing.RouteString(rt)}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("route_changed event (-want +got):\n%s", d)
	}
}

func TestCoreControlCommands(t *testing.T) {
	h := newHarness(t, mustParse(t, twoISPs(2, `"route_changed"`)))
	ctx := context.Background()
	if out, err := h.core.control(ctx, CmdReload); err != nil || out != "policy reloaded\n" {
		t.Errorf("reload: %q, %v", out, err)
	}
	out, err := h.core.control(ctx, CmdStatus)
	if err != nil || !strings.Contains(out, `"name": "isp1"`) {
		t.Errorf("status: %v\n%s", err, out)
	}
	if _, err := h.core.control(ctx, "shutdown"); err == nil || !strings.Contains(err.Error(), `unknown command "shutdown"`) {
		t.Errorf("unknown command: %v", err)
	}
}

func TestCoreTellsDetectorStandby(t *testing.T) {
	h := newHarness(t, mustParse(t, `
[gateway.primary]
address = "198.18.1.1"
interface = "eth1"
tier = 1
[gateway.backup]
address = "198.18.2.1"
interface = "eth2"
tier = 2
[group.wan]
gateways = ["primary", "backup"]
`))
	standby := func() map[string]bool {
		h.det.mu.Lock()
		defer h.det.mu.Unlock()
		if len(h.det.standby) == 0 {
			return nil
		}
		return h.det.standby[len(h.det.standby)-1]
	}
	h.waitFor("backup declared standby", func() bool { return cmp.Equal(standby(), map[string]bool{"backup": true}) })
	h.det.send("primary", detector.Unknown, detector.Down, "carrier lost on eth1")
	h.waitFor("backup carrying traffic, so probed normally", func() bool { return cmp.Equal(standby(), map[string]bool{}) })
	h.waitFor("the default through backup", func() bool {
		return strings.Contains(h.kernelDump(), "default via 198.18.2.1 dev eth2 table main proto 212")
	})
	if s := h.core.Status(); s.Gateways[0].Standby || s.Gateways[0].Name != "backup" {
		t.Errorf("status after failover: %+v", s.Gateways[0])
	}
}

// TestRestartAdoptsWithdrawnGateway: an instance withdrew isp1 and died;
// the next one, over the same kernel, starts isp1 down, writes nothing,
// and keeps isp1's track file down. isp1 rejoins only when the detector
// says so.
func TestRestartAdoptsWithdrawnGateway(t *testing.T) {
	p := mustParse(t, twoISPs(2, `"gateway_up"`))
	first := newHarness(t, p)
	first.det.send("isp1", detector.Up, detector.Down, "3 probes lost")
	first.waitFor("isp1 withdrawn", func() bool { return !strings.Contains(first.kernelDump(), "198.18.1.1") })
	left := first.kernelDump()
	first.stop()

	rec, err := routing.NewReconciler(routing.Config{Netlink: first.kernel, Protocol: 212, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() }) // after runRestarted's loop stops
	startDown, startUp, adopted := adoptWithdrawn(p, rec, discard())
	if !adopted || len(startUp) != 0 {
		t.Fatalf("adoptWithdrawn over the first instance's kernel: adopted %v, conditions up %v; want adopted, none", adopted, startUp)
	}
	if diff := cmp.Diff(map[string]string{"isp1": reasonAbsent}, startDown); diff != "" {
		t.Fatalf("adopted (-want +got):\n%s", diff)
	}
	det := newFakeDetector()
	trackDir := filepath.Join(t.TempDir(), "track")
	before := rec.Writes()
	core := runRestarted(t, p, det, rec, restartFrom{trackDir: trackDir, down: startDown, adopted: adopted})

	det.send("isp2", detector.Unknown, detector.Up, "probe answered")
	waitTrue(t, "track files written", func() bool {
		b, err := os.ReadFile(filepath.Join(trackDir, "isp2"))
		return err == nil && string(b) == "0\n"
	})
	if b, err := os.ReadFile(filepath.Join(trackDir, "isp1")); err != nil || string(b) != "1\n" {
		t.Errorf("isp1's track file = %q, %v; want \"1\\n\" (down, not forced up at start)", b, err)
	}
	if w := rec.Writes() - before; w != 0 {
		t.Errorf("the restart wrote %d times, want 0", w)
	}
	if now := first.kernelDump(); now != left {
		t.Errorf("kernel changed across the restart:\nleft\n%s\nnow\n%s", left, now)
	}
	if st := core.Status(); st.Gateways[0].Name != "isp1" || st.Gateways[0].State != "down" || st.Gateways[0].Up {
		t.Errorf("isp1 after the restart: %+v, want down", st.Gateways[0])
	}

	det.send("isp1", detector.Down, detector.Up, "3 probes answered")
	waitTrue(t, "isp1 back in the route", func() bool { return strings.Contains(first.kernelDump(), "198.18.1.1") })
}

// runRestarted is the second instance of a restart test: a Core over rec
// (reading the kernel the first one left) with what adoptWithdrawn found;
// its initial apply must write nothing, and its loop and reconciler run
// until the test ends.
// restartFrom is what the second instance of a restart test starts from:
// what adoptWithdrawn returned, and where its track files and facts are.
type restartFrom struct {
	trackDir string
	down     map[string]string
	up       []string
	adopted  bool
	facts    ConditionFacts
	hooks    *hooks.Runner
}

func runRestarted(t *testing.T, p *policy.Policy, det *fakeDetector, rec *routing.Reconciler, from restartFrom) *Core {
	t.Helper()
	core, err := NewCore(CoreConfig{Policy: p, Detector: det, Routes: rec, TrackDir: from.trackDir, StartDown: from.down, StartUp: from.up,
		Adopted: from.adopted, ConditionFacts: from.facts, Hooks: from.hooks,
		Load: func() (*policy.Policy, error) { return p, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := rec.Apply(context.Background(), core.Desired()); err != nil || n != 0 {
		t.Fatalf("initial apply after the restart: %d writes, %v; want 0, nil", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- rec.Run(ctx) }()
	go func() { done <- core.Loop(ctx) }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return core
}

func waitTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRestartKeepAllDownWritesNothing: with last_resort = "keep" and
// every gateway dead, the route a previous instance left is every member,
// as if all were up, so nothing is adopted as down. The restart's first
// verdict (isp1 down, isp2 still unknown) must not move the route onto
// isp2 only to move it back at the next: route changes wait for every
// gateway's first verdict, and the restart writes nothing.
func TestRestartKeepAllDownWritesNothing(t *testing.T) {
	p := mustParse(t, twoISPs(2, `"gateway_up"`))
	first := newHarness(t, p)
	first.det.send("isp1", detector.Up, detector.Down, "3 probes lost")
	first.det.send("isp2", detector.Up, detector.Down, "3 probes lost")
	first.waitFor("both down, both kept", func() bool {
		s := first.core.Status()
		return s.Gateways[0].State == "down" && s.Gateways[1].State == "down"
	})
	left := first.kernelDump()
	if !strings.Contains(left, "198.18.1.1") || !strings.Contains(left, "198.18.2.1") {
		t.Fatalf("keep did not keep both members:\n%s", left)
	}
	first.stop()

	rec, err := routing.NewReconciler(routing.Config{Netlink: first.kernel, Protocol: 212, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() }) // after runRestarted's loop stops
	startDown, startUp, adopted := adoptWithdrawn(p, rec, discard())
	if len(startDown) != 0 || len(startUp) != 0 || !adopted {
		t.Fatalf("adoptWithdrawn = %v, %v, %v; want nothing down (the kept route shows every member), no condition, adopted", startDown, startUp, adopted)
	}
	det := newFakeDetector()
	core := runRestarted(t, p, det, rec, restartFrom{trackDir: t.TempDir(), down: startDown, adopted: adopted})

	stayed := func(what string) {
		t.Helper()
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if w := rec.Writes(); w != 0 {
				t.Fatalf("%s: %d writes; kernel now:\n%s", what, w, first.kernelDump())
			}
		}
	}
	det.send("isp1", detector.Unknown, detector.Down, "3 probes lost at start")
	waitTrue(t, "isp1 judged down", func() bool { return core.Status().Gateways[0].State == "down" })
	stayed("isp1 judged down while isp2 is still unknown")
	det.send("isp2", detector.Unknown, detector.Down, "3 probes lost at start")
	waitTrue(t, "isp2 judged down", func() bool { return core.Status().Gateways[1].State == "down" })
	stayed("both judged down")
	if now := first.kernelDump(); now != left {
		t.Errorf("kernel changed across the restart:\nleft\n%s\nnow\n%s", left, now)
	}

	// The hold ends with the last verdict: a gateway back is routed at once.
	det.send("isp2", detector.Down, detector.Up, "3 probes answered")
	waitTrue(t, "isp2 alone in the route", func() bool {
		d := first.kernelDump()
		return strings.Contains(d, "198.18.2.1") && !strings.Contains(d, "198.18.1.1")
	})
}

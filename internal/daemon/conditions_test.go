package daemon

import (
	"context"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/condition"
	"github.com/uplinkd/uplinkd/internal/condwatch"
	"github.com/uplinkd/uplinkd/internal/hooks"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
)

// fakeFacts is a ConditionFacts the test sets.
type fakeFacts struct {
	ch chan struct{}

	mu     sync.Mutex
	f      condwatch.Facts
	ifaces []string
	files  []string
}

func newFakeFacts() *fakeFacts {
	return &fakeFacts{ch: make(chan struct{}, 1), f: condwatch.Facts{Links: map[string]bool{}, Addrs: map[condition.Addr]bool{}, Files: map[string]bool{}}}
}

func (f *fakeFacts) Set(ifaces, files []string) {
	f.mu.Lock()
	f.ifaces, f.files = ifaces, files
	f.mu.Unlock()
}
func (f *fakeFacts) Changed() <-chan struct{} { return f.ch }
func (f *fakeFacts) Facts() condwatch.Facts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return condwatch.Facts{Links: maps.Clone(f.f.Links), Addrs: maps.Clone(f.f.Addrs), Files: maps.Clone(f.f.Files)}
}
func (f *fakeFacts) edit(fn func(*condwatch.Facts)) {
	f.mu.Lock()
	fn(&f.f)
	f.mu.Unlock()
	select {
	case f.ch <- struct{}{}:
	default:
	}
}

const claimPolicy = `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"

[group.wan]
gateways = ["isp1"]
condition = "claim"
last_resort = "remove"

[condition.claim]
all = ["address 198.18.0.100 on eth1", "gateway isp1 up", "file /run/t/remote"]

[announce.vip]
prefix = "198.18.0.100/32"
track = "claim"
dev = "eth1"

[hook.claim]
command = ["/bin/true"]
events = ["condition_up", "condition_down"]
`

func conditionEvents(h *harness) []hooks.Event {
	var out []hooks.Event
	for _, e := range h.hookEvents() {
		if strings.HasPrefix(e.Name, "condition_") {
			out = append(out, e)
		}
	}
	return out
}

// TestCoreConditionGatesRoutesAndFiresHooks runs the failover-IP claim
// through the loop, the real reconciler and the in-memory kernel: the
// group's route and the announce follow the condition, which follows the
// gateway's health and the watcher's facts; each change fires one hook and
// sets the metric, the track file and the status.
func TestCoreConditionGatesRoutesAndFiresHooks(t *testing.T) {
	facts := newFakeFacts()
	h := newHarnessFacts(t, mustParse(t, claimPolicy), facts)
	track := filepath.Join(h.core.track.dir, "claim")
	h.waitFor("the claim's track file, down", func() bool { b, _ := os.ReadFile(track); return string(b) == "1\n" })
	if d := h.kernelDump(); d != "" {
		t.Fatalf("routes while the condition is down:\n%s", d)
	}
	facts.mu.Lock()
	if d := cmp.Diff([]string{"eth1"}, facts.ifaces); d != "" {
		t.Errorf("watched interfaces (-want +got):\n%s", d)
	}
	facts.mu.Unlock()

	vip := condition.Addr{Iface: "eth1", IP: netip.MustParseAddr("198.18.0.100")}
	facts.edit(func(f *condwatch.Facts) { f.Addrs[vip] = true; f.Files["/run/t/remote"] = true })
	// The gateway not judged yet: the claim must wait for it.
	h.det.send("isp1", detector.Unknown, detector.Up, "probe answered")
	want := "198.18.0.100/32 dev eth1 table main proto 212"
	h.waitFor("the VIP route and the group's", func() bool {
		d := h.kernelDump()
		return strings.Contains(d, want) && strings.Contains(d, "default via 198.18.1.1 dev eth1 table main proto 212")
	})
	h.waitFor("condition_up", func() bool { return len(conditionEvents(h)) == 1 })
	if v := testutil.ToFloat64(h.core.metrics.conditionUp.WithLabelValues("claim")); v != 1 {
		t.Errorf("uplinkd_condition_up{claim} = %v, want 1", v)
	}
	if b, _ := os.ReadFile(track); string(b) != "0\n" {
		t.Errorf("track file %q, want 0", b)
	}
	st := h.core.Status()
	wantSt := []ConditionStatus{{Name: "claim", Up: true, Since: st.Conditions[0].Since, Terms: []ConditionTerm{
		{"address 198.18.0.100 on eth1", true}, {"gateway isp1 up", true}, {"file /run/t/remote", true}}}}
	if d := cmp.Diff(wantSt, st.Conditions); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	if up, found := st.Check("claim"); !up || !found {
		t.Errorf("status --check claim: up %v found %v", up, found)
	}

	// The remote target stops answering: release at once.
	facts.edit(func(f *condwatch.Facts) { f.Files["/run/t/remote"] = false })
	h.waitFor("the routes gone", func() bool { return h.kernelDump() == "" })
	h.waitFor("condition_down", func() bool { return len(conditionEvents(h)) == 2 })
	// Facts that change nothing fire nothing.
	facts.edit(func(f *condwatch.Facts) { f.Links["eth1"] = true })
	h.det.send("isp1", detector.Up, detector.Down, "3 probes lost")
	h.waitFor("gateway_down", func() bool { return len(h.hookEvents()) >= 2 })
	got := conditionEvents(h)
	wantEv := []hooks.Event{
		{Name: "condition_up", Condition: "claim", PrevState: "down", State: "up", Reason: "3 of 3 terms hold"},
		{Name: "condition_down", Condition: "claim", PrevState: "up", State: "down", Reason: "2 of 3 terms hold; not holding: file /run/t/remote"},
	}
	if d := cmp.Diff(wantEv, got); d != "" {
		t.Errorf("condition hooks (-want +got):\n%s", d)
	}

	// A reload that drops the condition drops its series and track file.
	h.next.Store(mustParse(t, `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
[group.wan]
gateways = ["isp1"]
`))
	if err := h.core.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(h.core.metrics.conditionUp); n != 0 {
		t.Errorf("%d uplinkd_condition_up series after the condition left the policy", n)
	}
	if _, err := os.Stat(track); !os.IsNotExist(err) {
		t.Errorf("the track file of a removed condition is still there (%v)", err)
	}
}

// TestCoreConditionHoldUp: a condition with hold_up is pending, not up,
// when its terms start to hold, and comes up when the loop's timer ends
// the hold, with no other event.
func TestCoreConditionHoldUp(t *testing.T) {
	facts := newFakeFacts()
	h := newHarnessFacts(t, mustParse(t, `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"

[group.wan]
gateways = ["isp1"]

[condition.link]
all = ["link eth1 up"]
hold_up = "300ms"

[hook.h]
command = ["/bin/true"]
events = ["condition_up"]
`), facts)
	facts.edit(func(f *condwatch.Facts) { f.Links["eth1"] = true })
	h.waitFor("the hold to start", func() bool { s := h.core.Status(); return s.Conditions[0].Pending })
	pending := h.core.Status().Conditions[0]
	if pending.Up {
		t.Fatalf("up before its hold: %+v", pending)
	}
	h.waitFor("condition_up after the hold", func() bool { return len(conditionEvents(h)) == 1 })
	s := h.core.Status().Conditions[0]
	if !s.Up || s.Pending {
		t.Errorf("after the hold: %+v", s)
	}
	if s.Since.Before(pending.Until) {
		t.Errorf("came up at %v, before the hold ended at %v", s.Since, pending.Until)
	}
}

// TestRestartAdoptsConditionWritesNothing: an instance claimed the
// failover IP (the condition up: its announce and the gated group's
// default installed) and died. The next one, over the same kernel, starts
// the condition up: it writes nothing, fires no hook, keeps the track file
// up and shows the condition up, and still releases the claim when a term
// fails.
func TestRestartAdoptsConditionWritesNothing(t *testing.T) {
	p := mustParse(t, claimPolicy)
	vip := condition.Addr{Iface: "eth1", IP: netip.MustParseAddr("198.18.0.100")}
	holds := func(f *condwatch.Facts) { f.Addrs[vip] = true; f.Files["/run/t/remote"] = true }
	facts := newFakeFacts()
	facts.edit(holds)
	first := newHarnessFacts(t, p, facts)
	first.det.send("isp1", detector.Unknown, detector.Up, "probe answered")
	first.waitFor("the claim", func() bool { return len(conditionEvents(first)) == 1 })
	left := first.kernelDump()
	if !strings.Contains(left, "198.18.0.100/32") || !strings.Contains(left, "default via 198.18.1.1") {
		t.Fatalf("the first instance did not claim:\n%s", left)
	}
	first.stop()

	rec, err := routing.NewReconciler(routing.Config{Netlink: first.kernel, Protocol: 212, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() }) // after runRestarted's loop stops
	down, up, adopted := adoptWithdrawn(p, rec, discard())
	if d := cmp.Diff([]string{"claim"}, up); d != "" || len(down) != 0 || !adopted {
		t.Fatalf("adoptWithdrawn: down %v, adopted %v, conditions up (-want +got):\n%s", down, adopted, d)
	}
	var mu sync.Mutex
	var fired []hooks.Event
	hr := hooks.New(hooks.Config{})
	hr.OnResult(func(r hooks.Result) { mu.Lock(); fired = append(fired, r.Event); mu.Unlock() })
	t.Cleanup(func() { hr.Close() })
	facts2 := newFakeFacts()
	facts2.edit(holds)
	det := newFakeDetector()
	trackDir := filepath.Join(t.TempDir(), "track")
	core := runRestarted(t, p, det, rec, restartFrom{trackDir: trackDir, down: down, up: up, adopted: adopted, facts: facts2, hooks: hr})
	track := filepath.Join(trackDir, "claim")
	waitTrue(t, "the claim's track file", func() bool { _, err := os.Stat(track); return err == nil })
	if b, _ := os.ReadFile(track); string(b) != "0\n" {
		t.Errorf("track file %q at start, want 0 (up, as adopted)", b)
	}

	// The gateway judged up ends the start hold; the terms are evaluated
	// and hold, so nothing changes.
	det.send("isp1", detector.Unknown, detector.Up, "probe answered")
	waitTrue(t, "isp1 judged", func() bool { return core.Status().Gateways[0].State == "up" })
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if w := rec.Writes(); w != 0 {
			t.Fatalf("the restart wrote %d times; kernel now:\n%s", w, first.kernelDump())
		}
	}
	if now := first.kernelDump(); now != left {
		t.Errorf("kernel changed across the restart:\nleft\n%s\nnow\n%s", left, now)
	}
	if st := core.Status(); len(st.Conditions) != 1 || !st.Conditions[0].Up {
		t.Errorf("conditions after the restart: %+v, want claim up", st.Conditions)
	}
	mu.Lock()
	if len(fired) != 0 {
		t.Errorf("hooks fired across the restart: %+v", fired)
	}
	mu.Unlock()
	if b, _ := os.ReadFile(track); string(b) != "0\n" {
		t.Errorf("track file %q after the hold, want 0", b)
	}

	// An adopted condition is an ordinary up one: a failing term releases.
	facts2.edit(func(f *condwatch.Facts) { f.Files["/run/t/remote"] = false })
	waitTrue(t, "the claim released", func() bool {
		d := first.kernelDump()
		return !strings.Contains(d, "198.18.0.100/32") && !strings.Contains(d, "198.18.1.1")
	})
	waitTrue(t, "condition_down", func() bool { mu.Lock(); defer mu.Unlock(); return len(fired) == 1 && fired[0].Name == "condition_down" })
}

// TestRestartAdoptsTrackedCondition: a condition that gates no route
// leaves only its track file. One still up was left by an instance that
// died holding it (a stopping one marks its files down): the next starts
// it up, fires nothing and keeps the file up. One marked down starts down
// and comes up, hooks and all, once its terms hold.
func TestRestartAdoptsTrackedCondition(t *testing.T) {
	for _, tc := range []struct {
		name, left string
		wantUp     []string
		wantHooks  []string
	}{
		{name: "left up by a crash", left: "0\n", wantUp: []string{"link"}},
		{name: "marked down by a stop", left: "1\n", wantHooks: []string{"condition_up"}},
		{name: "no file left", wantHooks: []string{"condition_up"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trackDir := t.TempDir()
			if tc.left != "" {
				if err := os.WriteFile(filepath.Join(trackDir, "link"), []byte(tc.left), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			p := mustParse(t, `
[daemon]
track_dir = "`+trackDir+`"

[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"

[group.wan]
gateways = ["isp1"]

[condition.link]
all = ["link eth1 up", "gateway isp1 up"]

[hook.h]
command = ["/bin/true"]
events = ["condition_up", "condition_down"]
`)
			rec, err := routing.NewReconciler(routing.Config{Netlink: routingtest.NewMemKernel("eth1"), Protocol: 212, Logger: discard()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rec.Close() })
			// The group's route as the previous instance left it.
			if _, err := rec.Apply(context.Background(), routing.Desired(p, nil)); err != nil {
				t.Fatal(err)
			}
			down, up, adopted := adoptWithdrawn(p, rec, discard())
			if d := cmp.Diff(tc.wantUp, up, cmpopts.EquateEmpty()); d != "" || len(down) != 0 || !adopted {
				t.Fatalf("adoptWithdrawn: down %v, adopted %v, conditions up (-want +got):\n%s", down, adopted, d)
			}
			var mu sync.Mutex
			var fired []string
			hr := hooks.New(hooks.Config{})
			hr.OnResult(func(r hooks.Result) { mu.Lock(); fired = append(fired, r.Event.Name); mu.Unlock() })
			t.Cleanup(func() { hr.Close() })
			facts := newFakeFacts()
			facts.edit(func(f *condwatch.Facts) { f.Links["eth1"] = true })
			det := newFakeDetector()
			core := runRestarted(t, p, det, rec, restartFrom{trackDir: trackDir, down: down, up: up, adopted: adopted, facts: facts, hooks: hr})
			det.send("isp1", detector.Unknown, detector.Up, "probe answered")
			waitTrue(t, "the condition up", func() bool { s := core.Status(); return len(s.Conditions) == 1 && s.Conditions[0].Up })
			// Hooks run asynchronously: give a wrong one time to show.
			time.Sleep(200 * time.Millisecond)
			mu.Lock()
			got := slices.Clone(fired)
			mu.Unlock()
			if d := cmp.Diff(tc.wantHooks, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("hooks across the restart (-want +got):\n%s", d)
			}
			if b, _ := os.ReadFile(filepath.Join(trackDir, "link")); string(b) != "0\n" {
				t.Errorf("track file %q, want 0", b)
			}
		})
	}
}

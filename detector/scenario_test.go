package detector_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
)

// Scenario tests: the whole detector (watchers, health loop, rounds)
// against the in-memory kernel and prober, in real time with short
// profile durations.

const fastProfile = `
[profile.fast]
link_hold = "100ms"
recovery_interval = "20ms"
fast_interval = "10ms"
timeout = "30ms"
tx_without_rx = "40ms"
probe_holdoff = "300ms"
standby_interval = "50ms"
damping = false
`

const twoGateways = fastProfile + `
[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
profile = "fast"

[gateway.gw2]
address = "198.18.2.1"
interface = "eth2"
profile = "fast"
`

type fakeLab struct {
	k   *detectortest.Kernel
	p   *detectortest.Prober
	d   *detector.Detector
	rec *detectortest.Recorder
	reg *prometheus.Registry
}

func newFakeLab(t *testing.T, pol string) *fakeLab {
	t.Helper()
	f := &fakeLab{k: detectortest.NewKernel(), p: detectortest.NewProber(), reg: prometheus.NewRegistry()}
	f.k.AddLink("eth1", 4, "198.18.1.2/24")
	f.k.AddLink("eth2", 5, "198.18.2.2/24")
	f.p.Set("eth1", true)
	f.p.Set("eth2", true)
	d, err := detector.New(detector.Config{Policy: mustPolicy(t, pol), Logger: testLogger(t), Metrics: detector.NewMetrics(f.reg),
		Kernel: f.k, Prober: f.p})
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	f.rec = detectortest.Run(t, d)
	return f
}

// metric returns the value of the series of name with labels (pairs),
// and whether it exists.
func (f *fakeLab) metric(name string, labels ...string) (float64, bool) {
	mfs, _ := f.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m.GetLabel(), labels[i], labels[i+1]) {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func hasLabel(lps []*dto.LabelPair, k, v string) bool {
	for _, lp := range lps {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}

func (f *fakeLab) state(name string) detector.State {
	for _, s := range f.d.Status() {
		if s.Name == name {
			return s.State
		}
	}
	return -1
}

// dieSilently makes the gateway behind iface black-hole everything,
// probes included, while traffic keeps leaving (bounded: 1.5 s), and
// waits for it to go down.
func (f *fakeLab) dieSilently(t *testing.T, iface, gw string) {
	t.Helper()
	f.p.Set(iface, false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 300 && f.state(gw) != detector.Down; i++ {
			f.k.AddTraffic(iface, 10, 0)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	f.wait(t, gw, detector.Down)
	<-done
}

func (f *fakeLab) wait(t *testing.T, name string, st detector.State) {
	t.Helper()
	detectortest.WaitFor(t, fmt.Sprintf("%s %v (transitions %v)", name, st, f.rec.List()), 5*time.Second, func() bool { return f.state(name) == st })
}

// golden renders one gateway's transitions, one line each.
func (f *fakeLab) golden(gw string) string {
	var b strings.Builder
	for _, t := range f.rec.List() {
		if t.Gateway != gw {
			continue
		}
		fmt.Fprintf(&b, "%s %s -> %s (%s) %s\n", t.Gateway, t.From, t.To, t.Cause, t.Reason)
	}
	return b.String()
}

func TestScenarioCarrierAndLinkHold(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", detector.Up)
	f.wait(t, "gw2", detector.Up)
	f.k.SetCarrier("eth1", false)
	f.wait(t, "gw1", detector.Down)
	f.k.SetCarrier("eth1", true)
	f.wait(t, "gw1", detector.Up)
	got := f.golden("gw1")
	want := "gw1 unknown -> up (start) probe answered in 1ms\n" +
		"gw1 up -> down (carrier) carrier lost on eth1\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("transitions (-want +got):\n%s", cmp.Diff(want, got))
	}
	down, _ := f.rec.First("gw1", detector.Down, time.Time{})
	last, _ := f.rec.First("gw1", detector.Up, down.Mono)
	if last.Cause != detector.CauseLinkHold || !strings.Contains(last.Reason, "on eth1 and 3 probes answered") {
		t.Errorf("recovery %+v, want link-hold after 3 probes", last.Transition)
	}
	if got, _ := f.metric("uplinkd_link_carrier", "iface", "eth1"); got != 1 {
		t.Errorf("uplinkd_link_carrier{iface=eth1} = %v", got)
	}
	if got, _ := f.metric("uplinkd_gateway_transitions_total", "gateway", "gw1", "to", "down", "cause", "carrier"); got != 1 {
		t.Errorf("transitions{to=down,cause=carrier} = %v", got)
	}
}

func TestScenarioInterfaceRecreated(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", detector.Up)
	f.k.DelLink("eth1")
	f.wait(t, "gw1", detector.Down)
	if tr, _ := f.rec.First("gw1", detector.Down, time.Time{}); tr.Reason != "interface eth1 absent" {
		t.Errorf("reason %q", tr.Reason)
	}
	f.k.AddLink("eth1", 99, "198.18.1.2/24")
	f.wait(t, "gw1", detector.Up)
	if tg := f.p.Last(); tg.Iface == "eth1" && tg.IfIndex != 99 {
		t.Errorf("probe after re-creation used ifindex %d, want 99", tg.IfIndex)
	}
}

func TestScenarioSilentDeathUnderTraffic(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", detector.Up)
	before := int64(f.p.Count(""))
	// Traffic both ways: no probes.
	for i := 0; i < 20; i++ {
		f.k.AddTraffic("eth1", 10, 10)
		time.Sleep(10 * time.Millisecond)
	}
	if n := int64(f.p.Count("")) - before; n != 0 {
		t.Errorf("%d probes while traffic flowed both ways", n)
	}
	f.dieSilently(t, "eth1", "gw1")
	tr, _ := f.rec.First("gw1", detector.Down, time.Time{})
	if tr.Cause != detector.CauseProbe || !strings.HasPrefix(tr.Reason, "3 probes lost after tx without rx for ") {
		t.Errorf("down %+v", tr.Transition)
	}
	if f.state("gw2") != detector.Up {
		t.Errorf("gw2 affected: %v", f.state("gw2"))
	}
}

func TestScenarioIdleAndStandby(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", detector.Up)
	f.wait(t, "gw2", detector.Up)
	time.Sleep(100 * time.Millisecond)
	count := f.p.Count
	b1, b2 := count("eth1"), count("eth2")
	f.d.SetStandby(map[string]bool{"gw2": true})
	time.Sleep(500 * time.Millisecond)
	if n := count("eth1") - b1; n != 0 {
		t.Errorf("idle active gateway probed %d times", n)
	}
	// standby_interval 50ms over 500ms: about 10 rounds.
	if n := count("eth2") - b2; n < 4 || n > 15 {
		t.Errorf("standby gateway probed %d times in 500ms at 50ms", n)
	}
	st := f.d.Status()
	if !st[1].Standby || st[0].Standby {
		t.Errorf("standby flags in status: %+v", st)
	}
}

func TestScenarioNeighbourLLAddrChange(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.k.SetNeighbour(4, "198.18.1.1", detector.NUDReachable, "02:00:00:00:01:01") // REACHABLE
	f.wait(t, "gw1", detector.Up)
	f.k.SetNeighbour(4, "198.18.1.1", detector.NUDReachable, "02:00:00:00:01:99") // a VRRP failover upstream
	detectortest.WaitFor(t, "lladdr change counted", 5*time.Second, func() bool {
		v, _ := f.metric("uplinkd_neighbour_lladdr_changes_total", "gateway", "gw1")
		return v == 1
	})
	if f.state("gw1") != detector.Up {
		t.Errorf("lladdr change made gw1 %v", f.state("gw1"))
	}
	f.k.SetNeighbour(4, "198.18.1.1", detector.NUDFailed, "") // FAILED
	f.wait(t, "gw1", detector.Down)
	if tr, _ := f.rec.First("gw1", detector.Down, time.Time{}); tr.Cause != detector.CauseNeigh || tr.Reason != "neighbour 198.18.1.1 FAILED on eth1" {
		t.Errorf("down %+v", tr.Transition)
	}
}

func TestScenarioUpdateKeepsState(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", detector.Up)
	f.k.SetCarrier("eth2", false)
	f.wait(t, "gw2", detector.Down)
	n := len(f.rec.List())
	// gw2 unchanged, gw1 removed, gw3 added.
	err := f.d.Update(mustPolicy(t, fastProfile+`
[gateway.gw2]
address = "198.18.2.1"
interface = "eth2"
profile = "fast"

[gateway.gw3]
address = "198.18.1.3"
interface = "eth1"
profile = "fast"
`))
	if err != nil {
		t.Fatal(err)
	}
	f.wait(t, "gw3", detector.Up)
	if f.state("gw2") != detector.Down {
		t.Errorf("gw2 lost its state on reload: %v", f.state("gw2"))
	}
	for _, tr := range f.rec.List()[n:] {
		if tr.Gateway == "gw2" {
			t.Errorf("reload caused a gw2 transition: %+v", tr.Transition)
		}
	}
	var names []string
	for _, s := range f.d.Status() {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"gw2", "gw3"}, names); diff != "" {
		t.Errorf("status after reload (-want +got):\n%s", diff)
	}
	// The removed gateway's series are gone.
	mfs, _ := f.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if hasLabel(m.GetLabel(), "gateway", "gw1") {
				t.Errorf("series of removed gw1 left in %s", mf.GetName())
			}
		}
	}
}

func TestDetectorLifecycle(t *testing.T) {
	base := runtime.NumGoroutine()
	k, p := detectortest.NewKernel(), detectortest.NewProber()
	k.AddLink("eth1", 4, "198.18.1.2/24")
	if _, err := detector.New(detector.Config{Kernel: k, Prober: p}); err == nil {
		t.Fatal("detector.New without a policy succeeded")
	}
	d, err := detector.New(detector.Config{Policy: mustPolicy(t, twoGateways), Kernel: k, Prober: p})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Update(nil); err == nil {
		t.Error("Update(nil) succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	detectortest.WaitFor(t, "status published", 5*time.Second, func() bool { return len(d.Status()) == 2 })
	// eth2 does not exist: its gateway is down at once, not unknown.
	detectortest.WaitFor(t, "gw2 down", 5*time.Second, func() bool { return d.Status()[1].State == detector.Down })
	if r := d.Status()[1].Reason; r != "interface eth2 absent" {
		t.Errorf("reason %q", r)
	}
	if err := d.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	cancel()
	// Every watcher, round and subscription goroutine has an owner that
	// stopped it.
	detectortest.WaitFor(t, "goroutines to end", 5*time.Second, func() bool { return runtime.NumGoroutine() <= base })
}

func TestSharedInterfaceWarning(t *testing.T) {
	var buf strings.Builder
	k, p := detectortest.NewKernel(), detectortest.NewProber()
	_, err := detector.New(detector.Config{Policy: mustPolicy(t, `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"
[gateway.b]
address = "198.18.1.3"
interface = "eth1"
[gateway.c]
address = "198.18.2.1"
interface = "eth2"
`), Kernel: k, Prober: p, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "gated gateways share an interface") || !strings.Contains(out, "iface=eth1 gateways=a,b") || strings.Contains(out, "eth2") {
		t.Errorf("log:\n%s", out)
	}
}

// TestScenarioStartDown: a gateway named in Config.StartDown is down from
// the start with its reason (its starting state, so no transition), is
// not lifted by its REACHABLE neighbour, and comes back after up_count
// answered recovery probes.
func TestScenarioStartDown(t *testing.T) {
	k, p := detectortest.NewKernel(), detectortest.NewProber()
	k.AddLink("eth1", 4, "198.18.1.2/24")
	k.AddLink("eth2", 5, "198.18.2.2/24")
	k.SetNeighbour(4, "198.18.1.1", detector.NUDReachable, "02:00:00:00:01:01")
	k.SetNeighbour(5, "198.18.2.1", detector.NUDReachable, "02:00:00:00:02:01")
	p.Set("eth1", true)
	p.Set("eth2", true)
	d, err := detector.New(detector.Config{Policy: mustPolicy(t, twoGateways), Logger: testLogger(t), Kernel: k, Prober: p,
		StartDown: map[string]string{"gw1": "absent from owned routes at start"}})
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Status(); st[0].Name != "gw1" || st[0].State != detector.Down || st[0].Reason != "absent from owned routes at start" {
		t.Fatalf("status before Run: %+v", st[0])
	}
	rec := detectortest.Run(t, d)
	detectortest.WaitFor(t, "gw1 up again", 5*time.Second, func() bool {
		_, ok := rec.First("gw1", detector.Up, time.Time{})
		return ok
	})
	var got []string
	for _, tr := range rec.List() {
		if tr.Gateway == "gw1" {
			got = append(got, fmt.Sprintf("%s -> %s (%s) %s", tr.From, tr.To, tr.Cause, tr.Reason))
		}
	}
	want := []string{"down -> up (probe) 3 probes answered, last in 1ms"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gw1 transitions (-want +got):\n%s", diff)
	}
	// gw2 was not named: its neighbour makes it up at once, unprobed.
	if tr, _ := rec.First("gw2", detector.Up, time.Time{}); tr.Cause != detector.CauseStart {
		t.Errorf("gw2 %+v", tr.Transition)
	}
	if n := p.Count("eth1"); n < 3 {
		t.Errorf("%d probes of gw1, want at least up_count = 3", n)
	}
}

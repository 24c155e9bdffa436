package detector

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
	"github.com/prometheus/client_golang/prometheus/testutil"
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
	k   *fakeKernel
	p   *fakeProber
	d   *Detector
	rec *recorder
	reg *prometheus.Registry
}

func newFakeLab(t *testing.T, pol string) *fakeLab {
	t.Helper()
	f := &fakeLab{k: newFakeKernel(), p: newFakeProber(), reg: prometheus.NewRegistry()}
	f.k.addLink("eth1", 4, "198.18.1.2/24")
	f.k.addLink("eth2", 5, "198.18.2.2/24")
	f.p.set("eth1", true)
	f.p.set("eth2", true)
	d, err := New(Config{Policy: mustPolicy(t, pol), Logger: testLogger(t), Metrics: NewMetrics(f.reg), Netlink: f.k, Prober: f.p})
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	f.rec = runDetector(t, d)
	return f
}

func (f *fakeLab) state(name string) State {
	for _, s := range f.d.Status() {
		if s.Name == name {
			return s.State
		}
	}
	return -1
}

func (f *fakeLab) wait(t *testing.T, name string, st State) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s %v (transitions %v)", name, st, f.rec.list()), 5*time.Second, func() bool { return f.state(name) == st })
}

// golden renders one gateway's transitions, one line each.
func (f *fakeLab) golden(gw string) string {
	var b strings.Builder
	for _, t := range f.rec.list() {
		if t.Gateway != gw {
			continue
		}
		fmt.Fprintf(&b, "%s %s -> %s (%s) %s\n", t.Gateway, t.From, t.To, t.Cause, t.Reason)
	}
	return b.String()
}

func TestScenarioCarrierAndLinkHold(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", Up)
	f.wait(t, "gw2", Up)
	f.k.setCarrier("eth1", false)
	f.wait(t, "gw1", Down)
	f.k.setCarrier("eth1", true)
	f.wait(t, "gw1", Up)
	got := f.golden("gw1")
	want := "gw1 unknown -> up (start) probe answered in 1ms\n" +
		"gw1 up -> down (carrier) carrier lost on eth1\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("transitions (-want +got):\n%s", cmp.Diff(want, got))
	}
	down, _ := f.rec.first("gw1", Down, time.Time{})
	last, _ := f.rec.first("gw1", Up, down.mono)
	if last.Cause != CauseLinkHold || !strings.Contains(last.Reason, "on eth1 and 3 probes answered") {
		t.Errorf("recovery %+v, want link-hold after 3 probes", last.Transition)
	}
	if got := testutil.ToFloat64(f.d.met.carrier.WithLabelValues("eth1")); got != 1 {
		t.Errorf("uplinkd_link_carrier{iface=eth1} = %v", got)
	}
	if got := testutil.ToFloat64(f.d.met.transitions.WithLabelValues("gw1", "down", "carrier")); got != 1 {
		t.Errorf("transitions{to=down,cause=carrier} = %v", got)
	}
}

func TestScenarioInterfaceRecreated(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", Up)
	f.k.delLink("eth1")
	f.wait(t, "gw1", Down)
	if tr, _ := f.rec.first("gw1", Down, time.Time{}); tr.Reason != "interface eth1 deleted" {
		t.Errorf("reason %q", tr.Reason)
	}
	f.k.addLink("eth1", 99, "198.18.1.2/24")
	f.wait(t, "gw1", Up)
	if tg := f.p.last(); tg.Iface == "eth1" && tg.IfIndex != 99 {
		t.Errorf("probe after re-creation used ifindex %d, want 99", tg.IfIndex)
	}
}

func TestScenarioSilentDeathUnderTraffic(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", Up)
	before := f.p.count()
	// Traffic both ways: no probes.
	for i := 0; i < 20; i++ {
		f.k.addTraffic("eth1", 10, 10)
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.p.count() - before; n != 0 {
		t.Errorf("%d probes while traffic flowed both ways", n)
	}
	// The gateway dies silently: packets leave, nothing comes back.
	f.p.set("eth1", false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 300 && f.state("gw1") != Down; i++ {
			f.k.addTraffic("eth1", 10, 0)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	f.wait(t, "gw1", Down)
	<-done
	tr, _ := f.rec.first("gw1", Down, time.Time{})
	if tr.Cause != CauseProbe || !strings.HasPrefix(tr.Reason, "3 probes lost after tx without rx for ") {
		t.Errorf("down %+v", tr.Transition)
	}
	if f.state("gw2") != Up {
		t.Errorf("gw2 affected: %v", f.state("gw2"))
	}
}

func TestScenarioIdleAndStandby(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", Up)
	f.wait(t, "gw2", Up)
	time.Sleep(100 * time.Millisecond)
	count := func(iface string) int {
		f.p.mu.Lock()
		defer f.p.mu.Unlock()
		n := 0
		for _, p := range f.p.probes {
			if p.Iface == iface {
				n++
			}
		}
		return n
	}
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
	f.k.setNeigh(4, "198.18.1.1", 0x02, "02:00:00:00:01:01") // REACHABLE
	f.wait(t, "gw1", Up)
	f.k.setNeigh(4, "198.18.1.1", 0x02, "02:00:00:00:01:99") // a VRRP failover upstream
	waitFor(t, "lladdr change counted", 5*time.Second, func() bool {
		return testutil.ToFloat64(f.d.met.lladdr.WithLabelValues("gw1")) == 1
	})
	if f.state("gw1") != Up {
		t.Errorf("lladdr change made gw1 %v", f.state("gw1"))
	}
	f.k.setNeigh(4, "198.18.1.1", 0x20, "") // FAILED
	f.wait(t, "gw1", Down)
	if tr, _ := f.rec.first("gw1", Down, time.Time{}); tr.Cause != CauseNeigh || tr.Reason != "neighbour 198.18.1.1 FAILED on eth1" {
		t.Errorf("down %+v", tr.Transition)
	}
}

func TestScenarioUpdateKeepsState(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", Up)
	f.k.setCarrier("eth2", false)
	f.wait(t, "gw2", Down)
	n := len(f.rec.list())
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
	f.wait(t, "gw3", Up)
	if f.state("gw2") != Down {
		t.Errorf("gw2 lost its state on reload: %v", f.state("gw2"))
	}
	for _, tr := range f.rec.list()[n:] {
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
			if labelIs(m, "gateway", "gw1") {
				t.Errorf("series of removed gw1 left in %s", mf.GetName())
			}
		}
	}
}

func TestScenarioLinkModeRenegotiation(t *testing.T) {
	k := newFakeKernel()
	k.modes["eth1"] = LinkMode{SpeedMbps: 1000, FullDuplex: true, DuplexKnown: true, Autoneg: true}
	d := &Detector{met: NewMetrics(prometheus.NewRegistry()), ifaces: map[string]*ifaceState{"eth1": {name: "eth1"}}}
	d.log = testLogger(t)
	d.onMode(modeEvent{Iface: "eth1", Mode: k.modes["eth1"]})
	d.onMode(modeEvent{Iface: "eth1", Mode: LinkMode{SpeedMbps: 100, FullDuplex: false, DuplexKnown: true, Autoneg: true}})
	d.onMode(modeEvent{Iface: "eth1", Mode: LinkMode{SpeedMbps: 100, FullDuplex: false, DuplexKnown: true, Autoneg: true}})
	if got := testutil.ToFloat64(d.met.reneg.WithLabelValues("eth1")); got != 1 {
		t.Errorf("renegotiations = %v, want 1", got)
	}
	if got := testutil.ToFloat64(d.met.speed.WithLabelValues("eth1")); got != 100e6 {
		t.Errorf("speed = %v", got)
	}
	if got := testutil.ToFloat64(d.met.duplex.WithLabelValues("eth1")); got != 0 {
		t.Errorf("full duplex = %v", got)
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.initGateway("gw1")
	m.transition(Transition{Gateway: "gw1", From: Unknown, To: Up, Cause: CauseStart, At: time.Now()})
	m.evidenceEvent("gw1", SourceProbe, true)
	m.rtt.WithLabelValues("gw1").Observe(0.001)
	m.loss.WithLabelValues("gw1").Set(0)
	m.carrier.WithLabelValues("eth1").Set(1)
	m.speed.WithLabelValues("eth1").Set(1e9)
	m.duplex.WithLabelValues("eth1").Set(1)
	m.reneg.WithLabelValues("eth1")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	want := []string{
		"uplinkd_evidence_events_total", "uplinkd_gateway_damped", "uplinkd_gateway_flap_penalty",
		"uplinkd_gateway_last_transition_timestamp_seconds", "uplinkd_gateway_loss_ratio",
		"uplinkd_gateway_rtt_seconds", "uplinkd_gateway_state", "uplinkd_gateway_transitions_total",
		"uplinkd_gateway_up", "uplinkd_link_carrier", "uplinkd_link_full_duplex",
		"uplinkd_link_renegotiations_total", "uplinkd_link_speed_bits_per_second",
		"uplinkd_neighbour_lladdr_changes_total", "uplinkd_probes_failed_total", "uplinkd_probes_sent_total",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metric names (-want +got):\n%s", diff)
	}
	if v := testutil.ToFloat64(m.state.WithLabelValues("gw1", "up")); v != 1 {
		t.Errorf("state{up} = %v", v)
	}
	if v := testutil.ToFloat64(m.state.WithLabelValues("gw1", "unknown")); v != 0 {
		t.Errorf("state{unknown} = %v", v)
	}
}

func TestDetectorLifecycle(t *testing.T) {
	base := runtime.NumGoroutine()
	k, p := newFakeKernel(), newFakeProber()
	k.addLink("eth1", 4, "198.18.1.2/24")
	if _, err := New(Config{Netlink: k, Prober: p}); err == nil {
		t.Fatal("New without a policy succeeded")
	}
	d, err := New(Config{Policy: mustPolicy(t, twoGateways), Netlink: k, Prober: p})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Update(nil); err == nil {
		t.Error("Update(nil) succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitFor(t, "status published", 5*time.Second, func() bool { return len(d.Status()) == 2 })
	// eth2 does not exist: its gateway is down at once, not unknown.
	waitFor(t, "gw2 down", 5*time.Second, func() bool { return d.Status()[1].State == Down })
	if r := d.Status()[1].Reason; r != "interface eth2 not present" {
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
	waitFor(t, "goroutines to end", 5*time.Second, func() bool { return runtime.NumGoroutine() <= base })
}

func TestSharedInterfaceWarning(t *testing.T) {
	var buf strings.Builder
	k, p := newFakeKernel(), newFakeProber()
	_, err := New(Config{Policy: mustPolicy(t, `
[gateway.a]
address = "198.18.1.1"
interface = "eth1"
[gateway.b]
address = "198.18.1.3"
interface = "eth1"
[gateway.c]
address = "198.18.2.1"
interface = "eth2"
`), Netlink: k, Prober: p, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "gated gateways share an interface") || !strings.Contains(out, "iface=eth1 gateways=a,b") || strings.Contains(out, "eth2") {
		t.Errorf("log:\n%s", out)
	}
}

package detector_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
)

// TestScenarioLearnedTimeout: the probes of a check use the timeout
// learned from the target's earlier answers (the start-up probes here:
// 1 ms, so timeout_floor), and the check is counted by what started it
// and how it ended.
func TestScenarioLearnedTimeout(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", detector.Up)
	first := f.p.Probes()
	if len(first) == 0 || first[0].Timeout != 30*time.Millisecond {
		t.Fatalf("start-up probes %+v: want the first with the profile's timeout, 30ms (nothing learned)", first)
	}
	before := len(f.p.Probes())
	f.dieSilently(t, "eth1", "gw1")
	var timeouts []time.Duration
	for _, p := range f.p.Probes()[before:] {
		if p.Iface == "eth1" && len(timeouts) < 3 {
			timeouts = append(timeouts, p.Timeout)
		}
	}
	want := []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	if diff := cmp.Diff(want, timeouts); diff != "" {
		t.Errorf("the check's probe timeouts (-want +got):\n%s", diff)
	}
	detectortest.WaitFor(t, "the check counted", 2*time.Second, func() bool {
		v, _ := f.metric("uplinkd_checks_total", "gateway", "gw1", "reason", "traffic", "result", "down")
		return v == 1
	})
	if v, ok := f.metric("uplinkd_checks_total", "gateway", "gw1", "result", "answered"); ok && v != 0 {
		t.Errorf("%v checks of gw1 answered, want none", v)
	}
}

// TestScenarioOneWayCheckAnswered: one-way traffic through a live
// gateway starts a check that is answered: a spurious check, counted
// as such, and the gateway stays up.
func TestScenarioOneWayCheckAnswered(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", detector.Up)
	for i := 0; i < 40; i++ {
		f.k.AddTraffic("eth1", 10, 0)
		time.Sleep(5 * time.Millisecond)
	}
	detectortest.WaitFor(t, "a check answered", 2*time.Second, func() bool {
		v, _ := f.metric("uplinkd_checks_total", "gateway", "gw1", "reason", "traffic", "result", "answered")
		return v >= 1
	})
	if s := f.state("gw1"); s != detector.Up {
		t.Errorf("gw1 %v after an answered check, want up", s)
	}
}

const qualityGateways = `
[profile.q]
link_hold = "100ms"
fast_interval = "10ms"
timeout = "30ms"
quality_interval = "100ms"
damping = false

[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
profile = "q"

[gateway.gw2]
address = "198.18.2.1"
interface = "eth2"
profile = "q"
`

// TestScenarioQualitySampling: a gateway carrying two-way traffic gets
// sparse quality probes, an idle one none, and one whose neighbour entry
// shows TCP progress none either (upper-layer advice first).
func TestScenarioQualitySampling(t *testing.T) {
	f := newFakeLab(t, qualityGateways)
	f.wait(t, "gw1", detector.Up)
	f.wait(t, "gw2", detector.Up)
	f.k.SetNeighbourEntry(detector.Neighbour{Index: 5, Addr: netip.MustParseAddr("198.18.2.1"), State: detector.NUDReachable,
		ConfirmedAge: 100 * time.Millisecond})
	b1, b2 := f.p.Count("eth1"), f.p.Count("eth2")
	for i := 0; i < 100; i++ { // 1 s of traffic both ways on both
		f.k.AddTraffic("eth1", 10, 10)
		f.k.AddTraffic("eth2", 10, 10)
		time.Sleep(10 * time.Millisecond)
	}
	n1, n2 := f.p.Count("eth1")-b1, f.p.Count("eth2")-b2
	// quality_interval 100ms over 1 s: about 10 rounds (the first waits
	// for the first traffic report).
	if n1 < 4 || n1 > 12 {
		t.Errorf("gw1 carrying traffic: %d quality probes in 1s at 100ms", n1)
	}
	if n2 != 0 {
		t.Errorf("gw2 with TCP progress: %d quality probes, want none", n2)
	}
	time.Sleep(2500 * time.Millisecond) // traffic stopped: idle
	b1 = f.p.Count("eth1")
	time.Sleep(500 * time.Millisecond)
	if n := f.p.Count("eth1") - b1; n != 0 {
		t.Errorf("gw1 idle: %d quality probes, want none", n)
	}
}

package detector_test

import (
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
)

// A held gateway (its gateway left the interface's subnet: a released
// lease) is down with the daemon's reason and is not probed; released,
// it is judged again and comes back up; the other gateway is untouched.
func TestHeldGatewayIsDownAndUnprobed(t *testing.T) {
	f := newFakeLab(t, twoGateways)
	f.wait(t, "gw1", detector.Up)
	f.wait(t, "gw2", detector.Up)
	const reason = "198.18.1.1 is not on-link on eth1 (no address in its subnet)"
	f.d.SetHeld(map[string]string{"gw1": reason})
	f.wait(t, "gw1", detector.Down)
	if tr, _ := f.rec.First("gw1", detector.Down, time.Time{}); tr.Reason != reason {
		t.Errorf("gw1 down with reason %q, want %q", tr.Reason, reason)
	}
	time.Sleep(50 * time.Millisecond) // a round in flight when the hold came ends
	before := f.p.Count("eth1")
	time.Sleep(300 * time.Millisecond) // many recovery intervals (20ms)
	if n := f.p.Count("eth1") - before; n != 0 {
		t.Errorf("%d probes sent to a held gateway", n)
	}
	if f.state("gw2") != detector.Up {
		t.Errorf("gw2 %v, want up", f.state("gw2"))
	}
	f.d.SetHeld(nil)
	f.wait(t, "gw1", detector.Up)
}

// A gateway held before Run starts never shows Up first, even with a
// REACHABLE neighbour to vouch for it.
func TestHeldAtStartNeverUp(t *testing.T) {
	k := detectortest.NewKernel()
	k.AddLink("eth1", 4, "198.18.1.2/24")
	k.AddLink("eth2", 5, "198.18.2.2/24")
	p := detectortest.NewProber()
	p.Set("eth1", true)
	p.Set("eth2", true)
	d, err := detector.New(detector.Config{Policy: mustPolicy(t, twoGateways), Logger: testLogger(t), Kernel: k, Prober: p})
	if err != nil {
		t.Fatal(err)
	}
	d.SetHeld(map[string]string{"gw1": "no gateway learned on eth1"})
	rec := detectortest.Run(t, d)
	detectortest.WaitFor(t, "gw2 up", 5*time.Second, func() bool { _, ok := rec.First("gw2", detector.Up, time.Time{}); return ok })
	if _, ok := rec.First("gw1", detector.Up, time.Time{}); ok {
		t.Errorf("held gw1 went up: %v", rec.List())
	}
	tr, ok := rec.First("gw1", detector.Down, time.Time{})
	if !ok || tr.Reason != "no gateway learned on eth1" {
		t.Errorf("gw1 down transition %+v (found %v), want reason %q", tr, ok, "no gateway learned on eth1")
	}
}

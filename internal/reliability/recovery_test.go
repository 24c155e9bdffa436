package reliability

import (
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// A gateway that comes back from an outage is up, not degraded: the
// probes lost while it was dead must not count against it afterwards.
// The other tests here turn the loss and latency thresholds off; this one
// keeps the shipped ones (loss_threshold 20 %, latency_threshold 500 ms,
// a 60 s window, min_samples 5), which an outage of a few seconds at a
// 100 ms probe interval would otherwise exceed many times over.
func TestRecoveryNotDegradedWithDefaultThresholds(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const off = "loss_threshold = 0\nlatency_threshold = \"0s\"\n"
	text := r.policy(polOpts{})
	if !strings.Contains(text, off) {
		t.Fatalf("the rig's policy no longer turns the thresholds off the way this test expects:\n%s", text)
	}
	d := r.start(strings.Replace(text, off, "", 1))
	r.waitBothUp()

	r.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	r.waitState("isp1", "down")
	// Long enough for tens of lost recovery probes in the window.
	time.Sleep(3 * time.Second)
	r.GW1.Recover(t)
	r.waitState("isp1", "up")
	sent0, _ := r.metric("uplinkd_probes_sent_total", map[string]string{"gateway": "isp1"})
	hold(t, 5*time.Second, "isp1 up after its recovery", func() (bool, string) {
		g, err := r.d.Gateway("isp1")
		if err != nil {
			return false, err.Error()
		}
		return g.State == "up", "isp1 is " + g.State + ": " + g.Reason
	})
	if deg := logTransitions(d.Output(), "degraded"); len(deg) > 0 {
		t.Errorf("a recovered gateway was marked degraded:\n%s", strings.Join(deg, "\n"))
	}
	if h := r.hookEvents("gateway_degraded"); len(h) > 0 {
		t.Errorf("gateway_degraded fired after a recovery: %q", h)
	}
	sent, _ := r.metric("uplinkd_probes_sent_total", map[string]string{"gateway": "isp1"})
	loss, _ := r.metric("uplinkd_gateway_loss_ratio", map[string]string{"gateway": "isp1"})
	// Each good probe is judged against the thresholds once min_samples
	// results are in the window: make sure that happened.
	if sent-sent0 < 10 {
		t.Errorf("only %v probes sent to isp1 in 5 s at 100 ms: the thresholds were never judged", sent-sent0)
	}
	t.Logf("isp1 blackholed 3 s, recovered, then up for 5 s with the default thresholds: %v probes sent, loss ratio %.2f, never degraded", sent-sent0, loss)
}

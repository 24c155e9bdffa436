package detector

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/policy"
)

func rxGap(d time.Duration) Event { return Event{Kind: EvRx, Gap: d, Busy: true} }

// TestMachineAdaptiveSilence: silence is judged against the gaps of the
// packets received through the gateway, within [silence_floor,
// tx_without_rx].
func TestMachineAdaptiveSilence(t *testing.T) {
	busy := func(gap time.Duration, n int) []step {
		var out []step
		for i := range n {
			out = append(out, step{time.Duration(i) * 100 * ms, rxGap(gap)})
		}
		return out
	}
	tests := []struct {
		name      string
		prof      func(*policy.Profile)
		steps     []step
		threshold time.Duration
		checking  bool
	}{
		{name: "nothing learned: tx_without_rx", steps: []step{{time.Second, silent(40 * ms)}}, threshold: 50 * ms},
		{name: "nothing learned: tx_without_rx starts a check", steps: []step{{time.Second, silent(50 * ms)}}, threshold: 50 * ms, checking: true},
		{name: "three samples are not a rhythm yet", steps: append(busy(10*ms, 3), step{time.Second, silent(30 * ms)}), threshold: 50 * ms},
		{name: "a busy flow: the floor", steps: append(busy(10*ms, 10), step{2 * time.Second, silent(20 * ms)}), threshold: 20 * ms, checking: true},
		{name: "a busy flow: below the floor nothing", steps: append(busy(10*ms, 10), step{2 * time.Second, silent(15 * ms)}), threshold: 20 * ms},
		// One gap at a low packet rate (5 pkt/s) is within its rhythm.
		{name: "a sparse flow: tx_without_rx", steps: append(busy(200*ms, 10), step{2 * time.Second, silent(45 * ms)}), threshold: 50 * ms},
		{name: "a dense flow gone sparse: tx_without_rx", steps: append(busy(10*ms, 10), step{time.Second, rxGap(200 * ms)}, step{1100 * ms, silent(45 * ms)}), threshold: 50 * ms},
		{name: "the idle spell before a dense flow is forgotten", steps: append([]step{{0, rxGap(3 * time.Second)}}, append(busy(10*ms, 5), step{time.Second, silent(20 * ms)})...), threshold: 20 * ms, checking: true},
		{name: "a jittery flow: between the bounds", steps: append(busy(10*ms, 10), step{time.Second, rxGap(30 * ms)}, step{1100 * ms, silent(30 * ms)}), threshold: 33626268},
		{name: "a fixed threshold (the old profile)", prof: func(p *policy.Profile) { p.SilenceFloor = p.TxWithoutRx },
			steps: append(busy(10*ms, 10), step{2 * time.Second, silent(40 * ms)}), threshold: 50 * ms},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMachine(testGateway(tc.prof), t0)
			run(m, append([]step{{0, good}}, tc.steps...))
			got := []any{m.SilenceThreshold(), m.Checking()}
			if diff := cmp.Diff([]any{tc.threshold, tc.checking}, got); diff != "" {
				t.Errorf("threshold, checking (-want +got):\n%s", diff)
			}
		})
	}
}

// oneWay drives a gateway under one-way traffic for d: a silence report
// every 10 ms, each check answered 1 ms after it starts, lost when lose
// says so. It returns when checks started.
func oneWay(m *Machine, from, d time.Duration, lose func(at time.Duration) bool) []time.Duration {
	var starts []time.Duration
	for at := from; at < from+d; at += 10 * ms {
		was := m.Checking()
		m.Observe(silent(time.Second), t0.Add(at))
		if !was && m.Checking() {
			starts = append(starts, at)
			ev := good
			if lose != nil && lose(at) {
				ev = lost
			}
			m.Observe(ev, t0.Add(at+ms))
			if m.Checking() {
				m.Observe(good, t0.Add(at+2*ms))
			}
		}
	}
	return starts
}

func secs(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, s := range v {
		out[i] = time.Duration(s * float64(time.Second)).Round(ms)
	}
	return out
}

// TestMachineHoldoffBackoff: one-way traffic whose checks keep being
// answered is checked ever more rarely, 1 s, 2 s, … up to 60 s; a lost
// probe or replies flowing again reset it.
func TestMachineHoldoffBackoff(t *testing.T) {
	noQ := func(p *policy.Profile) { p.QualityInterval = 0 }
	t.Run("doubling up to the ceiling", func(t *testing.T) {
		m := NewMachine(testGateway(noQ), t0)
		m.Observe(good, t0)
		got := oneWay(m, 10*ms, 250*time.Second, nil)
		// Each check is answered 1 ms after it starts; the next starts at
		// the first silence report (every 10 ms) past the hold-off.
		want := secs(0.01, 1.02, 3.03, 7.04, 15.05, 31.06, 63.07, 123.08, 183.09, 243.1)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("check starts (-want +got):\n%s", diff)
		}
	})
	t.Run("a lost probe resets it", func(t *testing.T) {
		m := NewMachine(testGateway(noQ), t0)
		m.Observe(good, t0)
		got := oneWay(m, 10*ms, 20*time.Second, func(at time.Duration) bool { return at > 7*time.Second && at < 8*time.Second })
		// The check at 7.04s loses one probe: its answer arms 1 s again.
		want := secs(0.01, 1.02, 3.03, 7.04, 8.05, 10.06, 14.07)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("check starts (-want +got):\n%s", diff)
		}
	})
	t.Run("replies flowing again reset it", func(t *testing.T) {
		m := NewMachine(testGateway(noQ), t0)
		m.Observe(good, t0)
		oneWay(m, 10*ms, 8*time.Second, nil) // 4 answered checks: hold-off 8 s, armed at 7.041s
		if got := m.Holdoff(); got != 8*time.Second {
			t.Fatalf("hold-off after 4 answered checks: %s, want 8s", got)
		}
		// A probe's own reply (one rx report, then silence) is no news.
		m.Observe(rxGap(5*time.Second), t0.Add(8*time.Second))
		m.Observe(silent(20*ms), t0.Add(8020*ms))
		if got := m.Holdoff(); got != 8*time.Second {
			t.Fatalf("hold-off after one reply: %s, want 8s", got)
		}
		for at := 9 * time.Second; at <= 10*time.Second; at += 100 * ms {
			m.Observe(rxGap(10*ms), t0.Add(at))
		}
		if got := m.Holdoff(); got != time.Second {
			t.Errorf("hold-off after a second of replies: %s, want 1s (probe_holdoff)", got)
		}
		// The next silence is checked at once: the last check was 3 s ago.
		m.Observe(silent(50*ms), t0.Add(10100*ms))
		if !m.Checking() {
			t.Errorf("a silence after replies came back starts no check")
		}
	})
	t.Run("a fixed hold-off (the old profile)", func(t *testing.T) {
		m := NewMachine(testGateway(func(p *policy.Profile) { noQ(p); p.ProbeHoldoffMax = p.ProbeHoldoff }), t0)
		m.Observe(good, t0)
		got := oneWay(m, 10*ms, 4*time.Second, nil)
		want := secs(0.01, 1.02, 2.03, 3.04)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("check starts (-want +got):\n%s", diff)
		}
	})
}

// TestMachineCheckCause: what started a check, the label of
// uplinkd_checks_total.
func TestMachineCheckCause(t *testing.T) {
	incomplete := Event{Kind: EvNeigh, Advice: NeighIncomplete}
	tests := []struct {
		name  string
		steps []step
		want  string
	}{
		{"none", []step{{0, good}}, ""},
		{"traffic", []step{{0, good}, {time.Second, silent(60 * ms)}}, CheckTraffic},
		{"neigh", []step{{0, good}, {time.Second, incomplete}}, CheckNeigh},
		{"loss", []step{{0, good}, {time.Second, lost}}, CheckLoss},
		{"answered: over", []step{{0, good}, {time.Second, lost}, {time.Second + 10*ms, good}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMachine(testGateway(nil), t0)
			run(m, tc.steps)
			if got := m.CheckCause(); got != tc.want {
				t.Errorf("CheckCause = %q, want %q", got, tc.want)
			}
		})
	}
}

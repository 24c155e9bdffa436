package detector

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/policy"
)

var t0 = time.Unix(1_000_000, 0)

const ms = time.Millisecond

type step struct {
	at time.Duration
	ev Event
}

type tr struct {
	At       time.Duration
	From, To State
	Cause    string
	Reason   string
}

func testGateway(mod func(*policy.Profile)) *policy.Gateway {
	p := policy.DefaultProfile()
	if mod != nil {
		mod(&p)
	}
	return &policy.Gateway{Name: "gw1", Address: netip.MustParseAddr("198.18.1.1"), Interface: "eth1", Profile: &p}
}

func run(m *Machine, steps []step) []tr {
	var out []tr
	for _, s := range steps {
		if t, ok := m.Observe(s.ev, t0.Add(s.at)); ok {
			out = append(out, tr{t.At.Sub(t0), t.From, t.To, t.Cause, t.Reason})
		}
	}
	return out
}

var (
	good     = Event{Kind: EvProbe, OK: true, RTT: 2 * ms}
	slow     = Event{Kind: EvProbe, OK: true, RTT: 800 * ms}
	lost     = Event{Kind: EvProbe, OK: false, Detail: "gateway 198.18.1.1: no reply"}
	confirm  = Event{Kind: EvNeigh, Advice: NeighConfirmed, State: "REACHABLE"}
	failed   = Event{Kind: EvNeigh, Advice: NeighFailed, State: "FAILED"}
	carrierN = Event{Kind: EvCarrier, Iface: "eth1", OK: false}
	carrierY = Event{Kind: EvCarrier, Iface: "eth1", OK: true}
	tick     = Event{Kind: EvTick}
)

func noQuality(p *policy.Profile) { p.QualityInterval = 0 }

func silent(d time.Duration) Event { return Event{Kind: EvTxWithoutRx, For: d} }

func TestMachine(t *testing.T) {
	tests := []struct {
		name   string
		prof   func(*policy.Profile)
		probed bool // StartProbed: after a restart over owned routes
		steps  []step
		want   []tr
	}{
		{
			name:  "start: a reachable neighbour is enough",
			steps: []step{{0, confirm}},
			want:  []tr{{0, Unknown, Up, CauseStart, "neighbour 198.18.1.1 REACHABLE on eth1"}},
		},
		{
			name:   "probed start: a reachable neighbour is not enough, the probes decide",
			probed: true,
			steps:  []step{{0, confirm}, {100 * ms, lost}, {125 * ms, lost}, {150 * ms, lost}},
			want:   []tr{{150 * ms, Unknown, Down, CauseStart, "3 probes lost at start"}},
		},
		{
			name:   "probed start: one answered probe",
			probed: true,
			steps:  []step{{0, confirm}, {100 * ms, good}},
			want:   []tr{{100 * ms, Unknown, Up, CauseStart, "probe answered in 2ms"}},
		},
		{
			name:   "probed start, passive only: the neighbour is all there is",
			probed: true,
			prof:   func(p *policy.Profile) { p.Gating = policy.GatingNever },
			steps:  []step{{0, confirm}},
			want:   []tr{{0, Unknown, Up, CauseStart, "neighbour 198.18.1.1 REACHABLE on eth1"}},
		},
		{
			name:  "start: one answered probe",
			steps: []step{{100 * ms, good}},
			want:  []tr{{100 * ms, Unknown, Up, CauseStart, "probe answered in 2ms"}},
		},
		{
			name:  "start: down only after DownCount losses",
			steps: []step{{100 * ms, lost}, {125 * ms, lost}, {150 * ms, lost}},
			want:  []tr{{150 * ms, Unknown, Down, CauseStart, "3 probes lost at start"}},
		},
		{
			name:  "start: no carrier",
			steps: []step{{0, carrierN}},
			want:  []tr{{0, Unknown, Down, CauseCarrier, "carrier lost on eth1"}},
		},
		{
			name: "silent death: tx without rx, then three lost probes",
			steps: []step{{0, confirm}, {5000 * ms, silent(120 * ms)}, {5100 * ms, lost},
				{5125 * ms, lost}, {5150 * ms, lost}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "neighbour 198.18.1.1 REACHABLE on eth1"},
				{5100 * ms, Up, Suspect, CauseTraffic, "probe lost (gateway 198.18.1.1: no reply) after tx without rx for 120ms"},
				{5150 * ms, Suspect, Down, CauseProbe, "3 probes lost after tx without rx for 120ms"},
			},
		},
		{
			name: "suspect clears on one answer",
			steps: []step{{0, good}, {5000 * ms, silent(70 * ms)}, {5100 * ms, lost},
				{5125 * ms, good}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{5100 * ms, Up, Suspect, CauseTraffic, "probe lost (gateway 198.18.1.1: no reply) after tx without rx for 70ms"},
				{5125 * ms, Suspect, Up, CauseProbe, "probe answered in 2ms"},
			},
		},
		{
			name: "probe holdoff: silence right after an answered check starts no new check",
			steps: []step{{0, good}, {1000 * ms, silent(70 * ms)}, {1010 * ms, good}, {1500 * ms, silent(70 * ms)},
				{1600 * ms, lost}, {1625 * ms, lost}, {1650 * ms, lost}},
			// Without a check, always-mode style losses: first one only
			// speeds probing, second makes suspect, third down.
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{1625 * ms, Up, Suspect, CauseProbe, "2 probes lost in a row, last: probe lost (gateway 198.18.1.1: no reply)"},
				{1650 * ms, Suspect, Down, CauseProbe, "3 probes lost"},
			},
		},
		{
			name:  "no holdoff after a start-up answer: a death right after start is caught at full speed",
			steps: []step{{0, good}, {300 * ms, silent(70 * ms)}, {400 * ms, lost}, {425 * ms, lost}, {450 * ms, lost}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{400 * ms, Up, Suspect, CauseTraffic, "probe lost (gateway 198.18.1.1: no reply) after tx without rx for 70ms"},
				{450 * ms, Suspect, Down, CauseProbe, "3 probes lost after tx without rx for 70ms"},
			},
		},
		{
			name: "hysteresis: down needs UpCount answers in a row",
			steps: []step{{0, carrierN}, {10 * ms, carrierY},
				{2000 * ms, good}, {3000 * ms, good}, {4000 * ms, lost}, {5000 * ms, good}, {6000 * ms, good}, {7000 * ms, good}},
			want: []tr{
				{0, Unknown, Down, CauseCarrier, "carrier lost on eth1"},
				{7000 * ms, Down, Up, CauseLinkHold, "carrier stable for 7s on eth1 and 3 probes answered"},
			},
		},
		{
			name: "link hold: answers while the link is untrusted do not count",
			steps: []step{{0, good}, {1000 * ms, carrierN}, {1500 * ms, carrierY},
				{1600 * ms, good}, {1700 * ms, good}, {1800 * ms, good}, // inside the 1s hold
				{2600 * ms, good}, {3600 * ms, good}, {4600 * ms, good}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{1000 * ms, Up, Down, CauseCarrier, "carrier lost on eth1"},
				{4600 * ms, Down, Up, CauseLinkHold, "carrier stable for 3.1s on eth1 and 3 probes answered"},
			},
		},
		{
			name:  "trusted neighbour failure is down at once",
			steps: []step{{0, good}, {1000 * ms, failed}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{1000 * ms, Up, Down, CauseNeigh, "neighbour 198.18.1.1 FAILED on eth1"},
			},
		},
		{
			name:  "untrusted neighbour failure counts as a lost probe",
			prof:  func(p *policy.Profile) { p.TrustNeighFailed = false },
			steps: []step{{0, good}, {2000 * ms, failed}, {2100 * ms, lost}, {2200 * ms, lost}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{2100 * ms, Up, Suspect, CauseProbe, "2 probes lost in a row, last: probe lost (gateway 198.18.1.1: no reply)"},
				{2200 * ms, Suspect, Down, CauseProbe, "3 probes lost"},
			},
		},
		{
			name: "a confirmation does not lift a down gateway (ARP may answer while IP is dead)",
			steps: []step{{0, good}, {1000 * ms, silent(70 * ms)}, {1100 * ms, lost}, {1125 * ms, lost}, {1150 * ms, lost},
				{2000 * ms, confirm}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{1100 * ms, Up, Suspect, CauseTraffic, "probe lost (gateway 198.18.1.1: no reply) after tx without rx for 70ms"},
				{1150 * ms, Suspect, Down, CauseProbe, "3 probes lost after tx without rx for 70ms"},
			},
		},
		{
			name: "degraded by latency, back when the window is clean",
			prof: func(p *policy.Profile) { p.Window = 10 * time.Second; p.MinSamples = 3 },
			steps: []step{{0, good}, {1000 * ms, slow}, {2000 * ms, slow}, {3000 * ms, slow},
				{14000 * ms, good}, {15000 * ms, good}, {16000 * ms, good}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{2000 * ms, Up, Degraded, CauseLatency, "average rtt 534ms over 3 probes is above 500ms"},
				{16000 * ms, Degraded, Up, CauseLatency, "loss 0% and average rtt 2ms over 3 probes are within thresholds"},
			},
		},
		{
			name: "degraded by loss",
			prof: func(p *policy.Profile) { p.MinSamples = 5; p.Gating = policy.GatingAlways },
			steps: []step{{0, good}, {1000 * ms, good}, {2000 * ms, lost}, {2100 * ms, good},
				{3000 * ms, lost}, {3100 * ms, good}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{3100 * ms, Up, Degraded, CauseLoss, "loss 33% over 6 probes is above 20%"},
			},
		},
		{
			name: "recovery after an outage: the outage's losses do not degrade",
			prof: func(p *policy.Profile) { p.MinSamples = 5 },
			steps: []step{{0, good}, {1000 * ms, silent(70 * ms)}, {1100 * ms, lost}, {1125 * ms, lost}, {1150 * ms, lost},
				{2150 * ms, lost}, {3150 * ms, lost}, {4150 * ms, lost}, {5150 * ms, lost}, // recovery probes, still dead
				{6150 * ms, good}, {7150 * ms, good}, {8150 * ms, good},
				// Traffic checks after the recovery, all answered.
				{10000 * ms, silent(70 * ms)}, {10010 * ms, good}, {12000 * ms, silent(70 * ms)}, {12010 * ms, good},
				{14000 * ms, silent(70 * ms)}, {14010 * ms, good}, {16000 * ms, silent(70 * ms)}, {16010 * ms, good},
				{18000 * ms, silent(70 * ms)}, {18010 * ms, good}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{1100 * ms, Up, Suspect, CauseTraffic, "probe lost (gateway 198.18.1.1: no reply) after tx without rx for 70ms"},
				{1150 * ms, Suspect, Down, CauseProbe, "3 probes lost after tx without rx for 70ms"},
				{8150 * ms, Down, Up, CauseProbe, "3 probes answered, last in 2ms"},
			},
		},
		{
			name: "recovery after an outage: genuine loss afterwards still degrades",
			prof: func(p *policy.Profile) { p.MinSamples = 5; p.Gating = policy.GatingAlways },
			steps: []step{{0, good}, {1000 * ms, lost}, {1025 * ms, lost}, {1050 * ms, lost},
				{2050 * ms, lost}, {3050 * ms, good}, {4050 * ms, good}, {5050 * ms, good},
				{6050 * ms, good}, {7050 * ms, lost}, {7075 * ms, good}, {8050 * ms, lost}, {8075 * ms, good}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{1025 * ms, Up, Suspect, CauseProbe, "2 probes lost in a row, last: probe lost (gateway 198.18.1.1: no reply)"},
				{1050 * ms, Suspect, Down, CauseProbe, "3 probes lost"},
				{5050 * ms, Down, Up, CauseProbe, "3 probes answered, last in 2ms"},
				// Window since the recovery: good, lost, good, lost, good.
				{8075 * ms, Up, Degraded, CauseLoss, "loss 40% over 5 probes is above 20%"},
			},
		},
		{
			name: "damping: three flaps suppress, decay releases",
			prof: func(p *policy.Profile) { p.LinkHold = 0 },
			steps: []step{
				{0, good},
				{1000 * ms, carrierN}, {1100 * ms, carrierY}, {1200 * ms, good}, {1300 * ms, good}, {1400 * ms, good},
				{2000 * ms, carrierN}, {2100 * ms, carrierY}, {2200 * ms, good}, {2300 * ms, good}, {2400 * ms, good},
				{3000 * ms, carrierN}, {3100 * ms, carrierY}, {3200 * ms, good}, {3300 * ms, good}, {3400 * ms, good},
				{30 * time.Second, tick},
				// 1000 + 1000*2^(-1/30) decayed and flapped again: 2932 at 3s,
				// below 800 about 56s later.
				{61 * time.Second, tick},
			},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{1000 * ms, Up, Down, CauseCarrier, "carrier lost on eth1"},
				{1400 * ms, Down, Up, CauseLinkHold, "carrier stable for 300ms on eth1 and 3 probes answered"},
				{2000 * ms, Up, Down, CauseCarrier, "carrier lost on eth1"},
				{2400 * ms, Down, Up, CauseLinkHold, "carrier stable for 300ms on eth1 and 3 probes answered"},
				{3000 * ms, Up, Down, CauseCarrier, "carrier lost on eth1"},
				{61 * time.Second, Down, Up, CauseDamping, "flap penalty 768 fell below 800 after 3 probes answered"},
			},
		},
		{
			name: "damping off: flaps are not held",
			prof: func(p *policy.Profile) { p.LinkHold = 0; p.Damping = false },
			steps: []step{
				{0, good},
				{1000 * ms, carrierN}, {1100 * ms, carrierY}, {1200 * ms, good}, {1300 * ms, good}, {1400 * ms, good},
				{2000 * ms, carrierN}, {2100 * ms, carrierY}, {2200 * ms, good}, {2300 * ms, good}, {2400 * ms, good},
				{3000 * ms, carrierN}, {3100 * ms, carrierY}, {3200 * ms, good}, {3300 * ms, good}, {3400 * ms, good},
			},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{1000 * ms, Up, Down, CauseCarrier, "carrier lost on eth1"},
				{1400 * ms, Down, Up, CauseLinkHold, "carrier stable for 300ms on eth1 and 3 probes answered"},
				{2000 * ms, Up, Down, CauseCarrier, "carrier lost on eth1"},
				{2400 * ms, Down, Up, CauseLinkHold, "carrier stable for 300ms on eth1 and 3 probes answered"},
				{3000 * ms, Up, Down, CauseCarrier, "carrier lost on eth1"},
				{3400 * ms, Down, Up, CauseLinkHold, "carrier stable for 300ms on eth1 and 3 probes answered"},
			},
		},
		{
			// Issue 11 item 8: ping's MSG_CONFIRM rides on the first
			// unanswered echo request, and ND goes on confirming a
			// gateway that forwards nothing, so the confirmation looks
			// newer than the silence. It is verified, not trusted: the
			// check runs at full speed.
			name: "a confirmation during the silence does not blind the check",
			steps: []step{{0, good}, {4990 * ms, confirm}, {5000 * ms, silent(60 * ms)}, {5005 * ms, confirm},
				{5010 * ms, silent(70 * ms)}, {5020 * ms, confirm}, {5100 * ms, lost}, {5125 * ms, lost}, {5150 * ms, lost}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{5100 * ms, Up, Suspect, CauseTraffic, "probe lost (gateway 198.18.1.1: no reply) after tx without rx for 60ms"},
				{5150 * ms, Suspect, Down, CauseProbe, "3 probes lost after tx without rx for 60ms"},
			},
		},
		{
			name: "a cache age read during the silence does not blind the check",
			steps: []step{{0, good}, {5000 * ms, Event{Kind: EvNeigh, Advice: NeighConfirmed, State: "REACHABLE", Age: 10 * ms}},
				{5000 * ms, silent(70 * ms)}, {5100 * ms, lost}, {5125 * ms, lost}, {5150 * ms, lost}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{5100 * ms, Up, Suspect, CauseTraffic, "probe lost (gateway 198.18.1.1: no reply) after tx without rx for 70ms"},
				{5150 * ms, Suspect, Down, CauseProbe, "3 probes lost after tx without rx for 70ms"},
			},
		},
		{
			name:  "start: a confirmation during a silence does not make it up; the probes decide",
			steps: []step{{0, silent(70 * ms)}, {10 * ms, confirm}, {100 * ms, lost}, {125 * ms, lost}, {150 * ms, lost}},
			want:  []tr{{150 * ms, Unknown, Down, CauseStart, "3 probes lost at start"}},
		},
		{
			name:  "start: once packets arrive again a confirmation counts",
			steps: []step{{0, silent(70 * ms)}, {10 * ms, confirm}, {20 * ms, Event{Kind: EvRx}}, {30 * ms, confirm}},
			want:  []tr{{30 * ms, Unknown, Up, CauseStart, "neighbour 198.18.1.1 REACHABLE on eth1"}},
		},
		{
			name:  "start: a silence no longer reported has lapsed",
			steps: []step{{0, silent(70 * ms)}, {2000 * ms, confirm}},
			want:  []tr{{2000 * ms, Unknown, Up, CauseStart, "neighbour 198.18.1.1 REACHABLE on eth1"}},
		},
		{
			name:  "never: passive evidence only, a confirmation recovers",
			prof:  func(p *policy.Profile) { p.Gating = policy.GatingNever },
			steps: []step{{0, confirm}, {1000 * ms, failed}, {2000 * ms, silent(time.Second)}, {3000 * ms, confirm}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "neighbour 198.18.1.1 REACHABLE on eth1"},
				{1000 * ms, Up, Down, CauseNeigh, "neighbour 198.18.1.1 FAILED on eth1"},
				{3000 * ms, Down, Up, CauseNeigh, "neighbour 198.18.1.1 REACHABLE on eth1"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMachine(testGateway(tc.prof), t0)
			if tc.probed {
				m.StartProbed()
			}
			got := run(m, tc.steps)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("transitions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMachineProbeInterval(t *testing.T) {
	p := policy.DefaultProfile()
	tests := []struct {
		name    string
		prof    func(*policy.Profile)
		standby bool
		steps   []step
		at      time.Duration
		want    time.Duration
	}{
		{name: "unknown: initial probes", want: p.FastInterval},
		{name: "idle active gated gateway: never probed", steps: []step{{0, good}}, at: time.Minute, want: 0},
		{name: "idle standby gateway: slow check", standby: true, steps: []step{{0, good}}, at: time.Minute, want: p.StandbyInterval},
		{name: "always", prof: func(p *policy.Profile) { p.Gating = policy.GatingAlways }, steps: []step{{0, good}}, at: time.Minute, want: p.Interval},
		{name: "never", prof: func(p *policy.Profile) { p.Gating = policy.GatingNever }, steps: []step{{0, confirm}}, at: time.Minute, want: 0},
		{name: "tx without rx starts a fast check", steps: []step{{0, good}, {5 * time.Second, silent(70 * ms)}}, at: 5 * time.Second, want: p.FastInterval},
		// Issue 11 item 8: a confirmation newer than the silence contradicts
		// it, so it no longer closes the gate; a probe verifies it.
		{name: "a confirmation during the silence is verified by a fast check", steps: []step{{0, good}, {4990 * ms, confirm}, {5 * time.Second, silent(70 * ms)}}, at: 5 * time.Second, want: p.FastInterval},
		{name: "holdoff after an answered check keeps the gate closed", prof: noQuality, steps: []step{{0, good}, {100 * ms, silent(70 * ms)}, {110 * ms, good}, {900 * ms, silent(70 * ms)}}, at: 900 * ms, want: 0},
		// Issue 14: a gateway carrying traffic gets sparse quality probes,
		// hold-off or not; an idle one none.
		{name: "carrying traffic: quality samples", steps: []step{{0, good}, {100 * ms, silent(70 * ms)}, {110 * ms, good}, {900 * ms, silent(70 * ms)}}, at: 900 * ms, want: p.QualityInterval},
		{name: "carrying two-way traffic: quality samples", steps: []step{{0, good}, {100 * ms, Event{Kind: EvRx, Busy: true}}}, at: time.Second, want: p.QualityInterval},
		{name: "traffic stopped: no quality samples", steps: []step{{0, good}, {100 * ms, Event{Kind: EvRx, Busy: true}}}, at: 3 * time.Second, want: 0},
		{name: "rx only: no quality samples", steps: []step{{0, good}, {100 * ms, Event{Kind: EvRx}}}, at: time.Second, want: 0},
		{name: "standby carrying traffic: the standby interval", standby: true, steps: []step{{0, good}, {100 * ms, Event{Kind: EvRx, Busy: true}}}, at: time.Second, want: p.StandbyInterval},
		{name: "the holdoff ends", steps: []step{{0, good}, {100 * ms, silent(70 * ms)}, {110 * ms, good}, {1200 * ms, silent(70 * ms)}}, at: 1200 * ms, want: p.FastInterval},
		{name: "down: recovery interval", steps: []step{{0, good}, {ms, failed}}, at: time.Minute, want: p.RecoveryInterval},
		{name: "no carrier: nothing to probe", steps: []step{{0, carrierN}}, at: time.Minute, want: 0},
		{name: "within link hold: wait", steps: []step{{0, carrierN}, {time.Second, carrierY}}, at: 1500 * ms, want: 0},
		{name: "after link hold: recovery probes", steps: []step{{0, carrierN}, {time.Second, carrierY}}, at: 2 * time.Second, want: p.RecoveryInterval},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMachine(testGateway(tc.prof), t0)
			m.SetStandby(tc.standby)
			run(m, tc.steps)
			if got := m.ProbeInterval(t0.Add(tc.at)); got != tc.want {
				t.Errorf("ProbeInterval = %v, want %v (state %v)", got, tc.want, m.State())
			}
		})
	}
}

func TestMachinePenaltyCeiling(t *testing.T) {
	g := testGateway(func(p *policy.Profile) { p.MaxSuppress = 60 * time.Second; p.HalfLife = 30 * time.Second })
	m := NewMachine(g, t0)
	for i := 0; i < 20; i++ {
		m.Observe(carrierN, t0.Add(time.Duration(i)*time.Second))
		m.Observe(carrierY, t0.Add(time.Duration(i)*time.Second+500*ms))
	}
	// Ceiling: reuse * 2^(max_suppress/half_life) = 800 * 4.
	if got := m.Penalty(t0.Add(19 * time.Second)); got > 3200.001 {
		t.Errorf("penalty %v above the MaxSuppress ceiling 3200", got)
	}
	if !m.Damped() {
		t.Fatal("not damped after 20 flaps")
	}
	m.Observe(tick, t0.Add(19*time.Second+60*time.Second+time.Millisecond))
	if m.Damped() {
		t.Errorf("still damped after MaxSuppress")
	}
}

func TestStateString(t *testing.T) {
	got := []string{}
	for s := Unknown; s <= Down; s++ {
		got = append(got, s.String())
	}
	if diff := cmp.Diff([]string{"unknown", "up", "suspect", "degraded", "down"}, got); diff != "" {
		t.Error(diff)
	}
	if State(42).String() != "invalid" {
		t.Error("out-of-range state")
	}
}

// BenchmarkMachineObserve is the health goroutine's cost per event.
func BenchmarkMachineObserve(b *testing.B) {
	m := NewMachine(testGateway(func(p *policy.Profile) { p.Gating = policy.GatingAlways }), t0)
	evs := []Event{good, {Kind: EvRx}, tick, silent(70 * ms), good, lost, good}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Observe(evs[i%len(evs)], t0.Add(time.Duration(i)*ms))
		m.ProbeInterval(t0.Add(time.Duration(i) * ms))
	}
}

// TestMachineWindowIncremental checks the running window sums against a
// direct computation over a long random sequence of probe results
// (including outages, after which the window starts afresh).
func TestMachineWindowIncremental(t *testing.T) {
	m := NewMachine(testGateway(func(p *policy.Profile) { p.Window = 2 * time.Second; p.Gating = policy.GatingAlways }), t0)
	type s struct {
		at  time.Time
		ok  bool
		rtt time.Duration
	}
	var all []s
	rng := uint64(1)
	next := func() uint64 { rng = rng*6364136223846793005 + 1442695040888963407; return rng >> 33 }
	now := t0
	for i := 0; i < 5000; i++ {
		now = now.Add(time.Duration(next()%50) * ms)
		ev := Event{Kind: EvProbe, OK: next()%10 != 0, RTT: time.Duration(next()%1000) * time.Microsecond}
		was := m.State()
		m.Observe(ev, now)
		all = append(all, s{now, ev.OK, ev.RTT})
		if was == Down && m.State() != Down {
			all = all[:0] // recovery starts a fresh window
		}
		var n, good int
		var sum time.Duration
		for _, x := range all {
			if now.Sub(x.at) <= 2*time.Second {
				n++
				if x.ok {
					good++
					sum += x.rtt
				}
			}
		}
		avg, loss, gotN := m.Window(now)
		var wantAvg time.Duration
		if good > 0 {
			wantAvg = sum / time.Duration(good)
		}
		wantLoss := 0.0
		if n > 0 {
			wantLoss = float64(n-good) / float64(n)
		}
		if gotN != n || avg != wantAvg || loss != wantLoss {
			t.Fatalf("step %d: window (%v, %v, %d), want (%v, %v, %d)", i, avg, loss, gotN, wantAvg, wantLoss, n)
		}
	}
}

func TestParseState(t *testing.T) {
	for s := Unknown; s <= Down; s++ {
		var got State
		if err := got.UnmarshalText([]byte(s.String())); err != nil || got != s {
			t.Errorf("UnmarshalText(%q) = %v, %v", s.String(), got, err)
		}
	}
	if _, err := ParseState("dead"); err == nil || err.Error() != `state "dead" is not one of unknown, up, suspect, degraded, down` {
		t.Errorf("ParseState(dead) error %v", err)
	}
}

// TestMachineStartDown: a gateway started down (absent from the routes
// the daemon owns, after a restart) needs UpCount recovery probes; a
// REACHABLE neighbour does not lift it.
func TestMachineStartDown(t *testing.T) {
	m := NewMachine(testGateway(nil), t0)
	m.StartDown("absent from owned routes at start")
	if m.State() != Down || m.Reason() != "absent from owned routes at start" {
		t.Fatalf("after StartDown: %v %q, want down with the reason", m.State(), m.Reason())
	}
	if got := m.ProbeInterval(t0); got != policy.DefaultProfile().RecoveryInterval {
		t.Errorf("ProbeInterval = %v, want the recovery interval", got)
	}
	got := run(m, []step{{10 * ms, confirm}, {time.Second, good}, {2 * time.Second, good}, {3 * time.Second, lost},
		{4 * time.Second, good}, {5 * time.Second, good}, {6 * time.Second, good}})
	want := []tr{{6 * time.Second, Down, Up, CauseProbe, "3 probes answered, last in 2ms"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
}

package detector

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

type sample struct {
	at  time.Time
	ok  bool
	rtt time.Duration
}

// Machine is the health of one gateway: a pure state machine. Every method
// takes the current monotonic time from the caller; nothing reads a clock.
type Machine struct {
	name    string
	iface   string
	addr    netip.Addr
	prof    policy.Profile
	standby bool
	bfdDown string // policy.BFDDown*: what a BFD Down does; "" without BFD
	bfdUp   bool

	probedStart bool // an Unknown gateway needs a probe answer to be up

	state  State
	since  time.Time
	cause  string
	reason string

	carrier    bool
	carrierAt  time.Time // when carrier last came back
	holdUntil  time.Time // link not trusted before this
	downByLink bool      // the current Down came from the link, so Up is a link-hold recovery

	good, bad int // consecutive probe results

	// A check is a burst of fast probes started by tx without rx.
	checking   bool
	checkFor   time.Duration // tx-without-rx duration that started it
	checkCause string        // what started it: CheckTraffic, CheckNeigh, CheckLoss
	lastGood   time.Time
	holdoffAt  time.Time     // a check triggered by silence was answered
	holdoff    time.Duration // the hold-off it armed: doubles while such checks keep being answered
	// gaps learns the silences a working flow through the gateway
	// shows (those that rx ended), so that silence is judged against
	// them (adapt.go).
	gaps estimator
	// rxRunSince is when rx started being reported without a silence in
	// between; rx flowing for rxResumed means replies are back, which
	// resets the hold-off.
	rxRunSince time.Time
	busyAt     time.Time // last traffic report with packets leaving through the gateway
	lastConf   time.Time
	lastRx     time.Time
	lastTxNoRx time.Time
	// silentSince is when the current silence began (packets sent to
	// the gateway, none received from it); zero while packets arrive.
	silentSince time.Time

	samples []sample // samples[head:] are in the window
	head    int
	winGood int           // good samples in the window
	winRTT  time.Duration // their RTT sum
	rttLast time.Duration

	penalty   float64
	penaltyAt time.Time
	damped    bool
}

// NewMachine returns the machine of gateway g in state Unknown. The
// profile is copied, so a later policy reload cannot change it under the
// health goroutine's feet.
func NewMachine(g *policy.Gateway, now time.Time) *Machine {
	m := &Machine{name: g.Name, iface: g.Interface, addr: g.Address, since: now, carrier: true, cause: CauseStart, reason: "starting"}
	if g.Profile != nil {
		m.prof = *g.Profile
	} else {
		m.prof = policy.DefaultProfile()
	}
	if g.BFD != nil {
		m.bfdDown = g.BFD.Down
	}
	return m
}

// StartDown puts a new machine in Down before any evidence, for a gateway
// a previous instance had withdrawn (absent from the routes the daemon
// owns, after a restart): like any down gateway it needs up_count good
// probes to come back, and neighbour confirmations alone do not bring it
// up. It is the state it starts in, not a transition.
func (m *Machine) StartDown(reason string) {
	m.state, m.cause, m.reason = Down, CauseStart, reason
	m.good, m.bad = 0, 0
}

// StartProbed makes the first verdict the probes': a neighbour
// confirmation no longer brings the Unknown machine up (it does for a
// passive-only gateway, which has nothing else).
func (m *Machine) StartProbed() { m.probedStart = true }

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Reason returns the reason of the current state.
func (m *Machine) Reason() string { return m.reason }

// Damped reports whether flap damping holds the gateway down.
func (m *Machine) Damped() bool { return m.damped }

// Carrier reports the last known carrier.
func (m *Machine) Carrier() bool { return m.carrier }

// SetProfile replaces the profile on a policy reload, keeping the state.
func (m *Machine) SetProfile(p policy.Profile) { m.prof, m.holdoff = p, 0 }

// SetStandby marks the gateway as carrying no traffic by policy.
func (m *Machine) SetStandby(v bool) { m.standby = v }

// Penalty returns the flap penalty decayed to now.
func (m *Machine) Penalty(now time.Time) float64 {
	if m.penalty == 0 {
		return 0
	}
	hl := m.prof.HalfLife
	if hl <= 0 {
		return 0
	}
	dt := now.Sub(m.penaltyAt)
	if dt < 0 {
		dt = 0
	}
	return m.penalty * math.Exp2(-float64(dt)/float64(hl))
}

func (m *Machine) addPenalty(now time.Time) {
	if !m.prof.Damping {
		return
	}
	p := m.Penalty(now) + m.prof.FlapPenalty
	// RFC 2439 ceiling: never suppressed for longer than MaxSuppress.
	if m.prof.MaxSuppress > 0 && m.prof.HalfLife > 0 {
		ceiling := m.prof.ReuseBelow * math.Exp2(float64(m.prof.MaxSuppress)/float64(m.prof.HalfLife))
		p = math.Min(p, ceiling)
	}
	m.penalty, m.penaltyAt = p, now
	if p > m.prof.SuppressAbove {
		m.damped = true
	}
}

// Window returns the probe results within the profile's window: the
// average RTT of good ones, the loss ratio and the number of samples.
func (m *Machine) Window(now time.Time) (avg time.Duration, loss float64, n int) {
	m.trim(now)
	n = len(m.samples) - m.head
	if m.winGood > 0 {
		avg = m.winRTT / time.Duration(m.winGood)
	}
	if n > 0 {
		loss = float64(n-m.winGood) / float64(n)
	}
	return avg, loss, n
}

func (m *Machine) clearWindow() {
	m.samples = m.samples[:0]
	m.head, m.winGood, m.winRTT = 0, 0, 0
}

func (m *Machine) addSample(sm sample) {
	m.samples = append(m.samples, sm)
	if sm.ok {
		m.winGood++
		m.winRTT += sm.rtt
	}
}

// RTTLast returns the RTT of the last good probe round.
func (m *Machine) RTTLast() time.Duration { return m.rttLast }

// LastGood returns when a probe round last succeeded (zero if never).
func (m *Machine) LastGood() time.Time { return m.lastGood }

// LastConfirmed returns when the neighbour was last confirmed (zero if never).
func (m *Machine) LastConfirmed() time.Time { return m.lastConf }

// Since returns when the current state was entered.
func (m *Machine) Since() time.Time { return m.since }

func (m *Machine) trim(now time.Time) {
	w := m.prof.Window
	for m.head < len(m.samples) && w > 0 && now.Sub(m.samples[m.head].at) > w {
		if m.samples[m.head].ok {
			m.winGood--
			m.winRTT -= m.samples[m.head].rtt
		}
		m.head++
	}
	// Compact only when the expired prefix dominates: amortised O(1).
	if m.head > 32 && m.head*2 > len(m.samples) {
		m.samples = append(m.samples[:0], m.samples[m.head:]...)
		m.head = 0
	}
}

// linkTrusted says whether probe results count: carrier present and the
// hold time after its return has passed.
func (m *Machine) linkTrusted(now time.Time) bool {
	return m.carrier && !now.Before(m.holdUntil)
}

// ProbeInterval says how often the gateway should be probed now; 0 means
// not at all. This is the gating of RFC 1122 §3.3.1.4: an idle active
// gateway in gated mode gets no probes.
func (m *Machine) ProbeInterval(now time.Time) time.Duration {
	p := &m.prof
	if !m.linkTrusted(now) {
		return 0
	}
	never := p.Gating == policy.GatingNever
	switch {
	case m.state == Down:
		if never {
			return 0
		}
		return p.RecoveryInterval
	case never:
		return 0
	case m.state == Suspect, m.state == Unknown, m.checking:
		return p.FastInterval
	case p.Gating == policy.GatingAlways, m.state == Degraded:
		return p.Interval
	case m.standby:
		return p.StandbyInterval
	case m.Sampling(now):
		return p.QualityInterval
	}
	return 0
}

// busyFor is how recently packets must have left through a gateway for it
// to count as carrying traffic (quality sampling).
const busyFor = 2 * time.Second

// Sampling says whether the gateway is due sparse quality probes: gated,
// up, carrying traffic and nothing suspicious. Loss and latency are
// otherwise never measured on a gated gateway that works; an idle one is
// not probed.
func (m *Machine) Sampling(now time.Time) bool {
	p := &m.prof
	return p.QualityInterval > 0 && p.Gating == policy.GatingGated && m.state == Up && !m.checking && !m.standby &&
		!m.busyAt.IsZero() && now.Sub(m.busyAt) < busyFor && m.linkTrusted(now)
}

// SilenceThreshold is how long tx without rx must last to start a check
// now: the silences the flow showed while it worked (smoothed + 4 × their
// variation), within [silence_floor, tx_without_rx].
func (m *Machine) SilenceThreshold() time.Duration {
	return m.gaps.bound(gapK, gapMinSamples, min(m.prof.SilenceFloor, m.prof.TxWithoutRx), m.prof.TxWithoutRx)
}

// Holdoff is the current probe hold-off.
func (m *Machine) Holdoff() time.Duration {
	if m.holdoff > 0 {
		return m.holdoff
	}
	return m.prof.ProbeHoldoff
}

// rxResumed is how long rx must keep being reported, with no silence in
// between, for replies to count as back (the hold-off ends). A probe's
// own reply is one report, followed by silence again within
// silence_floor; rx reports come every 100 ms while packets arrive.
const rxResumed = 200 * time.Millisecond

func (m *Machine) onRx(ev Event, now time.Time) {
	m.lastRx, m.silentSince = now, time.Time{}
	if ev.Busy {
		m.busyAt = now
	}
	switch {
	case ev.Gap >= m.prof.TxWithoutRx:
		// A pause, not a rhythm: the flow started, stopped or went
		// sparse. Learn it afresh (tx_without_rx meanwhile), so that a
		// sparse flow is never judged by a dense one's gaps, nor a dense
		// one by the idle spell before it.
		m.gaps = estimator{}
	default:
		m.gaps.add(ev.Gap)
	}
	if m.rxRunSince.IsZero() {
		m.rxRunSince = now
	} else if now.Sub(m.rxRunSince) >= rxResumed {
		// Replies are back: the traffic is two-way, and the hold-off
		// (meant for one-way traffic) no longer holds a death back.
		m.holdoff, m.holdoffAt = 0, time.Time{}
	}
}

// startCheck starts a burst of fast probes.
func (m *Machine) startCheck(cause string, silentFor time.Duration) {
	m.checking, m.checkFor, m.checkCause = true, silentFor, cause
	m.bad = 0
}

// What starts a check: the reason label of uplinkd_checks_total.
const (
	CheckTraffic = "traffic" // tx without rx past the silence threshold
	CheckNeigh   = "neigh"   // the kernel started resolving the gateway again
	CheckLoss    = "loss"    // a lost probe outside a check
)

// CheckCause says what started the running check ("" if none).
func (m *Machine) CheckCause() string {
	if !m.checking {
		return ""
	}
	return m.checkCause
}

// HoldUntil returns when the link becomes trusted again after carrier came
// back; zero or past when it is trusted.
func (m *Machine) HoldUntil() time.Time { return m.holdUntil }

// Observe feeds one event into the machine and returns the transition it
// caused, if any.
func (m *Machine) Observe(ev Event, now time.Time) (Transition, bool) {
	switch ev.Kind {
	case EvTick:
		return m.tick(now)
	case EvCarrier:
		return m.onCarrier(ev, now)
	case EvNeigh:
		return m.onNeigh(ev, now)
	case EvTxWithoutRx:
		return m.onTxWithoutRx(ev, now)
	case EvRx:
		m.onRx(ev, now)
		return Transition{}, false
	case EvProbe:
		return m.onProbe(ev, now)
	case EvBFD:
		return m.onBFD(ev, now)
	}
	return Transition{}, false
}

func (m *Machine) move(to State, cause, reason string, now time.Time) (Transition, bool) {
	if to == m.state {
		m.cause, m.reason = cause, reason
		return Transition{}, false
	}
	t := Transition{Gateway: m.name, From: m.state, To: to, Cause: cause, Reason: reason, At: now}
	if to == Down && (m.state == Up || m.state == Degraded || m.state == Suspect) && cause != CauseCarrier {
		m.addPenalty(now) // carrier losses were counted as they happened
	}
	if to == Down {
		m.checking, m.checkFor = false, 0
		m.downByLink = cause == CauseCarrier
	}
	if to == Up || to == Degraded {
		m.downByLink = false
	}
	if m.state == Down {
		// The window describes the gateway that is coming back, not the
		// outage: probes lost while it was dead (and the recovery probes)
		// would otherwise make it degraded right after every outage.
		m.clearWindow()
	}
	m.state, m.since, m.cause, m.reason = to, now, cause, reason
	return t, true
}

func (m *Machine) tick(now time.Time) (Transition, bool) {
	if m.damped {
		pen := m.Penalty(now)
		if pen < m.prof.ReuseBelow || !m.prof.Damping {
			m.damped = false
			if m.state == Down && m.good >= m.upCount() && m.linkTrusted(now) {
				return m.move(Up, CauseDamping, fmt.Sprintf("flap penalty %.0f fell below %.0f after %d probes answered", pen, m.prof.ReuseBelow, m.good), now)
			}
		}
	}
	return Transition{}, false
}

func (m *Machine) upCount() int {
	if m.prof.UpCount < 1 {
		return 1
	}
	return m.prof.UpCount
}

func (m *Machine) downCount() int {
	if m.prof.DownCount < 1 {
		return 1
	}
	return m.prof.DownCount
}

func (m *Machine) onCarrier(ev Event, now time.Time) (Transition, bool) {
	iface := ev.Iface
	if iface == "" {
		iface = m.iface
	}
	if !ev.OK {
		was := m.carrier
		m.carrier = false
		m.good, m.bad, m.checking = 0, 0, false
		m.holdoff = 0
		if was {
			m.addPenalty(now)
		}
		if m.state == Down {
			if m.cause == CauseCarrier && ev.Detail != "" {
				m.reason = ev.Detail // e.g. set down, then deleted
			}
			m.downByLink = true
			return Transition{}, false
		}
		return m.move(Down, CauseCarrier, stateOr(ev.Detail, "carrier lost on "+iface), now)
	}
	if m.carrier {
		return Transition{}, false
	}
	m.carrier, m.carrierAt = true, now
	m.holdUntil = now.Add(m.prof.LinkHold)
	m.good, m.bad = 0, 0
	return Transition{}, false
}

func (m *Machine) onNeigh(ev Event, now time.Time) (Transition, bool) {
	switch ev.Advice {
	case NeighIncomplete:
		m.holdoff = 0
		if (m.state == Up || m.state == Degraded) && !m.checking && m.prof.Gating != policy.GatingNever && m.linkTrusted(now) {
			m.startCheck(CheckNeigh, 0)
		}
		return Transition{}, false
	case NeighConfirmed:
		if at := now.Add(-ev.Age); at.After(m.lastConf) {
			m.lastConf = at
		}
		if !m.linkTrusted(now) || !m.adviceConsistent(now) {
			return Transition{}, false
		}
		switch {
		case m.state == Unknown && (!m.probedStart || m.prof.Gating == policy.GatingNever):
			return m.move(Up, CauseStart, fmt.Sprintf("neighbour %s %s on %s", m.addr, stateOr(ev.State, "reachable"), m.iface), now)
		case m.state == Down && m.prof.Gating == policy.GatingNever && !m.damped:
			// Passive-only gateways have no probes to recover with.
			return m.move(Up, CauseNeigh, fmt.Sprintf("neighbour %s %s on %s", m.addr, stateOr(ev.State, "reachable"), m.iface), now)
		}
		// Elsewhere a confirmation is not enough: a gateway that black-holes
		// IP may still answer ARP.
		return Transition{}, false
	case NeighFailed:
		m.holdoff = 0
		if m.state == Down || !m.carrier {
			m.good = 0
			return Transition{}, false
		}
		reason := fmt.Sprintf("neighbour %s %s on %s", m.addr, stateOr(ev.State, "failed"), m.iface)
		if m.prof.TrustNeighFailed {
			m.good = 0
			return m.move(Down, CauseNeigh, reason, now)
		}
		// Untrusted: it counts as one lost probe round.
		return m.lost(now, CauseNeigh, reason)
	}
	return Transition{}, false
}

// adviceConsistent says whether positive neighbour advice counts: not
// while the traffic evidence says nothing comes back from the gateway. A
// confirmation during a silence is inconsistent with it (the kernel also
// confirms on an application's MSG_CONFIRM, sent with the first
// unanswered packet after the last reply, and ND keeps confirming a
// gateway that forwards nothing), so a probe verifies it instead.
// A silence no longer reported for silenceLapse has ended without rx (the
// traffic stopped, the interface went away).
func (m *Machine) adviceConsistent(now time.Time) bool {
	return m.silentSince.IsZero() || now.Sub(m.lastTxNoRx) > silenceLapse
}

// silenceLapse is how long a silence lasts without being reported again:
// the poller reports it at every poll, at least every 200 ms.
const silenceLapse = time.Second

func stateOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (m *Machine) onTxWithoutRx(ev Event, now time.Time) (Transition, bool) {
	if m.prof.Gating == policy.GatingNever {
		return Transition{}, false // passive only: no traffic evidence
	}
	m.busyAt, m.rxRunSince = now, time.Time{}
	if ev.For < m.SilenceThreshold() {
		return Transition{}, false // within the flow's own rhythm
	}
	if m.silentSince.IsZero() || now.Sub(m.lastTxNoRx) > silenceLapse {
		m.silentSince = now.Add(-ev.For)
	}
	m.lastTxNoRx = now
	if m.checking || m.state == Down || m.state == Suspect {
		return Transition{}, false
	}
	// Only a probe answered within the hold-off closes the gate (one-way
	// UDP traffic would otherwise probe constantly). A neighbour
	// confirmation newer than the silence does not: it contradicts the
	// traffic, so the check verifies it (see adviceConsistent).
	if !m.holdoffAt.IsZero() && now.Sub(m.holdoffAt) < m.Holdoff() {
		return Transition{}, false
	}
	m.startCheck(CheckTraffic, ev.For)
	return Transition{}, false
}

// Checking reports whether a traffic-triggered burst of probes is running.
func (m *Machine) Checking() bool { return m.checking }

func (m *Machine) onProbe(ev Event, now time.Time) (Transition, bool) {
	if !m.linkTrusted(now) {
		return Transition{}, false // results across a carrier change say nothing
	}
	m.addSample(sample{at: now, ok: ev.OK, rtt: ev.RTT})
	m.trim(now)
	if !ev.OK {
		reason := "probe lost"
		if ev.Detail != "" {
			reason = "probe lost (" + ev.Detail + ")"
		}
		return m.lost(now, CauseProbe, reason)
	}
	m.rttLast, m.lastGood = ev.RTT, now
	m.bad = 0
	m.good++
	if m.checking && m.checkFor > 0 {
		// Silence that a probe answers is one-way traffic: do not check
		// again for it before the hold-off. Other answers (start-up,
		// standby, always) arm nothing, so a death right after them is
		// caught at full speed. Each answered one doubles the hold-off
		// (up to probe_holdoff_max): one-way traffic that keeps being
		// answered costs ever fewer probes.
		m.holdoffAt = now
		m.holdoff = holdoffNext(m.holdoff, m.prof.ProbeHoldoff, m.prof.ProbeHoldoffMax)
	}
	m.checking, m.checkFor = false, 0
	switch m.state {
	case Unknown:
		return m.move(Up, CauseStart, fmt.Sprintf("probe answered in %s", fmtDur(ev.RTT)), now)
	case Suspect:
		if t, ok := m.judge(now); ok {
			return t, ok
		}
		return m.move(Up, CauseProbe, fmt.Sprintf("probe answered in %s", fmtDur(ev.RTT)), now)
	case Down:
		if m.good < m.upCount() {
			return Transition{}, false
		}
		if m.damped {
			m.reason = fmt.Sprintf("%d probes answered but flap penalty %.0f is above %.0f", m.good, m.Penalty(now), m.prof.ReuseBelow)
			return Transition{}, false
		}
		if m.downByLink {
			return m.move(Up, CauseLinkHold, fmt.Sprintf("carrier stable for %s on %s and %d probes answered", fmtDur(now.Sub(m.carrierAt)), m.iface, m.good), now)
		}
		return m.move(Up, CauseProbe, fmt.Sprintf("%d probes answered, last in %s", m.good, fmtDur(ev.RTT)), now)
	}
	return m.judge(now)
}

// lost counts one failed probe round (or untrusted negative advice).
func (m *Machine) lost(now time.Time, cause, what string) (Transition, bool) {
	m.good = 0
	m.bad++
	m.holdoff = 0 // whatever the hold-off learned, a loss is news
	n := m.downCount()
	after := ""
	if m.checkFor > 0 && (m.checking || m.state == Suspect) {
		after = " after tx without rx for " + fmtDur(m.checkFor)
	}
	switch m.state {
	case Down:
		return Transition{}, false
	case Unknown:
		if m.bad >= n {
			return m.move(Down, CauseStart, fmt.Sprintf("%d probes lost at start", m.bad), now)
		}
		return Transition{}, false
	}
	if m.bad >= n {
		reason := fmt.Sprintf("%d probes lost%s", m.bad, after)
		if cause == CauseNeigh {
			reason = fmt.Sprintf("%s, %d lost in a row", what, m.bad)
		}
		return m.move(Down, cause, reason, now)
	}
	if m.state == Suspect {
		return Transition{}, false
	}
	if m.checking && m.checkFor > 0 {
		return m.move(Suspect, CauseTraffic, fmt.Sprintf("%s%s", what, after), now)
	}
	if !m.checking && m.state != Unknown {
		// One lost probe without other evidence is ordinary loss: probe
		// fast, and only a second loss in a row makes it suspect.
		m.startCheck(CheckLoss, 0)
		m.bad = 1
		return Transition{}, false
	}
	return m.move(Suspect, cause, fmt.Sprintf("%d probes lost in a row, last: %s", m.bad, what), now)
}

// judge decides between Up and Degraded from the window after a good probe.
func (m *Machine) judge(now time.Time) (Transition, bool) {
	avg, loss, n := m.Window(now)
	p := &m.prof
	if n < p.MinSamples || n == 0 {
		if m.state == Suspect {
			return Transition{}, false
		}
		return Transition{}, false
	}
	switch {
	case p.LossThreshold > 0 && loss > p.LossThreshold:
		return m.move(Degraded, CauseLoss, fmt.Sprintf("loss %.0f%% over %d probes is above %.0f%%", loss*100, n, p.LossThreshold*100), now)
	case p.LatencyThreshold > 0 && avg > p.LatencyThreshold:
		return m.move(Degraded, CauseLatency, fmt.Sprintf("average rtt %s over %d probes is above %s", fmtDur(avg), n, fmtDur(p.LatencyThreshold)), now)
	}
	if m.state == Degraded {
		return m.move(Up, m.cause, fmt.Sprintf("loss %.0f%% and average rtt %s over %d probes are within thresholds", loss*100, fmtDur(avg), n), now)
	}
	return Transition{}, false
}

// fmtDur prints durations the way operators read them: 120ms, 1.2ms, 30s.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

package detector

import (
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// Probe timeouts per target, learned from its answers (adapt.go): the
// first probe of a check already uses what earlier checks, quality
// samples, start-up and recovery probes learned about the target.

// rttKey names a probe target among a gateway's.
func rttKey(ps probeSpec) string { return string(ps.kind) + " " + ps.target }

// learnRTT feeds one answer of a target.
func (gs *gwState) learnRTT(key string, rtt time.Duration) {
	if gs.rtts == nil {
		gs.rtts = map[string]*estimator{}
	}
	e := gs.rtts[key]
	if e == nil {
		e = &estimator{}
		gs.rtts[key] = e
	}
	e.add(rtt)
}

// timeoutOf is the probe timeout of one target: rttK × (srtt + 4·rttvar)
// within [timeout_floor, timeout]; timeout while nothing is learned. The
// gateway's own echo may borrow what its neighbour probe learned (the
// same hop: the neighbour's reachability); a remote target never borrows,
// its path is longer.
func (gs *gwState) timeoutOf(ps probeSpec) time.Duration {
	p := &gs.m.prof
	floor := min(p.TimeoutFloor, p.Timeout)
	if ps.kind == KindNeigh {
		floor = min(max(floor, neighTimeoutFloor), p.Timeout)
	}
	e := gs.rtts[rttKey(ps)]
	if (e == nil || e.n == 0) && ps.role == roleGateway {
		e = gs.rtts[rttKey(probeSpec{kind: KindNeigh, target: ps.target})]
	}
	if e == nil {
		return p.Timeout
	}
	return e.bound(rttK, rttMinSamples, floor, p.Timeout)
}

// neighTimeoutFloor is the neighbour probe's own floor. Its answer is
// seen by polling the neighbour table every 5 ms, so a timeout of a few
// polls turns one late poll on a busy host into a loss (a CI run saw
// exactly that at the 20 ms timeout_floor). It costs no detection
// speed: on a dead gateway the echo sent in the same round fails at its
// own timeout and decides the round; only a gateway that forwards and
// echoes but stops answering ARP waits for this one.
const neighTimeoutFloor = 50 * time.Millisecond

// timeouts lists the timeout of each probe and the round's bound: the
// longest of them, leaving out the neighbour probe's own floor when
// another probe is made. The bound spaces a check's probes
// (interval), and a dead gateway is decided by the echo sent with the
// neighbour probe.
func (gs *gwState) timeouts(probes []probeSpec) ([]time.Duration, time.Duration) {
	out := make([]time.Duration, len(probes))
	var longest, neigh time.Duration
	for i, ps := range probes {
		out[i] = gs.timeoutOf(ps)
		if ps.kind == KindNeigh {
			neigh = max(neigh, out[i])
			continue
		}
		longest = max(longest, out[i])
	}
	if longest == 0 {
		longest = neigh
	}
	if longest == 0 {
		longest = gs.m.prof.Timeout
	}
	return out, longest
}

// interval is how soon gs is probed again: the machine's interval, with
// the probes of a check (or of a suspect gateway) spaced by half their
// timeout, so that a verdict needs (down_count − 1) × timeout/2 + timeout.
func (gs *gwState) interval(now time.Time) time.Duration {
	iv := gs.m.ProbeInterval(now)
	if iv <= 0 || !(gs.m.Checking() || gs.m.State() == Suspect) {
		return iv
	}
	p := gs.g.Probe
	_, t := gs.timeouts(roundProbes(&p, gs.g.Address))
	return min(iv, checkSpacing(t, gs.m.prof.FastInterval))
}

// uncalibrated says gs came up (from a confirmed neighbour, at start)
// without a probe answering, so nothing is known of its targets' RTTs
// yet: it is due one calibration round. A gated gateway that works may
// otherwise go unprobed until its first check, which would then run
// with the profile's full timeout.
func (gs *gwState) uncalibrated(now time.Time) bool {
	return !gs.calibrated && len(gs.rtts) == 0 && gs.m.State() == Up && gs.m.linkTrusted(now) &&
		gs.m.prof.Gating != policy.GatingNever && gs.m.prof.TimeoutFloor < gs.m.prof.Timeout
}

// qualityPick is the one probe of a quality sample: the remote targets in
// turn (they see the upstream as well as the gateway), else the first
// probe. One probe per quality_interval keeps sampling at its rate
// whatever the number of targets; a lost one starts a check, which
// probes them all.
func (gs *gwState) qualityPick(probes []probeSpec) []probeSpec {
	var remote []probeSpec
	for _, ps := range probes {
		if ps.role == roleRemote {
			remote = append(remote, ps)
		}
	}
	if len(remote) == 0 {
		return probes[:1]
	}
	ps := remote[gs.qualityNext%len(remote)]
	gs.qualityNext++
	return []probeSpec{ps}
}

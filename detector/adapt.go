package detector

import "time"

// The adaptive parts of the judgement: how long a silence must last and
// how long a probe may take are learned from what the gateway did
// before, the way TCP learns its retransmission timeout (RFC 6298), and
// bounded by the profile's fixed settings.

// estimator is RFC 6298's smoothed mean and mean deviation of a delay.
type estimator struct {
	n      int
	srtt   time.Duration
	rttvar time.Duration
}

// add feeds one sample (RFC 6298 §2: alpha 1/8, beta 1/4).
func (e *estimator) add(s time.Duration) {
	if s < 0 {
		return
	}
	if e.n == 0 {
		e.srtt, e.rttvar = s, s/2
	} else {
		d := e.srtt - s
		if d < 0 {
			d = -d
		}
		e.rttvar = (3*e.rttvar + d) / 4
		e.srtt = (7*e.srtt + s) / 8
	}
	e.n++
}

// bound is k × (srtt + 4·rttvar) clamped to [floor, ceil]; ceil until
// minSamples samples are in.
func (e *estimator) bound(k float64, minSamples int, floor, ceil time.Duration) time.Duration {
	if e.n < max(minSamples, 1) {
		return ceil
	}
	v := time.Duration(k * float64(e.srtt+4*e.rttvar))
	return min(max(v, floor), ceil)
}

// Gap samples are the longest silence (tx without rx, as the poller
// measures it) that rx ended, over one report (rxReportEvery): the
// silences a working flow shows, in the very unit a silence is judged
// in. A dense flow shows none (every poll sees rx), so its threshold is
// the floor; a bursty one shows its bursts' gaps. gapMinSamples of them
// must be in before the threshold leaves tx_without_rx: one report says
// nothing about a flow's rhythm.
const (
	gapK          = 1
	gapMinSamples = 4
)

// Probe timeouts: 2 × TCP's RTO formula per target. At LAN RTTs the
// profile's timeout_floor decides; the factor matters on long paths,
// where a delay spike of a few rttvar must not count as a loss, and
// after a first answer slowed by a cold path (5 ms instead of 0.2 ms in
// the lab: 2 × 15 ms, not the floor).
const (
	rttK          = 2
	rttMinSamples = 1
)

// holdoffNext is the hold-off after another answered check: the base,
// then doubling up to ceil.
func holdoffNext(cur, base, ceil time.Duration) time.Duration {
	if cur < base {
		return base
	}
	return min(max(2*cur, base), max(ceil, base))
}

// checkSpacing is the gap between the probes of a check: half the
// timeout they run with, so that down_count losses are in after
// (down_count − 1) × timeout/2 + timeout, never more than fast_interval.
func checkSpacing(timeout, fast time.Duration) time.Duration {
	s := timeout / 2
	if fast > 0 && s > fast {
		s = fast
	}
	return max(s, time.Millisecond)
}

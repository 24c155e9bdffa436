package daemon

import (
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// startHold keeps the routes a restart adopted until every gateway has its
// first verdict. Until the detector judges it, an unknown gateway counts
// as up for routing, which is right on a first start (install at once)
// but wrong over a kernel a previous instance left: with last_resort =
// "keep" and every gateway dead, the kept route is indistinguishable from
// the all-up one, so nothing is adopted as down; then the first gateway
// judged down moves the route onto the others, still unknown, and the next
// verdict moves it back. One write per verdict for a route that, once all
// are judged, is exactly what was left. Holding until all are judged makes
// that restart write nothing, and one where some gateway did die while
// uplinkd was gone write once, with every verdict in.
//
// The hold is bounded (holdFor), so a gateway the detector cannot judge
// (no carrier, passive only) does not keep the others' routes stale.
type startHold struct {
	unjudged map[string]bool
	until    time.Time
}

// newStartHold holds the routes of p's gateways not adopted down, when the
// start adopted an owned kernel state; otherwise it holds nothing.
func newStartHold(p *policy.Policy, adopted bool, startDown map[string]string, now time.Time) startHold {
	if !adopted {
		return startHold{}
	}
	h := startHold{unjudged: map[string]bool{}, until: now.Add(holdFor(p))}
	for _, g := range p.Gateways {
		if _, down := startDown[g.Name]; !down {
			h.unjudged[g.Name] = true
		}
	}
	return h
}

// holding reports whether route changes wait.
func (h *startHold) holding(now time.Time) bool {
	return len(h.unjudged) > 0 && now.Before(h.until)
}

// judged notes a gateway's verdict.
func (h *startHold) judged(name string) { delete(h.unjudged, name) }

// remaining is how long the hold can still last; 0 when it is over.
func (h *startHold) remaining(now time.Time) time.Duration {
	if !h.holding(now) {
		return 0
	}
	return h.until.Sub(now)
}

// release ends the hold.
func (h *startHold) release() { h.unjudged = nil }

// holdFor is twice the slowest gateway's start-up judgement (down_count
// lost probes at fast_interval, each waited for its timeout), at least a
// second.
func holdFor(p *policy.Policy) time.Duration {
	longest := time.Second / 2
	for _, g := range p.Gateways {
		prof := policy.DefaultProfile()
		if g.Profile != nil {
			prof = *g.Profile
		}
		if d := time.Duration(prof.DownCount) * (prof.FastInterval + prof.Timeout); d > longest {
			longest = d
		}
	}
	return 2 * longest
}

package detector

import (
	"context"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// BFDAdvice is what a gateway's BFD session says.
type BFDAdvice int

const (
	// BFDNone is no verdict: the session is not up yet, it was removed,
	// or the peer disabled it (AdminDown is not a path failure, RFC 5882
	// §3.2).
	BFDNone BFDAdvice = iota
	// BFDUp: the session is up, positive advice.
	BFDUp
	// BFDDown: the session left Up (detection time expired, the peer
	// signalled down): negative advice.
	BFDDown
)

func (a BFDAdvice) String() string {
	switch a {
	case BFDUp:
		return "up"
	case BFDDown:
		return "down"
	}
	return "none"
}

// BFDChange is one session change about one gateway.
type BFDChange struct {
	Gateway string
	Advice  BFDAdvice
	Reason  string // for the gateway's reason: "bfd session down (control-detection-time-expired)"
}

// BFD is the BFD evidence source; the daemon adapts package bfd's Server
// to it. Updates signals (coalesced) that Changes has news; Verify asks a
// gateway's session for proof of life now: in demand mode, a poll.
type BFD interface {
	Updates() <-chan struct{}
	Changes() []BFDChange
	Verify(gateway string)
}

// SourceBFD labels BFD advice in uplinkd_evidence_events_total.
const SourceBFD = "bfd"

// onBFD feeds the sessions' changes to their gateways' machines.
func (d *Detector) onBFD(ctx context.Context, now time.Time) {
	for _, c := range d.bfd.Changes() {
		gs := d.gws[c.Gateway]
		if gs == nil || gs.g.BFD == nil {
			continue
		}
		if c.Advice != BFDNone {
			d.met.evidenceEvent(gs.g.Name, SourceBFD, c.Advice == BFDUp)
		}
		d.observe(ctx, gs, Event{Kind: EvBFD, Iface: gs.g.Interface, BFD: c.Advice, Detail: c.Reason}, now)
	}
}

// verifyBFD is the demand-mode hint: traffic to the gateway went
// unanswered, so its session polls the peer (once per silence).
func (d *Detector) verifyBFD(gs *gwState) {
	if d.bfd == nil || gs.g.BFD == nil || !gs.g.BFD.Demand || gs.bfdVerified {
		return
	}
	gs.bfdVerified = true
	d.bfd.Verify(gs.g.Name)
}

// onBFD is the machine's side: Up is positive advice (a gateway starting,
// or one a BFD Down took down, comes up on it; it never overrides the
// probes' own verdicts), Down is negative advice that makes the gateway
// down at once, or with bfd.down = "check" starts a probe check.
func (m *Machine) onBFD(ev Event, now time.Time) (Transition, bool) {
	switch ev.BFD {
	case BFDUp:
		m.bfdUp = true
		if !m.linkTrusted(now) || !m.carrier {
			return Transition{}, false
		}
		switch {
		case m.state == Unknown:
			return m.move(Up, CauseBFD, stateOr(ev.Detail, "bfd session up"), now)
		case m.state == Down && m.cause == CauseBFD && !m.damped:
			return m.move(Up, CauseBFD, stateOr(ev.Detail, "bfd session up"), now)
		}
	case BFDDown:
		m.bfdUp = false
		if m.state == Down || !m.carrier {
			return Transition{}, false
		}
		if m.bfdDown == policy.BFDDownCheck {
			if !m.checking && m.prof.Gating != policy.GatingNever {
				m.checking, m.checkFor, m.bad = true, 0, 0
			}
			return Transition{}, false
		}
		m.good = 0
		return m.move(Down, CauseBFD, stateOr(ev.Detail, "bfd session down"), now)
	default:
		m.bfdUp = false
	}
	return Transition{}, false
}

// SetBFD takes the gateway's bfd section on a policy reload; without one
// the session's last advice is forgotten.
func (m *Machine) SetBFD(b *policy.BFD) {
	m.bfdDown = ""
	if b == nil {
		m.bfdUp = false
		return
	}
	m.bfdDown = b.Down
}

// BFDUp reports whether the gateway's BFD session is up.
func (m *Machine) BFDUp() bool { return m.bfdUp }

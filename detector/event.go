package detector

import (
	"fmt"
	"time"
)

// EventKind says which evidence an Event carries.
type EventKind int

const (
	// EvTick is the passing of time: damping decays, link hold ends.
	EvTick EventKind = iota
	// EvCarrier reports the interface's carrier (OK) or its loss; an
	// interface that is down or absent has no carrier.
	EvCarrier
	// EvNeigh is neighbour-table advice about the gateway's address.
	EvNeigh
	// EvTxWithoutRx says packets have left the uplink for For with nothing
	// received: the first sign of a silent death.
	EvTxWithoutRx
	// EvRx says packets are arriving on the uplink: weak positive evidence.
	EvRx
	// EvProbe is the result of one probe round (all of a gateway's targets).
	EvProbe
	// EvBFD is a change of the gateway's BFD session (see BFDAdvice).
	EvBFD
)

var kindNames = [...]string{"tick", "carrier", "neigh", "tx-without-rx", "rx", "probe", "bfd"}

func (k EventKind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// NeighAdvice is what a neighbour update says about a gateway.
type NeighAdvice int

const (
	NeighNone       NeighAdvice = iota // nothing about liveness (STALE, DELAY, PROBE, deleted)
	NeighConfirmed                     // REACHABLE with a fresh confirmation: positive advice
	NeighFailed                        // FAILED: negative advice
	NeighIncomplete                    // resolution started: a hint that starts a check
)

var adviceNames = [...]string{"none", "confirmed", "failed", "incomplete"}

func (a NeighAdvice) String() string {
	if a >= 0 && int(a) < len(adviceNames) {
		return adviceNames[a]
	}
	return fmt.Sprintf("advice(%d)", int(a))
}

// Event is one piece of evidence about one gateway.
type Event struct {
	Kind   EventKind
	Iface  string        // interface the evidence came from
	OK     bool          // EvCarrier: carrier present; EvProbe: the round succeeded
	Advice NeighAdvice   // EvNeigh
	State  string        // EvNeigh: the kernel's NUD state name, for reasons
	Age    time.Duration // EvNeigh: age of the confirmation
	RTT    time.Duration // EvProbe: round-trip time of a good round
	For    time.Duration // EvTxWithoutRx: how long tx has run without rx
	Gap    time.Duration // EvRx: the longest silence that rx ended since the last report (0: none)
	Busy   bool          // EvRx: packets left through the gateway recently (EvTxWithoutRx always is)
	Detail string        // EvProbe: which targets failed; EvBFD: the reason
	BFD    BFDAdvice     // EvBFD
}

// adviceOf says what a neighbour entry tells about liveness.
// REACHABLE is a confirmation (by ARP/ND reply or by upper-layer progress
// such as TCP ACKs); FAILED is negative; INCOMPLETE is only the start of a
// resolution, so it is a hint that starts a check, not a verdict.
func adviceOf(ni Neighbour) NeighAdvice {
	if ni.Deleted {
		return NeighNone
	}
	switch ni.State {
	case NUDReachable:
		return NeighConfirmed
	case NUDFailed:
		return NeighFailed
	case NUDIncomplete:
		return NeighIncomplete
	}
	return NeighNone
}

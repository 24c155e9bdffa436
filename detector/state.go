package detector

import (
	"fmt"
	"time"
)

// State is the health of one gateway.
type State int

// States, in the order of the uplinkd_gateway_state metric.
const (
	Unknown State = iota
	Up
	Suspect
	Degraded
	Down
)

var stateNames = [...]string{"unknown", "up", "suspect", "degraded", "down"}

// String returns the lowercase name used in logs, metrics and status.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// MarshalText makes states readable in JSON status output.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ParseState is the inverse of String.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return Unknown, fmt.Errorf("state %q is not one of unknown, up, suspect, degraded, down", name)
}

// UnmarshalText reads a state as MarshalText writes it (a status file, a
// track file, a test's golden output).
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Causes of transitions: a bounded set, used as a metric label.
const (
	CauseStart    = "start"
	CauseCarrier  = "carrier"
	CauseLinkHold = "link-hold"
	CauseNeigh    = "neigh"
	CauseProbe    = "probe"
	CauseTraffic  = "traffic"
	CauseLatency  = "latency"
	CauseLoss     = "loss"
	CauseDamping  = "damping"
	CauseConfig   = "config"
	CauseBFD      = "bfd"
)

// Transition is a change of a gateway's state.
type Transition struct {
	Gateway  string
	From, To State
	Cause    string    // one of the Cause* constants
	Reason   string    // human text with numbers: "3 probes lost after tx without rx for 120ms"
	At       time.Time // wall clock, for display only; all timing uses the monotonic clock
}

// GatewayStatus is a snapshot of one gateway for status output. Ages are
// measured at the time of the snapshot; -1 means "never".
type GatewayStatus struct {
	Name      string
	Interface string
	State     State
	Since     time.Time // wall clock of the last transition
	Reason    string
	Carrier   bool
	Standby   bool

	RTTLast time.Duration
	RTTAvg  time.Duration // over the profile's window
	Loss    float64       // ratio of lost probes over the profile's window
	Samples int           // probe results in the window

	LastConfirmedAge time.Duration // last neighbour confirmation
	LastRxAge        time.Duration // last packet received from the gateway (on its interface, with interface counters)
	LastTxAge        time.Duration // last packet sent to the gateway (on its interface, with interface counters)
	LastGoodProbeAge time.Duration

	ProbesPerSecond float64 // over the last minute
	FlapPenalty     float64
	Damped          bool

	// TrafficCounting says whose packets the traffic evidence counts:
	// TrafficPerGateway (the gateway's own, by its MAC) or
	// TrafficPerInterface (the interface's, shared by its gateways: the
	// fallback where the kernel cannot count per neighbour).
	TrafficCounting string
}

// TrafficCounting values.
const (
	TrafficPerGateway   = "neighbour"
	TrafficPerInterface = "interface"
)

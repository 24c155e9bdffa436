package routing

import (
	"fmt"
	"net/netip"
)

// Health is a gateway's health as far as routing is concerned. The zero
// value is Up, so a gateway missing from a Snapshot (state unknown, e.g.
// just after a restart) keeps its routes: withdrawing them on a guess would
// turn a daemon restart into an outage.
type Health int

const (
	Up Health = iota
	Degraded
	Down
)

func (h Health) String() string {
	switch h {
	case Up:
		return "up"
	case Degraded:
		return "degraded"
	case Down:
		return "down"
	}
	return fmt.Sprintf("health(%d)", int(h))
}

// Healthy reports whether traffic may be sent through a gateway in this
// state. Degraded still forwards, only worse.
func (h Health) Healthy() bool { return h == Up || h == Degraded }

// Snapshot maps gateway names to their health. Missing names are Up.
// Conditions are in it too, under ConditionKey: Up while the condition is
// up, and, unlike gateways, down when missing (a condition is down until
// its terms first hold).
type Snapshot map[string]Health

// ConditionKey is a condition's key in a Snapshot. Names never hold a '/',
// so it cannot be a gateway's.
func ConditionKey(name string) string { return conditionPrefix + name }

const conditionPrefix = "condition/"

// ConditionUp reports whether the snapshot has the condition up.
func ConditionUp(h Snapshot, name string) bool {
	v, ok := h[ConditionKey(name)]
	return ok && v == Up
}

// RouteType is the kernel route type (rtm_type) uplinkd uses.
type RouteType uint8

const (
	Unicast     RouteType = 1 // RTN_UNICAST
	Blackhole   RouteType = 6 // RTN_BLACKHOLE
	Unreachable RouteType = 7 // RTN_UNREACHABLE
)

func (t RouteType) String() string {
	switch t {
	case Unicast:
		return "unicast"
	case Blackhole:
		return "blackhole"
	case Unreachable:
		return "unreachable"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Nexthop is one path of a route.
type Nexthop struct {
	Gateway netip.Addr // zero for a device route
	Dev     string
	Weight  int // 1..256; only meaningful in a multipath route
}

// Route is one kernel route. Its identity, the key the kernel replaces on,
// is (Family, Table, Dst, Metric, Tos); see Key.
type Route struct {
	Family   int // 4 or 6
	Table    uint32
	Dst      netip.Prefix
	Metric   uint32
	Tos      uint8
	Type     RouteType
	Protocol uint8
	Src      netip.Addr // preferred source; zero when unset
	Nexthops []Nexthop  // none for blackhole/unreachable; one plain; more multipath
	// NHID, when set, is the nexthop object (a group) the route goes
	// through in the kernel; Nexthops then are that group's members, for
	// people and status, and the group object carries them.
	NHID uint32

	// Resilience is the policy's resilient-group settings for a group's
	// default; informational like Owner, never compared.
	Resilience *Resilience

	// Owner names the policy object the route comes from ("group/wan",
	// "gateway/dir1", "announce/svc"). Informational only: it is not part
	// of the kernel state and is ignored when comparing.
	Owner string
}

// RouteKey is what the kernel identifies a route by.
type RouteKey struct {
	Family int
	Table  uint32
	Dst    netip.Prefix
	Metric uint32
	Tos    uint8
}

// Key returns the route's kernel identity.
func (r Route) Key() RouteKey {
	return RouteKey{Family: r.Family, Table: r.Table, Dst: r.Dst.Masked(), Metric: r.Metric, Tos: r.Tos}
}

// Rule is one ip rule. Selectors left zero are absent; Mask == 0 means no
// fwmark selector (a zero mask would match every packet).
type Rule struct {
	Family   int // 4 or 6
	Priority uint32
	From     netip.Prefix
	To       netip.Prefix
	Mark     uint32
	Mask     uint32
	IIF      string
	Table    uint32
	Protocol uint8

	Owner string // policy object ("rule/marked", "gateway/dir1/198.18.1.2"); ignored when comparing
}

// State is a set of routes and rules: wanted, installed or planned.
type State struct {
	Routes []Route
	Rules  []Rule
}

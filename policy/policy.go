package policy

import (
	"net/netip"
	"time"
)

// Policy is a validated policy with every default filled in. Slices are
// sorted by name so that everything derived from a Policy is deterministic.
type Policy struct {
	File      string
	Daemon    Daemon
	Kernel    Kernel
	Profiles  map[string]*Profile
	Gateways  []*Gateway
	Groups    []*Group
	Rules     []*Rule // explicit rules and the ones generated from gateway sources, by priority
	Announces []*Announce
	Hooks     []*Hook
	// Conditions, by name; ConditionOrder gives them dependencies first.
	Conditions []*Condition

	byName map[string]*Gateway
}

// Daemon holds process-wide settings.
type Daemon struct {
	Listen        string        // metrics/status HTTP listener; loopback by default
	RouteProtocol uint8         // marks every route and rule uplinkd owns
	RulePriority  PriorityBand  // ip rule priorities uplinkd owns
	LogFormat     string        // "text" or "json"
	LogLevel      string        // "debug", "info", "warn", "error"
	OnExit        string        // OnExitLeave or OnExitWithdraw
	ControlSocket string        // root-only unix socket for `uplinkd reload`/status; "" disables
	TrackDir      string        // if set, one file per gateway/group with its state, for keepalived track_file
	ResyncEvery   time.Duration // periodic full resync of owned kernel state
	HTTPHosts     []string      // Host header names the listener answers besides its address (lower case)
	WebConfigFile string        // exporter-toolkit web configuration (TLS, basic auth); "" for plain HTTP
	Multipath     Multipath     // how group defaults are installed; restart to change
}

const (
	OnExitLeave    = "leave"
	OnExitWithdraw = "withdraw"
)

// Kernel is opt-in tuning. Nil pointers mean "leave the kernel's setting
// alone": uplinkd never changes a sysctl silently.
type Kernel struct {
	IgnoreRoutesWithLinkdown *bool // net.ipv{4,6}.conf.IFACE.ignore_routes_with_linkdown on managed interfaces
	FibMultipathHashPolicy   *int  // net.ipv4.fib_multipath_hash_policy and net.ipv6.fib_multipath_hash_policy (0 l3, 1 l4, 2 l3-inner)
	FibMultipathUseNeigh     *bool // net.ipv4.fib_multipath_use_neigh
}

// Gating decides when a gateway is actively probed.
type Gating string

// Gating modes.
const (
	GatingGated  Gating = "gated"  // only while traffic is sent and positive evidence is stale (RFC 1122 §3.3.1.4)
	GatingAlways Gating = "always" // every interval, as dpinger and mwan3 do
	GatingNever  Gating = "never"  // passive evidence only
)

// Profile is a set of detection settings. Gateways name one and may
// override any field.
type Profile struct {
	Name string

	Gating           Gating        // gated, always, never
	Interval         time.Duration // probe interval in "always" mode
	FastInterval     time.Duration // probe interval while a gateway is suspect
	Timeout          time.Duration // a probe with no reply after this is lost
	DownCount        int           // consecutive lost probes that make a gateway down
	UpCount          int           // consecutive good probes that make a down gateway up
	TxWithoutRx      time.Duration // traffic sent with nothing received for this long makes a gateway suspect
	ProbeHoldoff     time.Duration // after a probe is answered, tx-without-rx alone does not trigger another probe for this long
	ProbeHoldoffMax  time.Duration // the hold-off doubles while checks keep being answered, up to this
	SilenceFloor     time.Duration // the adaptive silence threshold never goes below this; TxWithoutRx is its ceiling
	TimeoutFloor     time.Duration // the adaptive probe timeout never goes below this; Timeout is its ceiling
	QualityInterval  time.Duration // sparse quality probes while a gated gateway carries traffic; 0 disables
	StandbyInterval  time.Duration // slow check of idle standby/backup gateways; 0 disables
	RecoveryInterval time.Duration // probe interval for down gateways
	LinkHold         time.Duration // carrier must stay up this long before the link is trusted again
	TrustNeighFailed bool          // a FAILED neighbour entry makes the gateway down without waiting for probes

	// Degradation over a sliding window of probe results.
	Window           time.Duration
	MinSamples       int           // probe results needed in the window before degradation is judged
	LatencyThreshold time.Duration // average RTT above this degrades; 0 disables
	LossThreshold    float64       // loss ratio above this degrades; 0 disables

	// Flap damping, as BGP route flap damping (RFC 2439).
	Damping       bool
	FlapPenalty   float64
	SuppressAbove float64
	ReuseBelow    float64
	HalfLife      time.Duration
	MaxSuppress   time.Duration
}

// Probe targets of a gateway.
type Probe struct {
	Gateway bool         // ICMP echo to the gateway address itself
	Neigh   bool         // kernel ARP/ND probe of the gateway's neighbour entry
	ICMP    []netip.Addr // remote targets reached through this gateway only
	TCP     []netip.AddrPort
	HTTP    []HTTPCheck // GET probes that must answer an expected status
	DNS     []DNSCheck  // queries that must get an expected answer
	MinUp   int         // N of M remote targets that must answer
	Pin     Pin         // device, source or mark
	Mark    uint32      // fwmark for pin = "mark"
}

// Pin is how a probe is kept on its gateway's path.
type Pin string

// Remotes is the number of remote targets (every kind but the gateway and
// its neighbour entry), the M of min_up.
func (p Probe) Remotes() int {
	return len(p.ICMP) + len(p.TCP) + len(p.HTTP) + len(p.DNS)
}

// Probe pinning modes.
const (
	PinDevice Pin = "device" // SO_BINDTODEVICE plus the gateway's source address
	PinSource Pin = "source" // source address only; needs a per-source rule to be exact
	PinMark   Pin = "mark"   // SO_MARK with its own rule and table, installed by uplinkd
)

// Gateway is a first-hop router.
type Gateway struct {
	Name    string
	Address netip.Addr // invalid while an auto gateway has learned none, or is the link itself
	// Auto: address = "auto", learned from the interface's default route
	// (internal/daemon, learn.go). AutoFamily is its family (key family).
	Auto       bool
	AutoFamily int
	// Link is set on an auto gateway whose interface's default has no
	// nexthop (point-to-point, pppd's "default dev ppp0"): the gateway is
	// the link itself and its routes are device routes.
	Link bool
	// Learned says where an auto gateway's address came from, for status.
	Learned   string
	Interface string
	Optional  bool // the interface may be absent; the gateway is down until it appears
	// VRF is the VRF device the interface is enslaved to ("" for the
	// default VRF). Its groups route in the VRF's table, which the kernel
	// knows and the daemon reads (Group.Table); VRFProblem is the daemon's
	// reason the gateway cannot route there now ("vrf blue absent"), ""
	// when its interface is in the VRF or it has none.
	VRF        string
	VRFProblem string
	// VRFWarning is the daemon's word on a VRF that routes wrongly though
	// the gateway is fine: no l3mdev rule of its family, so the VRF's
	// traffic never reaches its table. "" otherwise.
	VRFWarning string
	Weight     int
	Tier       int

	DegradedWeight int // weight while degraded
	DegradedTier   int // tier while degraded

	Sources []netip.Addr // local addresses whose traffic uses this gateway's table
	Table   uint32       // own table, 0 when none
	OnDown  OnDown       // what the own table does when the gateway is down: TableKeep or TableFailover
	Metric  uint32       // metric of the default route in its own table

	Probe   Probe
	Profile *Profile // resolved: named profile with the gateway's overrides applied

	Conntrack Conntrack
	BFD       *BFD // nil unless [gateway.NAME.bfd] enabled = true
}

// Family is the gateway's address family, 4 or 6: its address's, or for
// an auto gateway the family key's.
func (g *Gateway) Family() int {
	if g.Auto {
		return g.AutoFamily
	}
	return FamilyOf(g.Address)
}

// hasFamily says whether the family is known (a bad address leaves it
// unknown, its own error reported).
func (g *Gateway) hasFamily() bool { return g.Auto || g.Address.IsValid() }

// Unresolved says an auto gateway has nothing to route through yet: no
// address learned and not the link itself. Routing leaves it out; the
// daemon holds it down.
func (g *Gateway) Unresolved() bool { return g.Auto && !g.Address.IsValid() && !g.Link }

// Unresolved says a group in a VRF does not know the VRF's table yet
// (the VRF device is absent): it has no route to write.
func (g *Group) Unresolved() bool { return g.VRF != "" && g.Table == 0 }

// Conntrack says when and which conntrack entries of a gateway uplinkd
// deletes. An entry is the gateway's when its reply direction targets the
// uplink: its destination is one of SNAT (explicit `snat to` addresses),
// or its mark matches Mark/Mask, or, with neither set, its destination is
// an address of the gateway's interface at the time of the flush (what
// masquerade picks).
type Conntrack struct {
	Flush FlushConntrack
	SNAT  []netip.Addr
	Mark  uint32
	Mask  uint32 // 0: no mark selector
}

// Match names the selector: "snat", "mark" or "interface".
func (c Conntrack) Match() string {
	switch {
	case len(c.SNAT) > 0:
		return "snat"
	case c.Mask != 0:
		return "mark"
	}
	return "interface"
}

// Is6 reports whether the gateway is an IPv6 gateway.
func (g *Gateway) Is6() bool { return g.Address.Is6() }

// OnDown is what a gateway's own table does while the gateway is down.
type OnDown string

// OnDown modes.
const (
	TableKeep     OnDown = "keep"     // keep the gateway's route: its sources keep their path
	TableFailover OnDown = "failover" // route the table through the healthy gateways of its family
)

// LastResort is what a group's default route becomes with no healthy
// gateway.
type LastResort string

// Last resort modes.
const (
	LastResortKeep        LastResort = "keep"        // keep every gateway in the route (the kernel's own neighbour logic decides)
	LastResortUnreachable LastResort = "unreachable" // replace with an unreachable default: fail fast with ICMP errors
	LastResortBlackhole   LastResort = "blackhole"   // replace with a blackhole default: drop silently
	LastResortRemove      LastResort = "remove"      // remove the default, so lower-priority tables/rules take over
)

// Group is a default route spread over its gateways.
type Group struct {
	Name     string
	Gateways []string // names, in the order written
	// Table is the table of the group's default; for a group in a VRF
	// (VRF set, from its gateways) the VRF's table, 0 until the daemon
	// has read it from the kernel (Unresolved).
	Table      uint32
	VRF        string
	Family     int // 4 or 6
	Metric     uint32
	LastResort LastResort

	// Resilient nexthop group settings (Linux 5.13+), used where the
	// kernel has them.
	Buckets         int           // hash buckets the flows map to
	IdleTimer       time.Duration // a bucket idle this long may move to a returning gateway
	UnbalancedTimer time.Duration // after this long unbalanced, busy buckets move too; 0: never
	Condition       string        // if set, the group routes only while this condition is up
}

// Defaults of the resilient group settings. 128 buckets keep each
// gateway's share within 1/128 of its weight; 120 s is nf_conntrack's UDP
// stream timeout, after which an idle UDP flow has lost its NAT mapping
// anyway; 0 never breaks a busy flow to rebalance.
const (
	DefaultBuckets         = 128
	DefaultIdleTimer       = 120 * time.Second
	DefaultUnbalancedTimer = 0
	MaxGroupTimer          = 24 * time.Hour
)

// Rule is one ip rule owned by uplinkd. Selectors left zero are absent.
type Rule struct {
	Name     string // "NAME" for [rule.NAME], "gateway/NAME/SRC" for generated source rules
	Family   int    // 4 or 6
	Priority uint32
	From     netip.Prefix
	To       netip.Prefix
	Mark     *Mark
	IIF      string
	Table    uint32
	Gateway  string // set when the rule looks up a gateway's own table
}

// Announce route types.
const (
	AnnounceUnicast     = "unicast"
	AnnounceBlackhole   = "blackhole"
	AnnounceUnreachable = "unreachable"
)

// Announce is a route present only while Track (a gateway, a group or a
// condition) is healthy, for a routing daemon to redistribute.
type Announce struct {
	Name   string
	Prefix netip.Prefix
	Track  string
	Table  uint32
	Type   string
	Via    netip.Addr // unicast: explicit nexthop; zero means "through the tracked gateway(s)"
	Dev    string
	Metric uint32
}

// Hook events.
const (
	EventGatewayUp       = "gateway_up"
	EventGatewayDown     = "gateway_down"
	EventGatewayDegraded = "gateway_degraded"
	EventGroupUp         = "group_up"
	EventGroupDown       = "group_down"
	EventRouteChanged    = "route_changed"
	EventConditionUp     = "condition_up"
	EventConditionDown   = "condition_down"
)

// Events lists every hook event, for validation and docs.
var Events = []string{EventGatewayUp, EventGatewayDown, EventGatewayDegraded, EventGroupUp, EventGroupDown, EventRouteChanged,
	EventConditionUp, EventConditionDown}

// Hook is an external command run on events, as argv with no shell.
type Hook struct {
	Name    string
	Command []string
	Timeout time.Duration
	Events  []string
	Objects []string // gateway/group/condition names it fires for; empty means all
}

// Gateway returns the named gateway or nil.
func (p *Policy) Gateway(name string) *Gateway {
	if p.byName != nil {
		return p.byName[name]
	}
	for _, g := range p.Gateways {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Derive returns a copy of p with other gateways and groups: the policy
// as it runs once auto gateways have learned their address, or without
// the ones that have not. p is not changed.
func (p *Policy) Derive(gws []*Gateway, groups []*Group) *Policy {
	q := *p
	q.Gateways, q.Groups = gws, groups
	q.byName = make(map[string]*Gateway, len(gws))
	for _, g := range gws {
		q.byName[g.Name] = g
	}
	return &q
}

// Group returns the named group or nil.
func (p *Policy) Group(name string) *Group {
	for _, g := range p.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Interfaces returns the names of the interfaces the policy manages,
// sorted and unique.
func (p *Policy) Interfaces() []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range p.Gateways {
		if g.Interface != "" && !seen[g.Interface] {
			seen[g.Interface] = true
			out = append(out, g.Interface)
		}
	}
	sortStrings(out)
	return out
}

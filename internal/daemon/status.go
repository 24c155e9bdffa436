package daemon

import (
	"maps"
	"slices"
	"time"

	"github.com/uplinkd/uplinkd/bfd"
	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// Status is what /status serves and `uplinkd status` prints. Durations are
// seconds; ages of evidence that never happened are -1.
type Status struct {
	Version         string          `json:"version"`
	Policy          string          `json:"policy"`
	Now             time.Time       `json:"now"`
	Started         time.Time       `json:"started"`
	LastReload      time.Time       `json:"last_reload"`
	LastReloadOK    bool            `json:"last_reload_ok"`
	LastReloadError string          `json:"last_reload_error,omitempty"`
	RouteProtocol   uint8           `json:"route_protocol"`
	Gateways        []GatewayStatus `json:"gateways"`
	Groups          []GroupStatus   `json:"groups"`
	Routes          []string        `json:"routes"` // every route uplinkd holds, `ip route` style
	Rules           []string        `json:"rules"`  // every rule uplinkd holds, `ip rule` style
	// Conflicts are wanted routes whose key a route or nexthop of another
	// program holds: uplinkd writes none of them (see routing.OpConflict)
	// and /healthz reports degraded while there are any.
	Conflicts []string `json:"conflicts,omitempty"`
	// Multipath is the form group defaults are installed in: resilient
	// (resilient nexthop groups), mpath (nexthop groups) or classic
	// (RTA_MULTIPATH routes), the last two a fallback.
	Multipath string `json:"multipath"`
	// MultipathReason says why: what the kernel lacks, or how
	// multipath = "auto" decided (whether the host forwards).
	MultipathReason string `json:"multipath_reason,omitempty"`
	// TrafficBackend is how traffic is counted per gateway: tcx
	// (uplinkd's eBPF programs) or nftables (its table; the fallback
	// where eBPF cannot be loaded, TrafficBackendReason says why).
	TrafficBackend       string `json:"traffic_backend,omitempty"`
	TrafficBackendReason string `json:"traffic_backend_reason,omitempty"`
	// Conditions are every [condition.NAME], by name.
	Conditions []ConditionStatus `json:"conditions"`
}

// GatewayStatus is one gateway in Status.
type GatewayStatus struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	Address   string `json:"address"`
	// Auto gateways (address = "auto"): AddressSource is the route the
	// address was learned from; empty while nothing is learned.
	Auto          bool   `json:"auto,omitempty"`
	AddressSource string `json:"address_source,omitempty"`
	VRF           string `json:"vrf,omitempty"` // the VRF device its interface is in ("" for the default VRF)
	// VRFWarning: the gateway is fine but its VRF routes by the wrong
	// table (no l3mdev rule of its family).
	VRFWarning string    `json:"vrf_warning,omitempty"`
	Groups     []string  `json:"groups,omitempty"`
	State      string    `json:"state"`  // detector state: unknown, up, suspect, degraded, down
	Health     string    `json:"health"` // what routing does with it: up, degraded, down
	Up         bool      `json:"up"`     // carries traffic by health (up or degraded)
	Since      time.Time `json:"since"`
	Reason     string    `json:"reason"`
	Carrier    bool      `json:"carrier"`
	Standby    bool      `json:"standby"`

	RTTLast float64 `json:"rtt_last_seconds"`
	RTTAvg  float64 `json:"rtt_avg_seconds"`
	Loss    float64 `json:"loss_ratio"`
	Samples int     `json:"samples"`

	LastConfirmedAge float64 `json:"last_confirmed_age_seconds"`
	LastRxAge        float64 `json:"last_rx_age_seconds"`
	LastTxAge        float64 `json:"last_tx_age_seconds"`
	LastGoodProbeAge float64 `json:"last_good_probe_age_seconds"`

	ProbesPerSecond float64  `json:"probes_per_second"`
	FlapPenalty     float64  `json:"flap_penalty"`
	Damped          bool     `json:"damped"`
	Routes          []string `json:"routes"` // installed routes with a nexthop through this gateway
	// TrafficCounting is whose packets the traffic evidence counts:
	// "neighbour" (the gateway's own) or "interface" (the fallback).
	TrafficCounting string `json:"traffic_counting,omitempty"`

	// BFD is the gateway's BFD session: state, discriminators, negotiated
	// intervals, diags, counters; absent without a bfd section.
	BFD *bfd.Status `json:"bfd,omitempty"`
}

// GroupStatus is one group in Status.
type GroupStatus struct {
	Name     string   `json:"name"`
	Family   int      `json:"family"`
	Table    uint32   `json:"table"`         // a VRF's group: the VRF's table, 0 while the VRF is absent
	VRF      string   `json:"vrf,omitempty"` // the VRF its gateways are in
	Up       bool     `json:"up"`
	Healthy  int      `json:"healthy"`
	Gateways []string `json:"gateways"`
}

// ConditionStatus is one condition in Status.
type ConditionStatus struct {
	Name  string    `json:"name"`
	Up    bool      `json:"up"`
	Since time.Time `json:"since"` // last change; zero if it never came up
	// Pending is set while the terms disagree with Up and a hold time
	// runs out at Until.
	Pending bool            `json:"pending"`
	Until   time.Time       `json:"until,omitzero"`
	Terms   []ConditionTerm `json:"terms"`
}

// ConditionTerm is one term of a condition and whether it holds now.
type ConditionTerm struct {
	Term  string `json:"term"`
	Holds bool   `json:"holds"`
}

// Check reports whether the gateway, group or condition name is up (degraded counts as
// up), and whether the name exists at all.
func (s *Status) Check(name string) (up, found bool) {
	for _, g := range s.Gateways {
		if g.Name == name {
			return g.Up, true
		}
	}
	for _, g := range s.Groups {
		if g.Name == name {
			return g.Up, true
		}
	}
	for _, c := range s.Conditions {
		if c.Name == name {
			return c.Up, true
		}
	}
	return false, false
}

// Status builds the status document. Safe from any goroutine: it copies
// what the loop publishes under the read lock and asks the detector and
// the reconciler for their own snapshots.
func (c *Core) Status() *Status {
	det := c.det.Status()
	installed := c.rec.Installed()
	c.mu.RLock()
	p := c.pol
	v := statusView{
		states:  maps.Clone(c.states),
		health:  maps.Clone(c.health),
		standby: maps.Clone(c.standby),
	}
	gh := maps.Clone(c.groupHealth)
	conds := c.condStatus // replaced, never modified, by the loop
	s := &Status{
		Version: c.version, Policy: p.File, Now: c.now(), Started: c.started, LastReload: c.lastReload,
		LastReloadOK: c.reloadErr == nil, RouteProtocol: p.Daemon.RouteProtocol,
	}
	if c.reloadErr != nil {
		s.LastReloadError = c.reloadErr.Error()
	}
	c.mu.RUnlock()

	held := s.addKernelState(installed)
	for _, op := range c.rec.Conflicts() {
		s.Conflicts = append(s.Conflicts, op.String())
	}
	s.Multipath = c.rec.Form().String()
	s.MultipathReason = c.rec.FormReason()
	if c.traffic != nil {
		s.TrafficBackend, s.TrafficBackendReason = c.traffic()
	}
	byName := map[string]detector.GatewayStatus{}
	for _, d := range det {
		byName[d.Name] = d
	}
	sessions := map[string]bfd.Status{}
	if c.bfd != nil {
		for _, st := range c.bfd.Status() {
			sessions[st.Name] = st
		}
	}
	for _, g := range p.Gateways {
		gs := v.gateway(p, g, byName)
		gs.Routes = held[hop{g.Address.String(), g.Interface}]
		if st, ok := sessions[g.Name]; ok && g.BFD != nil {
			gs.BFD = &st
		}
		s.Gateways = append(s.Gateways, gs)
	}
	for _, grp := range p.Groups {
		s.Groups = append(s.Groups, GroupStatus{Name: grp.Name, Family: grp.Family, Table: grp.Table, VRF: grp.VRF,
			Up: gh[grp.Name] > 0, Healthy: gh[grp.Name], Gateways: slices.Clone(grp.Gateways)})
	}
	s.Conditions = conditionStatus(p, conds)
	return s
}

// statusView is the loop's per-gateway view, copied for one status read.
type statusView struct {
	states  map[string]detector.State
	health  map[string]routing.Health
	standby map[string]bool
}

// hop is a nexthop as status matches it to a gateway.
type hop struct {
	addr string
	dev  string
}

// addKernelState renders the installed routes and rules, each route once
// however many gateways it goes through, and returns the routes held by
// each nexthop.
func (s *Status) addKernelState(installed routing.State) map[hop][]string {
	held := map[hop][]string{}
	for _, r := range installed.Routes {
		text := routing.RouteString(r)
		s.Routes = append(s.Routes, text)
		seen := map[hop]bool{}
		for _, nh := range r.Nexthops {
			k := hop{nh.Gateway.String(), nh.Dev}
			if nh.Gateway.IsValid() && !seen[k] {
				seen[k] = true
				held[k] = append(held[k], text)
			}
		}
	}
	for _, r := range installed.Rules {
		s.Rules = append(s.Rules, routing.RuleString(r))
	}
	return held
}

// gatewayAddress is the address status shows: an auto gateway's learned
// one, "dev IFACE" for the link itself, "auto" before it learns.
func gatewayAddress(g *policy.Gateway) string {
	switch {
	case g.Address.IsValid():
		return g.Address.String()
	case g.Link:
		return "dev " + g.Interface
	case g.Auto:
		return "auto"
	}
	return g.Address.String()
}

// gateway is one gateway's status: the loop's view and the detector's
// evidence. Ages of evidence that never happened are -1.
func (v statusView) gateway(p *policy.Policy, g *policy.Gateway, det map[string]detector.GatewayStatus) GatewayStatus {
	h := v.health[g.Name]
	gs := GatewayStatus{
		Name: g.Name, Interface: g.Interface, Address: gatewayAddress(g), Auto: g.Auto, AddressSource: g.Learned, VRF: g.VRF, VRFWarning: g.VRFWarning, Groups: groupsOf(p, g.Name),
		State: v.states[g.Name].String(), Health: h.String(), Up: h.Healthy(), Standby: v.standby[g.Name],
		LastConfirmedAge: -1, LastRxAge: -1, LastTxAge: -1, LastGoodProbeAge: -1,
	}
	d, ok := det[g.Name]
	if !ok {
		return gs
	}
	gs.Since, gs.Reason, gs.Carrier, gs.Damped = d.Since, d.Reason, d.Carrier, d.Damped
	gs.RTTLast, gs.RTTAvg, gs.Loss, gs.Samples = d.RTTLast.Seconds(), d.RTTAvg.Seconds(), d.Loss, d.Samples
	gs.LastConfirmedAge, gs.LastRxAge = ageSeconds(d.LastConfirmedAge), ageSeconds(d.LastRxAge)
	gs.LastTxAge, gs.LastGoodProbeAge = ageSeconds(d.LastTxAge), ageSeconds(d.LastGoodProbeAge)
	gs.ProbesPerSecond, gs.FlapPenalty = d.ProbesPerSecond, d.FlapPenalty
	gs.TrafficCounting = d.TrafficCounting
	return gs
}

// ageSeconds is an age for the status document; the detector's negative
// "never" becomes -1.
func ageSeconds(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return d.Seconds()
}

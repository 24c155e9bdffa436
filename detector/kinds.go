package detector

import (
	"context"
	"net/netip"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// ProbeKind names a kind of probe: Target.Kind and the "kind" label of
// the probe metrics.
type ProbeKind string

// Probe kinds. Each has one entry in probeKinds (what a round makes of
// the policy) and, when a Prober sends it, one in SocketProber's senders.
const (
	KindICMP  ProbeKind = "icmp"
	KindTCP   ProbeKind = "tcp"
	KindNeigh ProbeKind = "neigh"
	KindHTTP  ProbeKind = "http"
	KindDNS   ProbeKind = "dns"
)

// probeRole says what a probe's answer proves in a round.
type probeRole int

const (
	// roleGateway: the gateway itself answers. Required.
	roleGateway probeRole = iota
	// roleNeigh: the gateway's neighbour entry re-validates. Required.
	roleNeigh
	// roleRemote: a target beyond the gateway answers; MinUp of them
	// are required.
	roleRemote
)

// probeSpec is one probe of a round.
type probeSpec struct {
	kind   ProbeKind
	role   probeRole
	addr   netip.AddrPort
	target string // the target as a metric label would name it: "198.18.1.1", "198.18.100.1:80"
	what   string // for reasons: "gateway 198.18.1.1", "tcp 198.18.100.1:80"
	http   *policy.HTTPCheck
	dns    *policy.DNSCheck
}

// kindDef is what a round knows of one kind of probe.
type kindDef struct {
	kind ProbeKind
	// specs lists the probes of this kind that a gateway's policy asks for.
	specs func(p *policy.Probe, gw netip.Addr) []probeSpec
	// frames says remote probes of this kind pinned to the device go out
	// as frames to the gateway's link-layer address, which the round
	// resolves first.
	frames bool
	// run sends one probe; nil: the Detector's Prober does.
	run func(d *Detector, ctx context.Context, r roundSpec, ps probeSpec) (time.Duration, error)
}

// probeKinds is the registry of probe kinds, as blackbox_exporter's
// Probers map: adding one (as http and dns were) is an entry here, its key in the
// policy and its sender in the Prober.
var probeKinds = []kindDef{
	{kind: KindICMP, specs: icmpSpecs, frames: true},
	{kind: KindNeigh, specs: neighSpecs, run: (*Detector).runNeighProbe},
	{kind: KindTCP, specs: tcpSpecs},
	{kind: KindHTTP, specs: httpSpecs},
	{kind: KindDNS, specs: dnsSpecs},
}

func icmpSpecs(p *policy.Probe, gw netip.Addr) []probeSpec {
	var out []probeSpec
	if p.Gateway && gw.IsValid() { // an auto gateway that is the link itself has no address to ping
		out = append(out, probeSpec{kind: KindICMP, role: roleGateway, addr: netip.AddrPortFrom(gw, 0), target: gw.String(), what: "gateway " + gw.String()})
	}
	for _, a := range p.ICMP {
		out = append(out, probeSpec{kind: KindICMP, role: roleRemote, addr: netip.AddrPortFrom(a, 0), target: a.String(), what: a.String()})
	}
	return out
}

func neighSpecs(p *policy.Probe, gw netip.Addr) []probeSpec {
	if !p.Neigh || !gw.IsValid() {
		return nil
	}
	return []probeSpec{{kind: KindNeigh, role: roleNeigh, addr: netip.AddrPortFrom(gw, 0), target: gw.String(), what: "neighbour " + gw.String()}}
}

func tcpSpecs(p *policy.Probe, _ netip.Addr) []probeSpec {
	out := make([]probeSpec, 0, len(p.TCP))
	for _, ap := range p.TCP {
		out = append(out, probeSpec{kind: KindTCP, role: roleRemote, addr: ap, target: ap.String(), what: "tcp " + ap.String()})
	}
	return out
}

func httpSpecs(p *policy.Probe, _ netip.Addr) []probeSpec {
	out := make([]probeSpec, 0, len(p.HTTP))
	for i := range p.HTTP {
		c := &p.HTTP[i]
		out = append(out, probeSpec{kind: KindHTTP, role: roleRemote, addr: c.Addr, target: c.URL, what: "http " + c.URL, http: c})
	}
	return out
}

func dnsSpecs(p *policy.Probe, _ netip.Addr) []probeSpec {
	out := make([]probeSpec, 0, len(p.DNS))
	for i := range p.DNS {
		c := &p.DNS[i]
		s := c.Server.String()
		out = append(out, probeSpec{kind: KindDNS, role: roleRemote, addr: c.Server, target: s, what: "dns " + s, dns: c})
	}
	return out
}

// roundProbes lists every probe of a gateway's round, kind by kind.
func roundProbes(p *policy.Probe, gw netip.Addr) []probeSpec {
	var out []probeSpec
	for _, k := range probeKinds {
		out = append(out, k.specs(p, gw)...)
	}
	return out
}

func kindOf(k ProbeKind) kindDef {
	for _, d := range probeKinds {
		if d.kind == k {
			return d
		}
	}
	return kindDef{kind: k}
}

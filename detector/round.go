package detector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/policy"
)

// probeResult is the outcome of one round: every probe target of one
// gateway, sent together.
type probeResult struct {
	Gateway string
	Gen     int
	OK      bool
	RTT     time.Duration
	Detail  string
	Skipped bool // no probe could be made: no evidence either way
}

// roundSpec is everything a round needs, copied out of the health
// goroutine so that the round's goroutine shares nothing with it.
type roundSpec struct {
	gateway string
	gen     int
	gw      netip.Addr
	iface   string
	index   int
	probe   policy.Probe
	sources []netip.Addr
	hw      net.HardwareAddr
	timeout time.Duration
}

// launch starts one probe round for gs, if it has anything to probe.
func (d *Detector) launch(ctx context.Context, gs *gwState, now time.Time) bool {
	is := d.ifaces[gs.g.Interface]
	if is == nil || is.index == 0 {
		return false
	}
	p := gs.g.Probe
	if !p.Gateway && !p.Neigh && len(p.ICMP) == 0 && len(p.TCP) == 0 {
		return false
	}
	spec := roundSpec{gateway: gs.g.Name, gen: gs.gen, gw: gs.g.Address, iface: gs.g.Interface, index: is.index,
		probe: p, sources: gs.g.Sources, hw: gs.hw, timeout: gs.m.prof.Timeout}
	gs.inflight++
	gs.rounds = append(gs.rounds, now)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		r := d.round(ctx, spec)
		select {
		case d.results <- r:
		case <-ctx.Done():
		}
	}()
	return true
}

func (d *Detector) onResult(ctx context.Context, r probeResult, now time.Time) {
	gs := d.gws[r.Gateway]
	if gs == nil || gs.gen != r.Gen {
		return
	}
	gs.inflight--
	if r.Skipped {
		return
	}
	d.met.evidenceEvent(r.Gateway, SourceProbe, r.OK)
	if r.OK && d.met != nil {
		d.met.rtt.WithLabelValues(r.Gateway).Observe(r.RTT.Seconds())
	}
	d.log.Debug("probe round", "gateway", r.Gateway, "ok", r.OK, "rtt", r.RTT, "detail", r.Detail)
	d.observe(ctx, gs, Event{Kind: EvProbe, Iface: gs.g.Interface, OK: r.OK, RTT: r.RTT, Detail: r.Detail}, now)
}

// source picks the probe's source address: the gateway's first source of
// the right family, else the interface's first global address.
func (d *Detector) source(spec roundSpec, dst netip.Addr) netip.Addr {
	for _, s := range spec.sources {
		if s.Is4() == dst.Is4() {
			return s
		}
	}
	l, err := d.nl.LinkByIndex(spec.index)
	if err != nil {
		return netip.Addr{}
	}
	fam := netlink.FAMILY_V4
	if dst.Is6() {
		fam = netlink.FAMILY_V6
	}
	as, err := d.nl.AddrList(l, fam)
	if err != nil {
		return netip.Addr{}
	}
	var fallback netip.Addr
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			if !fallback.IsValid() && spec.gw.IsLinkLocalUnicast() {
				fallback = ip
			}
			continue
		}
		if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		return ip
	}
	return fallback
}

// gatewayHW reads the gateway's link-layer address. When it is unknown it
// asks the kernel to resolve it (NTF_USE, as if traffic used the entry)
// and waits up to wait for the answer.
func (d *Detector) gatewayHW(ctx context.Context, spec roundSpec, wait time.Duration) net.HardwareAddr {
	fam := netlink.FAMILY_V4
	if spec.gw.Is6() {
		fam = netlink.FAMILY_V6
	}
	lookup := func() net.HardwareAddr {
		ns, err := d.nl.NeighList(spec.index, fam)
		if err != nil {
			return nil
		}
		for _, n := range ns {
			ip, ok := netip.AddrFromSlice(n.IP)
			if ok && ip.Unmap() == spec.gw && len(n.HardwareAddr) > 0 &&
				n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED|netlink.NUD_NONE) == 0 {
				return n.HardwareAddr
			}
		}
		return nil
	}
	if hw := lookup(); hw != nil {
		return hw
	}
	_ = d.nl.NeighSet(&netlink.Neigh{LinkIndex: spec.index, Family: fam, IP: spec.gw.AsSlice(), Flags: netlink.NTF_USE})
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return nil
		case <-tick.C:
		}
		if hw := lookup(); hw != nil {
			return hw
		}
	}
}

// outcome is one probe of a round.
type outcome struct {
	role string // "gateway", "neigh" or "remote"
	what string
	rtt  time.Duration
	err  error
}

// round runs every probe target of one gateway at once. It succeeds when
// the gateway itself (and its neighbour entry, when probed) answers and
// at least MinUp remote targets do. It returns as soon as the verdict is
// certain: a dead gateway is not kept waiting for a slower target's
// timeout. The probes still running finish on their own (bounded by the
// timeout) and count in the metrics.
func (d *Detector) round(ctx context.Context, spec roundSpec) probeResult {
	res := probeResult{Gateway: spec.gateway, Gen: spec.gen}
	base := Target{Gateway: spec.gateway, Iface: spec.iface, IfIndex: spec.index, NextHop: spec.gw,
		Pin: spec.probe.Pin, Mark: spec.probe.Mark, Timeout: spec.timeout}
	var jobs []func() outcome
	if spec.probe.Gateway {
		jobs = append(jobs, func() outcome {
			t := base
			t.Kind, t.Addr, t.OnLink = KindICMP, netip.AddrPortFrom(spec.gw, 0), true
			t.Source = d.source(spec, spec.gw)
			if t.Pin == policy.PinMark {
				// The gateway is on-link: the device pins it exactly.
				t.Pin = policy.PinDevice
			}
			rtt, err := d.pr.Probe(ctx, t)
			d.met.probe(spec.gateway, KindICMP, err == nil)
			return outcome{"gateway", "gateway " + spec.gw.String(), rtt, err}
		})
	}
	if spec.probe.Neigh {
		jobs = append(jobs, func() outcome {
			err := d.neighProbe(ctx, spec)
			if errors.Is(err, errNeighProbeUnsupported) {
				return outcome{role: "skip"}
			}
			d.met.probe(spec.gateway, KindNeigh, err == nil)
			return outcome{"neigh", "neighbour " + spec.gw.String(), 0, err}
		})
	}
	remoteN := len(spec.probe.ICMP) + len(spec.probe.TCP)
	var hwOnce sync.Once
	var hw net.HardwareAddr
	for _, a := range spec.probe.ICMP {
		jobs = append(jobs, func() outcome {
			t := base
			if t.Pin == policy.PinDevice || t.Pin == "" {
				hwOnce.Do(func() { hw = d.gatewayHW(ctx, spec, spec.timeout/2) })
			}
			t.Kind, t.Addr, t.HwAddr = KindICMP, netip.AddrPortFrom(a, 0), hw
			t.Source = d.source(spec, a)
			rtt, err := d.pr.Probe(ctx, t)
			d.met.probe(spec.gateway, KindICMP, err == nil)
			return outcome{"remote", a.String(), rtt, err}
		})
	}
	for _, ap := range spec.probe.TCP {
		jobs = append(jobs, func() outcome {
			t := base
			t.Kind, t.Addr = KindTCP, ap
			t.Source = d.source(spec, ap.Addr())
			rtt, err := d.pr.Probe(ctx, t)
			d.met.probe(spec.gateway, KindTCP, err == nil)
			return outcome{"remote", "tcp " + ap.String(), rtt, err}
		})
	}
	outs := make(chan outcome, len(jobs))
	for _, job := range jobs {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			outs <- job()
		}()
	}

	minUp := min(max(spec.probe.MinUp, 1), remoteN)
	var failures []string
	var gwRTT, remoteRTT time.Duration
	gwDone := !spec.probe.Gateway
	neighDone := !spec.probe.Neigh
	remoteOK, remoteBad, made := 0, 0, 0
	for range jobs {
		o := <-outs
		if o.role != "skip" {
			made++
		}
		if o.err != nil {
			failures = append(failures, fmt.Sprintf("%s: %s", o.what, shortErr(o.err)))
		}
		switch o.role {
		case "skip":
			neighDone = true
		case "gateway":
			gwDone, gwRTT = true, o.rtt
		case "neigh":
			neighDone = true
		case "remote":
			if o.err == nil {
				remoteOK++
				remoteRTT += o.rtt
			} else {
				remoteBad++
			}
		}
		if o.err != nil && o.role != "remote" || remoteN > 0 && remoteBad > remoteN-minUp {
			break // failed whatever the others say
		}
		if gwDone && neighDone && remoteOK >= minUp {
			res.OK = true
			break
		}
	}
	res.Skipped = made == 0
	switch {
	case spec.probe.Gateway:
		res.RTT = gwRTT
	case remoteOK > 0:
		res.RTT = remoteRTT / time.Duration(remoteOK)
	}
	if !res.OK && remoteN > 0 && remoteBad > remoteN-minUp {
		failures = append(failures, fmt.Sprintf("%d of %d remote targets answered, %d needed", remoteOK, remoteN, minUp))
	}
	res.Detail = reasonList(failures)
	return res
}

func shortErr(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errTimeout):
		return "no reply"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, unix.ETIMEDOUT):
		return "timeout"
	case errors.Is(err, unix.ECONNREFUSED):
		return "refused"
	}
	return err.Error()
}

var errNeighProbeUnsupported = errors.New("kernel refuses NUD_PROBE")

// neighProbe asks the kernel to re-validate the gateway's neighbour entry
// (a unicast ARP request or ND solicitation) and waits for it to become
// REACHABLE with a confirmation newer than the request.
func (d *Detector) neighProbe(ctx context.Context, spec roundSpec) error {
	fam := netlink.FAMILY_V4
	if spec.gw.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := d.nl.NeighList(spec.index, fam)
	if err != nil {
		return fmt.Errorf("listing neighbours: %w", err)
	}
	var cur *netlink.Neigh
	for i := range ns {
		ip, ok := netip.AddrFromSlice(ns[i].IP)
		if ok && ip.Unmap() == spec.gw {
			cur = &ns[i]
		}
	}
	if cur == nil || len(cur.HardwareAddr) == 0 || cur.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
		// Nothing to re-validate: ask for resolution and let the ICMP
		// probe decide. Static entries cannot be probed.
		_ = d.nl.NeighSet(&netlink.Neigh{LinkIndex: spec.index, Family: fam, IP: spec.gw.AsSlice(), Flags: netlink.NTF_USE})
		return errNeighProbeUnsupported
	}
	start := time.Now()
	err = d.nl.NeighSet(&netlink.Neigh{LinkIndex: spec.index, Family: fam, IP: spec.gw.AsSlice(),
		HardwareAddr: cur.HardwareAddr, State: netlink.NUD_PROBE})
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return errNeighProbeUnsupported
		}
		return fmt.Errorf("setting neighbour to PROBE: %w", err)
	}
	deadline := time.NewTimer(spec.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("neighbour %s: %w after %s", spec.gw, errTimeout, fmtDur(spec.timeout))
		case <-tick.C:
		}
		ns, err := d.nl.NeighList(spec.index, fam)
		if err != nil {
			continue
		}
		for _, n := range ns {
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok || ip.Unmap() != spec.gw {
				continue
			}
			age := time.Duration(n.Confirmed) * time.Second / userHZ
			if n.State == netlink.NUD_REACHABLE && age <= time.Since(start)+10*time.Millisecond {
				return nil
			}
			if n.State == netlink.NUD_FAILED {
				return fmt.Errorf("neighbour %s FAILED", spec.gw)
			}
		}
	}
}

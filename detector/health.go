package detector

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// The health goroutine's handling of evidence: policy changes, links,
// neighbours, traffic, link modes, the probe schedule and the status.

// apply installs a policy: new gateways start Unknown, unchanged ones
// keep their machine (with the new profile), removed ones are forgotten.
func (d *Detector) apply(p *policy.Policy, now time.Time) []Transition {
	var out []Transition
	keep := map[string]bool{}
	for _, g := range p.Gateways {
		keep[g.Name] = true
		d.met.setTargets(g)
		old := d.gws[g.Name]
		if old != nil && old.g.Address == g.Address && old.g.Interface == g.Interface {
			if g.Profile != nil {
				old.m.SetProfile(*g.Profile)
			}
			old.m.SetBFD(g.BFD)
			old.g = g
			continue
		}
		m := NewMachine(g, now)
		m.SetStandby(d.standby[g.Name])
		gs := &gwState{g: g, m: m, nextProbe: now.Add(startGrace)}
		if old != nil {
			gs.gen = old.gen + 1
			out = append(out, Transition{Gateway: g.Name, From: old.m.State(), To: Unknown, Cause: CauseConfig,
				Reason: fmt.Sprintf("gateway changed to %s on %s", g.Address, g.Interface), At: now})
		}
		d.gws[g.Name] = gs
		d.met.initGateway(g.Name)
	}
	for name := range d.gws {
		if !keep[name] {
			delete(d.gws, name)
			d.met.forgetGateway(name)
		}
	}
	d.warnShared(p)
	d.watch(p)
	d.pol = p
	return out
}

// warnShared warns of gated gateways sharing an interface when the
// traffic evidence is the interface's counters, which cannot tell them
// apart (the rx of one masks the silence of the other). Per-gateway
// counters (GatewayTraffic) have no such blind spot.
func (d *Detector) warnShared(p *policy.Policy) {
	if ok, _ := trafficPerGateway(d.traffic); ok {
		return
	}
	for _, iface := range slices.Sorted(maps.Keys(sharedGated(p))) {
		d.log.Warn("gated gateways share an interface: traffic on one hides the silence of another; consider gating = \"always\" for them",
			"iface", iface, "gateways", strings.Join(sharedGated(p)[iface], ","))
	}
}

// sharedGated returns the interfaces with more than one gated gateway,
// and their names.
func sharedGated(p *policy.Policy) map[string][]string {
	gated := map[string][]string{}
	for _, g := range p.Gateways {
		if g.Profile == nil || g.Profile.Gating == policy.GatingGated {
			gated[g.Interface] = append(gated[g.Interface], g.Name)
		}
	}
	for iface, names := range gated {
		if len(names) < 2 {
			delete(gated, iface)
		}
	}
	return gated
}

// watch publishes the policy's interfaces and gateway addresses to the
// watchers, and the gateways with traffic evidence to the poller.
func (d *Detector) watch(p *policy.Policy) {
	byIface := map[string][]watchedGateway{}
	addrs := map[netip.Addr]bool{}
	members := map[string]int{}
	for _, g := range p.Gateways {
		addrs[g.Address] = true
		members[g.Interface]++
		gws := byIface[g.Interface]
		if g.Profile != nil && g.Profile.Gating != policy.GatingNever && g.Profile.TxWithoutRx > 0 {
			// Silence is reported from the floor on: the machine judges
			// it against the flow's rhythm (Machine.SilenceThreshold).
			gws = append(gws, watchedGateway{Name: g.Name, Addr: g.Address, TxWithoutRx: min(g.Profile.SilenceFloor, g.Profile.TxWithoutRx)})
		}
		byIface[g.Interface] = gws
	}
	var ws []watchedIface
	for _, name := range slices.Sorted(maps.Keys(byIface)) {
		ws = append(ws, watchedIface{Name: name, Gateways: byIface[name]})
		if d.ifaces[name] == nil {
			d.ifaces[name] = &ifaceState{name: name}
		}
		d.ifaces[name].shared = members[name] > 1
	}
	for name := range d.ifaces {
		if _, ok := byIface[name]; !ok {
			delete(d.ifaces, name)
			d.met.forgetIface(name)
		}
	}
	d.set.set(ws)
	d.set.setAddrs(addrs)
}

// startGrace lets the initial link and neighbour dumps arrive before a
// gateway of unknown health gets its first probe: a REACHABLE neighbour
// makes the probe unnecessary.
const startGrace = 100 * time.Millisecond

func (d *Detector) takePending(ctx context.Context, now time.Time) {
	d.mu.Lock()
	p, sb, held := d.pendingPolicy, d.pendingStandby, d.pendingHeld
	d.pendingPolicy, d.pendingStandby, d.pendingHeld = nil, nil, nil
	d.mu.Unlock()
	if p != nil {
		for _, t := range d.apply(p, now) {
			d.emit(ctx, t)
		}
		d.initialRead(ctx, now)
		// A new machine on a known interface learns its link (and its
		// hold) now; for the others this changes nothing.
		for _, gs := range d.sorted() {
			d.observeLink(ctx, gs, "", now)
		}
	}
	if held != nil {
		d.applyHeld(ctx, held, now)
	}
	if sb != nil {
		d.standby = sb
		for name, gs := range d.gws {
			gs.m.SetStandby(sb[name])
		}
	}
	if p != nil && sb == nil {
		for name, gs := range d.gws {
			gs.m.SetStandby(d.standby[name])
		}
	}
}

// initialRead reads links and neighbours directly, so that a gateway
// leaves Unknown from existing evidence without waiting for events.
func (d *Detector) initialRead(ctx context.Context, now time.Time) {
	for name, is := range d.ifaces {
		if is.known {
			continue
		}
		li, err := d.links.Link(name)
		if err != nil || li.Deleted {
			d.onLink(ctx, Link{Name: name, Deleted: true}, now)
			continue
		}
		d.onLink(ctx, li, now)
		ns, err := d.neigh.Neighbours(li.Index, AnyFamily)
		if err != nil {
			d.log.Debug("listing neighbours", "iface", name, "err", err)
			continue
		}
		for _, ni := range ns {
			d.onNeigh(ctx, ni, now)
		}
	}
}

func (d *Detector) emit(ctx context.Context, t Transition) {
	if t.At.IsZero() {
		t.At = d.now()
	}
	d.met.transition(t)
	d.log.Info("gateway "+t.To.String(), "gateway", t.Gateway, "from", t.From.String(), "to", t.To.String(), "cause", t.Cause, "reason", t.Reason)
	select {
	case d.trans <- t:
	case <-ctx.Done():
	}
}

func (d *Detector) observe(ctx context.Context, gs *gwState, ev Event, now time.Time) {
	check := gs.m.CheckCause()
	t, ok := gs.m.Observe(ev, now)
	if check != "" && gs.m.CheckCause() == "" {
		d.met.check(gs.g.Name, check, gs.m.State() != Down)
		// The check's spacing no longer applies: the next probe is due
		// by the gateway's own interval (a quality sample), not at once.
		gs.nextProbe = time.Time{}
	}
	if !ok {
		return
	}
	d.emit(ctx, t)
	if t.To == Down || t.To == Up {
		// A fresh state starts its own probe cadence.
		gs.nextProbe = time.Time{}
	}
}

func (d *Detector) onLink(ctx context.Context, li Link, now time.Time) {
	is := d.ifaces[li.Name]
	if is == nil {
		return
	}
	was, wasDeleted, known := is.carrier, is.deleted, is.known
	if li.Deleted {
		is.index, is.carrier, is.deleted = 0, false, true
	} else {
		if is.index != 0 && is.index != li.Index {
			d.log.Info("interface re-created", "iface", li.Name, "index", li.Index)
		}
		is.index, is.carrier, is.deleted = li.Index, li.Carrier, false
	}
	is.known = true
	if d.met != nil {
		v := 0.0
		if is.carrier {
			v = 1
		}
		d.met.carrier.WithLabelValues(li.Name).Set(v)
	}
	if known && was == is.carrier && wasDeleted == is.deleted {
		return
	}
	detail := ""
	switch {
	case li.Deleted:
		// At start or later alike: the gateway rejoins when an interface
		// of that name appears, whatever its index.
		detail = "interface " + li.Name + " absent"
	case !li.AdminUp:
		detail = "interface " + li.Name + " is administratively down"
	case !li.Carrier:
		detail = "carrier lost on " + li.Name
	}
	if known || !is.carrier {
		d.log.Info("link carrier", "iface", li.Name, "carrier", is.carrier)
	}
	for _, gs := range d.sorted() {
		if gs.g.Interface != li.Name {
			continue
		}
		d.met.evidenceEvent(gs.g.Name, SourceLink, is.carrier)
		d.observeLink(ctx, gs, detail, now)
	}
}

func (d *Detector) gatewaysAt(index int, addr netip.Addr) []*gwState {
	var out []*gwState
	for _, gs := range d.sorted() {
		is := d.ifaces[gs.g.Interface]
		if is != nil && is.index == index && index != 0 && gs.g.Address == addr {
			out = append(out, gs)
		}
	}
	return out
}

func (d *Detector) onNeigh(ctx context.Context, ni Neighbour, now time.Time) {
	for _, gs := range d.gatewaysAt(ni.Index, ni.Addr) {
		if len(ni.HwAddr) > 0 && !ni.Deleted {
			if len(gs.hw) > 0 && gs.hw.String() != ni.HwAddr.String() {
				d.log.Info("gateway link-layer address changed", "gateway", gs.g.Name, "iface", gs.g.Interface,
					"from", gs.hw.String(), "to", ni.HwAddr.String())
				if d.met != nil {
					d.met.lladdr.WithLabelValues(gs.g.Name).Inc()
				}
			}
			gs.hw = ni.HwAddr
		}
		adv := adviceOf(ni)
		switch adv {
		case NeighNone:
			continue
		case NeighConfirmed:
			d.met.evidenceEvent(gs.g.Name, SourceNeigh, true)
		default:
			d.met.evidenceEvent(gs.g.Name, SourceNeigh, false)
		}
		d.log.Debug("neighbour advice", "gateway", gs.g.Name, "iface", gs.g.Interface, "state", ni.State.String(), "advice", adv.String())
		d.observe(ctx, gs, Event{Kind: EvNeigh, Iface: gs.g.Interface, Advice: adv, State: ni.State.String(), Age: ni.ConfirmedAge}, now)
	}
}

func (d *Detector) onTraffic(ctx context.Context, te trafficEvent, now time.Time) {
	silent := map[string]time.Duration{}
	for _, gt := range te.Gateways {
		silent[gt.Gateway] = gt.SilentFor
	}
	for _, ni := range te.Neighs {
		// A confirmation from TCP progress raises no netlink event: only
		// the cache ages show it.
		if ni.State&(NUDReachable|NUDStale|NUDDelay|NUDProbe) == 0 {
			continue
		}
		for _, gs := range d.gatewaysAt(ni.Index, ni.Addr) {
			if ni.ConfirmedAge < silent[gs.g.Name] {
				d.observe(ctx, gs, Event{Kind: EvNeigh, Iface: te.Iface, Advice: NeighConfirmed, State: ni.State.String(), Age: ni.ConfirmedAge}, now)
			}
		}
	}
	for _, gt := range te.Gateways {
		if gs := d.gws[gt.Gateway]; gs != nil && gs.g.Interface == te.Iface {
			d.onGatewayTraffic(ctx, gs, gt, now)
		}
	}
}

// onGatewayTraffic feeds one gateway's traffic evidence to its machine.
func (d *Detector) onGatewayTraffic(ctx context.Context, gs *gwState, gt gwTraffic, now time.Time) {
	gs.lastRx, gs.lastTx = gt.LastRx, gt.LastTx
	if gt.RxAdvanced {
		if gs.silent {
			d.met.evidenceEvent(gs.g.Name, SourceTraffic, true)
		}
		gs.silent, gs.bfdVerified = false, false
		busy := !gt.LastTx.IsZero() && now.Sub(gt.LastTx) < time.Second
		d.observe(ctx, gs, Event{Kind: EvRx, Iface: gs.g.Interface, Gap: gt.RxGap, Busy: busy}, now)
	}
	if gt.SilentFor > 0 && gs.m.prof.TxWithoutRx > 0 {
		if gt.SilentFor >= gs.m.SilenceThreshold() {
			d.verifyBFD(gs)
		}
		checking := gs.m.Checking()
		d.observe(ctx, gs, Event{Kind: EvTxWithoutRx, Iface: gs.g.Interface, For: gt.SilentFor}, now)
		if !checking && gs.m.Checking() {
			gs.silent = true
			d.met.evidenceEvent(gs.g.Name, SourceTraffic, false)
			d.log.Debug("tx without rx, probing", "gateway", gs.g.Name, "iface", gs.g.Interface, "for", gt.SilentFor)
		}
	}
}

func (d *Detector) onMode(me modeEvent) {
	is := d.ifaces[me.Iface]
	if is == nil {
		return
	}
	if is.modeKnown && is.mode != me.Mode {
		d.log.Info("link renegotiated", "iface", me.Iface,
			"speed_mbps", me.Mode.SpeedMbps, "full_duplex", me.Mode.FullDuplex, "autoneg", me.Mode.Autoneg,
			"was_speed_mbps", is.mode.SpeedMbps, "was_full_duplex", is.mode.FullDuplex, "was_autoneg", is.mode.Autoneg)
		if d.met != nil {
			d.met.reneg.WithLabelValues(me.Iface).Inc()
		}
	}
	is.mode, is.modeKnown = me.Mode, true
	if d.met != nil {
		d.met.reneg.WithLabelValues(me.Iface)
		if me.Mode.SpeedMbps > 0 {
			d.met.speed.WithLabelValues(me.Iface).Set(float64(me.Mode.SpeedMbps) * 1e6 / 8)
		}
		if me.Mode.DuplexKnown {
			v := 0.0
			if me.Mode.FullDuplex {
				v = 1
			}
			d.met.duplex.WithLabelValues(me.Iface).Set(v)
		}
	}
}

// schedule launches the probe rounds that are due and returns when the
// next one is.
func (d *Detector) schedule(ctx context.Context, now time.Time) time.Time {
	var next time.Time
	for _, gs := range d.sorted() {
		if hu := gs.m.HoldUntil(); hu.After(now) && (next.IsZero() || hu.Before(next)) {
			next = hu
		}
		iv := gs.interval(now)
		if iv <= 0 && gs.uncalibrated(now) && gs.inflight == 0 && !now.Before(gs.nextProbe) {
			// One round to learn the targets' RTTs, so that the first
			// check already runs with learned timeouts.
			if d.launch(ctx, gs, now) {
				gs.lastSent = now
			}
			gs.calibrated = true
		}
		if iv <= 0 {
			gs.nextProbe = time.Time{}
			continue
		}
		due := gs.lastSent.Add(iv)
		if gs.lastSent.IsZero() || (!gs.nextProbe.IsZero() && gs.nextProbe.Before(due)) {
			due = gs.nextProbe
		}
		if due.IsZero() || due.Before(now) {
			due = now
		}
		gs.nextProbe = due
		if !now.Before(due) && gs.inflight < maxInflight {
			if gs.m.Sampling(now) && d.progressing(gs) {
				// Upper-layer advice first (RFC 1122): TCP making
				// progress through the gateway is a better sample
				// than a ping.
				gs.lastSent, gs.nextProbe = now, now.Add(iv)
			} else if d.launch(ctx, gs, now) {
				gs.lastSent = now
				gs.nextProbe = now.Add(iv)
			} else {
				gs.nextProbe = now.Add(max(iv, time.Second))
			}
		}
		if next.IsZero() || gs.nextProbe.Before(next) {
			next = gs.nextProbe
		}
	}
	return next
}

// progressFresh is how recent a neighbour confirmation must be to stand
// for a quality sample: ARP or ND confirm every half minute or so, TCP
// ACKs all the time.
const progressFresh = time.Second

// progressing says whether the kernel's neighbour entry of the gateway
// shows upper-layer progress: a confirmation under progressFresh old.
func (d *Detector) progressing(gs *gwState) bool {
	is := d.ifaces[gs.g.Interface]
	if is == nil || is.index == 0 {
		return false
	}
	ns, err := d.neigh.Neighbours(is.index, Family(gs.g.Family()))
	if err != nil {
		return false
	}
	for _, n := range ns {
		if n.Addr == gs.g.Address && !n.Deleted && n.State&(NUDReachable|NUDStale|NUDDelay|NUDProbe) != 0 && n.ConfirmedAge < progressFresh {
			return true
		}
	}
	return false
}

func (d *Detector) publish(now time.Time) {
	out := make([]statusEntry, 0, len(d.gws))
	counting := TrafficPerInterface
	if ok, _ := trafficPerGateway(d.traffic); ok {
		counting = TrafficPerGateway
	}
	for _, gs := range d.sorted() {
		m := gs.m
		avg, loss, n := m.Window(now)
		e := statusEntry{GatewayStatus: GatewayStatus{
			Name: gs.g.Name, Interface: gs.g.Interface, State: m.State(), Reason: m.Reason(),
			Carrier: m.Carrier(), Standby: m.standby,
			RTTLast: m.RTTLast(), RTTAvg: avg, Loss: loss, Samples: n,
			FlapPenalty: m.Penalty(now), Damped: m.Damped(),
			Since: m.Since(), TrafficCounting: counting,
		}, lastConf: m.LastConfirmed(), lastGood: m.LastGood(), lastRx: gs.lastRx, lastTx: gs.lastTx}
		cut := 0
		for cut < len(gs.rounds) && now.Sub(gs.rounds[cut]) > time.Minute {
			cut++
		}
		gs.rounds = gs.rounds[cut:]
		if len(gs.rounds) > 0 {
			e.ProbesPerSecond = float64(len(gs.rounds)) / time.Minute.Seconds()
		}
		out = append(out, e)
		if d.met != nil {
			d.met.loss.WithLabelValues(gs.g.Name).Set(loss)
			d.met.penalty.WithLabelValues(gs.g.Name).Set(e.FlapPenalty)
			dv := 0.0
			if e.Damped {
				dv = 1
			}
			d.met.damped.WithLabelValues(gs.g.Name).Set(dv)
		}
	}
	d.mu.Lock()
	d.status = out
	d.mu.Unlock()
}

// reasonList joins failure details for a reason text.
func reasonList(parts []string) string { return strings.Join(parts, "; ") }

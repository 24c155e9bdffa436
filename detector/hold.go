package detector

import (
	"context"
	"maps"
	"time"
)

// Holds: the daemon knows of reasons a gateway cannot carry traffic that
// no probe would show, and that the kernel's own check of a nexthop
// would refuse: an `address = "auto"` gateway before anything is learned
// ("no gateway learned on eth1"), or a gateway no longer on-link because
// its interface lost the address or subnet it needs (a released lease).
// A held gateway is down with that reason, as if its link had no
// carrier, and is not probed; when the hold is lifted it is judged again
// from its link's real carrier, with the profile's link hold.

// SetHeld names the gateways held down, each with its reason; a gateway
// missing from reasons is released. It never blocks.
func (d *Detector) SetHeld(reasons map[string]string) {
	d.mu.Lock()
	d.pendingHeld = maps.Clone(reasons)
	if d.pendingHeld == nil {
		d.pendingHeld = map[string]string{}
	}
	d.mu.Unlock()
	d.wake()
}

// applyHeld installs a new set of holds; health goroutine.
func (d *Detector) applyHeld(ctx context.Context, held map[string]string, now time.Time) {
	old := d.held
	d.held = held
	for _, gs := range d.sorted() {
		if old[gs.g.Name] != held[gs.g.Name] {
			d.observeLink(ctx, gs, "", now)
		}
	}
}

// observeLink tells gs's machine whether its link can carry traffic: the
// interface's carrier, unless the gateway is held. detail explains a
// link without carrier.
func (d *Detector) observeLink(ctx context.Context, gs *gwState, detail string, now time.Time) {
	is := d.ifaces[gs.g.Interface]
	if is == nil || !is.known {
		if r := d.held[gs.g.Name]; r != "" {
			d.observe(ctx, gs, Event{Kind: EvCarrier, Iface: gs.g.Interface, OK: false, Detail: r}, now)
		}
		return
	}
	ok := is.carrier
	if r := d.held[gs.g.Name]; r != "" && ok {
		ok, detail = false, r
	}
	d.observe(ctx, gs, Event{Kind: EvCarrier, Iface: gs.g.Interface, OK: ok, Detail: detail}, now)
}

package detector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// What a round asks of the neighbour cache: the probes' source address,
// the gateway's link-layer address, and the neighbour probe itself.

// source picks the probe's source address: the gateway's first source of
// the right family, else the interface's first usable global address.
func (d *Detector) source(spec roundSpec, dst netip.Addr) netip.Addr {
	for _, s := range spec.sources {
		if s.Is4() == dst.Is4() {
			return s
		}
	}
	as, err := d.addrs.Addresses(spec.index, Family(policy.FamilyOf(dst)))
	if err != nil {
		return netip.Addr{}
	}
	var fallback netip.Addr
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			if !fallback.IsValid() && spec.gw.IsLinkLocalUnicast() {
				fallback = a.IP
			}
			continue
		}
		if !a.Tentative {
			return a.IP
		}
	}
	return fallback
}

// findNeighbour reads the gateway's neighbour entry.
func (d *Detector) findNeighbour(spec roundSpec) (n Neighbour, found bool, err error) {
	ns, err := d.neigh.Neighbours(spec.index, Family(policy.FamilyOf(spec.gw)))
	if err != nil {
		return Neighbour{}, false, err
	}
	for _, n := range ns {
		if n.Addr == spec.gw {
			return n, true, nil
		}
	}
	return Neighbour{}, false, nil
}

// watchNeighbour re-reads the gateway's neighbour entry every 5 ms until
// check says it is done (and returns check's error), wait has passed
// (errTimeout) or ctx ends.
func (d *Detector) watchNeighbour(ctx context.Context, spec roundSpec, wait time.Duration, check func(n Neighbour, found bool) (bool, error)) error {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			// One last look: when the goroutine ran late, tick and
			// deadline are both ready and select picks either; an
			// answer already in the table is not a loss.
			if done, err := d.checkNeighbour(spec, check); done {
				return err
			}
			return errTimeout
		case <-tick.C:
		}
		if done, err := d.checkNeighbour(spec, check); done {
			return err
		}
	}
}

// checkNeighbour reads the entry once and asks check about it.
func (d *Detector) checkNeighbour(spec roundSpec, check func(n Neighbour, found bool) (bool, error)) (bool, error) {
	n, found, err := d.findNeighbour(spec)
	if err != nil {
		return false, nil
	}
	return check(n, found)
}

// resolved says the entry holds a usable link-layer address.
func resolved(n Neighbour, found bool) bool {
	return found && len(n.HwAddr) > 0 && n.State&(NUDIncomplete|NUDFailed|NUDNone) == 0
}

// gatewayHW reads the gateway's link-layer address. When it is unknown it
// asks the kernel to resolve it (as if traffic used the entry) and waits
// up to wait for the answer.
func (d *Detector) gatewayHW(ctx context.Context, spec roundSpec, wait time.Duration) net.HardwareAddr {
	if n, found, err := d.findNeighbour(spec); err == nil && resolved(n, found) {
		return n.HwAddr
	}
	_ = d.neigh.Resolve(spec.index, spec.gw)
	var hw net.HardwareAddr
	_ = d.watchNeighbour(ctx, spec, wait, func(n Neighbour, found bool) (bool, error) {
		if resolved(n, found) {
			hw = n.HwAddr
			return true, nil
		}
		return false, nil
	})
	return hw
}

var errNeighProbeUnsupported = errors.New("kernel refuses NUD_PROBE")

// runNeighProbe is the neighbour kind's sender: no Prober is involved.
func (d *Detector) runNeighProbe(ctx context.Context, spec roundSpec, _ probeSpec) (time.Duration, error) {
	return d.neighProbe(ctx, spec)
}

// neighProbe asks the kernel to re-validate the gateway's neighbour entry
// (a unicast ARP request or ND solicitation) and waits for it to become
// REACHABLE with a confirmation newer than the request. Its RTT is the
// time until the poll saw the confirmation: an upper bound, coarse by
// the poll's 5 ms, which is what this probe's timeout must allow for.
// (Reporting 0 taught the estimator a timeout at the floor, below what
// polling can observe on a loaded host.)
func (d *Detector) neighProbe(ctx context.Context, spec roundSpec) (time.Duration, error) {
	cur, found, err := d.findNeighbour(spec)
	if err != nil {
		return 0, fmt.Errorf("listing neighbours: %w", err)
	}
	if !found || len(cur.HwAddr) == 0 || cur.State&(NUDPermanent|NUDNoARP) != 0 {
		// Nothing to re-validate: ask for resolution and let the ICMP
		// probe decide. Static entries cannot be probed.
		_ = d.neigh.Resolve(spec.index, spec.gw)
		return 0, errNeighProbeUnsupported
	}
	start := d.now()
	if err := d.neigh.Revalidate(spec.index, spec.gw, cur.HwAddr); err != nil {
		if errors.Is(err, ErrNotSupported) {
			return 0, errNeighProbeUnsupported
		}
		return 0, err
	}
	err = d.watchNeighbour(ctx, spec, spec.timeout, func(n Neighbour, found bool) (bool, error) {
		switch {
		case !found:
			return false, nil
		case n.State == NUDReachable && n.ConfirmedAge <= d.now().Sub(start)+10*time.Millisecond:
			return true, nil
		case n.State == NUDFailed:
			return true, fmt.Errorf("neighbour %s FAILED", spec.gw)
		}
		return false, nil
	})
	if errors.Is(err, errTimeout) {
		return 0, fmt.Errorf("neighbour %s: %w after %s", spec.gw, errTimeout, fmtDur(spec.timeout))
	}
	return d.now().Sub(start), err
}

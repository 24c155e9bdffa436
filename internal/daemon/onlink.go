package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// A gateway whose interface lost the address or subnet it needs (a
// released DHCP lease, an address removed by hand) cannot carry traffic,
// whatever probes said a moment ago: the kernel refuses its nexthop
// ("network is unreachable"). The on-link watcher holds such a gateway
// down in the detector, with the reason, until its subnet is back.

// Addresses is the daemon's kernel boundary for on-link checks.
type Addresses interface {
	// OnLink lists every interface by name, each with the prefixes its
	// addresses and point-to-point peers make on-link (none: no address).
	OnLink() (map[string][]netip.Prefix, error)
	// WatchAddresses calls hint on every address change until ctx ends
	// or the subscription fails (ENOBUFS included), and says why.
	WatchAddresses(ctx context.Context, hint func()) error
}

// Holder is what the on-link watcher needs of the detector.
type Holder interface {
	SetHeld(reasons map[string]string)
}

// onLinkResync re-reads addresses even without events: they are hints.
const onLinkResync = 10 * time.Second

// onLinkWatcher follows addresses and holds down the gateways that are
// not on-link. Run owns it; Update and Run may be called concurrently.
type onLinkWatcher struct {
	src  Addresses
	det  Holder
	log  *slog.Logger
	pol  atomic.Pointer[policy.Policy]
	kick chan struct{}
	held map[string]string // last sent; Run's goroutine only
}

func newOnLinkWatcher(src Addresses, det Holder, log *slog.Logger, p *policy.Policy) *onLinkWatcher {
	w := &onLinkWatcher{src: src, det: det, log: log, kick: make(chan struct{}, 1)}
	w.pol.Store(p)
	return w
}

// Update hands a reloaded policy to the watcher. It never blocks.
func (w *onLinkWatcher) Update(p *policy.Policy) {
	w.pol.Store(p)
	w.hint()
}

func (w *onLinkWatcher) hint() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Prime computes the holds once, before the detector runs, so that a
// gateway off-link at start never shows up first.
func (w *onLinkWatcher) Prime() { w.recompute() }

// Run follows address changes until ctx ends.
func (w *onLinkWatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		keepWatching(ctx, w.log, "address subscription", w.src.WatchAddresses, w.hint)
	}()
	resync := time.NewTicker(onLinkResync)
	defer resync.Stop()
	w.recompute()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		case <-resync.C:
		}
		w.recompute()
	}
}

// keepWatching runs watch until ctx ends, subscribing again 200 ms after
// each failure (ENOBUFS included) and hinting then, since something may
// have changed unseen. The on-link watcher and the learner share it.
func keepWatching(ctx context.Context, log *slog.Logger, what string, watch func(context.Context, func()) error, hint func()) {
	for ctx.Err() == nil {
		if err := watch(ctx, hint); err != nil && ctx.Err() == nil {
			log.Warn(what+" failed, resubscribing", "err", err)
			hint()
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

func (w *onLinkWatcher) recompute() {
	onlink, err := w.src.OnLink()
	if err != nil {
		w.log.Warn("reading addresses for on-link checks", "err", err)
		return
	}
	held := offLink(w.pol.Load(), onlink)
	if w.held != nil && maps.Equal(held, w.held) {
		return
	}
	for name, r := range held {
		if w.held[name] != r {
			w.log.Info("gateway held down: it cannot route through its interface", "gateway", name, "reason", r)
		}
	}
	for name := range w.held {
		if _, ok := held[name]; !ok {
			w.log.Info("gateway released: it can route through its interface again", "gateway", name)
		}
	}
	w.held = held
	w.det.SetHeld(held)
}

// offLink names the gateways of p whose address is not on-link on their
// interface, or that cannot route in their VRF (vrf.go), with the reason. An absent interface is the detector's to
// report ("interface eth3 absent"), not a hold.
func offLink(p *policy.Policy, onlink map[string][]netip.Prefix) map[string]string {
	out := map[string]string{}
	for _, g := range p.Gateways {
		prefixes, ok := onlink[g.Interface]
		if ok && g.Unresolved() {
			out[g.Name] = unlearnedReason(g)
			continue
		}
		if ok && g.VRFProblem != "" {
			out[g.Name] = g.VRFProblem // its VRF absent, or its interface not in it
			continue
		}
		if !ok || routing.OnLink(g.Address, prefixes) {
			continue
		}
		out[g.Name] = fmt.Sprintf("%s is not on-link on %s (no address in its subnet)", g.Address, g.Interface)
	}
	return out
}

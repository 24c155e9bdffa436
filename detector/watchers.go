package detector

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/uplinkd/uplinkd/internal/nlsub"
)

// watchedIface is what the watchers need to know about a managed
// interface; the health goroutine publishes the set on every policy change.
type watchedIface struct {
	Name     string
	Gateways []watchedGateway // its gateways with traffic evidence (gated or always); none: not polled
}

// watchedGateway is a gateway whose traffic the poller follows.
type watchedGateway struct {
	Name        string
	Addr        netip.Addr
	TxWithoutRx time.Duration
}

func (wi watchedIface) has(gateway string) bool {
	for _, g := range wi.Gateways {
		if g.Name == gateway {
			return true
		}
	}
	return false
}

type watchSet struct {
	p     atomic.Pointer[[]watchedIface]
	addrs atomic.Pointer[map[netip.Addr]bool] // gateway addresses, for the neighbour filter
}

func (w *watchSet) setAddrs(m map[netip.Addr]bool) { w.addrs.Store(&m) }

// wanted says whether a neighbour update concerns some gateway: a router
// may see thousands of neighbours churn on its LAN side.
func (w *watchSet) wanted(a netip.Addr) bool {
	p := w.addrs.Load()
	return p == nil || (*p)[a]
}

func (w *watchSet) get() []watchedIface {
	if p := w.p.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *watchSet) set(v []watchedIface) { w.p.Store(&v) }

// resyncEvery re-reads links even when no event came: netlink events are
// hints and can be lost.
const resyncEvery = 10 * time.Second

// linkWatcher sends every link update of a managed interface, a full
// re-read on start, on every resubscription and on a timer.
type linkWatcher struct {
	links Links
	log   *slog.Logger
	set   *watchSet
	out   chan<- Link
	now   func() time.Time
	live  *beat
}

func (w *linkWatcher) Run(ctx context.Context) error {
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	subscribe := func(ch chan<- Link, done <-chan struct{}, onErr func(error)) error {
		w.live.begin(w.now()) // a subscription that hangs is a stalled watcher
		return w.links.SubscribeLinks(ch, done, onErr)
	}
	nlsub.Keep(ctx, 256, subscribe, func(ch <-chan Link, errc <-chan error, err error) {
		if err != nil {
			w.log.Warn("subscribing to link updates", "err", err)
		}
		// Read the links even when subscribing failed: carrier state must
		// not wait for a subscription that may never come.
		w.resync(ctx)
		if err == nil {
			w.loop(ctx, ch, resync.C, errc)
		}
	})
	return nil
}

func (w *linkWatcher) loop(ctx context.Context, ch <-chan Link, resync <-chan time.Time, errc <-chan error) {
	for {
		w.live.idle(w.now())
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			w.log.Warn("link subscription failed, resubscribing", "err", err)
			return
		case <-resync:
			w.resync(ctx)
		case li, ok := <-ch:
			if !ok {
				return
			}
			if !w.managed(li.Name) {
				continue
			}
			w.live.begin(w.now())
			if !send(ctx, w.out, li) {
				return
			}
		}
	}
}

func (w *linkWatcher) managed(name string) bool {
	for _, i := range w.set.get() {
		if i.Name == name {
			return true
		}
	}
	return false
}

func (w *linkWatcher) resync(ctx context.Context) {
	for _, i := range w.set.get() {
		w.live.begin(w.now())
		li, err := w.links.Link(i.Name)
		switch {
		case errors.Is(err, ErrNotFound):
			li = Link{Name: i.Name, Deleted: true}
		case err != nil:
			w.log.Debug("reading link", "iface", i.Name, "err", err)
			continue
		}
		if !send(ctx, w.out, li) {
			return
		}
	}
	w.live.idle(w.now())
}

// send hands v to the health goroutine, or gives up when ctx ends.
func send[T any](ctx context.Context, out chan<- T, v T) bool {
	select {
	case out <- v:
		return true
	case <-ctx.Done():
		return false
	}
}

// neighWatcher sends neighbour updates of gateway addresses (the health
// goroutine matches them to gateways by interface index and address).
type neighWatcher struct {
	neigh Neighbours
	log   *slog.Logger
	set   *watchSet
	out   chan<- Neighbour
	now   func() time.Time
	live  *beat
}

func (w *neighWatcher) Run(ctx context.Context) error {
	subscribe := func(ch chan<- Neighbour, done <-chan struct{}, onErr func(error)) error {
		w.live.begin(w.now())
		return w.neigh.SubscribeNeighbours(ch, done, onErr)
	}
	nlsub.Keep(ctx, 1024, subscribe, func(ch <-chan Neighbour, errc <-chan error, err error) {
		if err != nil {
			w.live.idle(w.now()) // waiting to retry
			w.log.Warn("subscribing to neighbour updates", "err", err)
			return
		}
		w.loop(ctx, ch, errc)
	})
	return nil
}

func (w *neighWatcher) loop(ctx context.Context, ch <-chan Neighbour, errc <-chan error) {
	for {
		w.live.idle(w.now())
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			// ENOBUFS lands here too: resubscribing with ListExisting
			// re-reads the whole table.
			w.log.Warn("neighbour subscription failed, resubscribing", "err", err)
			return
		case ni, ok := <-ch:
			if !ok {
				return
			}
			if !w.set.wanted(ni.Addr) {
				continue
			}
			w.live.begin(w.now())
			if !send(ctx, w.out, ni) {
				return
			}
		}
	}
}

// modePoller reads speed, duplex and auto-negotiation of the managed
// interfaces now and then; a port that keeps renegotiating shows up in
// uplinkd_link_renegotiations_total.
type modePoller struct {
	modes LinkModes
	log   *slog.Logger
	set   *watchSet
	out   chan<- modeEvent
	every time.Duration
	now   func() time.Time
	live  *beat
}

type modeEvent struct {
	Iface string
	Mode  LinkMode
}

func (w *modePoller) Run(ctx context.Context) error {
	t := time.NewTicker(w.every)
	defer t.Stop()
	unsupported := map[string]bool{}
	for {
		for _, i := range w.set.get() {
			if unsupported[i.Name] {
				continue
			}
			w.live.begin(w.now())
			m, err := w.modes.LinkMode(i.Name)
			if err != nil {
				if errors.Is(err, ErrNotSupported) {
					// veth and many virtual drivers: say it once, quietly.
					unsupported[i.Name] = true
					w.log.Debug("link mode not reported", "iface", i.Name, "err", err)
				}
				continue
			}
			if !send(ctx, w.out, modeEvent{Iface: i.Name, Mode: m}) {
				return nil
			}
		}
		w.live.idle(w.now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

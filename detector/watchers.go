package detector

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
)

// watchedIface is what the watchers need to know about a managed
// interface; the health goroutine publishes the set on every policy change.
type watchedIface struct {
	Name        string
	TxWithoutRx time.Duration // smallest threshold of its gated gateways; 0: not polled
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

// resubscribeDelay bounds how fast a failing subscription is retried.
const resubscribeDelay = 200 * time.Millisecond

// keepSubscribed owns one netlink subscription's lifecycle until ctx ends:
// subscribe, hand the channels to serve (err is the subscribe error, if
// any), and when serve returns (the subscription failed, ENOBUFS included)
// close it, drain it and try again after resubscribeDelay. The link and
// neighbour watchers differ only in what serve does.
func keepSubscribed[U any](ctx context.Context, buf int,
	subscribe func(ch chan<- U, done <-chan struct{}, onErr func(error)) error,
	serve func(ch <-chan U, errc <-chan error, err error)) {
	for {
		ch := make(chan U, buf)
		done := make(chan struct{})
		errc := make(chan error, 1)
		err := subscribe(ch, done, func(err error) {
			select {
			case errc <- err:
			default:
			}
		})
		serve(ch, errc, err)
		close(done)
		if err == nil {
			for range ch { // the subscription closes ch once done is seen
			}
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(resubscribeDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// resyncEvery re-reads links even when no event came: netlink events are
// hints and can be lost.
const resyncEvery = 10 * time.Second

// linkWatcher sends every link update of a managed interface, a full
// re-read on start, on every resubscription and on a timer.
type linkWatcher struct {
	nl  Netlink
	log *slog.Logger
	set *watchSet
	out chan<- linkInfo
}

func (w *linkWatcher) Run(ctx context.Context) error {
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	keepSubscribed(ctx, 256, w.nl.LinkSubscribe, func(ch <-chan netlink.LinkUpdate, errc <-chan error, err error) {
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

func (w *linkWatcher) loop(ctx context.Context, ch <-chan netlink.LinkUpdate, resync <-chan time.Time, errc <-chan error) {
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			w.log.Warn("link subscription failed, resubscribing", "err", err)
			return
		case <-resync:
			w.resync(ctx)
		case u, ok := <-ch:
			if !ok {
				return
			}
			li, ok := linkFromUpdate(u)
			if !ok || !w.managed(li.Name) {
				continue
			}
			select {
			case w.out <- li:
			case <-ctx.Done():
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
		li := linkInfo{Name: i.Name, Deleted: true}
		l, err := w.nl.LinkByName(i.Name)
		if err == nil {
			li = linkFromLink(l)
		} else {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				w.log.Debug("reading link", "iface", i.Name, "err", err)
				continue
			}
		}
		select {
		case w.out <- li:
		case <-ctx.Done():
			return
		}
	}
}

// neighWatcher sends neighbour updates (all of them: the health goroutine
// matches them to gateways by interface index and address).
type neighWatcher struct {
	nl  Netlink
	log *slog.Logger
	set *watchSet
	out chan<- neighInfo
}

func (w *neighWatcher) Run(ctx context.Context) error {
	keepSubscribed(ctx, 1024, w.nl.NeighSubscribe, func(ch <-chan netlink.NeighUpdate, errc <-chan error, err error) {
		if err != nil {
			w.log.Warn("subscribing to neighbour updates", "err", err)
			return
		}
		w.loop(ctx, ch, errc)
	})
	return nil
}

func (w *neighWatcher) loop(ctx context.Context, ch <-chan netlink.NeighUpdate, errc <-chan error) {
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			// ENOBUFS lands here too: resubscribing with ListExisting
			// re-reads the whole table.
			w.log.Warn("neighbour subscription failed, resubscribing", "err", err)
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			ni, ok := neighFromUpdate(u)
			if !ok || !w.set.wanted(ni.Addr) {
				continue
			}
			select {
			case w.out <- ni:
			case <-ctx.Done():
				return
			}
		}
	}
}

// trafficEvent is what the counter poller saw on one interface.
type trafficEvent struct {
	Iface      string
	Index      int
	RxAdvanced bool
	SilentFor  time.Duration // tx without rx for this long; 0: not silent
	Neighs     []neighInfo   // the interface's neighbours, read when silent (confirmed ages)
	At         time.Time
	LastTx     time.Time // when the tx counter last moved
	LastRx     time.Time // when the rx counter last moved
}

// pollEvery is the counter polling period: a silent death under heavy
// traffic must start probes within ~100 ms.
const pollEvery = 10 * time.Millisecond

// rxReportEvery limits "rx advanced" events: weak evidence, cheap to lose.
const rxReportEvery = 100 * time.Millisecond

// A silent death needs packets leaving, so an interface is polled at
// full pace only while a flow leaves it: within activeFor of the last
// time minSilentTx packets left within activeFor. After that it is polled
// every idlePollEvery, and once no flow has left for quietAfter, every
// quietPollEvery. Stray packets (neighbour solicitations and replies,
// MLD reports) do not count as a flow, so an idle uplink stays at the
// quiet pace. New traffic is noticed within the slower period, and its
// silence is still measured from the first unanswered packet (the
// midpoint between two polls): a gateway found dead when traffic starts
// after a quiet spell is caught at most quietPollEvery later than under
// steady traffic.
const (
	activeFor      = time.Second
	idlePollEvery  = 100 * time.Millisecond
	quietAfter     = 5 * time.Second
	quietPollEvery = 200 * time.Millisecond
)

// pacer picks an interface's polling period from its transmit counter.
type pacer struct {
	countAt time.Time // start of the current count of packets sent
	count   uint64    // packets sent since countAt
	flowAt  time.Time // last time the count reached minSilentTx: a flow
}

// next takes the packets sent since the previous poll and returns how
// long to wait before the next one.
func (p *pacer) next(now time.Time, sent uint64) time.Duration {
	if sent > 0 {
		if p.countAt.IsZero() || now.Sub(p.countAt) > activeFor {
			p.countAt, p.count = now, 0
		}
		p.count += sent
		if p.count >= minSilentTx {
			p.flowAt = now
		}
	}
	switch {
	case p.flowAt.IsZero() || now.Sub(p.flowAt) > quietAfter:
		return quietPollEvery
	case now.Sub(p.flowAt) > activeFor:
		return idlePollEvery
	}
	return pollEvery
}

// resolveEvery is how often the poller reads an interface by name (a full
// link message) to learn its index; in between it reads only the counters
// by index. A re-created interface is found at once (its old index is
// gone); a renamed one within resolveEvery.
const resolveEvery = time.Second

// neighReadEvery limits neighbour table reads while an interface is
// silent (one-way traffic can be silent for as long as it lasts).
const neighReadEvery = 50 * time.Millisecond

// trafficPoller reads the packet counters of the managed interfaces that
// have a gated gateway.
type trafficPoller struct {
	nl  Netlink
	log *slog.Logger
	set *watchSet
	out chan<- trafficEvent
	now func() time.Time
}

func (w *trafficPoller) Run(ctx context.Context) error {
	timer := time.NewTimer(pollEvery)
	defer timer.Stop()
	type ifPoll struct {
		gen       uint64 // the last pass that found it managed
		st        trafficState
		pace      pacer
		index     int       // from the last read by name
		resolved  time.Time // when that was; zero: read by name now
		next      time.Time // next poll
		rxReport  time.Time // last rx event sent
		neighRead time.Time // last neighbour read
	}
	polls := map[string]*ifPoll{}
	var gen uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		gen++
		// Interfaces polled in one pass are scheduled from the same
		// instant, so that slow-paced ones share a wake-up.
		pass := w.now()
		wake := pass.Add(quietPollEvery)
		for _, i := range w.set.get() {
			if i.TxWithoutRx <= 0 {
				continue
			}
			ip := polls[i.Name]
			if ip == nil {
				ip = &ifPoll{}
				polls[i.Name] = ip
			}
			ip.gen = gen
			if pass.Before(ip.next) {
				wake = minTime(wake, ip.next)
				continue
			}
			now := w.now()
			var c LinkCounters
			if ip.index != 0 && now.Sub(ip.resolved) < resolveEvery {
				var err error
				if c, err = w.nl.LinkStats(ip.index); err != nil {
					// Gone or re-created: read it by name next time.
					ip.resolved, ip.next = time.Time{}, pass.Add(pollEvery)
					wake = minTime(wake, ip.next)
					continue
				}
			} else {
				l, err := w.nl.LinkByName(i.Name)
				if err != nil {
					ip.st, ip.index, ip.next = trafficState{}, 0, pass.Add(idlePollEvery)
					wake = minTime(wake, ip.next)
					continue
				}
				li := linkFromLink(l)
				if li.Index != ip.index && ip.index != 0 {
					ip.st = trafficState{} // another interface under the same name
				}
				ip.index, ip.resolved = li.Index, now
				c = LinkCounters{Tx: li.Tx, Rx: li.Rx}
			}
			var sent uint64
			if ip.st.init && c.Tx > ip.st.tx {
				sent = c.Tx - ip.st.tx
			}
			rx, silent := ip.st.sample(c.Tx, c.Rx, now)
			ip.next = pass.Add(ip.pace.next(now, sent))
			wake = minTime(wake, ip.next)
			ev := trafficEvent{Iface: i.Name, Index: ip.index, At: now, LastTx: ip.st.lastTx, LastRx: ip.st.lastRx}
			send := false
			if rx && now.Sub(ip.rxReport) >= rxReportEvery {
				ev.RxAdvanced, send = true, true
				ip.rxReport = now
			}
			if silent >= i.TxWithoutRx {
				ev.SilentFor, send = silent, true
				// TCP progress confirms the neighbour without any
				// netlink event: read the cache ages, now and then
				// while the silence lasts.
				if now.Sub(ip.neighRead) >= neighReadEvery {
					ip.neighRead = now
					if ns, err := w.nl.NeighList(ip.index, 0); err == nil {
						for k := range ns {
							if ni, ok := neighFromNeigh(&ns[k]); ok {
								ev.Neighs = append(ev.Neighs, ni)
							}
						}
					}
				}
			} else {
				ip.neighRead = time.Time{}
			}
			if !send {
				continue
			}
			select {
			case w.out <- ev:
			case <-ctx.Done():
				return nil
			}
		}
		for name, ip := range polls {
			if ip.gen != gen {
				delete(polls, name)
			}
		}
		timer.Reset(max(time.Millisecond, wake.Sub(w.now())))
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// modePoller reads speed, duplex and auto-negotiation of the managed
// interfaces now and then; a port that keeps renegotiating shows up in
// uplinkd_link_renegotiations_total.
type modePoller struct {
	nl    Netlink
	log   *slog.Logger
	set   *watchSet
	out   chan<- modeEvent
	every time.Duration
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
			m, err := w.nl.LinkMode(i.Name)
			if err != nil {
				if errors.Is(err, ErrNotSupported) {
					// veth and many virtual drivers: say it once, quietly.
					unsupported[i.Name] = true
					w.log.Debug("link mode not reported", "iface", i.Name, "err", err)
				}
				continue
			}
			select {
			case w.out <- modeEvent{Iface: i.Name, Mode: m}:
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

package detector

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// trafficState turns successive packet counters of one interface into
// "tx without rx" durations.
type trafficState struct {
	init        bool
	at          time.Time // previous sample
	tx, rx      uint64
	lastTx      time.Time
	lastRx      time.Time
	silentSince time.Time // first tx after the last rx; zero if none
	txSinceRx   uint64
}

// minSilentTx is how many packets must leave without anything coming back
// before silence counts: a lone router solicitation or MLD report on an
// idle uplink must not trigger a probe.
const minSilentTx = 3

// sustainedGap is the longest pause between sent packets that still
// counts as one flow for tx-without-rx.
const sustainedGap = 2 * time.Second

// sample feeds new counters; it returns whether rx advanced and, when
// traffic is leaving with nothing returning, for how long.
func (s *trafficState) sample(tx, rx uint64, now time.Time) (rxAdvanced bool, silentFor time.Duration) {
	if !s.init || tx < s.tx || rx < s.rx { // first sample or counters reset (interface re-created)
		*s = trafficState{init: true, tx: tx, rx: rx, at: now}
		return false, 0
	}
	if rx > s.rx {
		rxAdvanced = true
		s.lastRx = now
		s.silentSince, s.txSinceRx = time.Time{}, 0
	}
	if tx > s.tx && !rxAdvanced && !s.lastTx.IsZero() && now.Sub(s.lastTx) > sustainedGap {
		// Sporadic packets (router solicitations, MLD reports) are not
		// traffic: silence is only counted over a sustained flow.
		s.silentSince, s.txSinceRx = time.Time{}, 0
	}
	if tx > s.tx {
		if !rxAdvanced && s.silentSince.IsZero() {
			// The first unanswered packet left somewhere since the
			// previous sample: the midpoint is the unbiased guess.
			s.silentSince = now
			if !s.at.IsZero() && now.After(s.at) {
				s.silentSince = s.at.Add(now.Sub(s.at) / 2)
			}
		}
		if !rxAdvanced {
			s.txSinceRx += tx - s.tx
		}
		s.lastTx = now
	}
	s.tx, s.rx, s.at = tx, rx, now
	if s.silentSince.IsZero() || s.txSinceRx < minSilentTx {
		return rxAdvanced, 0
	}
	return rxAdvanced, now.Sub(s.silentSince)
}

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
	pollEvery = 10 * time.Millisecond // a silent death under heavy traffic must start probes within ~100 ms
	// suspectPollEvery is the pace while packets leave an interface
	// unanswered: the silence is seen at most this long after it
	// crosses the threshold. One-way traffic polls at this pace for
	// as long as it lasts (about 1 % of a core, see docs/detection.md).
	suspectPollEvery = 5 * time.Millisecond
	activeFor        = time.Second
	idlePollEvery    = 100 * time.Millisecond
	quietAfter       = 5 * time.Second
	quietPollEvery   = 200 * time.Millisecond
)

// rxReportEvery limits "rx advanced" events: weak evidence, cheap to lose.
// The end of a silence is always reported.
const rxReportEvery = 100 * time.Millisecond

// resolveEvery is how often the poller reads an interface by name to
// learn its index; in between it reads only the counters by index. A
// re-created interface is found at once (its old index is gone); a
// renamed one within resolveEvery.
const resolveEvery = time.Second

// neighReadEvery limits neighbour table reads while a gateway is silent
// (one-way traffic can be silent for as long as it lasts).
const neighReadEvery = 50 * time.Millisecond

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

// trafficEvent is what the counter poller saw on one interface: the
// traffic evidence of each of its polled gateways.
type trafficEvent struct {
	Iface    string
	Index    int
	At       time.Time
	Gateways []gwTraffic
	Neighs   []Neighbour // the interface's neighbours, read while a gateway is silent (confirmed ages)
}

// gwTraffic is the traffic evidence about one gateway.
type gwTraffic struct {
	Gateway    string
	RxAdvanced bool
	SilentFor  time.Duration // tx without rx for this long; 0: not silent
	LastTx     time.Time     // when its tx counter last moved
	LastRx     time.Time     // when its rx counter last moved
	RxGap      time.Duration // with RxAdvanced: the longest silence (as SilentFor measures it) that rx ended since the last report
}

// trafficPoller reads the traffic counters of the managed interfaces that
// have a gated gateway, through src.
type trafficPoller struct {
	links Links
	neigh Neighbours
	src   TrafficCounters
	log   *slog.Logger
	set   *watchSet
	out   chan<- trafficEvent
	now   func() time.Time
	live  *beat
}

// ifPoll is the poller's state of one interface.
type ifPoll struct {
	gen       uint64 // the last pass that found it managed
	pace      pacer
	index     int       // from the last read by name
	resolved  time.Time // when that was; zero: read by name now
	next      time.Time // next poll
	neighRead time.Time // last neighbour read
	gws       map[string]*gwPoll
}

// gwPoll is the poller's state of one gateway.
type gwPoll struct {
	st       trafficState
	rxReport time.Time     // last rx event sent
	silent   bool          // the last event said silent
	rxGap    time.Duration // longest silence that ended with rx since the last rx event
	lastFor  time.Duration // the silence at the last poll, below the threshold or not
	pending  bool          // packets are leaving unanswered, below the threshold or not
}

func (w *trafficPoller) Run(ctx context.Context) error {
	timer := time.NewTimer(pollEvery)
	defer timer.Stop()
	polls := map[string]*ifPoll{}
	var gen uint64
	for {
		w.live.idle(w.now())
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		w.live.begin(w.now())
		gen++
		// Interfaces polled in one pass are scheduled from the same
		// instant, so that slow-paced ones share a wake-up.
		pass := w.now()
		wake := pass.Add(quietPollEvery)
		for _, wi := range w.set.get() {
			if len(wi.Gateways) == 0 {
				continue
			}
			ip := polls[wi.Name]
			if ip == nil {
				ip = &ifPoll{gws: map[string]*gwPoll{}}
				polls[wi.Name] = ip
			}
			ip.gen = gen
			if !pass.Before(ip.next) {
				ev, report := w.poll(wi, ip, pass)
				if report && !send(ctx, w.out, ev) {
					return nil
				}
			}
			wake = minTime(wake, ip.next)
		}
		for name, ip := range polls {
			if ip.gen != gen {
				delete(polls, name)
			}
		}
		timer.Reset(max(time.Millisecond, wake.Sub(w.now())))
	}
}

// poll reads one interface's counters and says what to report.
func (w *trafficPoller) poll(wi watchedIface, ip *ifPoll, pass time.Time) (trafficEvent, bool) {
	now := w.now()
	if !w.resolve(wi.Name, ip, now) {
		ip.next = pass.Add(idlePollEvery)
		return trafficEvent{}, false
	}
	addrs := make([]netip.Addr, len(wi.Gateways))
	for i, g := range wi.Gateways {
		addrs[i] = g.Addr
	}
	cs, err := w.src.Counters(ip.index, addrs)
	if err != nil || len(cs) != len(addrs) {
		// Gone or re-created: read it by name next time.
		ip.resolved, ip.next = time.Time{}, pass.Add(pollEvery)
		return trafficEvent{}, false
	}
	ev := trafficEvent{Iface: wi.Name, Index: ip.index, At: now}
	var sent uint64
	silent, pending := false, false
	for i, g := range wi.Gateways {
		gp := ip.gws[g.Name]
		if gp == nil {
			gp = &gwPoll{}
			ip.gws[g.Name] = gp
		}
		if gp.st.init && cs[i].Tx > gp.st.tx {
			sent = max(sent, cs[i].Tx-gp.st.tx)
		}
		gt, report := gp.sample(g, cs[i], now)
		silent = silent || gt.SilentFor > 0
		pending = pending || gp.pending
		if report {
			ev.Gateways = append(ev.Gateways, gt)
		}
	}
	for name := range ip.gws {
		if !wi.has(name) {
			delete(ip.gws, name)
		}
	}
	every := ip.pace.next(now, sent)
	if pending {
		// A gateway is suspect: how soon its silence reaches the
		// threshold is bounded by the poll period.
		every = min(every, suspectPollEvery)
	}
	ip.next = pass.Add(every)
	if !silent {
		ip.neighRead = time.Time{}
	} else if now.Sub(ip.neighRead) >= neighReadEvery {
		// TCP progress confirms the neighbour without any netlink
		// event: read the cache ages, now and then while the silence
		// lasts.
		ip.neighRead = now
		if ns, err := w.neigh.Neighbours(ip.index, AnyFamily); err == nil {
			ev.Neighs = ns
		}
	}
	return ev, len(ev.Gateways) > 0
}

// resolve learns the interface's index by name every resolveEvery, and
// forgets the counters of another interface that took the name.
func (w *trafficPoller) resolve(name string, ip *ifPoll, now time.Time) bool {
	if ip.index != 0 && now.Sub(ip.resolved) < resolveEvery {
		return true
	}
	l, err := w.links.Link(name)
	if err != nil || l.Deleted {
		ip.index, ip.gws = 0, map[string]*gwPoll{}
		return false
	}
	if l.Index != ip.index && ip.index != 0 {
		ip.gws = map[string]*gwPoll{} // another interface under the same name
	}
	ip.index, ip.resolved = l.Index, now
	return true
}

// sample feeds one gateway's counters and says whether to report them:
// rx (rate-limited, but always at the end of a silence) or a silence
// past the gateway's threshold.
func (gp *gwPoll) sample(g watchedGateway, c Counters, now time.Time) (gwTraffic, bool) {
	rx, silent := gp.st.sample(c.Tx, c.Rx, now)
	gt := gwTraffic{Gateway: g.Name, LastTx: gp.st.lastTx, LastRx: gp.st.lastRx}
	if rx {
		gp.rxGap = max(gp.rxGap, gp.lastFor)
	}
	gp.lastFor = silent
	report := false
	if rx && (gp.silent || now.Sub(gp.rxReport) >= rxReportEvery) {
		gt.RxAdvanced, report = true, true
		gt.RxGap, gp.rxGap = gp.rxGap, 0
		gp.rxReport = now
	}
	gp.silent = silent >= g.TxWithoutRx
	gp.pending = silent > 0
	if gp.silent {
		gt.SilentFor, report = silent, true
	}
	return gt, report
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

package detector

import (
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkInfo is what one link update says about an interface.
type linkInfo struct {
	Name    string
	Index   int
	AdminUp bool
	Carrier bool // admin up and lower layer up
	Deleted bool
	Tx, Rx  uint64
}

// linkFromUpdate turns a raw netlink link update into linkInfo. Updates
// without a name cannot be matched to the policy and are dropped.
func linkFromUpdate(u netlink.LinkUpdate) (linkInfo, bool) {
	if u.Link == nil || u.Link.Attrs() == nil || u.Link.Attrs().Name == "" {
		return linkInfo{}, false
	}
	li := linkFromLink(u.Link)
	if u.Header.Type == unix.RTM_DELLINK {
		li.Deleted, li.Carrier, li.AdminUp = true, false, false
	}
	return li, true
}

func linkFromLink(l netlink.Link) linkInfo {
	a := l.Attrs()
	li := linkInfo{Name: a.Name, Index: a.Index}
	li.AdminUp = a.RawFlags&unix.IFF_UP != 0
	li.Carrier = li.AdminUp && a.RawFlags&unix.IFF_LOWER_UP != 0
	if s := a.Statistics; s != nil {
		li.Tx, li.Rx = s.TxPackets, s.RxPackets
	}
	return li
}

// neighInfo is what one neighbour update says about one address.
type neighInfo struct {
	Index        int
	Addr         netip.Addr
	State        int
	HwAddr       net.HardwareAddr
	ConfirmedAge time.Duration // age of the last confirmation, from the cache info
	Deleted      bool
}

// userHZ is the unit of the kernel's neighbour cache ages (clock_t).
const userHZ = 100

func neighFromUpdate(u netlink.NeighUpdate) (neighInfo, bool) {
	n := u.Neigh
	ni, ok := neighFromNeigh(&n)
	if !ok {
		return ni, false
	}
	if u.Type == unix.RTM_DELNEIGH {
		ni.Deleted = true
	}
	return ni, true
}

func neighFromNeigh(n *netlink.Neigh) (neighInfo, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok || n.LinkIndex == 0 {
		return neighInfo{}, false
	}
	ni := neighInfo{Index: n.LinkIndex, Addr: a.Unmap(), State: n.State,
		ConfirmedAge: time.Duration(n.Confirmed) * time.Second / userHZ}
	if len(n.HardwareAddr) > 0 {
		ni.HwAddr = append(net.HardwareAddr(nil), n.HardwareAddr...)
	}
	return ni, true
}

// nudName is the kernel's name of a NUD state, as `ip neigh` prints it.
func nudName(s int) string {
	switch s {
	case netlink.NUD_INCOMPLETE:
		return "INCOMPLETE"
	case netlink.NUD_REACHABLE:
		return "REACHABLE"
	case netlink.NUD_STALE:
		return "STALE"
	case netlink.NUD_DELAY:
		return "DELAY"
	case netlink.NUD_PROBE:
		return "PROBE"
	case netlink.NUD_FAILED:
		return "FAILED"
	case netlink.NUD_NOARP:
		return "NOARP"
	case netlink.NUD_PERMANENT:
		return "PERMANENT"
	case netlink.NUD_NONE:
		return "NONE"
	}
	return "UNKNOWN"
}

// adviceOf says what a neighbour entry tells about liveness.
// REACHABLE is a confirmation (by ARP/ND reply or by upper-layer progress
// such as TCP ACKs); FAILED is negative; INCOMPLETE is only the start of a
// resolution, so it is a hint that starts a check, not a verdict.
func adviceOf(ni neighInfo) NeighAdvice {
	if ni.Deleted {
		return NeighNone
	}
	switch ni.State {
	case netlink.NUD_REACHABLE:
		return NeighConfirmed
	case netlink.NUD_FAILED:
		return NeighFailed
	case netlink.NUD_INCOMPLETE:
		return NeighIncomplete
	}
	return NeighNone
}

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

package routing

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Hint says that kernel state may have changed. It carries no state: the
// reconciler re-reads what it owns, because events can be lost and only a
// fresh dump is the truth.
type Hint struct {
	Reason string // ReasonEvent, ReasonENOBUFS or ReasonDumpInterrupted
	What   string // "route", "rule", "link", "addr": for debug logs only
	// Missed says the watcher may have missed events before this hint (a
	// subscription just came up), so the re-read cannot rely on events
	// to have shown a foreign route beside an owned one.
	Missed bool
}

// Watcher sends hints until ctx ends. It must never block on hints longer
// than ctx allows. A route event in does not find Relevant never becomes a
// hint (a nil in keeps every one): beside a BGP daemon that rewrites
// thousands of routes a second, a hint per foreign route would keep the
// reconciler re-reading all the time, and a hint channel full of them
// could hide the one that mattered, so the filter runs in the watcher,
// before the channel. Link, address and rule events are never filtered.
type Watcher interface {
	Watch(ctx context.Context, hints chan<- Hint, in Interest) error
}

// Interest is what a reconciler wants to hear about, as its watcher sees
// it. Relevant is called for every route notification on the watcher's
// goroutine, so it must be cheap and never block.
type Interest interface {
	Relevant(RouteEvent) bool
}

// RouteEvent is what one route notification says about its route: enough
// to tell whether it can change anything the reconciler reads.
type RouteEvent struct {
	Family   int // 4 or 6
	Table    uint32
	Dst      netip.Prefix // masked; the family's default route when absent
	Metric   uint32
	Tos      uint8
	Protocol uint8
	Deleted  bool // RTM_DELROUTE
}

// Key returns the kernel identity of the route the event is about.
func (e RouteEvent) Key() RouteKey {
	return RouteKey{Family: e.Family, Table: e.Table, Dst: e.Dst.Masked(), Metric: e.Metric, Tos: e.Tos}
}

// RouteFilter is an Interest made of a function.
type RouteFilter func(RouteEvent) bool

// Relevant implements Interest.
func (f RouteFilter) Relevant(ev RouteEvent) bool { return f(ev) }

// relevantFunc is in as a function, nil when in keeps everything.
func relevantFunc(in Interest) func(RouteEvent) bool {
	if in == nil {
		return nil
	}
	return in.Relevant
}

// interest is what the reconciler wants to hear about: every route of its
// own protocol, anywhere (an owned route changed, went away or appeared
// where it must not be), and a route of any other protocol on a key it
// wants, because that is the only way a foreign route can change what
// uplinkd reads or writes: it takes (or frees) a key uplinkd holds or is
// about to add. A foreign route on another key, even in a table uplinkd
// manages, changes neither owned state nor the plan; a full BGP table in
// main churns on exactly such keys.
type interest struct {
	proto uint8
	keys  map[RouteKey]bool
}

func newInterest(proto uint8, want State) *interest {
	i := &interest{proto: proto, keys: make(map[RouteKey]bool, len(want.Routes))}
	for _, rt := range want.Routes {
		i.keys[rt.Key()] = true
	}
	return i
}

func (i *interest) relevant(ev RouteEvent) bool {
	return ev.Protocol == i.proto || i.keys[ev.Key()]
}

// KernelWatcher subscribes to route, link, address and rule notifications
// of one network namespace.
type KernelWatcher struct {
	NS netns.NsHandle // netns.None(): the current namespace
	// RetryEvery is the pause before resubscribing after a subscription
	// failed or was dropped; 0: one second.
	RetryEvery time.Duration
	// SocketFilter compiles the reconciler's interest into a BPF filter on
	// the route notification socket (see sockfilter.go), so that foreign
	// route churn is dropped in the kernel: never queued, read or parsed,
	// and never an overflow (ENOBUFS) and full re-read. NewKernelWatcher
	// turns it on; docs/design.md says why. Without it the same events
	// are dropped after reading, by Interest.Relevant.
	SocketFilter bool
}

// NewKernelWatcher returns a watcher of the namespace ns (netns.None() for
// the current one), with the route socket filter on.
func NewKernelWatcher(ns netns.NsHandle) *KernelWatcher {
	return &KernelWatcher{NS: ns, SocketFilter: true}
}

// subscribeBuffer is the receive buffer asked for each subscription
// (capped by net.core.rmem_max): a first apply of 10,000 rules and 1,000
// routes echoes as many events, and an overflow costs a resubscription.
const subscribeBuffer = 4 << 20

// rtnetlink multicast groups for rules, which vishvananda/netlink has no
// subscription helper for.
const (
	rtnlgrpIPv4Rule = 8  // RTNLGRP_IPV4_RULE
	rtnlgrpIPv6Rule = 19 // RTNLGRP_IPV6_RULE
)

// Watch runs the subscriptions and resubscribes after one fails (after
// ENOBUFS the library closes its link and address sockets), sending a hint
// each time because whatever was lost must be found by a re-read. With
// SocketFilter, and an in that can tell its interest (a Reconciler's
// does), the route socket carries a kernel filter of it.
func (w *KernelWatcher) Watch(ctx context.Context, hints chan<- Hint, in Interest) error {
	var src interestSource
	if w.SocketFilter {
		src, _ = in.(interestSource)
	}
	return w.watch(ctx, hints, relevantFunc(in), src)
}

// interestSource is a reconciler as its KernelWatcher sees it: what it is
// interested in, for a socket filter in the kernel, and a signal when that
// changed.
type interestSource interface {
	interest() *interest
	interestChanged() <-chan struct{}
}

// watch is Watch with keep (nil: keep all) as the route event filter and a
// kernel socket filter on the route socket compiled from src when src is
// not nil.
func (w *KernelWatcher) watch(ctx context.Context, hints chan<- Hint, keep func(RouteEvent) bool, src interestSource) error {
	retry := w.RetryEvery
	if retry <= 0 {
		retry = time.Second
	}
	// Never block on plain hints: a full channel already means a resync
	// is pending, and a watcher stuck on it would stop draining the
	// library's channel, whose socket would then overflow (ENOBUFS) for
	// nothing. A hint with a reason (an overflow) waits for room instead:
	// after an overflow the channel is often full of plain hints from the
	// other subscriptions, and the resync must still be counted as the
	// overflow's (uplinkd_resyncs_total{reason="enobufs"}).
	send := func(h Hint) {
		if h.Reason != ReasonEvent || h.Missed {
			select {
			case hints <- h:
			case <-ctx.Done():
			}
			return
		}
		select {
		case hints <- h:
		default:
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	routes := func(ctx context.Context, send func(Hint)) error { return w.routes(ctx, send, keep, src) }
	for _, sub := range []func(context.Context, func(Hint)) error{routes, w.links, w.addrs, w.rules} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(0)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				err := sub(ctx, send)
				if ctx.Err() != nil {
					return
				}
				reason := ReasonEvent
				if isENOBUFS(err) {
					reason = ReasonENOBUFS
				}
				send(Hint{Reason: reason, What: "resubscribe", Missed: true})
				t.Reset(retry)
			}
		}()
	}
	<-ctx.Done()
	return nil
}

func isENOBUFS(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOBUFS) || strings.Contains(err.Error(), unix.ENOBUFS.Error()))
}

func (w *KernelWatcher) nsOpt() *netns.NsHandle {
	if !w.NS.IsOpen() {
		return nil
	}
	ns := w.NS
	return &ns
}

// subscribed is the hint a subscription sends once it is up: whatever
// changed before that (between Run's first read and the subscription, or
// while resubscribing) was never notified, and only a re-read finds it.
func subscribed(what string) Hint { return Hint{Reason: ReasonEvent, What: what, Missed: true} }

// subscription runs one library subscription until ctx ends or the library
// closes its channel. The library's goroutine blocks on its channel, so
// the channel is drained until it is closed even after ctx ends.
func subscription[T any](ctx context.Context, what string, send func(Hint), start func(ch chan T, done chan struct{}, cb func(error)) error, filter func(T) bool) error {
	ch := make(chan T, 256)
	done := make(chan struct{})
	var mu sync.Mutex
	var lastErr error
	cb := func(err error) {
		mu.Lock()
		lastErr = err
		mu.Unlock()
		reason := ReasonEvent
		switch {
		case isENOBUFS(err):
			reason = ReasonENOBUFS
		case errors.Is(err, netlink.ErrDumpInterrupted):
			reason = ReasonDumpInterrupted
		}
		send(Hint{Reason: reason, What: what})
	}
	if err := start(ch, done, cb); err != nil {
		return fmt.Errorf("subscribing to %s events: %w", what, err)
	}
	send(subscribed(what))
	defer func() {
		close(done)
		for range ch {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-ch:
			if !ok {
				mu.Lock()
				defer mu.Unlock()
				if lastErr == nil {
					lastErr = fmt.Errorf("%s subscription closed", what)
				}
				return lastErr
			}
			if filter == nil || filter(u) {
				send(Hint{Reason: ReasonEvent, What: what})
			}
		}
	}
}

func (w *KernelWatcher) links(ctx context.Context, send func(Hint)) error {
	return subscription(ctx, "link", send, func(ch chan netlink.LinkUpdate, done chan struct{}, cb func(error)) error {
		return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{Namespace: w.nsOpt(), ErrorCallback: cb, ReceiveBufferSize: subscribeBuffer})
	}, nil)
}

func (w *KernelWatcher) addrs(ctx context.Context, send func(Hint)) error {
	return subscription(ctx, "addr", send, func(ch chan netlink.AddrUpdate, done chan struct{}, cb func(error)) error {
		return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{Namespace: w.nsOpt(), ErrorCallback: cb, ReceiveBufferSize: subscribeBuffer})
	}, nil)
}

// rtnetlink multicast groups of route notifications.
const (
	rtnlgrpIPv4Route = 7  // RTNLGRP_IPV4_ROUTE
	rtnlgrpIPv6Route = 11 // RTNLGRP_IPV6_ROUTE
)

// routes reads route notifications from a raw rtnetlink socket and parses
// only the rtmsg header and RTA_TABLE: a full BGP table churning beside
// uplinkd sends thousands of notifications a second, and the library's
// subscription would decode every one of them into a Route (addresses,
// nexthops, metrics) only for most to be dropped.
func (w *KernelWatcher) routes(ctx context.Context, send func(Hint), keep func(RouteEvent) bool, src interestSource) error {
	var setup func(context.Context, syscall.RawConn) (func(), error)
	if src != nil {
		setup = func(ctx context.Context, rc syscall.RawConn) (func(), error) { return filterRoutes(ctx, rc, send, src) }
	}
	return w.listen(ctx, "route", send, func(typ uint16, body []byte) bool {
		ev, ok := parseRouteEvent(typ, body)
		return ok && (keep == nil || keep(ev))
	}, setup, rtnlgrpIPv4Route, rtnlgrpIPv6Route)
}

// filterRoutes attaches the socket filter of src's interest to the route
// socket, and a new one each time the interest changes, until ctx ends;
// wait waits for that. It returns once the first filter is attached. A
// changed filter is followed by a hint, because the old one may have
// dropped a notification the new interest wants.
func filterRoutes(ctx context.Context, rc syscall.RawConn, send func(Hint), src interestSource) (wait func(), err error) {
	attach := func(in *interest) ([]bpf.RawInstruction, error) {
		prog, err := routeSocketFilter(in)
		if err != nil {
			return nil, err
		}
		return prog, attachFilter(rc, prog)
	}
	last, err := attach(src.interest())
	if err != nil {
		// A kernel that refuses the program: no kernel filter, the
		// RouteFilter alone decides.
		if err := attachFilter(rc, nil); err != nil {
			return nil, fmt.Errorf("removing route socket filter: %w", err)
		}
		last = nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-src.interestChanged():
			}
			in := src.interest()
			prog, err := routeSocketFilter(in)
			if err != nil || slices.Equal(prog, last) {
				continue
			}
			if err := attachFilter(rc, prog); err != nil {
				// Keep what is attached but never miss anything: take
				// the filter off.
				_ = attachFilter(rc, nil)
				prog = nil
			}
			last = prog
			send(Hint{Reason: ReasonEvent, What: "route filter"})
		}
	}()
	return func() { <-done }, nil
}

// rules reads rule notifications from a raw rtnetlink socket: any message
// is a hint, its content does not matter.
func (w *KernelWatcher) rules(ctx context.Context, send func(Hint)) error {
	return w.listen(ctx, "rule", send, func(uint16, []byte) bool { return true }, nil, rtnlgrpIPv4Rule, rtnlgrpIPv6Rule)
}

// listen subscribes a raw rtnetlink socket to groups and sends one hint for
// each datagram holding a message that match accepts. The socket is read
// with read(2) into one reused buffer, so a notification costs no
// allocation. After ENOBUFS the socket is kept (netlink clears the error
// once it is read) and an ENOBUFS hint follows once the queue is drained.
//
// setup, when not nil, runs once on the socket before the first read, with
// a context that ends when listen returns; listen then waits for what it
// started.
func (w *KernelWatcher) listen(ctx context.Context, what string, send func(Hint), match func(typ uint16, body []byte) bool,
	setup func(context.Context, syscall.RawConn) (wait func(), err error), groups ...uint) error {
	var s *nl.NetlinkSocket
	var err error
	if w.NS.IsOpen() {
		s, err = nl.SubscribeAt(w.NS, netns.None(), unix.NETLINK_ROUTE, groups...)
	} else {
		s, err = nl.Subscribe(unix.NETLINK_ROUTE, groups...)
	}
	if err != nil {
		return fmt.Errorf("subscribing to %s events: %w", what, err)
	}
	if err := s.SetReceiveBufferSize(subscribeBuffer, false); err != nil {
		s.Close()
		return fmt.Errorf("sizing %s event socket: %w", what, err)
	}
	// The library's socket reads into a fresh 64 KiB array per call; a
	// duplicate of its descriptor (non-blocking, so the runtime's poller
	// takes it) lets this loop own the reads.
	fd, err := unix.Dup(s.GetFd())
	s.Close()
	if err != nil {
		return fmt.Errorf("duplicating %s event socket: %w", what, err)
	}
	f := os.NewFile(uintptr(fd), "rtnetlink-"+what)
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		stop()
		f.Close()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("reading %s events: %w", what, err)
	}
	if setup != nil {
		sctx, cancel := context.WithCancel(ctx)
		wait, err := setup(sctx, rc)
		if err != nil {
			cancel()
			return err
		}
		defer wait()
		defer cancel()
	}
	send(subscribed(what))
	buf := make([]byte, 1<<16)
	var n int
	var rerr error
	// overflowed: the kernel dropped notifications (ENOBUFS). It keeps
	// dropping, silently, until the queue is drained (netlink's congested
	// bit), so the hint that asks for a re-read is sent only once a read
	// finds the queue empty: a re-read any earlier could miss what was
	// dropped after it.
	overflowed := false
	read := func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), buf)
		return rerr != unix.EAGAIN || overflowed
	}
	for {
		err := rc.Read(read)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = rerr
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			overflowed = false
			send(Hint{Reason: ReasonENOBUFS, What: what})
			continue
		case isENOBUFS(err):
			overflowed = true
			continue
		case err != nil:
			return fmt.Errorf("receiving %s events: %w", what, err)
		}
		if anyMessage(buf[:n], match) {
			send(Hint{Reason: ReasonEvent, What: what})
		}
	}
}

// anyMessage walks the netlink messages of one datagram and reports
// whether match accepts one of them.
func anyMessage(b []byte, match func(typ uint16, body []byte) bool) bool {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return false
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		if typ != unix.NLMSG_DONE && typ != unix.NLMSG_NOOP && typ != unix.NLMSG_ERROR && match(typ, b[unix.NLMSG_HDRLEN:l]) {
			return true
		}
		al := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if al > len(b) {
			return false
		}
		b = b[al:]
	}
	return false
}

// parseRouteEvent reads a route notification's rtmsg header and the
// attributes of the route's key: RTA_TABLE (tables above 255 exist only
// there), RTA_DST and RTA_PRIORITY. Cloned (cache) routes and the local
// table churn with traffic and addresses and are never uplinkd's: ok is
// false for them.
func parseRouteEvent(typ uint16, body []byte) (RouteEvent, bool) {
	if (typ != unix.RTM_NEWROUTE && typ != unix.RTM_DELROUTE) || len(body) < unix.SizeofRtMsg {
		return RouteEvent{}, false
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
	// type, then flags (u32).
	af, dstLen := body[0], int(body[1])
	ev := RouteEvent{
		Table:    uint32(body[4]),
		Tos:      body[3],
		Protocol: body[5],
		Deleted:  typ == unix.RTM_DELROUTE,
	}
	var dst netip.Addr
	switch af {
	case unix.AF_INET:
		ev.Family, dst = 4, netip.IPv4Unspecified()
	case unix.AF_INET6:
		ev.Family, dst = 6, netip.IPv6Unspecified()
	default:
		return RouteEvent{}, false
	}
	if binary.NativeEndian.Uint32(body[8:12])&unix.RTM_F_CLONED != 0 {
		return RouteEvent{}, false
	}
	for a := body[unix.SizeofRtMsg:]; len(a) >= unix.SizeofRtAttr; {
		al := int(binary.NativeEndian.Uint16(a[0:2]))
		if al < unix.SizeofRtAttr || al > len(a) {
			break
		}
		v := a[unix.SizeofRtAttr:al]
		switch binary.NativeEndian.Uint16(a[2:4]) {
		case unix.RTA_TABLE:
			if len(v) >= 4 {
				ev.Table = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_PRIORITY:
			if len(v) >= 4 {
				ev.Metric = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_DST:
			if af == unix.AF_INET && len(v) >= 4 {
				dst = netip.AddrFrom4([4]byte(v[:4]))
			} else if af == unix.AF_INET6 && len(v) >= 16 {
				dst = netip.AddrFrom16([16]byte(v[:16]))
			}
		}
		al = (al + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if al > len(a) {
			break
		}
		a = a[al:]
	}
	if dstLen > dst.BitLen() {
		return RouteEvent{}, false
	}
	ev.Dst = netip.PrefixFrom(dst, dstLen).Masked()
	return ev, ev.Table != unix.RT_TABLE_LOCAL
}

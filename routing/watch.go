package routing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Hint says that kernel state may have changed. It carries no state: the
// reconciler re-reads what it owns, because events can be lost and only a
// fresh dump is the truth.
type Hint struct {
	Reason string // ReasonEvent, ReasonENOBUFS or ReasonDumpInterrupted
	What   string // "route", "rule", "link", "addr": for debug logs only
}

// Watcher sends hints until ctx ends. It must never block on hints longer
// than ctx allows.
type Watcher interface {
	Watch(ctx context.Context, hints chan<- Hint) error
}

// KernelWatcher subscribes to route, link, address and rule notifications
// of one network namespace.
type KernelWatcher struct {
	NS netns.NsHandle // netns.None(): the current namespace
	// RetryEvery is the pause before resubscribing after a subscription
	// failed or was dropped; 0: one second.
	RetryEvery time.Duration
}

// NewKernelWatcher returns a watcher of the namespace ns (netns.None() for
// the current one).
func NewKernelWatcher(ns netns.NsHandle) *KernelWatcher { return &KernelWatcher{NS: ns} }

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
// ENOBUFS the library closes its socket), sending a hint each time because
// whatever was lost must be found by a re-read.
func (w *KernelWatcher) Watch(ctx context.Context, hints chan<- Hint) error {
	retry := w.RetryEvery
	if retry <= 0 {
		retry = time.Second
	}
	// Never block on hints: a full channel already means a resync is
	// pending, and a watcher stuck on it would stop draining the library's
	// channel, whose socket would then overflow (ENOBUFS) for nothing.
	send := func(h Hint) {
		select {
		case hints <- h:
		default:
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, sub := range []func(context.Context, func(Hint)) error{w.routes, w.links, w.addrs, w.rules} {
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
				send(Hint{Reason: reason, What: "resubscribe"})
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

func (w *KernelWatcher) routes(ctx context.Context, send func(Hint)) error {
	return subscription(ctx, "route", send, func(ch chan netlink.RouteUpdate, done chan struct{}, cb func(error)) error {
		return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: w.nsOpt(), ErrorCallback: cb, ReceiveBufferSize: subscribeBuffer})
	}, func(u netlink.RouteUpdate) bool {
		// Cloned (cache) routes and the local table churn with traffic
		// and addresses; they are never uplinkd's.
		return u.Flags&unix.RTM_F_CLONED == 0 && u.Table != unix.RT_TABLE_LOCAL
	})
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

// rules reads rule notifications from a raw rtnetlink socket: any message
// is a hint, its content does not matter.
func (w *KernelWatcher) rules(ctx context.Context, send func(Hint)) error {
	var s *nl.NetlinkSocket
	var err error
	if w.NS.IsOpen() {
		s, err = nl.SubscribeAt(w.NS, netns.None(), unix.NETLINK_ROUTE, rtnlgrpIPv4Rule, rtnlgrpIPv6Rule)
	} else {
		s, err = nl.Subscribe(unix.NETLINK_ROUTE, rtnlgrpIPv4Rule, rtnlgrpIPv6Rule)
	}
	if err != nil {
		return fmt.Errorf("subscribing to rule events: %w", err)
	}
	if err := s.SetReceiveBufferSize(subscribeBuffer, false); err != nil {
		s.Close()
		return fmt.Errorf("sizing rule event socket: %w", err)
	}
	stop := context.AfterFunc(ctx, s.Close)
	defer func() {
		if stop() {
			s.Close()
		}
	}()
	for {
		msgs, _, err := s.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receiving rule events: %w", err)
		}
		if len(msgs) > 0 {
			send(Hint{Reason: ReasonEvent, What: "rule"})
		}
	}
}

// Run keeps the kernel at the desired state until ctx ends or Close is
// called: it applies each Set at once, and re-reads and repairs owned state
// after change hints (debounced), after ENOBUFS or an interrupted dump, and
// every ResyncEvery. Repairs are rate-limited.
func (r *Reconciler) Run(ctx context.Context) error {
	// Registering with wg under mu, checked against closing, keeps Close's
	// wg.Wait from racing with a Run that is just starting.
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return errors.New("running reconciler: closed")
	}
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-r.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	hints := make(chan Hint, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.watcher.Watch(ctx, hints); err != nil && ctx.Err() == nil {
			r.log.Error("watching kernel events; relying on periodic resync", "err", err)
		}
	}()

	ticker := time.NewTicker(r.cfg.ResyncEvery)
	defer ticker.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	debouncing := false
	pending := "" // reason of the resync the debounce timer will run
	full := true  // the next reconcile must re-read the kernel
	reason := ReasonStart
	kick := make(chan struct{}, 1)
	kick <- struct{}{}

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.setc:
			r.runOnce(ctx, full, reason)
			full, reason = false, ""
		case <-kick:
			r.runOnce(ctx, full, reason)
			full, reason = false, ""
		case h := <-hints:
			if pending == "" || h.Reason != ReasonEvent {
				pending = h.Reason
			}
			r.invalidate()
			if !debouncing {
				debounce.Reset(r.cfg.Debounce)
				debouncing = true
			}
		case <-debounce.C:
			debouncing = false
			why := pending
			pending = ""
			if wait := r.runOnce(ctx, true, why); wait > 0 {
				pending = why
				debounce.Reset(wait)
				debouncing = true
			}
		case <-ticker.C:
			r.runOnce(ctx, true, ReasonTimer)
		}
	}
}

// runOnce reconciles once. Writes that want did not cause are drift
// repairs; when the repair budget is spent it writes nothing and returns
// how long to wait.
func (r *Reconciler) runOnce(ctx context.Context, full bool, reason string) time.Duration {
	r.mu.Lock()
	repair := r.want != nil && r.wantGen == r.appliedGen
	r.mu.Unlock()
	if reason == "" {
		reason = ReasonEvent
	}
	if repair {
		if wait := r.repairBudget(); wait > 0 {
			r.log.Warn("drift repairs rate-limited; something keeps changing owned routes or rules", "retry_in", wait)
			return wait
		}
	}
	n, err := r.reconcile(ctx, full, reason, repair)
	if err != nil && ctx.Err() == nil {
		r.log.Error("reconciling routes and rules", "err", err)
	}
	if repair && n > 0 {
		r.spendRepair()
	}
	return 0
}

// repairBudget refills the token bucket and returns 0 if a repair may run,
// or how long until one may.
func (r *Reconciler) repairBudget() time.Duration {
	now := r.now()
	r.tokens = min(repairBurst, r.tokens+now.Sub(r.tokensAt).Seconds()*repairRate)
	r.tokensAt = now
	if r.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - r.tokens) / repairRate * float64(time.Second))
}

func (r *Reconciler) spendRepair() { r.tokens-- }

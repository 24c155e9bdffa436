package netlab

import (
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteEvent is one route change seen in a namespace.
type RouteEvent struct {
	At       time.Time
	Type     uint16 // unix.RTM_NEWROUTE or unix.RTM_DELROUTE
	Protocol int
	Table    int
	Default  bool
	Route    netlink.Route
}

// Op is "+" for a new or replaced route and "-" for a deleted one.
func (e RouteEvent) Op() string {
	if e.Type == unix.RTM_DELROUTE {
		return "-"
	}
	return "+"
}

// RouteMonitor records the route changes of one namespace, as `ip monitor
// route` would show them, from a netlink subscription opened inside it.
type RouteMonitor struct {
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu     sync.Mutex
	events []RouteEvent
	err    error
}

// MonitorRoutes subscribes to h's route changes until Close.
func MonitorRoutes(h *Host) (*RouteMonitor, error) {
	m := &RouteMonitor{done: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 256)
	ns := h.NsHandle()
	err := netlink.RouteSubscribeWithOptions(ch, m.done, netlink.RouteSubscribeOptions{
		Namespace:         &ns,
		ReceiveBufferSize: 1 << 20,
		ErrorCallback: func(err error) {
			m.mu.Lock()
			if m.err == nil {
				m.err = err
			}
			m.mu.Unlock()
		},
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to routes in %s: %w", h.NS, err)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for u := range ch {
			ev := RouteEvent{
				At:       time.Now(),
				Type:     u.Type,
				Protocol: int(u.Route.Protocol),
				Table:    u.Route.Table,
				Default:  u.Route.Dst == nil || (u.Route.Dst.IP.IsUnspecified() && isZeroMask(u.Route.Dst.Mask)),
				Route:    u.Route,
			}
			m.mu.Lock()
			m.events = append(m.events, ev)
			m.mu.Unlock()
		}
	}()
	return m, nil
}

func isZeroMask(m []byte) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

// Events returns the changes seen so far.
func (m *RouteMonitor) Events() []RouteEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]RouteEvent(nil), m.events...)
}

// Count returns how many changes of routes with protocol proto (any when
// proto < 0) happened in [from, to).
func (m *RouteMonitor) Count(proto int, from, to time.Time) int {
	n := 0
	for _, e := range m.Events() {
		if (proto < 0 || e.Protocol == proto) && !e.At.Before(from) && e.At.Before(to) {
			n++
		}
	}
	return n
}

// Err is the first subscription error (e.g. ENOBUFS: events were lost).
func (m *RouteMonitor) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Close ends the subscription. Idempotent.
func (m *RouteMonitor) Close() {
	m.once.Do(func() { close(m.done) })
	m.wg.Wait()
}

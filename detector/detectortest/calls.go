package detectortest

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/uplinkd/uplinkd/detector"
)

// The detector.Kernel methods of Kernel.

func (k *Kernel) Link(name string) (detector.Link, error) {
	if err := k.enter(OpLink); err != nil {
		return detector.Link{}, err
	}
	defer k.mu.Unlock()
	l := k.links[name]
	if l == nil {
		return detector.Link{}, fmt.Errorf("reading link %s: %w", name, detector.ErrNotFound)
	}
	return linkOf(name, l), nil
}

func (k *Kernel) SubscribeLinks(ch chan<- detector.Link, done <-chan struct{}, onErr func(error)) error {
	if err := k.enter(OpSubscribeLinks); err != nil {
		return err
	}
	defer k.mu.Unlock()
	s := newSubscription(ch, done, func(s *subscription[detector.Link]) {
		k.mu.Lock()
		delete(k.linkSubs, s)
		k.mu.Unlock()
	})
	for name, l := range k.links {
		s.push(linkOf(name, l))
	}
	k.linkSubs[s] = true
	return nil
}

func (k *Kernel) SubscribeNeighbours(ch chan<- detector.Neighbour, done <-chan struct{}, onErr func(error)) error {
	if err := k.enter(OpSubscribeNeighbours); err != nil {
		return err
	}
	defer k.mu.Unlock()
	s := newSubscription(ch, done, func(s *subscription[detector.Neighbour]) {
		k.mu.Lock()
		delete(k.neighSubs, s)
		k.mu.Unlock()
	})
	for _, n := range k.neighs {
		s.push(n)
	}
	k.neighSubs[s] = true
	return nil
}

func (k *Kernel) Neighbours(index int, fam detector.Family) ([]detector.Neighbour, error) {
	if err := k.enter(OpNeighbours); err != nil {
		return nil, err
	}
	defer k.mu.Unlock()
	var out []detector.Neighbour
	for key, n := range k.neighs {
		if key.index == index && (fam == detector.AnyFamily || (fam == detector.IPv4) == key.addr.Is4()) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (k *Kernel) Resolve(index int, addr netip.Addr) error {
	if err := k.enter(OpResolve); err != nil {
		return err
	}
	defer k.mu.Unlock()
	k.resolves = append(k.resolves, addr)
	return nil
}

// Revalidate is refused, as by a kernel without NUD_PROBE: nothing
// answers in the fake, so rounds are decided by the Prober.
func (k *Kernel) Revalidate(index int, addr netip.Addr, hw net.HardwareAddr) error {
	if err := k.enter(OpRevalidate); err != nil {
		return err
	}
	defer k.mu.Unlock()
	return fmt.Errorf("setting neighbour %s to PROBE: %w", addr, detector.ErrNotSupported)
}

func (k *Kernel) Addresses(index int, fam detector.Family) ([]detector.Address, error) {
	if err := k.enter(OpAddresses); err != nil {
		return nil, err
	}
	defer k.mu.Unlock()
	var out []detector.Address
	for _, a := range k.addrs[index] {
		if fam == detector.AnyFamily || (fam == detector.IPv4) == a.IP.Is4() {
			out = append(out, a)
		}
	}
	return out, nil
}

func (k *Kernel) LinkMode(name string) (detector.LinkMode, error) {
	if err := k.enter(OpLinkMode); err != nil {
		return detector.LinkMode{}, err
	}
	defer k.mu.Unlock()
	m, ok := k.modes[name]
	if !ok {
		return detector.LinkMode{}, fmt.Errorf("reading link mode of %s: %w", name, detector.ErrNotSupported)
	}
	return m, nil
}

// Counters are the interface's, the same for every gateway on it, as
// the production interface-counter source's.
func (k *Kernel) Counters(index int, gws []netip.Addr) ([]detector.Counters, error) {
	if err := k.enter(OpCounters); err != nil {
		return nil, err
	}
	defer k.mu.Unlock()
	for _, l := range k.links {
		if l.index == index {
			out := make([]detector.Counters, len(gws))
			for i := range out {
				out[i] = detector.Counters{Tx: l.tx, Rx: l.rx}
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("reading statistics of link %d: no such device", index)
}

// subscription delivers updates in order without ever blocking the
// kernel's lock: push queues, a pump goroutine sends, and once done is
// closed it unregisters and closes ch, as netlink's subscriptions do.
type subscription[T any] struct {
	mu   sync.Mutex
	q    []T
	wake chan struct{}
}

func newSubscription[T any](ch chan<- T, done <-chan struct{}, unregister func(*subscription[T])) *subscription[T] {
	s := &subscription[T]{wake: make(chan struct{}, 1)}
	go s.pump(ch, done, unregister)
	return s
}

func (s *subscription[T]) push(v T) {
	s.mu.Lock()
	s.q = append(s.q, v)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription[T]) pump(ch chan<- T, done <-chan struct{}, unregister func(*subscription[T])) {
	defer close(ch)
	defer unregister(s)
	for {
		select {
		case <-done:
			return
		case <-s.wake:
		}
		s.mu.Lock()
		q := s.q
		s.q = nil
		s.mu.Unlock()
		for _, v := range q {
			select {
			case ch <- v:
			case <-done:
				return
			}
		}
	}
}

// Package condwatchtest is an in-memory condwatch.Kernel: links and
// addresses set by the test, notifications sent when it says, and
// subscriptions it can fail as ENOBUFS does.
package condwatchtest

import (
	"sync"

	"github.com/uplinkd/uplinkd/internal/condition"
)

// Kernel is a fake condwatch.Kernel. The zero value is usable.
type Kernel struct {
	mu    sync.Mutex
	links map[string]bool
	addrs map[condition.Addr]bool
	subs  []*sub
	reads int
	// Quiet, when set, changes state without notifying: a lost
	// notification, which only a resync repairs.
	Quiet bool
	// Wedge, when set before the watcher runs, makes every Read wait on it:
	// a netlink call that never returns.
	Wedge chan struct{}
}

type sub struct {
	ch    chan<- struct{}
	onErr func(error)
	dead  bool
}

// Subscribe implements condwatch.Kernel.
func (k *Kernel) Subscribe(ch chan<- struct{}, done <-chan struct{}, onErr func(error)) error {
	s := &sub{ch: ch, onErr: onErr}
	k.mu.Lock()
	k.subs = append(k.subs, s)
	k.mu.Unlock()
	go func() {
		<-done
		k.mu.Lock()
		s.dead = true
		k.mu.Unlock()
		close(ch)
	}()
	return nil
}

// Read implements condwatch.Kernel.
func (k *Kernel) Read(ifaces []string) (map[string]bool, map[condition.Addr]bool, error) {
	if k.Wedge != nil {
		<-k.Wedge
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reads++
	links, addrs := map[string]bool{}, map[condition.Addr]bool{}
	for _, i := range ifaces {
		if v, ok := k.links[i]; ok {
			links[i] = v
		}
	}
	for a := range k.addrs {
		for _, i := range ifaces {
			if a.Iface == i {
				addrs[a] = true
			}
		}
	}
	return links, addrs, nil
}

// Reads is how many times Read was called.
func (k *Kernel) Reads() int { k.mu.Lock(); defer k.mu.Unlock(); return k.reads }

// SetLink sets an interface up or down and notifies.
func (k *Kernel) SetLink(name string, up bool) {
	k.mu.Lock()
	if k.links == nil {
		k.links = map[string]bool{}
	}
	k.links[name] = up
	k.mu.Unlock()
	k.notify()
}

// SetAddr adds or removes an address and notifies.
func (k *Kernel) SetAddr(a condition.Addr, present bool) {
	k.mu.Lock()
	if k.addrs == nil {
		k.addrs = map[condition.Addr]bool{}
	}
	if present {
		k.addrs[a] = true
	} else {
		delete(k.addrs, a)
	}
	k.mu.Unlock()
	k.notify()
}

// Overflow fails every live subscription, as ENOBUFS does.
func (k *Kernel) Overflow(err error) {
	k.mu.Lock()
	var subs []*sub
	for _, s := range k.subs {
		if !s.dead {
			subs = append(subs, s)
		}
	}
	k.mu.Unlock()
	for _, s := range subs {
		s.onErr(err)
	}
}

func (k *Kernel) notify() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Quiet {
		return
	}
	for _, s := range k.subs {
		if !s.dead {
			select {
			case s.ch <- struct{}{}:
			default:
			}
		}
	}
}

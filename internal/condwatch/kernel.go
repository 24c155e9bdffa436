package condwatch

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/internal/condition"
)

// Kernel is what the watcher needs of netlink, in its own types. Netlink
// implements it; tests use condwatchtest's fake.
type Kernel interface {
	// Subscribe sends a hint on ch for every link or address notification
	// until done is closed, and calls onErr when the subscription fails
	// (ENOBUFS included). Once subscribed, it closes ch when it stops; a
	// failed Subscribe never touches ch.
	Subscribe(ch chan<- struct{}, done <-chan struct{}, onErr func(error)) error
	// Read returns the state of the named interfaces: which are up (exist,
	// administratively up, carrier) and which usable addresses they hold.
	Read(ifaces []string) (links map[string]bool, addrs map[condition.Addr]bool, err error)
}

// Netlink is the Kernel of a network namespace: NS, or the process's own
// when NS is nil.
type Netlink struct {
	NS *netns.NsHandle
}

func (n Netlink) Subscribe(ch chan<- struct{}, done <-chan struct{}, onErr func(error)) error {
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	ldone, adone := make(chan struct{}), make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(links, ldone, netlink.LinkSubscribeOptions{ErrorCallback: onErr, Namespace: n.NS}); err != nil {
		return err
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, adone, netlink.AddrSubscribeOptions{ErrorCallback: onErr, Namespace: n.NS}); err != nil {
		close(ldone)
		for range links {
		}
		return err
	}
	go func() {
		defer close(ch)
		closed := func(what string) {
			if done != nil { // not asked to stop: the subscription failed
				onErr(errors.New(what + " subscription closed"))
			}
		}
		for links != nil || addrs != nil {
			select {
			case <-done:
				close(ldone)
				close(adone)
				done = nil
			case _, ok := <-links:
				if !ok {
					links = nil
					closed("link")
					continue
				}
				hint(ch)
			case _, ok := <-addrs:
				if !ok {
					addrs = nil
					closed("address")
					continue
				}
				hint(ch)
			}
		}
	}()
	return nil
}

// hint sends without blocking: one pending hint is as good as many.
func hint(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (n Netlink) Read(ifaces []string) (map[string]bool, map[condition.Addr]bool, error) {
	h := &netlink.Handle{}
	if n.NS != nil {
		var err error
		if h, err = netlink.NewHandleAt(*n.NS); err != nil {
			return nil, nil, fmt.Errorf("opening netlink in the namespace: %w", err)
		}
		defer h.Close()
	}
	links := map[string]bool{}
	addrs := map[condition.Addr]bool{}
	var errs []error
	for _, name := range ifaces {
		l, err := h.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			continue // absent: down, and no addresses
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a := l.Attrs()
		links[name] = a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0
		list, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, ad := range list {
			// A tentative address is not yet usable and a DAD-failed one
			// never will be: neither means this node holds it.
			if ad.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 || ad.IPNet == nil {
				continue
			}
			if ip, ok := netipFrom(ad.IP); ok {
				addrs[condition.Addr{Iface: name, IP: ip}] = true
			}
		}
	}
	return links, addrs, errors.Join(errs...)
}

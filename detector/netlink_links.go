package detector

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/policy"
)

// The Links, Neighbours and Addresses halves of Netlink: calls into the
// library, and the conversions of its types into the detector's.

func (k *Netlink) Link(name string) (Link, error) {
	l, err := k.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return Link{}, fmt.Errorf("reading link %s: %w", name, ErrNotFound)
		}
		return Link{}, fmt.Errorf("reading link %s: %w", name, err)
	}
	return linkFromLink(l), nil
}

func (k *Netlink) SubscribeLinks(ch chan<- Link, done <-chan struct{}, onErr func(error)) error {
	raw := make(chan netlink.LinkUpdate, cap(ch))
	err := netlink.LinkSubscribeWithOptions(raw, done, netlink.LinkSubscribeOptions{
		Namespace: k.nsOpt(), ErrorCallback: onErr, ListExisting: true, ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return err
	}
	go forward(raw, ch, done, linkFromUpdate)
	return nil
}

func (k *Netlink) SubscribeNeighbours(ch chan<- Neighbour, done <-chan struct{}, onErr func(error)) error {
	raw := make(chan netlink.NeighUpdate, cap(ch))
	err := netlink.NeighSubscribeWithOptions(raw, done, netlink.NeighSubscribeOptions{
		Namespace: k.nsOpt(), ErrorCallback: onErr, ListExisting: true, ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return err
	}
	go forward(raw, ch, done, neighFromUpdate)
	return nil
}

// forward converts the library's updates until the library closes raw
// (which it does once done is closed or the subscription fails), then
// closes ch: the contract of SubscribeLinks.
func forward[R, T any](raw <-chan R, ch chan<- T, done <-chan struct{}, conv func(R) (T, bool)) {
	defer close(ch)
	for u := range raw {
		v, ok := conv(u)
		if !ok {
			continue
		}
		select {
		case ch <- v:
		case <-done: // keep draining raw until the library closes it
		}
	}
}

func (k *Netlink) Neighbours(index int, fam Family) ([]Neighbour, error) {
	ns, err := k.h.NeighList(index, nlFamily(fam))
	if err != nil {
		return nil, fmt.Errorf("listing neighbours of link %d: %w", index, err)
	}
	out := make([]Neighbour, 0, len(ns))
	for i := range ns {
		if n, ok := neighFromNeigh(&ns[i]); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

func (k *Netlink) Resolve(index int, addr netip.Addr) error {
	return k.h.NeighSet(&netlink.Neigh{LinkIndex: index, Family: nlFamily(Family(policy.FamilyOf(addr))), IP: addr.AsSlice(), Flags: netlink.NTF_USE})
}

func (k *Netlink) Revalidate(index int, addr netip.Addr, hw net.HardwareAddr) error {
	err := k.h.NeighSet(&netlink.Neigh{LinkIndex: index, Family: nlFamily(Family(policy.FamilyOf(addr))), IP: addr.AsSlice(),
		HardwareAddr: hw, State: netlink.NUD_PROBE})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("setting neighbour %s to PROBE: %w: %w", addr, ErrNotSupported, err)
	}
	if err != nil {
		return fmt.Errorf("setting neighbour %s to PROBE: %w", addr, err)
	}
	return nil
}

func (k *Netlink) Addresses(index int, fam Family) ([]Address, error) {
	l, err := k.h.LinkByIndex(index)
	if err != nil {
		return nil, fmt.Errorf("reading link %d: %w", index, err)
	}
	as, err := k.h.AddrList(l, nlFamily(fam))
	if err != nil {
		return nil, fmt.Errorf("listing addresses of link %d: %w", index, err)
	}
	out := make([]Address, 0, len(as))
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, Address{IP: ip.Unmap(), Tentative: a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0})
		}
	}
	return out, nil
}

func nlFamily(f Family) int {
	switch f {
	case IPv4:
		return netlink.FAMILY_V4
	case IPv6:
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_ALL
}

// linkFromUpdate turns a raw netlink link update into a Link. Updates
// without a name cannot be matched to the policy and are dropped.
func linkFromUpdate(u netlink.LinkUpdate) (Link, bool) {
	if u.Link == nil || u.Link.Attrs() == nil || u.Link.Attrs().Name == "" {
		return Link{}, false
	}
	li := linkFromLink(u.Link)
	if u.Header.Type == unix.RTM_DELLINK {
		li.Deleted, li.Carrier, li.AdminUp = true, false, false
	}
	return li, true
}

func linkFromLink(l netlink.Link) Link {
	a := l.Attrs()
	li := Link{Name: a.Name, Index: a.Index}
	li.AdminUp = a.RawFlags&unix.IFF_UP != 0
	li.Carrier = li.AdminUp && a.RawFlags&unix.IFF_LOWER_UP != 0
	return li
}

// userHZ is the unit of the kernel's neighbour cache ages (clock_t).
const userHZ = 100

func neighFromUpdate(u netlink.NeighUpdate) (Neighbour, bool) {
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

func neighFromNeigh(n *netlink.Neigh) (Neighbour, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok || n.LinkIndex == 0 {
		return Neighbour{}, false
	}
	ni := Neighbour{Index: n.LinkIndex, Addr: a.Unmap(), State: NUD(n.State),
		ConfirmedAge: time.Duration(n.Confirmed) * time.Second / userHZ}
	if len(n.HardwareAddr) > 0 {
		ni.HwAddr = append(net.HardwareAddr(nil), n.HardwareAddr...)
	}
	return ni, true
}

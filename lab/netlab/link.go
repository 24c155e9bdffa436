package netlab

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// Link creates a veth pair with aIf inside a and bIf inside b and sets both
// ends up. The pair is created from within a's namespace with the peer placed
// straight into b's, so it never exists in the root namespace.
func (l *Lab) Link(a *Host, aIf string, b *Host, bIf string) error {
	if err := link(a, aIf, b, bIf); err != nil {
		return fmt.Errorf("linking %s:%s <-> %s:%s: %w", a.Name, aIf, b.Name, bIf, err)
	}
	return nil
}

func link(a *Host, aIf string, b *Host, bIf string) error {
	if err := validIfName(aIf); err != nil {
		return err
	}
	if err := validIfName(bIf); err != nil {
		return err
	}
	if a.Handle == nil || b.Handle == nil || b.ns < 0 {
		return fmt.Errorf("host namespace not open (lab closed?)")
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: aIf},
		PeerName:  bIf,
		// The request goes through a's handle, whose socket lives in a's
		// namespace, so the first end is born there and the peer directly
		// in b's: no veth ever appears in the root namespace.
		PeerNamespace: netlink.NsFd(int(b.ns)),
	}
	if err := a.Handle.LinkAdd(veth); err != nil {
		return fmt.Errorf("adding veth: %w", err)
	}
	for _, e := range []struct {
		h    *Host
		name string
	}{{a, aIf}, {b, bIf}} {
		l, err := e.h.Handle.LinkByName(e.name)
		if err != nil {
			return fmt.Errorf("%s:%s: %w", e.h.Name, e.name, err)
		}
		if err := e.h.Handle.LinkSetUp(l); err != nil {
			return fmt.Errorf("setting %s:%s up: %w", e.h.Name, e.name, err)
		}
	}
	return nil
}

package nstest

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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
		return fmt.Errorf("veth add: %w", err)
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
			return fmt.Errorf("%s:%s up: %w", e.h.Name, e.name, err)
		}
	}
	return nil
}

func syscallKill(pid int) error { return unix.Kill(pid, unix.SIGKILL) }

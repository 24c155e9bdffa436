package detector

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/policy"
)

// pinnedDialer is the dialer of every connection probe (tcp, http, dns):
// the uplink's source address unless pin = "mark" (the mark's rule picks
// the table, and the table the source), and SO_MARK or SO_BINDTODEVICE as
// the pin says, so that the probe leaves through this gateway only.
// network is "tcp" or "udp". The socket must be created in the probed
// namespace (InNamespace).
func pinnedDialer(t Target, network string) net.Dialer {
	d := net.Dialer{Timeout: t.Timeout}
	if t.Source.IsValid() && t.Pin != policy.PinMark {
		if network == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: t.Source.AsSlice()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: t.Source.AsSlice()}
		}
	}
	d.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			switch t.Pin {
			case policy.PinMark:
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(t.Mark))
			case policy.PinDevice, "":
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, t.Iface)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	return d
}

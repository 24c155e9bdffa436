package nstest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// TunWire is a point-to-point link between two hosts with no link layer,
// as PPP or a VPN makes: a tun device in each namespace, and the test
// process carrying every packet from one to the other. SetDrop makes the
// wire lose everything silently while both devices stay up, the death a
// PPP or tunnel peer dies when its far side stops forwarding.
type TunWire struct {
	a, b *os.File
	drop atomic.Bool
	wg   sync.WaitGroup
	once sync.Once
}

// NewTunWire creates tun device name in h1 and in h2 (up, no address) and
// starts carrying packets. Close (also at the end of t) deletes both
// devices and stops the copying.
func NewTunWire(t testing.TB, h1 *Host, name1 string, h2 *Host, name2 string) *TunWire {
	t.Helper()
	w := &TunWire{}
	var err error
	if w.a, err = openTun(h1, name1); err != nil {
		t.Fatalf("nstest: %v", err)
	}
	if w.b, err = openTun(h2, name2); err != nil {
		w.a.Close()
		t.Fatalf("nstest: %v", err)
	}
	h1.MustRun(t, "ip", "link", "set", name1, "up")
	h2.MustRun(t, "ip", "link", "set", name2, "up")
	w.wg.Add(2)
	go w.carry(w.a, w.b)
	go w.carry(w.b, w.a)
	t.Cleanup(w.Close)
	return w
}

// openTun creates a tun device in h's namespace: the kernel puts it in
// the namespace of the thread that opens /dev/net/tun. Not persistent, so
// it goes when its file is closed.
func openTun(h *Host, name string) (*os.File, error) {
	var f *os.File
	err := h.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("creating tun device %s: %w", name, err)
		}
		// Non-blocking, so that the runtime poller owns it and Close
		// ends a Read in progress.
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("[%s] %w", h.Name, err)
	}
	return f, nil
}

// carry copies packets from src to dst until either is closed.
func (w *TunWire) carry(src, dst *os.File) {
	defer w.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if w.drop.Load() {
			continue
		}
		// A device that is down refuses the write (EIO): that packet is
		// lost, as on a wire; only a closed end stops the copying.
		if _, err := dst.Write(buf[:n]); errors.Is(err, os.ErrClosed) {
			return
		}
	}
}

// SetDrop makes the wire drop (true) or carry (false) every packet.
func (w *TunWire) SetDrop(drop bool) { w.drop.Store(drop) }

// Close deletes both devices (their files closed) and waits for the
// copying to end. Safe to call more than once.
func (w *TunWire) Close() {
	w.once.Do(func() {
		w.a.Close()
		w.b.Close()
		w.wg.Wait()
	})
}

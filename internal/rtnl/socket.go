package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"runtime"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// blockingSocket is a netlink.Socket on a plain blocking file descriptor.
//
// mdlayher/netlink's own socket is non-blocking and registered with the
// runtime's netpoller, so every ACK the kernel queues wakes the netpoller
// thread: with 10,000 writes that is 10,000 wake-ups, and it made a batch
// of rule adds twice as slow as vishvananda/netlink's blocking socket
// (BenchmarkRules). The kernel handles a request synchronously inside
// sendmsg, so by the time a batch is sent its ACKs are queued already and
// a blocking read never waits; SO_RCVTIMEO bounds a read that would.
type blockingSocket struct {
	fd  int
	buf []byte
}

// recvBuf is the read buffer: bigger than any datagram the kernel sends
// (dump parts are at most 32 KiB).
const recvBuf = 64 << 10

func dialBlocking(ns netns.NsHandle) (*blockingSocket, uint32, error) {
	fd, err := socketIn(ns)
	if err != nil {
		return nil, 0, err
	}
	s := &blockingSocket{fd: fd, buf: make([]byte, recvBuf)}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		s.Close()
		return nil, 0, fmt.Errorf("binding rtnetlink socket: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		s.Close()
		return nil, 0, fmt.Errorf("reading rtnetlink socket address: %w", err)
	}
	tv := unix.NsecToTimeval(int64(ackTimeout))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		s.Close()
		return nil, 0, fmt.Errorf("setting the read timeout: %w", err)
	}
	// Best effort: without them errors lose their text,
	// ACKs are longer and dumps are filtered in userspace.
	for _, opt := range []int{unix.NETLINK_EXT_ACK, unix.NETLINK_CAP_ACK, unix.NETLINK_GET_STRICT_CHK} {
		_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, opt, 1)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return s, sa.(*unix.SockaddrNetlink).Pid, nil
}

// socketIn creates the socket inside ns, on a thread locked for the
// switch; netns.None() means the current namespace.
func socketIn(ns netns.NsHandle) (int, error) {
	open := func() (int, error) {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return -1, fmt.Errorf("opening rtnetlink socket: %w", err)
		}
		return fd, nil
	}
	if !ns.IsOpen() {
		return open()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return -1, fmt.Errorf("reading the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return -1, fmt.Errorf("entering network namespace: %w", err)
	}
	fd, err := open()
	if rerr := netns.Set(orig); rerr != nil {
		// The thread is in the wrong namespace: never let it run
		// anything else (a locked thread that is not unlocked dies with
		// its goroutine).
		runtime.LockOSThread()
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("returning to the original network namespace: %w", rerr)
	}
	return fd, err
}

func (s *blockingSocket) Close() error { return unix.Close(s.fd) }

func (s *blockingSocket) Send(m netlink.Message) error {
	return s.SendMessages([]netlink.Message{m})
}

// SendMessages sends msgs in one datagram; the kernel handles them in
// order.
func (s *blockingSocket) SendMessages(msgs []netlink.Message) error {
	var b []byte
	for _, m := range msgs {
		mb, err := m.MarshalBinary()
		if err != nil {
			return err
		}
		b = append(b, mb...)
	}
	return unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

func (s *blockingSocket) Receive() ([]netlink.Message, error) {
	var out []netlink.Message
	for m, err := range s.ReceiveIter() {
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// ReceiveIter reads one datagram and yields its messages. The buffer is
// reused, so each message's data is copied out.
func (s *blockingSocket) ReceiveIter() iter.Seq2[netlink.Message, error] {
	return func(yield func(netlink.Message, error) bool) {
		n, _, flags, _, err := unix.Recvmsg(s.fd, s.buf, nil, 0)
		for errors.Is(err, unix.EINTR) {
			n, _, flags, _, err = unix.Recvmsg(s.fd, s.buf, nil, 0)
		}
		if errors.Is(err, unix.EAGAIN) {
			err = fmt.Errorf("no reply within %v: %w", ackTimeout, err)
		}
		if err != nil {
			yield(netlink.Message{}, err)
			return
		}
		if flags&unix.MSG_TRUNC != 0 {
			yield(netlink.Message{}, errors.New("netlink datagram larger than the read buffer"))
			return
		}
		b := s.buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				yield(netlink.Message{}, fmt.Errorf("netlink message of length %d in %d bytes", l, len(b)))
				return
			}
			var m netlink.Message
			if err := m.UnmarshalBinary(append([]byte(nil), b[:nlmsgAlign(l, len(b))]...)); err != nil {
				yield(netlink.Message{}, err)
				return
			}
			if !yield(m, nil) {
				return
			}
			b = b[nlmsgAlign(l, len(b)):]
		}
	}
}

func nlmsgAlign(l, max int) int {
	return min((l+unix.NLMSG_ALIGNTO-1) & ^(unix.NLMSG_ALIGNTO-1), max)
}

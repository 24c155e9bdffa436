package rtnl

import (
	"encoding/binary"
	"errors"
	"iter"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ackSocket is a netlink.Socket that acknowledges every request the way
// rtnetlink does: one datagram per ACK, in request order, each Receive
// returning one. errno chooses a request's error (0: success).
type ackSocket struct {
	errno    func(i int) unix.Errno
	sent     []netlink.Message
	acks     []netlink.Message
	maxQueue int // most ACKs ever waiting to be read: the requests in flight
}

func (s *ackSocket) Close() error                     { return nil }
func (s *ackSocket) Send(m netlink.Message) error     { return s.SendMessages([]netlink.Message{m}) }
func (s *ackSocket) SetDeadline(time.Time) error      { return nil }
func (s *ackSocket) SetReadDeadline(time.Time) error  { return nil }
func (s *ackSocket) SetWriteDeadline(time.Time) error { return nil }

func (s *ackSocket) SendMessages(ms []netlink.Message) error {
	for _, m := range ms {
		i := len(s.sent)
		s.sent = append(s.sent, m)
		data := make([]byte, 4+16) // errno, then the request's header (capped ACK)
		binary.NativeEndian.PutUint32(data, uint32(-int32(s.errno(i))))
		s.acks = append(s.acks, netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, Flags: netlink.Capped}, Data: data})
	}
	s.maxQueue = max(s.maxQueue, len(s.acks))
	return nil
}

func (s *ackSocket) Receive() ([]netlink.Message, error) {
	if len(s.acks) == 0 {
		return nil, errors.New("ackSocket: read with no ACK queued (the batch would hang on a kernel)")
	}
	m := s.acks[0]
	s.acks = s.acks[1:]
	return []netlink.Message{m}, nil
}

func (s *ackSocket) ReceiveIter() iter.Seq2[netlink.Message, error] {
	return func(yield func(netlink.Message, error) bool) {
		ms, err := s.Receive()
		if err != nil {
			yield(netlink.Message{}, err)
			return
		}
		for _, m := range ms {
			if !yield(m, nil) {
				return
			}
		}
	}
}

func TestBatch(t *testing.T) {
	const n = 3*Window + 7
	fails := map[int]unix.Errno{0: unix.EEXIST, Window + 3: unix.EINVAL, n - 1: unix.ENOENT}
	sock := &ackSocket{errno: func(i int) unix.Errno { return fails[i] }}
	c := &Conn{c: netlink.NewConn(sock, 1)}
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = NexthopDeleteRequest(uint32(i + 1))
	}
	errs := c.Batch(reqs)
	if len(sock.sent) != n {
		t.Fatalf("%d requests sent, want %d", len(sock.sent), n)
	}
	for i, m := range sock.sent {
		if got := binary.NativeEndian.Uint32(m.Data[sizeofNhmsg+4:]); got != uint32(i+1) {
			t.Fatalf("request %d carries nexthop id %d: the batch reordered requests", i, got)
		}
		if m.Header.Flags&netlink.Acknowledge == 0 {
			t.Fatalf("request %d does not ask for an ACK", i)
		}
	}
	if sock.maxQueue > Window {
		t.Errorf("%d requests were in flight at once, more than Window (%d)", sock.maxQueue, Window)
	}
	if sock.maxQueue < Window {
		t.Errorf("at most %d requests in flight: the batch does not pipeline up to Window (%d)", sock.maxQueue, Window)
	}
	for i, err := range errs {
		want, failed := fails[i]
		switch {
		case failed && !errors.Is(err, want):
			t.Errorf("request %d: error %v, want %v", i, err, want)
		case !failed && err != nil:
			t.Errorf("request %d: error %v, want success", i, err)
		}
	}
}

func TestBatchEmpty(t *testing.T) {
	sock := &ackSocket{errno: func(int) unix.Errno { return 0 }}
	c := &Conn{c: netlink.NewConn(sock, 1)}
	if errs := c.Batch(nil); len(errs) != 0 {
		t.Errorf("Batch(nil) = %v", errs)
	}
	if len(sock.sent) != 0 {
		t.Errorf("an empty batch sent %d messages", len(sock.sent))
	}
}

package rtnl

import (
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Window is how many requests a Batch keeps in flight. Each request is
// acknowledged by its own datagram, and an ACK the socket has no room for
// is dropped by the kernel, so the window must stay well inside the
// receive buffer: 64 ACKs of under 1 KiB of socket memory each fit the
// 208 KiB default many times over.
const Window = 64

// ackTimeout bounds the wait for one ACK; the kernel answers within
// microseconds, so only a lost ACK ever reaches it.
const ackTimeout = 5 * time.Second

// Conn is an rtnetlink socket in one network namespace, with strict
// checking (dumps filtered by the kernel) and extended ACKs (the kernel's
// reason in every error).
type Conn struct {
	c *netlink.Conn
}

// Dial opens a Conn in the network namespace ns (netns.None(): the
// current one), on a blocking socket (see blockingSocket).
func Dial(ns netns.NsHandle) (*Conn, error) {
	s, pid, err := dialBlocking(ns)
	if err != nil {
		return nil, err
	}
	return &Conn{c: netlink.NewConn(s, pid)}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Request is one write of a Batch.
type Request struct {
	Type  netlink.HeaderType
	Flags netlink.HeaderFlags // besides Request and Acknowledge, which are always set
	Data  []byte
	What  string // for errors: "adding nexthop 7", "replacing route default table 100"
}

// Flags of the three kinds of write.
const (
	FlagsAdd     = netlink.Create | netlink.Excl
	FlagsReplace = netlink.Create | netlink.Replace
)

// NexthopRequest builds the RTM_NEWNEXTHOP request that adds (flags
// FlagsAdd) or replaces (FlagsReplace) n.
func NexthopRequest(n Nexthop, flags netlink.HeaderFlags) (Request, error) {
	b, err := MarshalNexthop(n)
	if err != nil {
		return Request{}, err
	}
	return Request{Type: unix.RTM_NEWNEXTHOP, Flags: flags, Data: b, What: fmt.Sprintf("%s nexthop %d", verb(flags), n.ID)}, nil
}

// NexthopDeleteRequest builds the RTM_DELNEXTHOP request for id.
func NexthopDeleteRequest(id uint32) Request {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.NHA_ID, id)
	attrs, _ := ae.Encode() // a fixed u32 attribute cannot fail
	return Request{Type: unix.RTM_DELNEXTHOP, Data: append(make([]byte, sizeofNhmsg), attrs...), What: fmt.Sprintf("deleting nexthop %d", id)}
}

// RouteRequest builds the RTM_NEWROUTE request that adds or replaces r.
func RouteRequest(r Route, flags netlink.HeaderFlags) (Request, error) {
	b, err := MarshalRoute(r)
	if err != nil {
		return Request{}, err
	}
	return Request{Type: unix.RTM_NEWROUTE, Flags: flags, Data: b, What: fmt.Sprintf("%s route %s table %d", verb(flags), r.Dst, r.Table)}, nil
}

// RouteDeleteRequest builds the RTM_DELROUTE request for r's key.
func RouteDeleteRequest(r Route) (Request, error) {
	b, err := MarshalRouteDelete(r)
	if err != nil {
		return Request{}, err
	}
	return Request{Type: unix.RTM_DELROUTE, Data: b, What: fmt.Sprintf("deleting route %s table %d", r.Dst, r.Table)}, nil
}

func verb(flags netlink.HeaderFlags) string {
	if flags&netlink.Replace != 0 {
		return "replacing"
	}
	return "adding"
}

// Do sends one request and waits for its ACK.
func (c *Conn) Do(req Request) error {
	return c.Batch([]Request{req})[0]
}

// Batch sends reqs pipelined, at most Window in flight, and returns one
// error per request (nil: acknowledged). The kernel handles the requests
// of one socket in order, so a batch keeps the order of reqs exactly as
// one-at-a-time writes would; it only stops paying a round trip per write.
// A failed request does not stop the others, as with one-at-a-time writes.
func (c *Conn) Batch(reqs []Request) []error {
	errs := make([]error, len(reqs))
	pending := make(map[uint32]int, Window)
	next := 0
	fail := func(err error) []error {
		for _, i := range pending {
			errs[i] = fmt.Errorf("%s: %w", reqs[i].What, err)
		}
		for i := next; i < len(reqs); i++ {
			errs[i] = fmt.Errorf("%s: %w", reqs[i].What, err)
		}
		return errs
	}
	for next < len(reqs) || len(pending) > 0 {
		if n := min(Window-len(pending), len(reqs)-next); n > 0 {
			msgs := make([]netlink.Message, n)
			for i := range msgs {
				r := reqs[next+i]
				msgs[i] = netlink.Message{Header: netlink.Header{Type: r.Type, Flags: netlink.Request | netlink.Acknowledge | r.Flags}, Data: r.Data}
			}
			sent, err := c.c.SendMessages(msgs)
			if err != nil {
				return fail(fmt.Errorf("sending: %w", err))
			}
			for i, m := range sent {
				pending[m.Header.Sequence] = next + i
			}
			next += n
		}
		msgs, err := c.c.Receive()
		var oe *netlink.OpError
		if errors.As(err, &oe) && oe.Sequence != 0 {
			if i, ok := pending[oe.Sequence]; ok {
				delete(pending, oe.Sequence)
				errs[i] = fmt.Errorf("%s: %w", reqs[i].What, describe(oe))
				continue
			}
		}
		if err != nil {
			return fail(fmt.Errorf("reading acknowledgements: %w", err))
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error {
				delete(pending, m.Header.Sequence)
			}
		}
	}
	return errs
}

// describe keeps the errno for errors.Is and adds the kernel's extended
// ACK text, which says what the kernel disliked ("Nexthop id does not
// exist", "Can not replace a nexthop with a nexthop group").
func describe(oe *netlink.OpError) error {
	if oe.Message == "" {
		return oe.Err
	}
	return fmt.Errorf("%w (%s)", oe.Err, oe.Message)
}

// dump sends one dump request and returns every reply's body.
func (c *Conn) dump(typ netlink.HeaderType, body []byte) ([][]byte, error) {
	msgs, err := c.c.Execute(netlink.Message{Header: netlink.Header{Type: typ, Flags: netlink.Request | netlink.Dump}, Data: body})
	if err != nil {
		var oe *netlink.OpError
		if errors.As(err, &oe) {
			return nil, describe(oe)
		}
		return nil, err
	}
	out := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			return nil, ErrDumpInterrupted
		}
		out = append(out, m.Data)
	}
	return out, nil
}

// ErrDumpInterrupted reports a dump the kernel marked NLM_F_DUMP_INTR: the
// table changed while it was read, so the result is not a snapshot and the
// caller should read again.
var ErrDumpInterrupted = errors.New("dump interrupted by a concurrent change")

// Nexthops dumps every nexthop object of the namespace, foreign ones
// included: the kernel has no protocol filter for nexthop dumps, and the
// table of nexthop objects is small next to a routing table.
func (c *Conn) Nexthops() ([]Nexthop, error) {
	bodies, err := c.dump(unix.RTM_GETNEXTHOP, make([]byte, sizeofNhmsg))
	if err != nil {
		return nil, fmt.Errorf("dumping nexthop objects: %w", err)
	}
	out := make([]Nexthop, 0, len(bodies))
	for _, b := range bodies {
		n, err := UnmarshalNexthop(b)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Routes dumps the routes of one family (unix.AF_INET or AF_INET6) and
// protocol, every table; the kernel filters by protocol itself.
func (c *Conn) Routes(family, protocol uint8) ([]Route, error) {
	bodies, err := c.dump(unix.RTM_GETROUTE, routeDumpRequest(family, protocol))
	if err != nil {
		return nil, fmt.Errorf("dumping routes of protocol %d: %w", protocol, err)
	}
	out := make([]Route, 0, len(bodies))
	for _, b := range bodies {
		r, err := UnmarshalRoute(b)
		if err != nil {
			return nil, err
		}
		if r.Protocol == protocol && r.Family == family {
			out = append(out, r)
		}
	}
	return out, nil
}

package l2count_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/detector/l2count"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// sharedLAN is the LVS §37.1 realserver's wiring (nstest.SharedLAN): the
// host's one NIC, eth0, on a bridge with n gateways, each with an IPv4 and
// an IPv6 address.
type sharedLAN struct {
	*nstest.SharedLAN
	host *nstest.Host
	gws  []*nstest.Host
}

func gwAddr4(i int) string { return fmt.Sprintf("198.18.1.%d", i+1) }
func gwAddr6(i int) string { return fmt.Sprintf("2001:db8:1::%d", i+1) }

func newSharedLAN(t testing.TB, n int) *sharedLAN {
	t.Helper()
	s := nstest.NewSharedLAN(t, n)
	for i := 0; i < n; i++ {
		if gwAddr4(i) != s.GatewayAddr4(i).String() || gwAddr6(i) != s.GatewayAddr6(i).String() {
			t.Fatalf("the shared LAN's address plan changed: gateway %d is %s, %s", i, s.GatewayAddr4(i), s.GatewayAddr6(i))
		}
	}
	return &sharedLAN{SharedLAN: s, host: s.Host, gws: s.Gateways}
}

// mac returns gateway i's link-layer address.
func (s *sharedLAN) mac(t testing.TB, i int) net.HardwareAddr {
	t.Helper()
	l, err := s.gws[i].Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

func (s *sharedLAN) key(t testing.TB, i int, et uint16) l2count.Key {
	t.Helper()
	k, err := l2count.NewKey("eth0", s.mac(t, i), et)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ping sends n echo requests from the host to addr, 10 ms apart (bounded:
// n is small and every reply is awaited at most 1 s), and fails unless all
// are answered.
func (s *sharedLAN) ping(t testing.TB, addr string, n int) {
	t.Helper()
	out, err := s.host.Run("ping", "-n", "-q", "-c", fmt.Sprint(n), "-i", "0.01", "-W", "1", addr)
	if err != nil || !strings.Contains(out, fmt.Sprintf("%d received", n)) {
		t.Fatalf("ping %s: %v\n%s", addr, err, out)
	}
}

func open(t testing.TB, h *nstest.Host) *l2count.Counter {
	t.Helper()
	c, err := l2count.Open(h.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// backend opens one way of counting in a host's namespace.
type backend struct {
	name string
	open func(t testing.TB, h *nstest.Host) l2count.Table
}

// backends are both ways of counting per neighbour: the behaviour tests
// run on each, since the daemon uses whichever the kernel offers.
var backends = []backend{
	{"tcx", func(t testing.TB, h *nstest.Host) l2count.Table { return openBPF(t, h) }},
	{"nftables", func(t testing.TB, h *nstest.Host) l2count.Table { return open(t, h) }},
}

func openBPF(t testing.TB, h *nstest.Host) *l2count.BPFCounter {
	t.Helper()
	c, err := l2count.OpenBPF(h.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustSync(t testing.TB, c l2count.Table, want ...l2count.Key) int {
	t.Helper()
	n, err := c.Sync(want)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return n
}

func mustCounts(t testing.TB, c l2count.Table) map[l2count.Key]l2count.Counts {
	t.Helper()
	m, err := c.Counts()
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return m
}

// within reports whether at lies in [from-slack, to+slack]: nftables
// keeps time in jiffies and reports milliseconds.
func within(at, from, to time.Time) bool {
	const slack = 20 * time.Millisecond
	return !at.Before(from.Add(-slack)) && !at.After(to.Add(slack))
}

// sameMs reports whether two last-packet times read at different moments
// name the same packet: each read converts the kernel's remaining timeout
// (whole milliseconds) against its own clock.
func sameMs(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -5*time.Millisecond && d < 5*time.Millisecond
}

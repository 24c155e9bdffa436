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

// sharedLAN is one host NIC (eth0) on a bridge with n gateways, each with
// an IPv4 and an IPv6 address: the LVS §37.1 realserver's wiring.
//
//	[host] eth0 ── [lan] br0 ── eth0 [gw1]
//	                         └─ eth0 [gw2] ...
type sharedLAN struct {
	lab  *nstest.Lab
	host *nstest.Host
	gws  []*nstest.Host
}

func gwAddr4(i int) string { return fmt.Sprintf("198.18.1.%d", i+1) }
func gwAddr6(i int) string { return fmt.Sprintf("2001:db8:1::%d", i+1) }

func newSharedLAN(t testing.TB, n int) *sharedLAN {
	t.Helper()
	lab := nstest.New(t)
	s := &sharedLAN{lab: lab, host: lab.Host("host")}
	lan := lab.Host("lan")
	lan.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	lan.MustRun(t, "ip", "link", "set", "br0", "up")
	lab.Link(s.host, "eth0", lan, "p0")
	lan.MustRun(t, "ip", "link", "set", "p0", "master", "br0")
	s.host.AddAddr(t, "eth0", "198.18.1.100/24")
	s.host.AddAddr(t, "eth0", "2001:db8:1::100/64")
	for i := 0; i < n; i++ {
		gw := lab.Host(fmt.Sprintf("gw%d", i+1))
		port := fmt.Sprintf("p%d", i+1)
		lab.Link(gw, "eth0", lan, port)
		lan.MustRun(t, "ip", "link", "set", port, "master", "br0")
		gw.AddAddr(t, "eth0", gwAddr4(i)+"/24")
		gw.AddAddr(t, "eth0", gwAddr6(i)+"/64")
		s.gws = append(s.gws, gw)
	}
	return s
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

func mustSync(t testing.TB, c *l2count.Counter, want ...l2count.Key) int {
	t.Helper()
	n, err := c.Sync(want)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return n
}

func mustCounts(t testing.TB, c *l2count.Counter) map[l2count.Key]l2count.Counts {
	t.Helper()
	m, err := c.Counts()
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return m
}

// within reports whether at lies in [from-slack, to+slack]: the kernel
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

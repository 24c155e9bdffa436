package l2count_test

import (
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/detector/l2count"
)

// Two gateways on one bridge, IPv4 and IPv6 on the host's one NIC: each
// neighbour's counts follow its own traffic only, which interface counters
// cannot show.
func TestCountsPerGatewayOnSharedNIC(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testCountsPerGatewayOnSharedNIC(t, b) })
	}
}

func testCountsPerGatewayOnSharedNIC(t *testing.T, b backend) {
	s := newSharedLAN(t, 2)
	c := b.open(t, s.host)
	gw1v4, gw1v6 := s.key(t, 0, l2count.EtherTypeIPv4), s.key(t, 0, l2count.EtherTypeIPv6)
	gw2v4, gw2v6 := s.key(t, 1, l2count.EtherTypeIPv4), s.key(t, 1, l2count.EtherTypeIPv6)
	mustSync(t, c, gw1v4, gw1v6, gw2v4, gw2v6)

	from := time.Now()
	s.ping(t, gwAddr4(0), 10)
	to := time.Now()
	got := mustCounts(t, c)
	// IPv4 carries nothing but the pings (ARP is not counted), so the
	// counts are exact.
	if g := got[gw1v4]; g.Tx != 10 || g.Rx != 10 || !within(g.LastTx, from, to) || !within(g.LastRx, from, to) {
		t.Errorf("gw1 ip after 10 pings to gw1 = %+v (pings between %v and %v)", g, from, to)
	}
	if g := got[gw2v4]; g.Tx != 0 || g.Rx != 0 || !g.LastTx.IsZero() || !g.LastRx.IsZero() {
		t.Errorf("gw2 ip after pings to gw1 only = %+v, want nothing", g)
	}

	s.ping(t, gwAddr4(1), 5)
	s.ping(t, gwAddr6(1), 7)
	got2 := mustCounts(t, c)
	if g := got2[gw2v4]; g.Tx != 5 || g.Rx != 5 {
		t.Errorf("gw2 ip after 5 pings to gw2 = %+v", g)
	}
	if g, was := got2[gw1v4], got[gw1v4]; g.Tx != was.Tx || g.Rx != was.Rx || !sameMs(g.LastRx, was.LastRx) {
		t.Errorf("gw1 ip moved with gw2's traffic: %+v, was %+v", g, was)
	}
	// IPv6 adds neighbour discovery (unicast NS/NA) to the pings.
	if g := got2[gw2v6]; g.Tx < 7 || g.Rx < 7 {
		t.Errorf("gw2 ip6 after 7 pings to gw2 = %+v", g)
	}
	if g := got2[gw1v6]; g.Tx != 0 || g.Rx != 0 {
		t.Errorf("gw1 ip6 with no IPv6 traffic to gw1 = %+v", g)
	}
}

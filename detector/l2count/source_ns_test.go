package l2count_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/detector/l2count"
)

func newSource(t *testing.T, s *sharedLAN) (*l2count.Source, int) {
	t.Helper()
	c := open(t, s.host)
	nb, err := l2count.OpenNeighbours(s.host.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nb.Close() })
	l, err := s.host.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	src := l2count.NewSource(l2count.SourceConfig{Table: c, Neighbours: nb,
		Interface: func(int) (uint64, uint64, error) { t.Fatal("interface counters used"); return 0, 0, nil }})
	return src, l.Attrs().Index
}

func gwCounts(t *testing.T, src *l2count.Source, index int, gws ...netip.Addr) []l2count.GatewayCounts {
	t.Helper()
	got, err := src.Counters(index, gws)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The real neighbour cache drives the source: a gateway's MAC is learned
// from the kernel, and when the gateway announces a new MAC by gratuitous
// ARP the source counts the new MAC with the totals carried over.
func TestSourceFollowsGratuitousARP(t *testing.T) {
	s := newSharedLAN(t, 2)
	src, idx := newSource(t, s)
	g1, g2 := netip.MustParseAddr(gwAddr4(0)), netip.MustParseAddr(gwAddr4(1))
	s.ping(t, gwAddr4(0), 1) // resolves gw1: the first echo leaves before its MAC is counted
	gwCounts(t, src, idx, g1, g2)
	s.ping(t, gwAddr4(0), 5)
	got := gwCounts(t, src, idx, g1, g2)
	if got[0].Tx != 5 || got[0].Rx != 5 || got[1].Tx != 0 || got[0].MAC.String() != s.mac(t, 0).String() {
		t.Fatalf("after 5 pings to gw1: gw1 %+v, gw2 %+v", got[0], got[1])
	}

	s.gws[0].MustRun(t, "ip", "link", "set", "eth0", "address", "02:00:5e:00:01:77")
	// Past the ARP locktime (1 s at most here), then announce.
	s.host.Sysctl(t, "net/ipv4/neigh/eth0/locktime", "0")
	s.gws[0].MustRun(t, "arping", "-U", "-c", "1", "-I", "eth0", gwAddr4(0))
	time.Sleep(150 * time.Millisecond) // the source re-reads the neighbour cache every 100 ms
	gwCounts(t, src, idx, g1, g2)
	s.ping(t, gwAddr4(0), 3)
	got = gwCounts(t, src, idx, g1, g2)
	if got[0].MAC.String() != "02:00:5e:00:01:77" || got[0].Tx != 8 || got[0].Rx != 8 {
		t.Errorf("after the gratuitous ARP and 3 more pings: gw1 %+v, want 8/8 on 02:00:5e:00:01:77", got[0])
	}
	if m, why := src.Mode(); m != l2count.ModeNeighbour {
		t.Errorf("Mode = %s (%s)", m, why)
	}
}

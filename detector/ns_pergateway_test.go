package detector_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
	"github.com/uplinkd/uplinkd/detector/l2count"
	"github.com/uplinkd/uplinkd/detector/l2count/l2counttest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// startWithTraffic runs a detector of polGW1 on tu.Host with the traffic
// source traffic makes from the host's netlink adapter, gw1 up and 100
// pings a second flowing through it (bounded: 20 s).
func startWithTraffic(t *testing.T, tu *nstest.TwoUplinks, traffic func(k *detector.Netlink) detector.TrafficCounters) *lab {
	t.Helper()
	log := testLogger(t)
	k, err := detector.NewNetlink(tu.Host.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	pr, err := detector.NewSocketProber(tu.Host.NsHandle(), log)
	if err != nil {
		k.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close(); k.Close() })
	d, err := detector.New(detector.Config{Policy: mustPolicy(t, polGW1), Logger: log, Metrics: detector.NewMetrics(prometheus.NewRegistry()),
		Kernel: k, Prober: pr, Traffic: traffic(k)})
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{TwoUplinks: tu, d: d, pr: pr}
	l.rec = detectortest.Run(t, d)
	l.routeVia(t, 1)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	l.pingFlood(t, 100, 20*time.Second)
	return l
}

// Where the kernel cannot count per neighbour, the per-gateway source
// falls back to the interface counters and the gated profile still
// detects a silent death on an interface of its own; the status says
// which counters it uses.
func TestNSPerGatewayFallbackToInterfaceCounters(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	neigh, err := l2count.OpenNeighbours(tu.Host.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { neigh.Close() })
	table := l2counttest.NewTable()
	table.SyncErr = errors.Join(l2count.ErrUnsupported, errors.New("no netdev egress hook (simulated)"))
	l := startWithTraffic(t, tu, func(k *detector.Netlink) detector.TrafficCounters {
		return detector.GatewayTrafficOf(l2count.NewSource(l2count.SourceConfig{Table: table, Neighbours: neigh, Logger: testLogger(t),
			Interface: func(index int) (uint64, uint64, error) {
				cs, err := k.Counters(index, []netip.Addr{{}})
				if err != nil {
					return 0, 0, err
				}
				return cs[0].Tx, cs[0].Rx, nil
			}}))
	})
	detectortest.WaitFor(t, "the fallback", 5*time.Second, func() bool {
		return l.status("gw1").TrafficCounting == detector.TrafficPerInterface
	})
	tu.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitState(t, "gw1", detector.Down, 10*time.Second)
	if table.Syncs != 0 {
		t.Errorf("the unsupported table was written %d times", table.Syncs)
	}
}

// The per-gateway source in production form (GatewayTraffic over the
// real kernel): the gated profile detects gw1's silent death from gw1's
// own counters (with uplinkd's tcx programs: this kernel has tcx), the
// status says so, and Withdraw detaches the programs.
func TestNSPerGatewayCountingDetects(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	// The table an earlier start without CAP_BPF left: deleted once the
	// programs count, since one counter is enough.
	tu.Host.MustRun(t, "nft", "add", "table", "netdev", "uplinkd")
	var traffic *detector.GatewayTraffic
	l := startWithTraffic(t, tu, func(k *detector.Netlink) detector.TrafficCounters {
		var err error
		if traffic, err = detector.NewGatewayTraffic(tu.Host.NsHandle(), k, testLogger(t)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { traffic.Close() })
		return traffic
	})
	if b, why := traffic.Backend(); b != detector.BackendTCX {
		t.Fatalf("backend %q (%s), want tcx: this kernel has tcx and the test has CAP_BPF", b, why)
	}
	eth1, err := tu.Host.Handle.LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	progs := func() map[string][]string {
		st, err := l2counttest.TCXState(tu.Host.Do, eth1.Attrs().Index)
		if err != nil {
			t.Fatal(err)
		}
		return st.Programs
	}
	detectortest.WaitFor(t, "uplinkd's programs counting on eth1", 5*time.Second, func() bool {
		got := progs()
		return slices.Equal(got["rx"], []string{"uplinkd_rx"}) && slices.Equal(got["tx"], []string{"uplinkd_tx"})
	})
	if out := tu.Host.MustRun(t, "nft", "list", "tables"); strings.Contains(out, "uplinkd") {
		t.Errorf("the earlier start's nftables table is still there beside the programs:\n%s", out)
	}
	if got := l.status("gw1").TrafficCounting; got != detector.TrafficPerGateway {
		t.Errorf("TrafficCounting = %q, want %q", got, detector.TrafficPerGateway)
	}
	tu.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	l.waitState(t, "gw1", detector.Down, 10*time.Second)
	if err := traffic.Withdraw(); err != nil {
		t.Fatal(err)
	}
	if got := progs(); len(got) != 0 {
		t.Errorf("programs on eth1 after Withdraw: %v", got)
	}
}

package l2count_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/uplinkd/uplinkd/detector/l2count"
	"github.com/uplinkd/uplinkd/detector/l2count/l2counttest"
)

var (
	gw1   = netip.MustParseAddr("198.18.1.1")
	gw2   = netip.MustParseAddr("198.18.1.2")
	gw1v6 = netip.MustParseAddr("2001:db8:1::1")
	macA  = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB  = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	macC  = net.HardwareAddr{2, 0, 0, 0, 0, 0xc}
)

type sourceRig struct {
	t     *testing.T
	table *l2counttest.Table
	neigh *l2counttest.Neighbours
	src   *l2count.Source
	now   time.Time
	ifTx  uint64 // the interface's own counters
	ifRx  uint64
}

func newSourceRig(t *testing.T) *sourceRig {
	r := &sourceRig{t: t, table: l2counttest.NewTable(), neigh: l2counttest.NewNeighbours(map[int]string{2: "eth0"}),
		now: time.Unix(1000, 0)}
	r.src = l2count.NewSource(l2count.SourceConfig{Table: r.table, Neighbours: r.neigh,
		Interface: func(int) (uint64, uint64, error) { return r.ifTx, r.ifRx, nil },
		Now:       func() time.Time { return r.now }})
	return r
}

func (r *sourceRig) key(mac net.HardwareAddr, et uint16) l2count.Key {
	k, err := l2count.NewKey("eth0", mac, et)
	if err != nil {
		r.t.Fatal(err)
	}
	return k
}

// counts returns [tx, rx] per gateway, 100 ms after the previous call:
// the pace at which the source re-reads the neighbour cache.
func (r *sourceRig) counts(gws ...netip.Addr) [][2]uint64 {
	r.t.Helper()
	r.now = r.now.Add(100 * time.Millisecond)
	got, err := r.src.Counters(2, gws)
	if err != nil {
		r.t.Fatal(err)
	}
	var out [][2]uint64
	for _, g := range got {
		out = append(out, [2]uint64{g.Tx, g.Rx})
	}
	return out
}

func (r *sourceRig) want(want [][2]uint64, gws ...netip.Addr) {
	r.t.Helper()
	if diff := cmp.Diff(want, r.counts(gws...)); diff != "" {
		r.t.Errorf("counts (-want +got):\n%s", diff)
	}
}

func TestSourceCountsPerGateway(t *testing.T) {
	r := newSourceRig(t)
	r.neigh.Set(2, gw1, macA)
	r.neigh.Set(2, gw1v6, macA)
	r.want([][2]uint64{{0, 0}, {0, 0}, {0, 0}}, gw1, gw2, gw1v6) // gw2 unresolved: nothing counted
	if !r.table.Installed(r.key(macA, l2count.EtherTypeIPv4)) || !r.table.Installed(r.key(macA, l2count.EtherTypeIPv6)) {
		t.Fatal("gw1's keys not installed")
	}
	r.table.Send(r.key(macA, l2count.EtherTypeIPv4), 10, 9)
	r.table.Send(r.key(macA, l2count.EtherTypeIPv6), 3, 0)
	r.ifTx, r.ifRx = 1000, 1000 // the interface's counters are not used
	r.neigh.Set(2, gw2, macB)
	r.want([][2]uint64{{10, 9}, {0, 0}, {3, 0}}, gw1, gw2, gw1v6)
	r.table.Send(r.key(macB, l2count.EtherTypeIPv4), 5, 5)
	r.want([][2]uint64{{10, 9}, {5, 5}, {3, 0}}, gw1, gw2, gw1v6)
	if m, why := r.src.Mode(); m != l2count.ModeNeighbour {
		t.Errorf("Mode = %s (%s), want neighbour", m, why)
	}
}

// A MAC change (gratuitous ARP, a replaced box) moves counting to the new
// MAC, and the gateway's totals go on growing from where they were: the
// detector never sees its counters go back.
func TestSourceFollowsMACChange(t *testing.T) {
	r := newSourceRig(t)
	r.neigh.Set(2, gw1, macA)
	r.counts(gw1)
	r.table.Send(r.key(macA, l2count.EtherTypeIPv4), 7, 7)
	r.want([][2]uint64{{7, 7}}, gw1)

	r.neigh.Set(2, gw1, macC)
	r.want([][2]uint64{{7, 7}}, gw1)
	if r.table.Installed(r.key(macA, l2count.EtherTypeIPv4)) || !r.table.Installed(r.key(macC, l2count.EtherTypeIPv4)) {
		t.Fatal("counting did not move to the new MAC")
	}
	r.table.Send(r.key(macC, l2count.EtherTypeIPv4), 2, 1)
	r.want([][2]uint64{{9, 8}}, gw1)

	// Unresolved for a while (FAILED): the last MAC stays counted.
	r.neigh.Set(2, gw1, nil)
	r.table.Send(r.key(macC, l2count.EtherTypeIPv4), 1, 0)
	r.want([][2]uint64{{10, 8}}, gw1)
}

// A flushed ruleset is repaired at the next resync, and the counts go on
// from where they were.
func TestSourceResyncsAFlushedTable(t *testing.T) {
	r := newSourceRig(t)
	r.neigh.Set(2, gw1, macA)
	r.counts(gw1)
	k := r.key(macA, l2count.EtherTypeIPv4)
	r.table.Send(k, 4, 4)
	r.want([][2]uint64{{4, 4}}, gw1)
	r.table.Flush()
	r.now = r.now.Add(time.Second)
	r.want([][2]uint64{{4, 4}}, gw1)
	r.now = r.now.Add(5 * time.Second)
	r.counts(gw1)
	if !r.table.Installed(k) {
		t.Fatal("not reinstalled after the resync period")
	}
	r.table.Send(k, 1, 1)
	r.want([][2]uint64{{5, 5}}, gw1)
}

func TestSourceFallsBackWhereUnsupported(t *testing.T) {
	r := newSourceRig(t)
	r.neigh.Set(2, gw1, macA)
	r.neigh.Set(2, gw2, macB)
	r.table.SyncErr = errors.Join(l2count.ErrUnsupported, errors.New("no netdev egress hook"))
	r.ifTx, r.ifRx = 50, 40
	r.want([][2]uint64{{50, 40}, {50, 40}}, gw1, gw2)
	m, why := r.src.Mode()
	if m != l2count.ModeInterface || why == "" {
		t.Errorf("Mode = %s (%q), want interface with a reason", m, why)
	}
	r.table.SyncErr = nil // for good: the kernel does not change
	r.now = r.now.Add(time.Minute)
	r.want([][2]uint64{{50, 40}, {50, 40}}, gw1, gw2)
}

// A transient failure to write the table uses the interface counters
// until a retry succeeds.
func TestSourceRetriesATransientFailure(t *testing.T) {
	r := newSourceRig(t)
	r.neigh.Set(2, gw1, macA)
	r.table.SyncErr = errors.New("netlink receive: no buffer space available")
	r.ifTx, r.ifRx = 50, 40
	r.want([][2]uint64{{50, 40}}, gw1)
	if m, _ := r.src.Mode(); m != l2count.ModeInterface {
		t.Errorf("Mode during the failure = %s, want interface", m)
	}
	r.table.SyncErr = nil
	r.now = r.now.Add(500 * time.Millisecond)
	r.want([][2]uint64{{50, 40}}, gw1) // not retried yet
	r.now = r.now.Add(time.Second)
	r.want([][2]uint64{{0, 0}}, gw1)
	if m, _ := r.src.Mode(); m != l2count.ModeNeighbour {
		t.Errorf("Mode after the retry = %s, want neighbour", m)
	}
}

func TestSourceForgetsGatewaysAndInterfaces(t *testing.T) {
	r := newSourceRig(t)
	r.neigh.Set(2, gw1, macA)
	r.neigh.Set(2, gw2, macB)
	r.counts(gw1, gw2)
	r.counts(gw1) // gw2 left the policy
	if r.table.Installed(r.key(macB, l2count.EtherTypeIPv4)) {
		t.Error("a gateway that left is still counted")
	}
	r.neigh.Names[3] = "eth1"
	r.neigh.Set(3, gw2, macB)
	r.now = r.now.Add(11 * time.Second)
	if _, err := r.src.Counters(3, []netip.Addr{gw2}); err != nil {
		t.Fatal(err)
	}
	if r.table.Installed(r.key(macA, l2count.EtherTypeIPv4)) {
		t.Error("an interface nobody asked about for 11 s is still counted")
	}
	if err := r.src.Withdraw(); err != nil || !r.table.Withdrawn {
		t.Errorf("Withdraw: %v, table withdrawn %v", err, r.table.Withdrawn)
	}
}

// A gateway that is the link itself (no address: "default dev ppp0") is
// counted by its interface, the only peer there, and installs no key.
func TestSourceCountsALinkGatewayByItsInterface(t *testing.T) {
	r := newSourceRig(t)
	r.ifTx, r.ifRx = 40, 38
	r.want([][2]uint64{{40, 38}}, netip.Addr{})
	r.ifTx, r.ifRx = 45, 38
	r.want([][2]uint64{{45, 38}}, netip.Addr{})
	if r.table.Syncs != 0 {
		t.Errorf("%d table changes for a link gateway, want none", r.table.Syncs)
	}
}

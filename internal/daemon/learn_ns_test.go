package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// netlinkRoutes in a real namespace: the default routes through eth1 in
// every table, a multipath route's eth1 nexthop among them, and nothing
// of eth2's, whose 2,000-route table the strict dump never sends.
func TestNetlinkRoutesDefaults(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	h.MustRun(t, "ip", "route", "add", "default", "via", "198.18.1.1", "dev", "eth1", "table", "100", "proto", "dhcp")
	h.MustRun(t, "ip", "route", "add", "default", "proto", "static", "metric", "7",
		"nexthop", "via", "198.18.1.1", "dev", "eth1", "nexthop", "via", "198.18.2.1", "dev", "eth2")
	h.MustRun(t, "ip", "route", "add", "default", "via", "198.18.2.1", "dev", "eth2", "table", "300")
	h.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth1", "proto", "ra", "metric", "1024")
	var batch strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&batch, "route add 198.19.%d.%d/32 via 198.18.2.1 dev eth2 table 300\n", i/250, i%250)
	}
	f, err := os.CreateTemp(t.TempDir(), "batch")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(batch.String())
	f.Close()
	h.MustRun(t, "ip", "-batch", f.Name())

	var got []DefaultRoute
	if err := h.Do(func() (err error) {
		got, err = netlinkRoutes{}.Defaults([]string{"eth1", "eth9"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	want := []DefaultRoute{
		{Family: 4, Table: 100, Protocol: 16, Dev: "eth1", Gateway: a("198.18.1.1")},
		{Family: 4, Table: 254, Protocol: 4, Metric: 7, Dev: "eth1", Gateway: a("198.18.1.1")},
		{Family: 6, Table: 254, Protocol: 9, Metric: 1024, Dev: "eth1", Gateway: a("fe80::1")},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("Defaults (-want +got):\n%s", diff)
	}
}

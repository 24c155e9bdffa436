package routing

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/internal/rtnl"
)

// TestKernelGroupsIgnoreSource pins the kernel behaviour behind
// multipath = "auto" (internal/daemon, multipathForm): a host's own
// connection picks its source address in a first route lookup, then
// routes with it. Classic multipath prefers the nexthop whose source
// matches (Linux 6.15+), so the connection leaves through the uplink
// whose address it carries; a nexthop group hashes the source onto any
// member, so many leave one uplink with the other's address, which that
// ISP drops (BCP 38). If a kernel ever changes the group side, this test
// fails, and "auto" can stop treating hosts differently from routers.
func TestKernelGroupsIgnoreSource(t *testing.T) {
	const pol = `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[group.wan]
gateways = ["isp1", "isp2"]
`
	// wrongUplink counts destinations that a lookup from isp1's address
	// sends out through isp2's interface.
	wrongUplink := func(t *testing.T, h *nstest.Host) int {
		n := 0
		for i := 1; i <= 64; i++ {
			dst := fmt.Sprintf("198.19.%d.7", i)
			out := h.MustRun(t, "ip", "route", "get", dst, "from", nstest.Host1Addr4.String())
			if strings.Contains(out, "dev "+nstest.HostUplink2If) {
				n++
			}
		}
		return n
	}
	for _, form := range []Form{FormClassic, FormResilient} {
		t.Run(form.String(), func(t *testing.T) {
			if form == FormClassic && !rtnl.KernelAtLeast(6, 15) {
				t.Skip("classic multipath prefers the nexthop matching the source only since Linux 6.15 (fib_select_multipath); this kernel is older")
			}
			tu := nstest.NewTwoUplinks(t)
			h := tu.Host
			// The layer-4 hash a host spreading its connections uses;
			// with it a lookup without ports still varies by address.
			h.Sysctl(t, "net.ipv4.fib_multipath_hash_policy", "1")
			nk, err := NewKernelNexthops(h.NsHandle(), labKernel(t, h).Handle)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nk.Close() })
			rec, err := NewReconciler(Config{Netlink: labKernel(t, h), Nexthops: nk, Form: form, Watcher: silentWatcher{},
				Protocol: 212, Logger: quietLogger(), ResyncEvery: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rec.Close() })
			if _, err := rec.Apply(context.Background(), Desired(mustPolicy(t, pol), nil)); err != nil {
				t.Fatal(err)
			}
			if rec.Form() != form {
				t.Fatalf("form %s, want %s", rec.Form(), form)
			}
			n := wrongUplink(t, h)
			t.Logf("%s: %d of 64 destinations routed from isp1's address out through %s", form, n, nstest.HostUplink2If)
			switch form {
			case FormClassic:
				if n != 0 {
					t.Errorf("classic multipath sent %d of 64 lookups from isp1's address out of %s, want 0: this kernel does not prefer the nexthop matching the source (Linux 6.15+), and classic is no safer than groups for a host's own connections", n, nstest.HostUplink2If)
				}
			case FormResilient:
				if n == 0 {
					t.Errorf("the resilient group kept all 64 lookups from isp1's address on %s: this kernel honours the source in nexthop groups, so multipath = \"auto\" no longer needs classic on hosts", nstest.HostUplink1If)
				}
			}
		})
	}
}

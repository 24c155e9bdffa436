package netlab_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func natLab(t *testing.T, mode netlab.NATMode) *nstest.NATLab {
	t.Helper()
	n := nstest.NewNATLab(t, mode)
	n.StartEcho(t)
	return n
}

func flowPorts(first, n int) []int {
	ports := make([]int, n)
	for i := range ports {
		ports[i] = first + i
	}
	return ports
}

// TestNATLab runs 32 UDP flows and 4 TCP streams from the client through
// the NAT router over a classic multipath default, in both NAT modes: every
// packet is answered, the flows spread over the uplinks and each stays on
// one, and each flow's conntrack entry replies to the NAT address of the
// uplink the Server saw it arrive from.
func TestNATLab(t *testing.T) {
	for _, mode := range []netlab.NATMode{netlab.NATMasquerade, netlab.NATSNAT} {
		t.Run(string(mode), func(t *testing.T) {
			n := natLab(t, mode)
			n.ClassicDefault(t, 1, 2, 3, 4)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			tcpErr := make(chan error, 4)
			for i := 0; i < 4; i++ {
				go func(port int) {
					_, err := netlab.RunTCP(ctx, n.Client.Host, netlab.TCPConfig{Target: netip.AddrPortFrom(netlab.TargetAddr4, netlab.DiscardPort), LocalPort: port, Chunk: 512, Rate: 50, Duration: 1500 * time.Millisecond})
					tcpErr <- err
				}(41000 + i)
			}
			const flows = 32
			tr, err := netlab.RunUDP(ctx, n.Client.Host, netlab.UDPConfig{
				Target: netip.AddrPortFrom(netlab.TargetAddr4, netlab.EchoPort),
				Flows:  flows, Ports: flowPorts(40000, flows), Rate: flows * 40, Duration: 1500 * time.Millisecond,
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 4; i++ {
				if err := <-tcpErr; err != nil {
					t.Errorf("tcp stream: %v", err)
				}
			}
			// The first packets of a flow may wait for ARP on the uplink.
			d := tr.Delivered(200*time.Millisecond, tr.End)
			if d.Lost != 0 || d.Sent == 0 {
				t.Errorf("delivery after 200 ms: %s", d)
			}
			used := map[string]int{}
			flowVia := map[int]string{}
			for f := 0; f < flows; f++ {
				first, last := tr.ViaOf(f, 0, 300*time.Millisecond), tr.ViaOf(f, 300*time.Millisecond, tr.End)
				if first != last || last == "" {
					t.Errorf("flow %d went via %q, then %q", f, first, last)
				}
				flowVia[40000+f] = last
				used[last]++
			}
			if len(used) < 3 {
				t.Errorf("32 flows used only %v: is the router's multipath hash layer 4?", used)
			}
			entries := n.Conntrack(t)
			seen := 0
			for _, e := range entries {
				if e.Forward.Protocol != unix.IPPROTO_UDP || e.Forward.DstPort != netlab.EchoPort {
					continue
				}
				via, ok := flowVia[int(e.Forward.SrcPort)]
				if !ok {
					continue
				}
				seen++
				if want := netlab.NATServerIf(netlab.UplinkOf(e)); want != via {
					t.Errorf("flow from port %d: conntrack replies to %s (uplink %s), the Server saw it on %s", e.Forward.SrcPort, e.Reverse.DstIP, want, via)
				}
			}
			if seen != flows {
				t.Errorf("%d conntrack entries for the 32 UDP flows, want 32", seen)
			}
			t.Logf("%s: %s; flows per uplink %v", mode, d, used)
		})
	}
}

// TestNATLabStaleMapping is the kernel alone, as the issue measured it:
// four flows leave through uplink 1, then the route moves them to uplink 2.
// With masquerade the kernel drops the entries whose output interface
// changed and the flows are NATed again through uplink 2 at once. With
// `snat to`, every packet refreshes the old mapping, so the flows leave
// uplink 2 with uplink 1's address and ISP 2 drops them, until their
// entries are deleted.
func TestNATLabStaleMapping(t *testing.T) {
	for _, mode := range []netlab.NATMode{netlab.NATMasquerade, netlab.NATSNAT} {
		t.Run(string(mode), func(t *testing.T) {
			n := natLab(t, mode)
			n.Router.MustRun(t, "ip", "route", "replace", "default", "via", netlab.NATGateway(1).String(), "dev", netlab.NATRouterIf(1))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const moveAt, flushAt = 500 * time.Millisecond, 1500 * time.Millisecond
			var flushed uint
			// Under load the helper goroutine runs late: what is judged
			// is measured from when the flush really began and ended,
			// not from when it was scheduled.
			var flushBegan, flushDone time.Duration
			flushErr := make(chan error, 1)
			started := func(start time.Time) {
				go func() {
					time.Sleep(time.Until(start.Add(moveAt)))
					if _, err := n.Router.Run("ip", "route", "replace", "default", "via", netlab.NATGateway(2).String(), "dev", netlab.NATRouterIf(2)); err != nil {
						flushErr <- err
						return
					}
					time.Sleep(time.Until(start.Add(flushAt)))
					h, err := netlink.NewHandleAt(n.Router.NsHandle(), unix.NETLINK_NETFILTER)
					if err != nil {
						flushErr <- err
						return
					}
					defer h.Close()
					flushBegan = time.Since(start)
					flushed, err = h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, uplinkFilter(1))
					flushDone = time.Since(start)
					flushErr <- err
				}()
			}
			tr, err := netlab.RunUDP(ctx, n.Client.Host, netlab.UDPConfig{
				Target: netip.AddrPortFrom(netlab.TargetAddr4, netlab.EchoPort),
				Flows:  4, Ports: flowPorts(40100, 4), Rate: 400, Duration: 4 * time.Second,
			}, started)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-flushErr; err != nil {
				t.Fatal(err)
			}
			resumed := tr.FirstVia(netlab.NATServerIf(2), moveAt)
			before := tr.Delivered(moveAt+300*time.Millisecond, flushBegan)
			// One flow in a few runs resumes about 1 s after the flush
			// instead of at once (seen 1 in 3 on kernel 6.18, not traced):
			// the bound allows it, and what follows must be clean.
			const settle = 1500 * time.Millisecond
			after := tr.Delivered(flushDone+300*time.Millisecond, tr.End)
			if mode == netlab.NATSNAT {
				after = tr.Delivered(flushDone+settle, tr.End)
			}
			t.Logf("%s: first reply via uplink 2 at %v (route moved at %v, flush from %v to %v); between: %s; after the flush (%d entries): %s", mode, resumed, moveAt, flushBegan, flushDone, before, flushed, after)
			switch mode {
			case netlab.NATMasquerade:
				if resumed < 0 || resumed > moveAt+time.Second {
					t.Errorf("masquerade: first reply via uplink 2 at %v, want within 1 s of the route change at %v", resumed, moveAt)
				}
				if before.Lost != 0 {
					t.Errorf("masquerade: after the route change and before any flush: %s, want nothing lost", before)
				}
			case netlab.NATSNAT:
				if before.Sent == 0 || before.Lost != before.Sent {
					t.Errorf("snat: between the route change and the flush: %s, want every packet lost (stale mapping dropped by ISP 2)", before)
				}
				if flushed != 4 {
					t.Errorf("snat: flushed %d entries of uplink 1, want the 4 flows'", flushed)
				}
				if resumed < flushBegan || resumed > flushDone+settle {
					t.Errorf("snat: first reply via uplink 2 at %v, want after the flush (%v to %v) and within %v of it", resumed, flushBegan, flushDone, settle)
				}
			}
			if after.Sent == 0 || after.Lost != 0 || after.Via[netlab.NATServerIf(2)] != after.Sent {
				t.Errorf("after the flush: %s, want everything answered via %s", after, netlab.NATServerIf(2))
			}
		})
	}
}

// uplinkFilter matches the entries that reply to uplink u's NAT address.
type uplinkFilter int

func (u uplinkFilter) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	return netlab.UplinkOf(f) == int(u)
}

// failoverTimes is the scenario of the issue: uplink 1 dies silently at
// 1 s, its route is withdrawn 300 ms later (what a detector would take),
// it comes back at 3 s and is restored at 3.2 s.
func failoverTimes(down, up func() error) netlab.FailoverConfig {
	return netlab.FailoverConfig{Flows: 32, TCP: 4, Rate: 32 * 50, Duration: 5 * time.Second,
		DieAt: time.Second, RouteDownAt: 1300 * time.Millisecond, ReturnAt: 3 * time.Second, RouteUpAt: 3200 * time.Millisecond,
		Down: down, Up: up}
}

// TestFailoverKernelForms measures, with routes changed by hand, the two
// forms a group's default can take: a classic multipath route, where
// withdrawing one of four nexthops re-hashes a third of the healthy flows
// onto other uplinks (and so other NAT addresses), and a resilient nexthop
// group, where only the dead uplink's buckets move. Masquerade, so the
// dead uplink's flows recover without a flush.
func TestFailoverKernelForms(t *testing.T) {
	ip := func(n *nstest.NATLab, args ...string) error {
		_, err := n.Router.Host.MustRun(args...)
		return err
	}
	classic := func(n *nstest.NATLab, ups ...int) error { return n.Raw().ClassicDefault(ups...) }
	group := func(n *nstest.NATLab, ups ...int) error {
		var m []string
		for _, u := range ups {
			m = append(m, fmt.Sprint(u))
		}
		return ip(n, "ip", "nexthop", "replace", "id", "100", "group", strings.Join(m, "/"), "type", "resilient", "buckets", "64", "idle_timer", "120")
	}
	for _, form := range []string{"classic", "resilient", "kernel-alone"} {
		t.Run(form, func(t *testing.T) {
			n := natLab(t, netlab.NATMasquerade)
			down, up := func() error { return classic(n, 2, 3, 4) }, func() error { return classic(n, 1, 2, 3, 4) }
			if form == "kernel-alone" {
				// Nobody withdraws the dead uplink: its carrier and ARP
				// stay up, so the kernel keeps hashing flows onto it.
				if err := up(); err != nil {
					t.Fatal(err)
				}
				down, up = func() error { return nil }, func() error { return nil }
			} else if form == "resilient" {
				for u := 1; u <= netlab.NATUplinks; u++ {
					n.Router.MustRun(t, "ip", "nexthop", "add", "id", fmt.Sprint(u), "via", netlab.NATGateway(u).String(), "dev", netlab.NATRouterIf(u))
				}
				if err := group(n, 1, 2, 3, 4); err != nil {
					t.Fatal(err)
				}
				n.Router.MustRun(t, "ip", "route", "replace", "default", "nhid", "100")
				down, up = func() error { return group(n, 2, 3, 4) }, func() error { return group(n, 1, 2, 3, 4) }
			} else if err := up(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := n.RunFailover(ctx, failoverTimes(down, up))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s", form, res)
			if res.Uplink1Flows == 0 || res.Uplink1Flows == 32 {
				t.Fatalf("uplink 1 carried %d of 32 flows: no spread to measure", res.Uplink1Flows)
			}
			if form == "kernel-alone" {
				// Uplink 1's flows come back only with uplink 1 itself.
				if back := 3*time.Second - 1300*time.Millisecond; res.Resumed >= 0 && res.Resumed < back {
					t.Errorf("kernel alone: uplink 1's flows resumed %v after the would-be route change, before the uplink came back (%v)", res.Resumed, back)
				}
				return
			}
			if res.Resumed < 0 || res.Resumed > time.Second {
				t.Errorf("uplink 1's flows resumed after %v, want within 1 s of the route change", res.Resumed)
			}
			switch form {
			case "resilient":
				if res.MovedAtFailover != 0 || res.BusyMovedAtReturn != 0 {
					t.Errorf("resilient group moved %d healthy flows at failover and %d busy ones at return, want 0 and 0", res.MovedAtFailover, res.BusyMovedAtReturn)
				}
			case "classic":
				if res.MovedAtFailover == 0 {
					t.Errorf("classic multipath moved no healthy flow at failover: the measurement cannot tell the forms apart")
				}
			}
		})
	}
}

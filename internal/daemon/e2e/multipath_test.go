package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
)

// multipath = "auto" is the default. On a host that does not forward (the
// lab's Host) it is classic multipath, because the host's own connections
// need a nexthop that matches the source they chose (routing's
// TestKernelGroupsIgnoreSource); status says so and why.
func TestMultipathAutoOnHostIsClassic(t *testing.T) {
	l := newLab(t)
	l.start(l.basePolicy(2, ""))
	l.waitBothUp()
	st := l.status()
	if st.Multipath != "classic" || !strings.Contains(st.MultipathReason, "does not forward IPv4") {
		t.Fatalf("status multipath %q because %q; want classic because the host does not forward IPv4", st.Multipath, st.MultipathReason)
	}
	if nh := l.Host.MustRun(t, "ip", "nexthop", "show", "proto", "212"); nh != "" {
		t.Errorf("nexthop objects on a host that does not forward:\n%s", nh)
	}
	if out := l.Host.MustRun(t, binary, "status", "--addr", listen); !strings.Contains(out, "because the host does not forward IPv4") {
		t.Errorf("uplinkd status does not say why the form is classic:\n%s", out)
	}
}

// natRouterPolicy is the NAT lab's router under the default profile and
// the default multipath: four gateways in one group, no probe targets
// (each gateway is its own), detection gated on traffic.
func natRouterPolicy(l *lab, mode netlab.NATMode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[daemon]\nlisten = %q\ncontrol_socket = %q\ntrack_dir = %q\n\n", listen, filepath.Join(l.dir, "run", "control.sock"), filepath.Join(l.dir, "track"))
	for u := 1; u <= netlab.NATUplinks; u++ {
		fmt.Fprintf(&b, "[gateway.g%d]\naddress = %q\ninterface = %q\n", u, netlab.NATGateway(u), netlab.NATRouterIf(u))
		if mode == netlab.NATSNAT {
			fmt.Fprintf(&b, "flush_conntrack = \"on_down\"\nsnat_addresses = [%q]\n", netlab.NATAddr(u))
		}
		b.WriteString("\n")
	}
	b.WriteString("[group.wan]\ngateways = [\"g1\", \"g2\", \"g3\", \"g4\"]\n")
	return b.String()
}

// On a router (the NAT lab: forwarding on, an ISP per uplink, NAT out of
// each) the default policy takes resilient groups. uplinkd itself finds
// g1's silent death and its return, under 32 UDP flows and 4 TCP streams
// from a LAN client: no flow of g2..g4 changes uplink at the failover or
// at the return, their conntrack entries stay, g1's flows are answered
// again within a second, and each change is one nexthop group write and
// no route write.
func TestNATRouterDefaultsToResilientGroups(t *testing.T) {
	for _, mode := range []netlab.NATMode{netlab.NATMasquerade, netlab.NATSNAT} {
		t.Run(string(mode), func(t *testing.T) {
			n := nstest.NewNATLab(t, mode)
			n.StartEcho(t)
			l := newLabOn(t, &nstest.TwoUplinks{Lab: n.Lab, Host: n.Router, Server: n.Server})
			l.start(natRouterPolicy(l, mode))
			l.waitFor("all four gateways up", func() bool {
				for u := 1; u <= netlab.NATUplinks; u++ {
					if l.gatewayState(fmt.Sprintf("g%d", u)) != "up" {
						return false
					}
				}
				return true
			})
			st := l.status()
			if st.Multipath != "resilient" || !strings.Contains(st.MultipathReason, "forwards IPv4") {
				t.Fatalf("status multipath %q because %q; want resilient because the host forwards IPv4", st.Multipath, st.MultipathReason)
			}
			writes := func(object string) float64 {
				var s float64
				for _, op := range []string{"add", "replace", "delete"} {
					s += l.metric("uplinkd_netlink_writes_total", map[string]string{"object": object, "op": op, "result": "ok"})
				}
				return s
			}
			routes0, nh0 := writes("route"), writes("nexthop")
			var nhDown float64
			res, err := n.RunFailover(context.Background(), netlab.FailoverConfig{
				Flows: 32, TCP: 4, Rate: 32 * 50, Duration: 14 * time.Second,
				DieAt: time.Second, RouteDownAt: 1300 * time.Millisecond, ReturnAt: 3 * time.Second, RouteUpAt: 3010 * time.Millisecond,
				// uplinkd acts on its own; the scenario waits for it.
				Down: func() error {
					err := waitGateway(l, "g1", "down", 3*time.Second)
					nhDown = writes("nexthop") - nh0
					return err
				},
				Up: func() error { return waitGateway(l, "g1", "up", 9*time.Second) },
			})
			if err != nil {
				t.Fatalf("%v\ndaemon output:\n%s", err, tail(l.Host.Output(l.cmd), 4000))
			}
			t.Logf("%s, uplinkd detecting: %s; nexthop writes at failover %v, in all %v; route writes %v",
				mode, res, nhDown, writes("nexthop")-nh0, writes("route")-routes0)
			if res.Uplink1Flows == 0 || res.Uplink1Flows == 32 {
				t.Fatalf("g1 carried %d of 32 flows: nothing to measure", res.Uplink1Flows)
			}
			if res.MovedAtFailover != 0 {
				t.Errorf("%d flows of g2..g4 changed uplink at failover, want 0", res.MovedAtFailover)
			}
			if res.Resumed < 0 || res.Resumed > time.Second {
				t.Errorf("g1's flows answered again %v after the route change, want within 1 s", res.Resumed)
			}
			if res.OthersKept != res.OthersBefore {
				t.Errorf("conntrack entries of g2..g4: %d of %d kept, want all", res.OthersKept, res.OthersBefore)
			}
			if res.BusyMovedAtReturn != 0 {
				t.Errorf("%d busy flows moved when g1 returned, want 0 (idle_timer 120 s holds)", res.BusyMovedAtReturn)
			}
			for _, e := range res.TCPErrors {
				t.Logf("tcp stream: %v", e)
			}
			if res.HealthyTCPBroken != 0 {
				t.Errorf("%d TCP streams through g2..g4 broke, want 0", res.HealthyTCPBroken)
			}
			if nhDown < 1 || nhDown > 2 {
				t.Errorf("%v nexthop writes at failover, want 1-2 (the group, and g1's own object)", nhDown)
			}
			if d := writes("route") - routes0; d != 0 {
				t.Errorf("%v route writes, want 0: the group object carries member changes", d)
			}

			// A restart adopts the nexthop objects and the route through
			// the group with no write.
			nhBefore, rtBefore := l.Host.MustRun(t, "ip", "nexthop", "show", "proto", "212"), l.routes()
			l.signal(syscall.SIGTERM)
			if err := l.Host.Wait(l.cmd, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			l.start(natRouterPolicy(l, mode))
			for u := 1; u <= netlab.NATUplinks; u++ {
				if err := waitGateway(l, fmt.Sprintf("g%d", u), "up", 15*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(500 * time.Millisecond)
			if v := writesTotal(l); v != 0 {
				t.Errorf("restart made %v netlink writes, want 0", v)
			}
			if nh, rt := l.Host.MustRun(t, "ip", "nexthop", "show", "proto", "212"), l.routes(); nh != nhBefore || rt != rtBefore {
				t.Errorf("restart changed the kernel state:\nnexthops before %q\nafter %q\nroutes before %q\nafter %q", nhBefore, nh, rtBefore, rt)
			}

			// Drift: someone deletes the group object, and the kernel the
			// default through it. uplinkd puts both back.
			id := groupID(nhBefore)
			if id == "" {
				t.Fatalf("no group among the nexthop objects:\n%s", nhBefore)
			}
			l.Host.MustRun(t, "ip", "nexthop", "del", "id", id)
			l.waitFor("the group and the default repaired", func() bool {
				return l.Host.MustRun(t, "ip", "nexthop", "show", "proto", "212") == nhBefore && l.routes() == rtBefore
			})
		})
	}
}

// groupID is the id of the group in `ip nexthop show` output.
func groupID(nh string) string {
	for _, line := range strings.Split(nh, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "id" && strings.Contains(line, " group ") {
			return f[1]
		}
	}
	return ""
}

// waitGateway polls the daemon until gateway name is in state want. It
// returns an error instead of failing: it runs inside the scenario's
// goroutine.
func waitGateway(l *lab, name, want string, max time.Duration) error {
	deadline := time.Now().Add(max)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for ; time.Now().Before(deadline); <-tick.C {
		out, err := l.Host.Run(binary, "status", "--json", "--addr", listen)
		if err == nil {
			var st daemon.Status
			if jsonUnmarshal(out, &st) == nil {
				for _, g := range st.Gateways {
					if g.Name == name {
						last = g.State
					}
				}
				if last == want {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("gateway %s not %s within %v (last %q)", name, want, max, last)
}

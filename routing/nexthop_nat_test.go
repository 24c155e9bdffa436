package routing

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
)

// natPolicy is the NAT lab's router: four gateways in one group.
func natPolicy(t *testing.T, mode netlab.NATMode) string {
	var b strings.Builder
	for u := 1; u <= netlab.NATUplinks; u++ {
		fmt.Fprintf(&b, "[gateway.g%d]\naddress = %q\ninterface = %q\n", u, netlab.NATGateway(u), netlab.NATRouterIf(u))
		if mode == netlab.NATSNAT {
			fmt.Fprintf(&b, "flush_conntrack = \"on_down\"\nsnat_addresses = [%q]\n", netlab.NATAddr(u))
		}
	}
	b.WriteString("[group.wan]\ngateways = [\"g1\", \"g2\", \"g3\", \"g4\"]\n")
	return b.String()
}

func natReconciler(t *testing.T, n *nstest.NATLab, form Form) (*Reconciler, *KernelNexthops) {
	t.Helper()
	nk, err := NewKernelNexthops(n.Router.NsHandle(), n.Router.Handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nk.Close() })
	rec, err := NewReconciler(Config{Netlink: n.Router.Handle, Nexthops: nk, Form: form, Watcher: silentWatcher{}, Protocol: 212,
		Logger: quietLogger(), ResyncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	return rec, nk
}

// TestNexthopGroupsNAT is the test with real traffic through the
// NAT lab, driven by the reconciler: 32 UDP flows and 4 TCP streams, g1
// dies silently, the reconciler withdraws it (as the daemon does when the
// detector says down), g1 comes back and is restored. Resilient groups
// against classic multipath, masquerade and `snat to` (with the scoped
// flush the daemon runs after the route change for g1).
func TestNexthopGroupsNAT(t *testing.T) {
	for _, mode := range []netlab.NATMode{netlab.NATMasquerade, netlab.NATSNAT} {
		for _, form := range []Form{FormResilient, FormClassic} {
			t.Run(string(mode)+"/"+form.String(), func(t *testing.T) {
				n := nstest.NewNATLab(t, mode)
				n.StartEcho(t)
				// (d) foreign objects: one outside our band, one inside it
				// with another protocol; neither may change.
				n.Router.MustRun(t, "ip", "nexthop", "add", "id", "7", "via", netlab.NATGateway(2).String(), "dev", netlab.NATRouterIf(2), "proto", "static")
				n.Router.MustRun(t, "ip", "nexthop", "add", "id", fmt.Sprint(idBase(212)+5), "via", netlab.NATGateway(3).String(), "dev", netlab.NATRouterIf(3), "proto", "static")
				foreignBefore := foreignNexthops(t, n)
				p := mustPolicy(t, natPolicy(t, mode))
				rec, _ := natReconciler(t, n, form)
				ctx := context.Background()
				up, down := Desired(p, nil), Desired(p, Snapshot{"g1": Down})
				if _, err := rec.Apply(ctx, up); err != nil {
					t.Fatal(err)
				}
				if got := rec.Form(); got != form {
					t.Fatalf("form %s, want %s", got, form)
				}
				t.Logf("installed:\n%s%s", n.Router.MustRun(t, "ip", "nexthop", "show"), n.Router.MustRun(t, "ip", "route", "show"))
				var downWrites, upWrites int
				var flushed int
				ct, err := NewKernelConntrack(n.Router.NsHandle())
				if err != nil {
					t.Fatal(err)
				}
				defer ct.Close()
				res, err := n.RunFailover(ctx, netlab.FailoverConfig{Flows: 32, TCP: 4, Rate: 32 * 50, Duration: 5 * time.Second,
					DieAt: time.Second, RouteDownAt: 1300 * time.Millisecond, ReturnAt: 3 * time.Second, RouteUpAt: 3200 * time.Millisecond,
					Down: func() error {
						w, err := rec.Apply(ctx, down)
						downWrites = w
						if err != nil || mode != netlab.NATSNAT {
							return err
						}
						// Routes first, then the flush, as the daemon does.
						g := p.Gateway("g1")
						flushed, err = FlushConntrack(ct, ConntrackScope{Gateway: "g1", Family: 4, SNAT: g.Conntrack.SNAT})
						return err
					},
					Up: func() error {
						w, err := rec.Apply(ctx, up)
						upWrites = w
						return err
					},
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %s: %s; writes down %d, up %d; flushed %d", mode, form, res, downWrites, upWrites, flushed)
				if res.Uplink1Flows == 0 || res.Uplink1Flows == 32 {
					t.Fatalf("g1 carried %d of 32 flows: nothing to measure", res.Uplink1Flows)
				}
				if res.Resumed < 0 || res.Resumed > time.Second {
					t.Errorf("(a) g1's flows answered again after %v, want within 1 s of the route change", res.Resumed)
				}
				if downWrites < 1 || downWrites > 2 || upWrites < 1 || upWrites > 2 {
					t.Errorf("writes at failover %d and at return %d, want 1-2 each", downWrites, upWrites)
				}
				switch form {
				case FormResilient:
					if res.MovedAtFailover != 0 {
						t.Errorf("(a) %d flows of g2..g4 changed uplink at failover, want 0", res.MovedAtFailover)
					}
					if res.OthersKept != res.OthersBefore {
						t.Errorf("(a) conntrack entries of g2..g4: %d of %d kept, want all", res.OthersKept, res.OthersBefore)
					}
					if res.HealthyTCPBroken != 0 {
						t.Errorf("(a) %d TCP streams through g2..g4 broke, want 0: %v", res.HealthyTCPBroken, res.TCPErrors)
					}
					// (b) every flow sends throughout, so every bucket is
					// busy and idle_timer (120 s) holds: none may move.
					if res.BusyMovedAtReturn != 0 {
						t.Errorf("(b) %d busy flows moved when g1 returned, want 0", res.BusyMovedAtReturn)
					}
					if fair := 32 / 4; res.MovedAtReturn > fair {
						t.Errorf("(b) %d flows moved at return, more than the buckets' fair share (%d)", res.MovedAtReturn, fair)
					}
				case FormClassic:
					// The difference the resilient form makes: here the
					// hash-threshold split moves healthy flows (masquerade
					// then drops their entries; with snat they keep a
					// mapping their new ISP drops).
					t.Logf("classic: %d healthy flows moved, %d of %d of their conntrack entries kept", res.MovedAtFailover, res.OthersKept, res.OthersBefore)
				}
				// (c) restart: a new reconciler adopts with 0 writes.
				rec2, _ := natReconciler(t, n, form)
				if w, err := rec2.Apply(ctx, up); err != nil || w != 0 {
					t.Errorf("(c) restart: %d writes, err %v; want 0", w, err)
				}
				// (d) the foreign objects are as they were.
				if got := foreignNexthops(t, n); got != foreignBefore {
					t.Errorf("(d) foreign nexthop objects changed:\nbefore %s\nafter  %s", foreignBefore, got)
				}
			})
		}
	}
}

// foreignNexthops is `ip nexthop` without protocol 212's objects.
func foreignNexthops(t *testing.T, n *nstest.NATLab) string {
	var keep []string
	for _, l := range strings.Split(n.Router.MustRun(t, "ip", "nexthop", "show"), "\n") {
		if l != "" && !strings.Contains(l, "proto 212") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

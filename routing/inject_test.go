package routing_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
	"golang.org/x/sys/unix"
)

// Issue 11.10: the reconciler's handling of each kernel error the fake can
// inject, on each operation. An error is returned (wrapped, so the errno
// is still there), counted, leaves the cache invalid, does not stop the
// other ops, and once the fault is gone the next reconcile converges.
func TestReconcilerKernelErrors(t *testing.T) {
	p := mustPolicy(t, dualStack)
	allUp, isp1Down := routing.Desired(p, nil), routing.Desired(p, routing.Snapshot{"isp1": routing.Down})
	for _, c := range []struct {
		op       routingtest.MemOp
		from, to routing.State // kernel state before (applied without faults) and the want applied under the fault
		object   string
		opLabel  string // uplinkd_netlink_writes_total{op}; "" for reads
	}{
		{routingtest.OpRouteAdd, routing.State{}, allUp, "route", "add"},
		{routingtest.OpRouteReplace, allUp, isp1Down, "route", "replace"},
		{routingtest.OpRouteDel, allUp, routing.State{}, "route", "delete"},
		{routingtest.OpRuleAdd, routing.State{}, allUp, "rule", "add"},
		{routingtest.OpRuleDel, allUp, routing.State{}, "rule", "delete"},
		{routingtest.OpRouteDump, allUp, isp1Down, "", ""},
		{routingtest.OpRuleDump, allUp, isp1Down, "", ""},
		{routingtest.OpLinkList, allUp, isp1Down, "", ""},
	} {
		for _, errno := range []unix.Errno{unix.EPERM, unix.ENETUNREACH, unix.ENOMEM, unix.EBUSY} {
			t.Run(fmt.Sprintf("%s/%s", c.op, unix.ErrnoName(errno)), func(t *testing.T) {
				k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
				foreignRoute(t, k)
				reg := prometheus.NewRegistry()
				m := routing.NewMetrics(reg)
				rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212, Metrics: m, ResyncEvery: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				defer rec.Close()
				ctx := context.Background()
				if _, err := rec.Apply(ctx, c.from); err != nil {
					t.Fatal(err)
				}
				before := routing.Format(k.State())
				k.Fail(c.op, errno, -1)
				n, err := rec.Apply(ctx, c.to)
				if !errors.Is(err, errno) {
					t.Fatalf("Apply under %s on %s: err = %v, want it to wrap %s", errno, c.op, err, unix.ErrnoName(errno))
				}
				if c.opLabel == "" {
					// A failed read writes nothing: planning against a
					// state not read would be a guess.
					k.Fail(c.op, nil, 0)
					if d := cmp.Diff(before, routing.Format(k.State())); n != 0 || d != "" {
						t.Errorf("a failed %s made %d writes (-before +after):\n%s", c.op, n, d)
					}
				} else {
					if got := series(t, reg, "uplinkd_netlink_writes_total", "object", c.object, "op", c.opLabel, "result", "error"); got < 1 {
						t.Errorf("uplinkd_netlink_writes_total{%s,%s,error} = %v", c.object, c.opLabel, got)
					}
					// Other kinds of op still went through.
					other := "rule"
					if c.object == "rule" {
						other = "route"
					}
					if got := writesOK(t, reg, other); got == 0 {
						t.Errorf("no %s write succeeded beside the failing %s", other, c.op)
					}
				}
				k.Fail(c.op, nil, 0)
				if _, err := rec.Apply(ctx, c.to); err != nil {
					t.Fatalf("Apply after the fault cleared: %v", err)
				}
				want := routing.Format(routing.Normalize(routing.State{Routes: append(c.to.Routes, foreignOf(k.State()).Routes...), Rules: c.to.Rules}))
				if d := cmp.Diff(want, routing.Format(k.State())); d != "" {
					t.Errorf("kernel after recovery (-want +got):\n%s", d)
				}
			})
		}
	}
}

func writesOK(t testing.TB, reg prometheus.Gatherer, object string) float64 {
	var n float64
	for _, op := range []string{"add", "replace", "delete"} {
		n += series(t, reg, "uplinkd_netlink_writes_total", "object", object, "op", op, "result", "ok")
	}
	return n
}

func foreignOf(s routing.State) routing.State {
	var out routing.State
	for _, r := range s.Routes {
		if r.Protocol != 212 {
			out.Routes = append(out.Routes, r)
		}
	}
	return out
}

// Under Run, a transient failure (EBUSY twice on the replace) is retried
// with backoff: nothing in the kernel changed, so no event would come
// (the watcher is silent here, so none can), and the periodic resync is
// an hour away.
func TestRunRetriesFailedWrites(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	reg := prometheus.NewRegistry()
	m := routing.NewMetrics(reg)
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Watcher: silentWatcher{}, Protocol: 212, Metrics: m, ResyncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()
	rec.Set(routing.Desired(p, nil))
	eventually(t, "initial apply", 5*time.Second, func() (bool, string) { return len(rec.Installed().Routes) == 4, routing.Format(k.State()) })
	k.Fail(routingtest.OpRouteReplace, unix.EBUSY, 2)
	rec.Set(routing.Desired(p, routing.Snapshot{"isp1": routing.Down}))
	eventually(t, "the change applied after two EBUSY", 5*time.Second, dumpHas(k, "default via 198.18.2.1 dev eth2 table main proto 212\n"))
	if got := series(t, reg, "uplinkd_netlink_writes_total", "object", "route", "op", "replace", "result", "error"); got != 2 {
		t.Errorf("failed replaces = %v, want 2", got)
	}
}

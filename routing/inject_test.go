package routing

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// Issue 11.10: the reconciler's handling of each kernel error the fake can
// inject, on each operation. An error is returned (wrapped, so the errno
// is still there), counted, leaves the cache invalid, does not stop the
// other ops, and once the fault is gone the next reconcile converges.
func TestReconcilerKernelErrors(t *testing.T) {
	p := mustPolicy(t, dualStack)
	allUp, isp1Down := Desired(p, nil), Desired(p, Snapshot{"isp1": Down})
	for _, c := range []struct {
		op       MemOp
		from, to State // kernel state before (applied without faults) and the want applied under the fault
		object   string
		opLabel  string // uplinkd_netlink_writes_total{op}; "" for reads
	}{
		{OpRouteAdd, State{}, allUp, "route", "add"},
		{OpRouteReplace, allUp, isp1Down, "route", "replace"},
		{OpRouteDel, allUp, State{}, "route", "delete"},
		{OpRuleAdd, State{}, allUp, "rule", "add"},
		{OpRuleDel, allUp, State{}, "rule", "delete"},
		{OpRouteDump, allUp, isp1Down, "", ""},
		{OpRuleDump, allUp, isp1Down, "", ""},
		{OpLinkList, allUp, isp1Down, "", ""},
	} {
		for _, errno := range []unix.Errno{unix.EPERM, unix.ENETUNREACH, unix.ENOMEM, unix.EBUSY} {
			t.Run(fmt.Sprintf("%s/%s", c.op, unix.ErrnoName(errno)), func(t *testing.T) {
				k := NewMemKernel("eth1", "eth2", "eth3")
				foreignRoute(t, k)
				m := NewMetrics(prometheus.NewRegistry())
				rec, err := NewReconciler(Config{Netlink: k, Protocol: 212, Logger: quietLogger(), Metrics: m, ResyncEvery: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				defer rec.Close()
				ctx := context.Background()
				if _, err := rec.Apply(ctx, c.from); err != nil {
					t.Fatal(err)
				}
				before := Format(k.State())
				k.Fail(c.op, errno, -1)
				n, err := rec.Apply(ctx, c.to)
				if !errors.Is(err, errno) {
					t.Fatalf("Apply under %s on %s: err = %v, want it to wrap %s", errno, c.op, err, unix.ErrnoName(errno))
				}
				if c.opLabel == "" {
					// A failed read writes nothing: planning against a
					// state not read would be a guess.
					k.Fail(c.op, nil, 0)
					if d := cmp.Diff(before, Format(k.State())); n != 0 || d != "" {
						t.Errorf("a failed %s made %d writes (-before +after):\n%s", c.op, n, d)
					}
				} else {
					if got := testutil.ToFloat64(m.writes.WithLabelValues(c.object, c.opLabel, "error")); got < 1 {
						t.Errorf("uplinkd_netlink_writes_total{%s,%s,error} = %v", c.object, c.opLabel, got)
					}
					// Other kinds of op still went through.
					other := "rule"
					if c.object == "rule" {
						other = "route"
					}
					if got := writesOK(m, other); got == 0 {
						t.Errorf("no %s write succeeded beside the failing %s", other, c.op)
					}
				}
				k.Fail(c.op, nil, 0)
				if _, err := rec.Apply(ctx, c.to); err != nil {
					t.Fatalf("Apply after the fault cleared: %v", err)
				}
				want := Format(Normalize(State{Routes: append(c.to.Routes, foreignOf(k.State()).Routes...), Rules: c.to.Rules}))
				if d := cmp.Diff(want, Format(k.State())); d != "" {
					t.Errorf("kernel after recovery (-want +got):\n%s", d)
				}
			})
		}
	}
}

func writesOK(m *Metrics, object string) float64 {
	var n float64
	for _, op := range []string{"add", "replace", "delete"} {
		n += testutil.ToFloat64(m.writes.WithLabelValues(object, op, "ok"))
	}
	return n
}

func foreignOf(s State) State {
	var out State
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
	k := NewMemKernel("eth1", "eth2", "eth3")
	m := NewMetrics(prometheus.NewRegistry())
	rec, err := NewReconciler(Config{Netlink: k, Watcher: silentWatcher{}, Protocol: 212, Logger: quietLogger(), Metrics: m, ResyncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()
	rec.Set(Desired(p, nil))
	eventually(t, "initial apply", 5*time.Second, func() (bool, string) { return len(rec.Installed().Routes) == 4, Format(k.State()) })
	k.Fail(OpRouteReplace, unix.EBUSY, 2)
	rec.Set(Desired(p, Snapshot{"isp1": Down}))
	eventually(t, "the change applied after two EBUSY", 5*time.Second, dumpHas(k, "default via 198.18.2.1 dev eth2 table main proto 212\n"))
	if got := testutil.ToFloat64(m.writes.WithLabelValues("route", "replace", "error")); got != 2 {
		t.Errorf("failed replaces = %v, want 2", got)
	}
}

// An op of an object kind the reconciler has no write path for (the
// coming nexthop objects, before their path exists) is an error: it never
// falls through into another kind's write.
func TestExecuteRefusesUnknownObject(t *testing.T) {
	k := NewMemKernel("eth1")
	rec, err := NewReconciler(Config{Netlink: k, Protocol: 212, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	l, _ := readLinks(k)
	rt := own(201, gw1, "eth1")
	ru := srcRule(1000, 201)
	errs, applied, _ := rec.execute([]Op{{Kind: OpAdd, Object: Object(3), Route: &rt, Rule: &ru}}, l, false)
	if len(errs) != 1 || len(applied) != 0 || rec.Writes() != 0 {
		t.Errorf("unknown object: errs %v, applied %v, %d writes; want one error and no write", errs, applied, rec.Writes())
	}
}

package routing

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// bgpRoutes is the size of the foreign table the BGP benchmarks run
// beside: 131,070 IPv4 prefixes (every /17 to /32 of 198.19.0.0/16) and
// the rest IPv6 /64s, all proto 186 ("bgp") in main, where uplinkd keeps
// its multipath defaults. UPLINKD_BENCH_BGP_ROUTES overrides it.
func bgpRoutes(tb testing.TB) (n4, n6 int) {
	n := 300000
	if s := os.Getenv("UPLINKD_BENCH_BGP_ROUTES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 2 {
			tb.Fatalf("UPLINKD_BENCH_BGP_ROUTES=%q: want a number of routes", s)
		}
		n = v
	}
	n4 = min(n/2, 131070)
	return n4, n - n4
}

// bgpLab is the TwoUplinks host with a full-size foreign table in main.
func bgpLab(b *testing.B) (*nstest.Host, int) {
	tu := nstest.NewTwoUplinks(b)
	h := tu.Host
	n4, n6 := bgpRoutes(b)
	start := time.Now()
	foreignBatch(b, h, "add", 0, n4, n6, nstest.HostUplink1If, 254, 186)
	b.Logf("installed %d foreign routes (%d IPv4, %d IPv6) in %v", n4+n6, n4, n6, time.Since(start).Round(time.Millisecond))
	return h, n4 + n6
}

// unfilteredWatcher drops the reconciler's Interest: every route event is
// a hint, as before route events were filtered.
type unfilteredWatcher struct{ w Watcher }

func (u unfilteredWatcher) Watch(ctx context.Context, hints chan<- Hint, _ Interest) error {
	return u.w.Watch(ctx, hints, nil)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBesideBGP measures what a full BGP table in main costs uplinkd,
// the way it ran before (route dumps filtered in userspace, every route
// event a hint) and the way it runs now (Kernel: strict dumps filtered by
// the kernel; route events filtered by key, after reading or, with
// Config.SocketFilter, in the kernel):
//   - resync/*: one full reconcile (re-read, plan, 0 writes) of the lab
//     policy's 12 routes and rules: time, bytes and allocations per resync;
//   - churn/*: the reconciler running (Run) while BGP replaces 10,000 of
//     its routes; CPU time of the whole process and resyncs per burst.
//     Each burst ends with a marker (an owned route the reconciler must
//     delete, and the resync its deletion causes); churn/no-churn is the
//     marker alone, the floor of what the others can show.
func BenchmarkBesideBGP(b *testing.B) {
	h, nForeign := bgpLab(b)
	p := labPolicyWith(b, "keep")
	want := Desired(p, nil)
	ctx := context.Background()
	kernel := labKernel(b, h)
	if !kernel.StrictDumps() {
		b.Skip("this kernel has no NETLINK_GET_STRICT_CHK: nothing to compare")
	}
	for _, c := range []struct {
		name string
		nl   Netlink
	}{{"userspace-filter", h.Handle}, {"kernel-filter", kernel}} {
		b.Run("resync/"+c.name, func(b *testing.B) {
			rec, err := NewReconciler(Config{Netlink: c.nl, Watcher: silentWatcher{}, Protocol: 212, Logger: quietLogger(), ResyncEvery: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer rec.Close()
			if _, err := rec.Apply(ctx, want); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if n, err := rec.Apply(ctx, want); err != nil || n != 0 {
					b.Fatalf("resync beside %d foreign routes: %d writes, %v", nForeign, n, err)
				}
			}
		})
	}

	const burst = 10000
	for _, c := range []struct {
		name     string
		nl       Netlink
		filtered bool
	}{{"unfiltered", h.Handle, false}, {"filtered", kernel, true}, {"socket-filter", kernel, true}, {"no-churn", kernel, true}} {
		b.Run("churn/"+c.name, func(b *testing.B) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			kw := NewKernelWatcher(h.NsHandle())
			kw.SocketFilter = c.name == "socket-filter" || c.name == "no-churn"
			var w Watcher = kw
			if !c.filtered {
				w = unfilteredWatcher{w}
			}
			rec, err := NewReconciler(Config{Netlink: c.nl, Watcher: w, Protocol: 212, Logger: benchLogger(), Metrics: m, ResyncEvery: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- rec.Run(rctx) }()
			defer func() {
				cancel()
				<-done
				rec.Close()
			}()
			rec.Set(want)
			// The marker is an owned route in a table uplinkd does not
			// want: the reconciler deletes it in the first resync after
			// its notification, which the socket delivers after every
			// churn notification before it. Polled through the strict
			// kernel, so the polling itself costs next to nothing.
			markerGone := func() (bool, string) {
				found := false
				err := kernel.RouteListFilteredIter(unix.AF_INET, &netlink.Route{Table: 301}, netlink.RT_FILTER_TABLE, func(netlink.Route) bool {
					found = true
					return false
				})
				return err == nil && !found, fmt.Sprint("marker still there ", err)
			}
			settle := func() {
				h.MustRun(b, "ip", "route", "replace", "198.18.77.1/32", "dev", "eth1", "table", "301", "proto", "212")
				eventually(b, "reconciler caught up", 20*time.Second, markerGone)
			}
			settle()
			resyncs := func() float64 {
				return testutil.ToFloat64(m.resyncs.WithLabelValues(ReasonEvent)) + testutil.ToFloat64(m.resyncs.WithLabelValues(ReasonENOBUFS))
			}
			var cpu time.Duration
			var nResync float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dev := nstest.HostUplink2If
				if i%2 == 1 {
					dev = nstest.HostUplink1If
				}
				r0, c0 := resyncs(), cpuTime()
				// BGP rewrites 10,000 of its routes (new nexthop).
				if c.name != "no-churn" {
					foreignBatch(b, h, "replace", 0, burst/2, burst/2, dev, 254, 186)
				}
				settle()
				cpu += cpuTime() - c0
				nResync += resyncs() - r0
			}
			b.StopTimer()
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(nResync/float64(b.N), "resyncs/op")
			if c.name != "no-churn" {
				b.ReportMetric(float64(burst), "foreign-changes/op")
			}
		})
	}
}

func benchLogger() *slog.Logger {
	if os.Getenv("UPLINKD_BENCH_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return quietLogger()
}

package routing

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// foreignBatch writes `ip -batch` route commands for n4 IPv4 and n6 IPv6
// prefixes of foreignPrefix4/6 (from offset off), each "verb PREFIX dev
// DEV table TABLE proto PROTO", and runs them in chunks that each finish
// well inside the harness's 30 s command timeout.
func foreignBatch(tb testing.TB, h *nstest.Host, verb string, off, n4, n6 int, dev string, table, proto int) {
	tb.Helper()
	const chunk = 50000
	var b strings.Builder
	lines := 0
	flush := func() {
		if lines == 0 {
			return
		}
		if out, err := h.RunInput(b.String(), "ip", "-batch", "-"); err != nil {
			tb.Fatalf("ip -batch (%s %d routes): %v\n%s", verb, lines, err, out)
		}
		b.Reset()
		lines = 0
	}
	// The family follows from the prefix; a batch line takes no -6.
	emit := func(prefix string) {
		fmt.Fprintf(&b, "route %s %s dev %s table %d proto %d\n", verb, prefix, dev, table, proto)
		if lines++; lines == chunk {
			flush()
		}
	}
	for i := off; i < off+n4; i++ {
		emit(foreignPrefix4(i).String())
	}
	for i := off; i < off+n6; i++ {
		emit(foreignPrefix6(i).String())
	}
	flush()
}

// countingFilter wraps a RouteFilter and counts its verdicts.
type countingFilter struct {
	mu            sync.Mutex
	kept, dropped int
	keptEvents    []RouteEvent
}

func (c *countingFilter) wrap(f func(RouteEvent) bool) RouteFilter {
	return func(ev RouteEvent) bool {
		ok := f(ev)
		c.mu.Lock()
		defer c.mu.Unlock()
		if ok {
			c.kept++
			c.keptEvents = append(c.keptEvents, ev)
		} else {
			c.dropped++
		}
		return ok
	}
}

func (c *countingFilter) counts() (kept, dropped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kept, c.dropped
}

// Beside 40,000 routes of a BGP daemon (proto 186) in main and 10,000 in
// another table, on the real kernel: the route dumps are filtered by the
// kernel, owned routes are installed and repaired, a restart writes
// nothing, and a foreign route taking an owned key is left alone and
// outlived.
func TestKernelBesideForeignTable(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := labPolicyWith(t, "keep")
	want := Desired(p, nil)
	foreignBatch(t, h, "add", 0, 20000, 20000, nstest.HostUplink1If, 254, 186)
	foreignBatch(t, h, "add", 20000, 5000, 5000, nstest.HostUplink2If, 300, 186)

	k := labKernel(t, h)
	if !k.StrictDumps() {
		t.Skip("this kernel has no NETLINK_GET_STRICT_CHK (Linux < 4.20): route dumps cannot be filtered by the kernel")
	}
	// What the kernel sends for the owned dump: nothing but proto 212.
	var sent int
	if err := k.RouteListFilteredIter(unix.AF_INET6, &netlink.Route{Protocol: 212}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL, func(netlink.Route) bool {
		sent++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if sent != 0 {
		t.Errorf("owned IPv6 dump before any apply returned %d routes, want 0", sent)
	}
	// A table that does not exist is empty, not an error.
	if err := k.RouteListFilteredIter(unix.AF_INET, &netlink.Route{Table: 4242}, netlink.RT_FILTER_TABLE, func(netlink.Route) bool {
		t.Errorf("route in a table that does not exist")
		return true
	}); err != nil {
		t.Errorf("dumping a table that does not exist: %v", err)
	}

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	rec := newLabReconciler(t, h, m)
	defer startRun(t, context.Background(), rec)()
	rec.Set(want)
	golden := Format(want)
	converged := func() (bool, string) {
		diff := cmp.Diff(golden, kernelDump(t, rec))
		return diff == "", diff
	}
	eventually(t, "initial apply beside the foreign table", 10*time.Second, converged)
	if err := h.Ping(t, "-c", "1", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping through the multipath default beside the foreign table: %v", err)
	}
	if got := h.MustRun(t, "ip", "-6", "route", "show", "proto", "186", "table", "all"); strings.Count(got, "\n") != 25000 {
		t.Errorf("foreign IPv6 routes: %d, want 25000 untouched", strings.Count(got, "\n"))
	}

	// Drift repair still works.
	h.MustRun(t, "ip", "route", "del", "default", "table", "201")
	eventually(t, "table 201 repaired", 10*time.Second, converged)
	h.MustRun(t, "ip", "-6", "route", "del", "default", "proto", "212")
	eventually(t, "IPv6 multipath default repaired", 10*time.Second, converged)

	// Restart: zero writes.
	rec2 := newLabReconciler(t, h, nil)
	if n, err := rec2.Apply(context.Background(), want); err != nil || n != 0 {
		t.Errorf("restart beside the foreign table: %d writes (err %v), want 0", n, err)
	}

	// A BGP default takes the key of the owned default of table 202.
	resyncs := func() float64 { return testutil.ToFloat64(m.resyncs.WithLabelValues(ReasonEvent)) }
	before, writes := resyncs(), rec.Writes()
	h.MustRun(t, "ip", "route", "replace", "default", "via", "198.18.1.1", "dev", "eth1", "table", "202", "proto", "186")
	eventually(t, "resync after the foreign takeover", 10*time.Second, func() (bool, string) {
		return resyncs() > before, "no resync"
	})
	if rec.Writes() != writes {
		t.Errorf("the reconciler wrote %d times over a foreign route on its key", rec.Writes()-writes)
	}
	if got := routeGet(t, h, "198.18.100.1", "from", "198.18.2.2"); got != "198.18.100.1 from 198.18.2.2 via 198.18.1.1 dev eth1 table 202" {
		t.Errorf("foreign default of table 202 was changed: ip route get = %q", got)
	}
	h.MustRun(t, "ip", "route", "del", "default", "table", "202", "proto", "186")
	eventually(t, "owned default of table 202 back", 10*time.Second, converged)
}

// The route watcher drops notifications of foreign routes on keys uplinkd
// does not want (a BGP table churning in main, beside uplinkd's default),
// and keeps owned routes anywhere and foreign routes on wanted keys.
func TestKernelWatcherDropsForeignChurn(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := labPolicyWith(t, "keep")
	foreignBatch(t, h, "add", 0, 3000, 3000, nstest.HostUplink1If, 254, 186)
	in := newInterest(212, Desired(p, nil))
	var cf countingFilter
	hints := make(chan Hint, 1<<14)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	kw := NewKernelWatcher(h.NsHandle())
	kw.SocketFilter = false // the filter in userspace is what this test counts
	go func() { done <- kw.Watch(ctx, hints, cf.wrap(in.relevant)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	// The subscriptions are up once a marker route is seen.
	marker := func(n int) {
		t.Helper()
		h.MustRun(t, "ip", "route", "replace", fmt.Sprintf("198.18.77.%d/32", n), "dev", "eth1", "table", "301", "proto", "212")
	}
	marker(0)
	tries := 0
	eventually(t, "watcher subscribed", 10*time.Second, func() (bool, string) {
		if k, _ := cf.counts(); k > 0 {
			return true, ""
		}
		// A fresh route each time: the watcher may subscribe after any
		// one of them, and an identical replace need not be notified.
		tries++
		marker(100 + tries%100)
		return false, "no marker seen"
	})
	k0, d0 := cf.counts()

	// Churn: every foreign route replaced, in two batches, then a marker
	// (owned protocol, unmanaged table): the socket delivers in order, so
	// once the marker is counted every churn notification has been judged.
	foreignBatch(t, h, "replace", 0, 3000, 3000, nstest.HostUplink2If, 254, 186)
	marker(1)
	eventually(t, "marker after churn", 10*time.Second, func() (bool, string) {
		k, _ := cf.counts()
		return k > k0, "marker not seen"
	})
	k1, d1 := cf.counts()
	if k1-k0 != 1 {
		cf.mu.Lock()
		t.Errorf("kept %d events during foreign churn, want only the marker: %v", k1-k0, cf.keptEvents[k0:])
		cf.mu.Unlock()
	}
	var enobufs int
	for len(hints) > 0 {
		if (<-hints).Reason == ReasonENOBUFS {
			enobufs++
		}
	}
	// Without overflow all 6,000 notifications were judged and dropped;
	// an overflow (the namespace's rmem_max is small) loses some before
	// the filter and says so with an ENOBUFS hint.
	if d1-d0 != 6000 && enobufs == 0 {
		t.Errorf("dropped %d foreign notifications without an overflow, want 6000", d1-d0)
	}
	t.Logf("foreign churn: %d notifications dropped by the filter, %d overflows", d1-d0, enobufs)

	// A foreign default on uplinkd's key in main is kept.
	h.MustRun(t, "ip", "route", "add", "default", "via", "198.18.2.1", "dev", "eth2", "proto", "186")
	eventually(t, "foreign default on a wanted key", 10*time.Second, func() (bool, string) {
		k, _ := cf.counts()
		return k > k1, "not kept"
	})
}

// Owned routes without a gateway have link scope in IPv4; a delete must
// match them (RT_SCOPE_NOWHERE, "any scope", as `ip route del` sends), not
// meet ESRCH, which reads as "already gone" and would leave them behind:
// a withdrawn dev announce, a stale owned route in a table no longer used.
func TestKernelDeletesLinkScopeRoutes(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := mustPolicy(t, `
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[announce.dev]
prefix = "198.18.61.0/24"
track = "isp2"
dev = "eth2"
`)
	// An owned device route in a table the policy does not use.
	h.MustRun(t, "ip", "route", "add", "198.18.77.1/32", "dev", "eth1", "table", "301", "proto", "212")
	rec := newLabReconciler(t, h, nil)
	ctx := context.Background()
	if _, err := rec.Apply(ctx, Desired(p, nil)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("198.18.61.0/24 dev eth2 table main proto 212\n", kernelDump(t, rec)); diff != "" {
		t.Errorf("after apply (-want +got):\n%s", diff)
	}
	if err := rec.Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	if left := kernelDump(t, rec); left != "" {
		t.Errorf("withdraw left owned routes:\n%s", left)
	}
}

// fixedInterest is an interestSource a test changes by hand.
type fixedInterest struct {
	p atomic.Pointer[interest]
	c chan struct{}
}

func newFixedInterest(in *interest) *fixedInterest {
	f := &fixedInterest{c: make(chan struct{}, 1)}
	f.p.Store(in)
	return f
}
func (f *fixedInterest) interest() *interest              { return f.p.Load() }
func (f *fixedInterest) interestChanged() <-chan struct{} { return f.c }
func (f *fixedInterest) set(in *interest) {
	f.p.Store(in)
	f.c <- struct{}{}
}

// With the reconciler's interest compiled into a socket filter, foreign
// churn never leaves the kernel: the RouteFilter does not even see it, and
// the socket cannot overflow with it. Owned routes anywhere and foreign
// routes on wanted keys still arrive, and a changed interest takes effect
// (with a hint, for whatever the old filter dropped).
func TestKernelSocketFilterDropsForeignChurn(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := labPolicyWith(t, "keep")
	foreignBatch(t, h, "add", 0, 5000, 5000, nstest.HostUplink1If, 254, 186)
	foreignBatch(t, h, "add", 0, 2000, 0, nstest.HostUplink1If, 300, 186)
	want := Desired(p, nil)
	src := newFixedInterest(newInterest(212, want))
	if prog, err := routeSocketFilter(src.interest()); err != nil || prog == nil {
		t.Fatalf("compiling the lab policy's filter: %d instructions, %v", len(prog), err)
	}
	var cf countingFilter
	hints := make(chan Hint, 1<<14)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	keep := cf.wrap(func(ev RouteEvent) bool { return src.interest().relevant(ev) })
	go func() { done <- NewKernelWatcher(h.NsHandle()).watch(ctx, hints, keep, src) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	marker := func(n int) {
		t.Helper()
		h.MustRun(t, "ip", "route", "replace", fmt.Sprintf("198.18.77.%d/32", n), "dev", "eth1", "table", "301", "proto", "212")
	}
	marker(0)
	tries := 0
	eventually(t, "watcher subscribed", 10*time.Second, func() (bool, string) {
		if k, _ := cf.counts(); k > 0 {
			return true, ""
		}
		// A fresh route each time: the watcher may subscribe after any
		// one of them, and an identical replace need not be notified.
		tries++
		marker(100 + tries%100)
		return false, "no marker seen"
	})
	k0, d0 := cf.counts()
	foreignBatch(t, h, "replace", 0, 5000, 5000, nstest.HostUplink2If, 254, 186)
	foreignBatch(t, h, "replace", 0, 2000, 0, nstest.HostUplink2If, 300, 186)
	marker(1)
	eventually(t, "marker after churn", 10*time.Second, func() (bool, string) {
		k, _ := cf.counts()
		return k > k0, "marker not seen"
	})
	k1, d1 := cf.counts()
	if k1-k0 != 1 || d1-d0 != 0 {
		t.Errorf("12,000 foreign changes reached userspace: %d kept, %d dropped by the RouteFilter; want 1 (the marker) and 0", k1-k0, d1-d0)
	}
	for len(hints) > 0 {
		if h := <-hints; h.Reason == ReasonENOBUFS {
			t.Errorf("the route socket overflowed with the filter on")
		}
	}
	// A foreign default on the key of the owned IPv6 default in main.
	h.MustRun(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:2::1", "dev", "eth2", "proto", "186")
	eventually(t, "foreign route on a wanted key", 10*time.Second, func() (bool, string) {
		k, _ := cf.counts()
		return k > k1, "not seen"
	})

	// A new wanted key, a /24 among the foreign prefixes of table 300:
	// the filter follows, with a hint.
	p24 := foreignPrefix4(0)
	for i := 1; p24.Bits() != 24; i++ {
		p24 = foreignPrefix4(i)
	}
	more := want
	more.Routes = append(slices.Clone(want.Routes), Route{Family: 4, Table: 300, Dst: p24, Type: Blackhole, Protocol: 212})
	_, _ = h.Run("ip", "route", "add", p24.String(), "dev", "eth1", "table", "300", "proto", "186")
	in := newInterest(212, more)
	src.set(in)
	eventually(t, "hint after the filter changed", 10*time.Second, func() (bool, string) {
		for len(hints) > 0 {
			if (<-hints).What == "route filter" {
				return true, ""
			}
		}
		return false, "no hint"
	})
	k2, _ := cf.counts()
	h.MustRun(t, "ip", "route", "replace", p24.String(), "dev", "eth2", "table", "300", "proto", "186")
	eventually(t, "foreign route on the new wanted key", 10*time.Second, func() (bool, string) {
		k, _ := cf.counts()
		return k > k2, "not seen"
	})
}

package routing

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/policy"
)

const (
	benchGateways   = 1000
	benchSources    = 10 // per gateway: 10,000 rules
	benchGroupSize  = 10 // 100 weighted multipath groups, each in its own table
	benchTableBase  = 10000
	benchGroupTable = 20000
)

func benchGW(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)})
}
func benchSrc(i, j int) netip.Addr {
	n := i*benchSources + j
	return netip.AddrFrom4([4]byte{198, 19, byte(n / 250), byte(n%250 + 1)})
}

// benchPolicy: 1,000 gateways on one link, each with its own table
// failing over when it is down and 10 source rules; 100 groups of 10.
func benchPolicy(tb testing.TB) *policy.Policy {
	var b strings.Builder
	b.WriteString("[daemon]\nrule_priorities = \"1000-19999\"\n")
	for i := 0; i < benchGateways; i++ {
		fmt.Fprintf(&b, "[gateway.g%d]\naddress = %q\ninterface = \"up0\"\nweight = %d\ntable = %d\non_down = \"failover\"\nsources = [",
			i, benchGW(i), i%5+1, benchTableBase+i)
		for j := 0; j < benchSources; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", benchSrc(i, j))
		}
		b.WriteString("]\n")
	}
	for g := 0; g < benchGateways/benchGroupSize; g++ {
		fmt.Fprintf(&b, "[group.grp%d]\ntable = %d\ngateways = [", g, benchGroupTable+g)
		for j := 0; j < benchGroupSize; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "\"g%d\"", g*benchGroupSize+j)
		}
		b.WriteString("]\n")
	}
	return mustPolicy(tb, b.String())
}

// benchLab is one namespace whose link up0 (a veth to a peer namespace,
// since this kernel has no dummy driver) has every gateway on-link through
// a /16 and every first source as a local address (a route's src must be
// local).
func benchLab(b *testing.B) *nstest.Host {
	lab := nstest.New(b)
	h := lab.Host("bench")
	peer := lab.Host("peer")
	lab.Link(h, "up0", peer, "down0")
	h.AddAddr(b, "up0", "198.18.255.254/16")
	var batch strings.Builder
	for i := 0; i < benchGateways; i++ {
		fmt.Fprintf(&batch, "address add %s/32 dev up0\n", benchSrc(i, 0))
	}
	if out, err := h.RunInput(batch.String(), "ip", "-batch", "-"); err != nil {
		b.Fatalf("adding source addresses: %v\n%s", err, out)
	}
	return h
}

func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// BenchmarkReconcile measures, against the real kernel of a namespace with
// 1,000 gateways, 1,100 routes and 10,000 rules:
//   - full: the first full reconcile into an empty namespace;
//   - restart: a new reconciler over an unchanged kernel (0 writes);
//   - gateway-down: Apply (a full re-read, plan, writes) after one gateway
//     fails, and back;
//   - gateway-down-cached: the same through the path Run uses for Set,
//     which trusts its cached view of the kernel until a hint says
//     otherwise.
func BenchmarkReconcile(b *testing.B) {
	h := benchLab(b)
	p := benchPolicy(b)
	ctx := context.Background()
	up := Desired(p, nil)
	down := Desired(p, Snapshot{"g0": Down})
	if len(up.Rules) != benchGateways*benchSources {
		b.Fatalf("%d rules, want %d", len(up.Rules), benchGateways*benchSources)
	}
	newRec := func() *Reconciler {
		// The production boundary, Kernel: pipelined rule writes and
		// strict dumps, as uplinkd runs.
		k, err := NewKernel(h.NsHandle(), quietLogger())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(k.Close)
		rec, err := NewReconciler(Config{Netlink: k, Watcher: silentWatcher{}, Protocol: 212, Logger: quietLogger(), ResyncEvery: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		return rec
	}
	base := heapMB()
	rec := newRec()
	defer rec.Close()

	b.Run("full", func(b *testing.B) {
		var writes int
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if err := rec.Withdraw(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			n, err := rec.Apply(ctx, up)
			if err != nil {
				b.Fatal(err)
			}
			writes += n
		}
		b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
		// Live heap of the reconciler holding 1,100 routes and 10,000
		// rules (plus the desired states the benchmark keeps).
		b.ReportMetric(heapMB()-base, "heap-MB")
	})
	if _, err := rec.Apply(ctx, up); err != nil {
		b.Fatal(err)
	}
	b.Run("restart", func(b *testing.B) {
		var writes int
		for i := 0; i < b.N; i++ {
			r2 := newRec()
			n, err := r2.Apply(ctx, up)
			r2.Close()
			if err != nil {
				b.Fatal(err)
			}
			writes += n
		}
		b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
	})
	b.Run("gateway-down", func(b *testing.B) {
		var writes int
		for i := 0; i < b.N; i++ {
			n, err := rec.Apply(ctx, down)
			if err != nil {
				b.Fatal(err)
			}
			writes += n
			b.StopTimer()
			if _, err := rec.Apply(ctx, up); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
	})
	b.Run("gateway-down-cached", func(b *testing.B) {
		var writes int
		for i := 0; i < b.N; i++ {
			rec.Set(down)
			n, err := rec.reconcile(ctx, false, ReasonEvent, false)
			if err != nil {
				b.Fatal(err)
			}
			writes += n
			b.StopTimer()
			rec.Set(up)
			if _, err := rec.reconcile(ctx, false, ReasonEvent, false); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
	})
}

// BenchmarkDesiredPlan is the pure part alone: desired state and plan for
// the same 1,000-gateway policy.
func BenchmarkDesiredPlan(b *testing.B) {
	p := benchPolicy(b)
	up := Desired(p, nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		down := Desired(p, Snapshot{"g0": Down})
		if ops := Plan(down, up); len(ops) != 2 {
			b.Fatalf("%d ops, want 2", len(ops))
		}
	}
}

package bfd

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/frrtest"
)

// The benchmarks put numbers on the evidence BFD gives, in real namespaces,
// next to detector's BenchmarkDetectUnderTraffic (uplinkd's gated
// evidence): the outage from a silent blackhole on the gateway (its
// downlink drops everything, carrier up) to the session's Down, and the
// BFD packets per second on the wire, both directions, idle and while a
// request/answer flow runs through the gateway. Fault timing starts when
// the nft call returns, as in the detector's benchmarks.

const benchReps = 5

func report(b *testing.B, ds []time.Duration, idle, busy float64) {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(ds[len(ds)/2]), "outage-ms")
	b.ReportMetric(ms(ds[len(ds)-1]), "outage-ms-max")
	b.ReportMetric(idle, "pkts/s-idle")
	b.ReportMetric(busy, "pkts/s-busy")
}

// outages black-holes the gateway's downlink benchReps times per
// iteration, each time once settle says the session is ready again, and
// returns how long after each fault s saw its session to "gw" go down.
func outages(b *testing.B, l *lab, s *server, settle func()) []time.Duration {
	var ds []time.Duration
	for i := 0; i < b.N; i++ {
		for range benchReps {
			settle()
			time.Sleep(300 * time.Millisecond)
			l.gw.BlackholeIP(b, "eth0")
			at := time.Now()
			ds = append(ds, s.waitDown(b, "gw", at, 5*time.Second).At.Sub(at))
			l.gw.Recover(b)
		}
	}
	return ds
}

// wire is the packets per second of a session, both directions, over d.
func wire(s *server, name string, d time.Duration) float64 {
	c0 := s.status(name).Counters
	time.Sleep(d)
	c1 := s.status(name).Counters
	return float64(c1.Sent-c0.Sent+c1.Received-c0.Received) / d.Seconds()
}

// BenchmarkBFDAsync: uplinkd against FRR's bfdd at 50 ms × 3.
func BenchmarkBFDAsync(b *testing.B) {
	l := newLab(b)
	frrtest.StartBFDD(b, l.gw, frrSingle)
	s := startServer(b, l.h, gwPeer)
	settle := func() {
		waitFor(b, 15*time.Second, "up at 50 ms", func() bool {
			st := s.status("gw")
			return st.State == Up && !st.Polling && st.TxInterval == 50*time.Millisecond
		})
	}
	settle()
	idle := wire(s, "gw", 2*time.Second)
	echo(b, l.gw, "198.18.1.1:9000")
	f := startFlow(b, l.h, "198.18.1.1:9000", func() {})
	time.Sleep(200 * time.Millisecond)
	busy := wire(s, "gw", 2*time.Second)
	f.halt()
	report(b, outages(b, l, s, settle), idle, busy)
}

// BenchmarkBFDDemand: two uplinkd servers in demand mode, polls driven by
// the flow's evidence (50 ms of unanswered requests), 50 ms × 3.
func BenchmarkBFDDemand(b *testing.B) {
	l := newLab(b)
	echo(b, l.gw, "198.18.1.1:9000")
	dem := gwPeer
	dem.Demand = true
	sh := startServer(b, l.h, dem)
	sg := startServer(b, l.gw, Peer{Name: "h", Remote: netip.MustParseAddr("198.18.1.2"), Interface: "eth0", Config: dem.Config})
	settle := func() {
		waitFor(b, 15*time.Second, "demand mode both ways", func() bool {
			a, g := sh.status("gw"), sg.status("h")
			return a.State == Up && g.State == Up && a.DemandActive && g.DemandActive && !a.Polling && !g.Polling
		})
	}
	settle()
	idle := wire(sh, "gw", 2*time.Second)
	f := startFlow(b, l.h, "198.18.1.1:9000", func() { sh.Verify("gw") })
	time.Sleep(200 * time.Millisecond)
	busy := wire(sh, "gw", 2*time.Second)
	ds := outages(b, l, sh, settle)
	f.halt()
	report(b, ds, idle, busy)
}

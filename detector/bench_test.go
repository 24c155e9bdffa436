package detector_test

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// The benchmarks run in real namespaces with real traffic and report what
// the issue sets targets for: detection time per fault (detect-ms) and
// probes per second per gateway (probes/s). Each iteration repeats the
// fault several times and reports the median and the worst.

const benchReps = 5

func reportDurations(b *testing.B, unit string, ds []time.Duration) {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(ds[len(ds)/2]), unit)
	b.ReportMetric(ms(ds[len(ds)-1]), unit+"-max")
	b.ReportMetric(ms(ds[0]), unit+"-min")
}

// polNoDamping: repeating a fault is flapping; damping would hold the
// gateway down between repetitions.
const polNoDamping = polGW1 + `
[gateway.gw1.detect]
damping = false
`

// BenchmarkDetectUnderTraffic: a fault on a gateway carrying 1000 pps of
// echo traffic, from the fault to the down transition.
func BenchmarkDetectUnderTraffic(b *testing.B) {
	for _, f := range []struct {
		name   string
		pol    string
		inject func(l *lab)
	}{
		{"silent-blackhole-arp-answered", polNoDamping, func(l *lab) { l.GW1.BlackholeIP(b, nstest.GWDownlinkIf) }},
		{"blackhole-arp-dead", polNoDamping, func(l *lab) { l.GW1.BlackholeARP(b, nstest.GWDownlinkIf) }},
		{"upstream-cut", polGW1Remote + "\n[gateway.gw1.detect]\ndamping = false\n", func(l *lab) { l.GW1.BlackholeIP(b, nstest.GWUplinkIf) }},
	} {
		b.Run(f.name, func(b *testing.B) {
			l := newLab(b, f.pol)
			l.routeVia(b, 1)
			var ds, apply []time.Duration
			for i := 0; i < b.N; i++ {
				for r := 0; r < benchReps; r++ {
					l.pingFlood(b, 1000, 3*time.Second)
					l.waitState(b, "gw1", detector.Up, 10*time.Second)
					time.Sleep(300 * time.Millisecond) // traffic is flowing both ways
					before := time.Now()
					f.inject(l)
					// nft commits the rule just before it exits; spawning
					// it through `ip netns exec` takes far longer, so the
					// fault starts when the call returns.
					fault := time.Now()
					apply = append(apply, fault.Sub(before))
					l.waitState(b, "gw1", detector.Down, 5*time.Second)
					tr, _ := l.rec.First("gw1", detector.Down, fault)
					ds = append(ds, tr.Mono.Sub(fault))
					l.GW1.Recover(b)
					l.waitState(b, "gw1", detector.Up, 10*time.Second)
					time.Sleep(2500 * time.Millisecond) // let the flood end
				}
			}
			reportDurations(b, "detect-ms", ds)
			slices.Sort(apply)
			b.ReportMetric(float64(apply[len(apply)/2])/float64(time.Millisecond), "fault-apply-ms")
		})
	}
}

func BenchmarkDetectCarrierLoss(b *testing.B) {
	l := newLab(b, polNoDamping)
	var ds []time.Duration
	for i := 0; i < b.N; i++ {
		for r := 0; r < benchReps; r++ {
			l.waitState(b, "gw1", detector.Up, 10*time.Second)
			fault := time.Now()
			l.GW1.LinkDown(b, nstest.GWDownlinkIf)
			l.waitState(b, "gw1", detector.Down, 5*time.Second)
			tr, _ := l.rec.First("gw1", detector.Down, fault)
			ds = append(ds, tr.Mono.Sub(fault))
			l.GW1.LinkUp(b, nstest.GWDownlinkIf)
		}
	}
	reportDurations(b, "detect-ms", ds)
}

// probesSent sums uplinkd_probes_sent_total of one gateway.
func (l *lab) probesSent(tb testing.TB, gw string) float64 {
	mfs, err := l.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "uplinkd_probes_sent_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "gateway", gw) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func labelIs(m *dto.Metric, k, v string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}

const probeWindow = 20 * time.Second

func measureProbes(b *testing.B, l *lab, traffic func()) {
	l.waitState(b, "gw1", detector.Up, 10*time.Second)
	time.Sleep(time.Second) // start-up probes are not part of the measure
	var rates, cpu []float64
	for i := 0; i < b.N; i++ {
		traffic()
		before := l.probesSent(b, "gw1")
		cpu0 := cpuTime()
		start := time.Now()
		time.Sleep(probeWindow)
		el := time.Since(start)
		rates = append(rates, (l.probesSent(b, "gw1")-before)/el.Seconds())
		cpu = append(cpu, float64(cpuTime()-cpu0)/float64(time.Millisecond)/el.Seconds())
	}
	// The whole test process: the detector, plus the traffic generator
	// where there is one.
	b.ReportMetric(slices.Max(cpu), "cpu-ms/s")
	if n := l.rec.Count("gw1", detector.Down, l.start, time.Time{}); n != 0 {
		b.Fatalf("healthy gateway went down: %v", l.rec.List())
	}
	b.ReportMetric(slices.Max(rates), "probes/s")
}

func BenchmarkProbesIdle(b *testing.B) {
	l := newLab(b, polGW1)
	measureProbes(b, l, func() {})
}

func BenchmarkProbesTCP(b *testing.B) {
	l := newLab(b, polGW1)
	l.routeVia(b, 1)
	measureProbes(b, l, func() { l.tcpStream(b, probeWindow+time.Second) })
}

func BenchmarkProbesUDPOneWay(b *testing.B) {
	l := newLab(b, polGW1)
	l.routeVia(b, 1)
	measureProbes(b, l, func() { l.udpOneWay(b, 1000, probeWindow+time.Second) })
}

// udpOneWay sends pps datagrams per second to a discarding listener on
// the Server: traffic leaves, nothing comes back (no ICMP errors either).
func (l *lab) udpOneWay(tb testing.TB, pps int, d time.Duration) {
	tb.Helper()
	var srv net.PacketConn
	if err := l.Server.Do(func() (err error) {
		srv, err = net.ListenPacket("udp", net.JoinHostPort(nstest.TargetAddr4.String(), "9"))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	var c net.Conn
	if err := l.Host.Do(func() (err error) {
		c, err = net.Dial("udp", net.JoinHostPort(nstest.TargetAddr4.String(), "9"))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	tb.Cleanup(func() { close(stop); wg.Wait(); c.Close(); srv.Close() })
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		srv.SetReadDeadline(time.Now().Add(d + 5*time.Second))
		for {
			if _, _, err := srv.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		tk := time.NewTicker(time.Second / time.Duration(pps))
		defer tk.Stop()
		end := time.Now().Add(d)
		buf := make([]byte, 100)
		for time.Now().Before(end) {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			c.Write(buf)
		}
	}()
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

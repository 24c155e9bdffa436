package reliability

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
)

// soakDuration is UPLINKD_SOAK (a Go duration), ten minutes by default:
// `make bench` runs the full soak, UPLINKD_SOAK=1m tries it.
func soakDuration(b *testing.B) time.Duration {
	v := os.Getenv("UPLINKD_SOAK")
	if v == "" {
		return 10 * time.Minute
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 30*time.Second {
		b.Fatalf("UPLINKD_SOAK=%q: want a duration of at least 30s", v)
	}
	return d
}

type soakSample struct {
	at         time.Duration
	goroutines float64
	rss, hwm   int64
	fds        int
	writes     float64
	state      string
}

func fdCount(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// BenchmarkSoak runs uplinkd for UPLINKD_SOAK (default 10m) while GW1
// silently dies and comes back every 2 s (a black hole for 1 s, then
// fine for 1 s) under bounded ping traffic, sampling the daemon every 5 s:
// goroutines (go_goroutines from its /metrics), resident memory (VmRSS,
// VmHWM), open descriptors (/proc/PID/fd) and its netlink writes. It
// fails on growth between the end of the warm-up (the first fifth) and the
// end, and when flap damping does not hold the route steady: after the
// warm-up uplinkd may write the route a few times a minute as the penalty
// decays and is re-earned, never once per flap (60 writes a minute).
// One iteration whatever b.N: the soak is the measurement.
func BenchmarkSoak(b *testing.B) {
	dur := soakDuration(b)
	r := newRig(b)
	r.bin = prodBin // CPU and memory of the shipped build
	pol := r.policy(polOpts{Damping: true, NoRecord: true})
	// Quiet logs: ten minutes at debug would measure the log buffer.
	pol = strings.Replace(pol, `log_level = "info"`, `log_level = "warn"`, 1)
	r.traffic(dur + 30*time.Second)
	d := r.start(pol)
	r.waitBothUp()
	pid := d.Cmd.Process.Pid

	sample := func(start time.Time) soakSample {
		body, err := d.Metrics()
		if err != nil {
			b.Fatalf("scraping /metrics: %v", err)
		}
		g, _ := metricFrom(b, body, "go_goroutines", nil)
		w, _ := metricFrom(b, body, "uplinkd_netlink_writes_total", map[string]string{"object": "route"})
		u, err := netlab.ReadUsage(pid)
		if err != nil {
			b.Fatalf("reading the daemon's usage: %v", err)
		}
		return soakSample{at: time.Since(start), goroutines: g, rss: u.RSS, hwm: u.PeakRSS, fds: fdCount(pid), writes: w, state: r.state("isp1")}
	}

	b.ResetTimer()
	start := time.Now()
	samples := []soakSample{sample(start)}
	flaps := 0
	nextSample := start.Add(5 * time.Second)
	dead := false
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for time.Since(start) < dur {
		<-tk.C
		if dead {
			r.GW1.Recover(b)
		} else {
			r.GW1.BlackholeIP(b, nstest.GWDownlinkIf)
			flaps++
		}
		dead = !dead
		if time.Now().After(nextSample) {
			samples = append(samples, sample(start))
			nextSample = nextSample.Add(5 * time.Second)
		}
	}
	r.GW1.Recover(b)
	b.StopTimer()
	end := sample(start)
	samples = append(samples, end)

	// The warm-up: the first fifth, by which damping has engaged and the
	// runtime has reached its working set.
	var warm soakSample
	for _, s := range samples {
		if s.at >= dur/5 {
			warm = s
			break
		}
	}
	minutes := (end.at - warm.at).Minutes()
	writesPerMin := (end.writes - warm.writes) / minutes
	undamped := 60.0 // one write down and one up per 2 s flap
	b.ReportMetric(float64(flaps), "flaps")
	b.ReportMetric(warm.goroutines, "goroutines_warm")
	b.ReportMetric(end.goroutines, "goroutines_end")
	b.ReportMetric(float64(warm.rss)/(1<<20), "rss_MiB_warm")
	b.ReportMetric(float64(end.rss)/(1<<20), "rss_MiB_end")
	b.ReportMetric(float64(end.hwm)/(1<<20), "hwm_MiB")
	b.ReportMetric(float64(warm.fds), "fds_warm")
	b.ReportMetric(float64(end.fds), "fds_end")
	b.ReportMetric(writesPerMin, "route_writes/min")
	if u, err := netlab.ReadUsage(pid); err == nil {
		b.ReportMetric(u.CPU.Seconds()/dur.Minutes(), "cpu_s/min")
	}

	// About ten lines: go test truncates a benchmark's log.
	var trace strings.Builder
	every := len(samples)/10 + 1
	for i, s := range samples {
		if i%every != 0 && i != len(samples)-1 {
			continue
		}
		fmt.Fprintf(&trace, "%6.0fs goroutines %3.0f rss %5.1f MiB hwm %5.1f MiB fds %3d route writes %4.0f isp1 %s\n",
			s.at.Seconds(), s.goroutines, float64(s.rss)/(1<<20), float64(s.hwm)/(1<<20), s.fds, s.writes, s.state)
	}
	b.Logf("soak of %v, %d flaps:\n%s", dur, flaps, trace.String())

	if end.goroutines > warm.goroutines+10 {
		b.Errorf("goroutines grew from %v to %v", warm.goroutines, end.goroutines)
	}
	if end.fds > warm.fds+5 {
		b.Errorf("open descriptors grew from %d to %d", warm.fds, end.fds)
	}
	if end.rss > warm.rss*3/2+8<<20 {
		b.Errorf("resident memory grew from %d to %d bytes", warm.rss, end.rss)
	}
	if writesPerMin > undamped/5 {
		b.Errorf("damping does not hold the route steady: %.1f route writes a minute after the warm-up (undamped: %.0f)", writesPerMin, undamped)
	}
	if _, err := d.Status(); err != nil {
		b.Errorf("uplinkd does not answer after the soak: %v", err)
	}
}

package detector_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/policy"
)

// lab is a running detector inside the Host namespace of a TwoUplinks lab.
type lab struct {
	*nstest.TwoUplinks
	d     *detector.Detector
	pr    *detector.SocketProber
	rec   *detectortest.Recorder
	reg   *prometheus.Registry
	start time.Time
}

type tWriter struct {
	mu sync.Mutex
	t  testing.TB
	on bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.on {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t, on: true}
	t.Cleanup(func() { w.mu.Lock(); w.on = false; w.mu.Unlock() })
	lvl := slog.LevelInfo
	if os.Getenv("UPLINKD_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// managesARule makes a detector test's policy one that installs something:
// policy.Parse refuses a policy under which uplinkd would own no route or
// rule, and the detector reads only gateways and profiles, so one rule that
// names no gateway keeps the tests' gateway-only policies valid without
// changing what the detector sees.
const managesARule = "\n[rule.detector-test]\nfwmark = \"0x7\"\ntable = 100\n"

func mustPolicy(t testing.TB, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.toml", []byte(text+managesARule), policy.Options{})
	if err != nil {
		t.Fatalf("parsing policy: %v\n%s", err, text)
	}
	return p
}

// newLab builds TwoUplinks and starts a detector with policy text in the
// Host namespace. The detector is stopped at cleanup.
func newLab(t testing.TB, text string) *lab {
	t.Helper()
	tu := nstest.NewTwoUplinks(t)
	l := &lab{TwoUplinks: tu}
	l.startDetector(t, text)
	return l
}

func (l *lab) startDetector(t testing.TB, text string) {
	t.Helper()
	l.startDetectorWith(t, text, false)
}

// startDetectorWith starts the detector; dgram forces unprivileged ICMP
// datagram sockets.
func (l *lab) startDetectorWith(t testing.TB, text string, dgram bool) {
	t.Helper()
	log := testLogger(t)
	k, err := detector.NewNetlink(l.Host.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	open := detector.NewSocketProber
	if dgram {
		open = detector.NewSocketProberDgram
	}
	pr, err := open(l.Host.NsHandle(), log)
	if err != nil {
		k.Close()
		t.Fatal(err)
	}
	l.reg = prometheus.NewRegistry()
	d, err := detector.New(detector.Config{Policy: mustPolicy(t, text), Logger: log, Metrics: detector.NewMetrics(l.reg), Kernel: k, Prober: pr})
	if err != nil {
		t.Fatal(err)
	}
	l.d, l.pr = d, pr
	// Cleanups run last-in first-out: the detector stops before the
	// sockets it uses are closed.
	t.Cleanup(func() {
		pr.Close()
		k.Close()
	})
	l.rec = detectortest.Run(t, d)
	l.start = time.Now()
}

func (l *lab) status(name string) detector.GatewayStatus {
	for _, s := range l.d.Status() {
		if s.Name == name {
			return s
		}
	}
	return detector.GatewayStatus{}
}

func (l *lab) waitState(t testing.TB, gw string, st detector.State, timeout time.Duration) {
	t.Helper()
	// Status is published before the transition reaches the recorder, so
	// wait for both: callers read the recorder next.
	detectortest.WaitFor(t, fmt.Sprintf("%s %s (transitions %v)", gw, st, l.rec.List()), timeout, func() bool {
		last, ok := l.rec.Last(gw)
		return l.status(gw).State == st && ok && last.To == st
	})
}

// routeVia sends traffic for the Server's target through gateway 1 or 2
// (the lab Host has no default route; routes belong to the lab namespace).
func (l *lab) routeVia(t testing.TB, gw int) {
	t.Helper()
	via, dev := nstest.GW1Addr4, nstest.HostUplink1If
	if gw == 2 {
		via, dev = nstest.GW2Addr4, nstest.HostUplink2If
	}
	l.Host.MustRun(t, "ip", "route", "replace", nstest.TargetAddr4.String()+"/32", "via", via.String(), "dev", dev)
}

// pingFlood sends echo requests to the target at about pps for d (bounded).
func (l *lab) pingFlood(t testing.TB, pps int, d time.Duration) {
	t.Helper()
	n := int(d.Seconds() * float64(pps))
	iv := fmt.Sprintf("%.4f", 1/float64(pps))
	l.Host.Start(t, "ping", "-n", "-q", "-i", iv, "-c", fmt.Sprint(n), "-W", "1", nstest.TargetAddr4.String())
}

// tcpStream runs a TCP stream Host -> Server target for d, paced with small
// writes so that ACKs keep coming back. It returns at once.
func (l *lab) tcpStream(t testing.TB, d time.Duration) {
	t.Helper()
	var ln net.Listener
	if err := l.Server.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(nstest.TargetAddr4.String(), "9"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(d + 5*time.Second))
		io.Copy(io.Discard, c)
	}()
	var c net.Conn
	if err := l.Host.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(nstest.TargetAddr4.String(), "9"), 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer c.Close()
		buf := make([]byte, 1000)
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		end := time.Now().Add(d)
		c.SetWriteDeadline(end.Add(time.Second))
		for time.Now().Before(end) {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
}

// tcpListen accepts (and closes) connections on the Server's target port 9
// until the test ends.
func (l *lab) tcpListen(t testing.TB) {
	t.Helper()
	var ln net.Listener
	if err := l.Server.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(nstest.TargetAddr4.String(), "9"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

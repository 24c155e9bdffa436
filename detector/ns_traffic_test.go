package detector_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// delayedEcho answers every UDP datagram on the Server's target port 7
// after 20 to 40 ms, as a remote service with that response time would,
// until the test ends.
func (l *lab) delayedEcho(t testing.TB) {
	t.Helper()
	var pc net.PacketConn
	if err := l.Server.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", net.JoinHostPort(nstest.TargetAddr4.String(), "7"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for i := 0; ; i++ {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == 0 || buf[0] != 'q' { // only the last datagram of a request is answered
				continue
			}
			delay := 20*time.Millisecond + time.Duration(i*7%21)*time.Millisecond
			wg.Add(1)
			time.AfterFunc(delay, func() {
				defer wg.Done()
				pc.WriteTo([]byte("r"), from)
			})
		}
	}()
}

// requests sends n requests of four datagrams each (the last one asks for
// the answer) to the Server's delayed echo, every gap, and waits for each
// answer when closed is set; it returns how many were answered.
func (l *lab) requests(t testing.TB, n int, gap time.Duration, closed bool) int {
	t.Helper()
	var c net.Conn
	if err := l.Host.Do(func() (err error) {
		c, err = net.Dial("udp4", net.JoinHostPort(nstest.TargetAddr4.String(), "7"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	answered := make(chan struct{}, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 16)
		for {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Read(buf); err != nil {
				return
			}
			answered <- struct{}{}
		}
	}()
	got := 0
	for i := 0; i < n; i++ {
		for _, b := range []string{"d", "d", "d", "q"} {
			if _, err := c.Write([]byte(b)); err != nil {
				t.Fatalf("sending request %d: %v", i, err)
			}
		}
		if closed {
			select {
			case <-answered:
				got++
			case <-time.After(time.Second):
			}
		}
		time.Sleep(gap)
	}
	if !closed {
		time.Sleep(100 * time.Millisecond)
		got = len(answered)
	}
	c.Close()
	<-done
	return got
}

// TestNSRequestResponseNoFalseDown: ordinary request/response traffic
// through a gated gateway, answered 20 to 40 ms later, never takes the
// gateway down nor makes it suspect with the default profile. The silence
// between a request and its answer stays below tx_without_rx; should it
// not, the check it starts is answered at once and arms the hold-off.
func TestNSRequestResponseNoFalseDown(t *testing.T) {
	l := newLab(t, polGW1)
	l.routeVia(t, 1)
	l.delayedEcho(t)
	l.waitState(t, "gw1", detector.Up, 5*time.Second)
	start := time.Now()
	for _, p := range []struct {
		name   string
		n      int
		gap    time.Duration
		closed bool
	}{
		{"open loop, 5 requests/s", 40, 200 * time.Millisecond, false},
		{"closed loop, back to back", 250, 0, true},
		{"closed loop, 10 ms think time", 200, 10 * time.Millisecond, true},
	} {
		got := l.requests(t, p.n, p.gap, p.closed)
		if got < p.n*9/10 {
			t.Fatalf("%s: only %d of %d requests answered: the lab is broken", p.name, got, p.n)
		}
		t.Logf("%s: %d of %d answered", p.name, got, p.n)
	}
	for _, st := range []detector.State{detector.Suspect, detector.Down} {
		if n := l.rec.Count("gw1", st, start, time.Time{}); n != 0 {
			t.Errorf("request/response traffic made gw1 %v: %v", st, l.rec.List())
		}
	}
	s := l.status("gw1")
	t.Logf("state=%v after %v of request/response traffic; %.2f probe rounds/s over the last minute", s.State, time.Since(start).Round(time.Millisecond), s.ProbesPerSecond)
}

// TestNSLinkStats: the counters read with RTM_GETSTATS are the ones the
// full link message carries, and a missing interface is an error.
func TestNSLinkStats(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	k, err := detector.NewNetlink(tu.Host.NsHandle())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	tu.Host.Ping(t, "-c", "5", "-i", "0.01", "-W", "1", nstest.GW1Addr4.String())
	l, err := k.Handle().LinkByName(nstest.HostUplink1If)
	if err != nil {
		t.Fatal(err)
	}
	idx := l.Attrs().Index
	before, err := k.LinkStats(idx)
	if err != nil {
		t.Fatal(err)
	}
	l, err = k.Handle().LinkByName(nstest.HostUplink1If)
	if err != nil {
		t.Fatal(err)
	}
	after, err := k.LinkStats(idx)
	if err != nil {
		t.Fatal(err)
	}
	full := l.Attrs().Statistics
	if full.TxPackets < before.Tx || full.TxPackets > after.Tx || full.RxPackets < before.Rx || full.RxPackets > after.Rx {
		t.Errorf("link message tx %d rx %d, RTM_GETSTATS before %+v after %+v", full.TxPackets, full.RxPackets, before, after)
	}
	if before.Tx < 5 || before.Rx < 5 {
		t.Errorf("5 echo requests answered, counters %+v", before)
	}
	if _, err := k.LinkStats(1 << 30); !errors.Is(err, unix.ENODEV) {
		t.Errorf("statistics of a missing link: err %v, want ENODEV", err)
	}
	k.Close()
	if _, err := k.LinkStats(idx); err == nil {
		t.Error("statistics read through a closed adapter")
	}
	t.Logf("eth1: %+v", after)
}

// TestNSPingThroughDyingGateway is issue 11 item 8: iputils ping running
// through a gateway that dies silently (IP dropped, ARP and ND still
// answered). Ping confirms the neighbour (MSG_CONFIRM) with the first
// echo request after the last reply, so the confirmation looks newer than
// the silence; before the fix that closed the gate and the death went
// unnoticed until the kernel's neighbour timers ended it, 12 s to over
// 20 s later, in 3 of 4 detector.IPv6 runs. A confirmation during silence must be
// verified by a probe instead. Each family runs four fault cycles, each
// bounded far below the kernel's timers (normal detection is ~0.2 s).
func TestNSPingThroughDyingGateway(t *testing.T) {
	tests := []struct {
		name  string
		gw    netip.Addr
		route func(t *testing.T, l *lab)
		ping  []string
	}{
		{"ipv6", nstest.GW1Addr6, func(t *testing.T, l *lab) {
			l.Host.MustRun(t, "ip", "-6", "route", "replace", nstest.TargetAddr6.String()+"/128", "via", nstest.GW1Addr6.String(), "dev", nstest.HostUplink1If)
		}, []string{"ping", "-6", "-n", "-q", "-I", nstest.HostUplink1If, "-i", "0.01", "-c", "4000", "-w", "60", nstest.TargetAddr6.String()}},
		{"ipv4", nstest.GW1Addr4, func(t *testing.T, l *lab) { l.routeVia(t, 1) },
			[]string{"ping", "-4", "-n", "-q", "-I", nstest.HostUplink1If, "-i", "0.01", "-c", "4000", "-w", "60", nstest.TargetAddr4.String()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Damping off: four deaths in a row would otherwise hold it down.
			l := newLab(t, fmt.Sprintf("[gateway.gw1]\naddress = %q\ninterface = \"eth1\"\n[gateway.gw1.detect]\ndamping = false\n", tc.gw))
			tc.route(t, l)
			l.Host.Start(t, tc.ping...)
			l.waitState(t, "gw1", detector.Up, 5*time.Second)
			for cycle := 1; cycle <= 4; cycle++ {
				time.Sleep(300 * time.Millisecond) // replies flowing again, the neighbour confirmed
				fault := time.Now()
				l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
				l.waitState(t, "gw1", detector.Down, 3*time.Second)
				tr, _ := l.rec.First("gw1", detector.Down, fault)
				t.Logf("cycle %d: detected in %v: %s (%s)", cycle, tr.Mono.Sub(fault), tr.Reason, tr.Cause)
				l.GW1.Recover(t)
				l.waitState(t, "gw1", detector.Up, 10*time.Second)
			}
		})
	}
}

package bfd

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// echo answers every UDP datagram on addr inside h until the test ends.
func echo(t testing.TB, h *nstest.Host, addr string) {
	var c net.PacketConn
	if err := h.Do(func() (err error) { c, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(buf[:n], from)
		}
	}()
}

// flow is a request/answer flow through the gateway (one datagram every
// 5 ms, bounded by the test's life and by maxPackets), and the traffic
// evidence a detector would draw from it: when sent packets go unanswered
// for silence, it calls verify, at most once per silence period. It is the
// stand-in, in this package's tests, for the detector's "traffic
// unanswered" suspicion.
type flow struct {
	lastReply atomic.Int64
	verifies  atomic.Int64
	stop      chan struct{}
	once      sync.Once
	c         *net.UDPConn
	wg        sync.WaitGroup
}

// halt stops the flow and waits for it; idempotent.
func (f *flow) halt() {
	f.once.Do(func() { close(f.stop); f.c.Close() })
	f.wg.Wait()
}

const (
	flowEvery   = 5 * time.Millisecond
	flowSilence = 50 * time.Millisecond
	maxPackets  = 20000 // 100 s at 5 ms
)

func startFlow(t testing.TB, h *nstest.Host, to string, verify func()) *flow {
	var c *net.UDPConn
	if err := h.Do(func() error {
		a, err := net.ResolveUDPAddr("udp4", to)
		if err == nil {
			c, err = net.DialUDP("udp4", nil, a)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	f := &flow{stop: make(chan struct{}), c: c}
	f.lastReply.Store(time.Now().UnixNano())
	f.wg.Add(2)
	go func() { // answers
		defer f.wg.Done()
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			f.lastReply.Store(time.Now().UnixNano())
		}
	}()
	go func() { // requests, and the evidence
		defer f.wg.Done()
		tick := time.NewTicker(flowEvery)
		defer tick.Stop()
		var hinted time.Time
		for i := 0; i < maxPackets; i++ {
			select {
			case <-f.stop:
				return
			case now := <-tick.C:
				c.Write([]byte("ping"))
				last := time.Unix(0, f.lastReply.Load())
				if now.Sub(last) > flowSilence && now.Sub(hinted) > flowSilence {
					hinted = now
					f.verifies.Add(1)
					verify()
				}
			}
		}
	}()
	t.Cleanup(f.halt)
	return f
}

func sent(s *server, name string) uint64 { return s.status(name).Counters.Sent }

// TestDemandUplinkd: two uplinkd BFD servers in demand mode send no packet
// at all while the traffic through the gateway is answered, and the host
// declares the gateway down one poll (3 × 50 ms) after the traffic
// evidence suspects it.
func TestDemandUplinkd(t *testing.T) {
	b := newLab(t)
	echo(t, b.gw, "198.18.1.1:9000")
	dem := gwPeer
	dem.Demand = true
	hostPeer := Peer{Name: "h", Remote: netip.MustParseAddr("198.18.1.2"), Interface: "eth0", Config: dem.Config}
	sh := startServer(t, b.h, dem)
	sg := startServer(t, b.gw, hostPeer)
	waitFor(t, 15*time.Second, "demand mode both ways", func() bool {
		a, g := sh.status("gw"), sg.status("h")
		return a.State == Up && g.State == Up && a.DemandActive && a.RemoteDemand && g.DemandActive && g.RemoteDemand && !a.Polling && !g.Polling
	})

	measure := func(d time.Duration) (h, g float64) {
		h0, g0 := sent(sh, "gw"), sent(sg, "h")
		time.Sleep(d)
		return float64(sent(sh, "gw")-h0) / d.Seconds(), float64(sent(sg, "h")-g0) / d.Seconds()
	}
	idleH, idleG := measure(2 * time.Second)

	f := startFlow(t, b.h, "198.18.1.1:9000", func() { sh.Verify("gw") })
	time.Sleep(200 * time.Millisecond)
	v0 := f.verifies.Load()
	busyH, busyG := measure(2 * time.Second)
	spurious := f.verifies.Load() - v0
	t.Logf("demand mode: packets/s idle %.1f (host) %.1f (gateway), busy %.1f / %.1f, %d verifications while answered", idleH, idleG, busyH, busyG, spurious)
	if idleH != 0 || idleG != 0 {
		t.Errorf("idle: %.1f and %.1f packets/s, want none", idleH, idleG)
	}
	// Each verification is one poll and its answer; anything more is
	// periodic traffic demand mode must not send.
	if busyH*2 > float64(spurious) || busyG*2 > float64(spurious) {
		t.Errorf("busy: %.1f and %.1f packets/s for %d verifications", busyH, busyG, spurious)
	}

	b.gw.BlackholeIP(t, "eth0")
	at := time.Now()
	c := sh.waitDown(t, "gw", at, 5*time.Second)
	t.Logf("demand mode: down %v after the path died (diag %s)", c.At.Sub(at), c.Diag)
	if c.Diag != DiagTimeExpired {
		t.Errorf("diag %s, want control-detection-time-expired (the poll went unanswered)", c.Diag)
	}
	b.gw.Recover(t)
	waitFor(t, 15*time.Second, "both up again", func() bool {
		return sh.status("gw").State == Up && sg.status("h").State == Up
	})
}

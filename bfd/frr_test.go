package bfd

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/internal/frrtest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lab is a host with one gateway and a far target behind it:
//
//	[h] eth0 198.18.1.2 ── 198.18.1.1 eth0 [gw] eth1 198.18.2.1 ── 198.18.2.2 eth0 [far]
type lab struct {
	h, gw, far *nstest.Host
}

func newLab(t testing.TB) *lab {
	l := nstest.New(t)
	b := &lab{h: l.Host("h"), gw: l.Host("gw"), far: l.Host("far")}
	l.Link(b.h, "eth0", b.gw, "eth0")
	l.Link(b.gw, "eth1", b.far, "eth0")
	b.h.AddAddr(t, "eth0", "198.18.1.2/24")
	b.gw.AddAddr(t, "eth0", "198.18.1.1/24")
	b.gw.AddAddr(t, "eth1", "198.18.2.1/24")
	b.far.AddAddr(t, "eth0", "198.18.2.2/24")
	b.gw.Sysctl(t, "net.ipv4.ip_forward", "1")
	b.h.MustRun(t, "ip", "route", "add", "198.18.2.0/24", "via", "198.18.1.1")
	b.far.MustRun(t, "ip", "route", "add", "198.18.1.0/24", "via", "198.18.2.1")
	return b
}

// server runs a Server inside h until the test ends, and collects its
// changes.
type server struct {
	*Server
	mu      sync.Mutex
	changes []Change
}

func startServer(t testing.TB, h *nstest.Host, peers ...Peer) *server {
	s := &server{Server: New(Options{Enter: h.Do})}
	s.Set(peers)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.Updates():
				cs := s.Drain()
				s.mu.Lock()
				s.changes = append(s.changes, cs...)
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		s.Close()
	})
	return s
}

// status returns the session's status; a session not (yet) published
// reads as state AdminDown.
func (s *server) status(name string) Status {
	for _, st := range s.Status() {
		if st.Name == name {
			return st
		}
	}
	return Status{Name: name}
}

func (s *server) waitState(t testing.TB, name string, want State, d time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for st := s.status(name); st.State != want; st = s.status(name) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s %s; it is %+v", d, name, want, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s.status(name)
}

// downAfter returns the first change of name to Down at or after since,
// waiting up to d for it. The current state may already have moved on: a
// peer still heard says Down, and a session hearing Down goes to Init.
func (s *server) downAfter(name string, since time.Time, d time.Duration) (Change, bool) {
	deadline := time.Now().Add(d)
	for {
		s.mu.Lock()
		for _, c := range s.changes {
			if c.Name == name && c.To == Down && !c.At.Before(since) {
				s.mu.Unlock()
				return c, true
			}
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			return Change{}, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitDown waits up to d for name to go down after since and returns the
// change; the test fails if it does not.
func (s *server) waitDown(t testing.TB, name string, since time.Time, d time.Duration) Change {
	t.Helper()
	c, ok := s.downAfter(name, since, d)
	if !ok {
		t.Fatalf("%s did not go down within %v; it is %+v", name, d, s.status(name))
	}
	return c
}

const frrSingle = `hostname gw
!
bfd
 peer 198.18.1.2 local-address 198.18.1.1 interface eth0
  receive-interval 50
  transmit-interval 50
  detect-multiplier 3
 !
!
`

var gwPeer = Peer{Name: "gw", Remote: netip.MustParseAddr("198.18.1.1"), Interface: "eth0",
	Config: Config{MinTx: 50 * time.Millisecond, MinRx: 50 * time.Millisecond, Multiplier: 3}}

// TestFRR runs a session against FRR's bfdd on the gateway through its
// life: it comes up at 50 ms × 3, a silent blackhole takes it down in about
// one detection time, it recovers, it survives bfdd restarting, and a key
// FRR does not share keeps it down.
func TestFRR(t *testing.T) {
	b := newLab(t)
	f := frrtest.StartBFDD(t, b.gw, frrSingle)
	s := startServer(t, b.h, gwPeer)

	t.Run("up", func(t *testing.T) {
		st := s.waitState(t, "gw", Up, 10*time.Second)
		waitFor(t, 5*time.Second, "the poll to settle", func() bool {
			st = s.status("gw")
			return !st.Polling && st.TxInterval == 50*time.Millisecond
		})
		var fp frrtest.Peer
		waitFor(t, 5*time.Second, "FRR to see the session up", func() bool {
			ps := f.Peers()
			if len(ps) == 1 {
				fp = ps[0]
			}
			return fp.Status == "up"
		})
		if st.RemoteDiscr != fp.ID || fp.RemoteID != st.LocalDiscr {
			t.Errorf("discriminators: ours %d/%d, FRR's %d/%d", st.LocalDiscr, st.RemoteDiscr, fp.ID, fp.RemoteID)
		}
		if st.DetectTime != 150*time.Millisecond || fp.TxInterval != 50 || fp.DetectMult != 3 {
			t.Errorf("negotiated: ours %v detect, FRR tx %d ms × %d", st.DetectTime, fp.TxInterval, fp.DetectMult)
		}
	})

	t.Run("blackhole", func(t *testing.T) {
		b.gw.BlackholeIP(t, "eth0") // the gateway stops taking anything from h
		at := time.Now()
		c := s.waitDown(t, "gw", at, 5*time.Second)
		t.Logf("silent blackhole: down after %v (diag %s)", c.At.Sub(at), c.Diag)
		if c.Diag != DiagTimeExpired && c.Diag != DiagNeighborDown {
			t.Errorf("diag %s, want a detection timeout or the peer's own timeout", c.Diag)
		}
	})

	t.Run("recovery", func(t *testing.T) {
		b.gw.Recover(t)
		s.waitState(t, "gw", Up, 10*time.Second)
	})

	t.Run("frr-restart", func(t *testing.T) {
		before := s.status("gw").RemoteDiscr
		at := time.Now()
		f.StopBFDD()
		c := s.waitDown(t, "gw", at, 5*time.Second)
		if c.Diag != DiagTimeExpired {
			t.Errorf("bfdd killed: diag %s, want control-detection-time-expired", c.Diag)
		}
		t.Logf("bfdd killed: down after %v", c.At.Sub(at))
		f.StartBFDD()
		st := s.waitState(t, "gw", Up, 15*time.Second)
		if st.RemoteDiscr == before {
			t.Errorf("the restarted bfdd kept discriminator %d", before)
		}
	})

	t.Run("gtsm", func(t *testing.T) {
		before := s.status("gw")
		err := b.gw.Do(func() error { return sendTTL("198.18.1.1", "198.18.1.2:3784", 64, before) })
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "the TTL 64 packet to be discarded", func() bool {
			st := s.status("gw")
			return st.Counters.Discarded > before.Counters.Discarded && strings.Contains(st.LastDiscard, "TTL 64")
		})
	})

	t.Run("auth-mismatch", func(t *testing.T) {
		p := gwPeer
		p.Key = &Key{Type: AuthKeyedSHA1, ID: 1, Secret: []byte("not-shared")}
		at := time.Now()
		s.Set([]Peer{p})
		c := s.waitDown(t, "gw", at, 5*time.Second)
		if c.Diag != DiagTimeExpired {
			t.Errorf("diag %s, want control-detection-time-expired", c.Diag)
		}
		time.Sleep(3 * time.Second) // it must stay down
		st := s.status("gw")
		if st.State != Down || st.Counters.AuthFailures == 0 {
			t.Errorf("after 3 s: %s with %d auth failures, want Down and failures counted", st.State, st.Counters.AuthFailures)
		}
		var fp frrtest.Peer
		if ps := f.Peers(); len(ps) == 1 {
			fp = ps[0]
		}
		t.Logf("auth mismatch: down %v after the key; ours %s/%s, FRR %s/%s", c.At.Sub(at), st.State, st.Diag, fp.Status, fp.Diagnostic)
		if fp.Status == "up" {
			t.Errorf("FRR still has the session up: %+v", fp)
		}
		s.Set([]Peer{gwPeer})
		s.waitState(t, "gw", Up, 10*time.Second)
	})

	t.Run("responder", func(t *testing.T) {
		p := gwPeer
		p.Passive = true
		s.Set(nil)
		waitFor(t, 5*time.Second, "the session to go", func() bool { return len(s.Status()) == 0 })
		s.Set([]Peer{p})
		st := s.waitState(t, "gw", Up, 15*time.Second)
		if st.Counters.Received == 0 {
			t.Errorf("up without hearing FRR: %+v", st.Counters)
		}
	})
}

// TestFRRMultihop: a session to a target behind the gateway, on UDP 4784,
// arriving with TTL 254.
func TestFRRMultihop(t *testing.T) {
	b := newLab(t)
	frrtest.StartBFDD(t, b.far, `hostname far
!
bfd
 peer 198.18.1.2 local-address 198.18.2.2 multihop
  receive-interval 50
  transmit-interval 50
  detect-multiplier 3
 !
!
`)
	p := Peer{Name: "far", Remote: netip.MustParseAddr("198.18.2.2"), Local: netip.MustParseAddr("198.18.1.2"), Multihop: true, Config: gwPeer.Config}
	s := startServer(t, b.h, p)
	s.waitState(t, "far", Up, 15*time.Second)
	b.gw.BlackholeIP(t, "eth1") // the path beyond the gateway dies
	at := time.Now()
	c := s.waitDown(t, "far", at, 5*time.Second)
	t.Logf("multihop: down %v after the upstream cut (diag %s)", c.At.Sub(at), c.Diag)
	b.gw.Recover(t)
	s.waitState(t, "far", Up, 15*time.Second)
}

// sendTTL sends, from inside the current namespace, a copy of the peer's
// next packet with the given TTL.
func sendTTL(src, dst string, ttl int, st Status) error {
	p := &Packet{Version: 1, State: Up, DetectMult: 3, MyDiscr: st.RemoteDiscr, YourDiscr: st.LocalDiscr, MinTx: 50 * time.Millisecond, MinRx: 50 * time.Millisecond}
	b, err := p.Marshal(nil)
	if err != nil {
		return err
	}
	tx, err := dial(Peer{Remote: netip.MustParseAddr(strings.Split(dst, ":")[0]), Local: netip.MustParseAddr(src)})
	if err != nil {
		return err
	}
	defer tx.close()
	rc, err := tx.c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setTTL(int(fd), ttl) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting TTL: %w", serr)
	}
	return tx.send(b)
}

func setTTL(fd, ttl int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, ttl) }

// TestFRRIPv6: a single-hop IPv6 session with FRR, hop limit 255 both
// ways, and a silent blackhole taking it down.
func TestFRRIPv6(t *testing.T) {
	b := newLab(t)
	b.h.AddAddr(t, "eth0", "2001:db8:1::2/64")
	b.gw.AddAddr(t, "eth0", "2001:db8:1::1/64")
	frrtest.StartBFDD(t, b.gw, `hostname gw
!
bfd
 peer 2001:db8:1::2 local-address 2001:db8:1::1 interface eth0
  receive-interval 50
  transmit-interval 50
  detect-multiplier 3
 !
!
`)
	p := gwPeer
	p.Name, p.Remote = "gw6", netip.MustParseAddr("2001:db8:1::1")
	s := startServer(t, b.h, p)
	st := s.waitState(t, "gw6", Up, 15*time.Second)
	if st.RemoteDiscr == 0 {
		t.Errorf("up with no remote discriminator: %+v", st)
	}
	b.gw.BlackholeIP(t, "eth0")
	at := time.Now()
	c := s.waitDown(t, "gw6", at, 5*time.Second)
	t.Logf("IPv6 silent blackhole: down after %v (diag %s)", c.At.Sub(at), c.Diag)
}

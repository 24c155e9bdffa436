package bfd

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/frrtest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestServerLifecycle: Run returns when its context ends, Close is
// idempotent, a closed server refuses to run, and liveness advances while
// Run is active even with no session.
func TestServerLifecycle(t *testing.T) {
	s := New(Options{})
	if !s.Alive().IsZero() {
		t.Errorf("alive at %v before Run", s.Alive())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, 5*time.Second, "liveness", func() bool { return !s.Alive().IsZero() })
	first := s.Alive()
	waitFor(t, 5*time.Second, "liveness to advance", func() bool { return s.Alive().After(first) })
	s.Verify("nobody") // no session of that name: nothing to do, must not block
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	s.Close()
	s.Close()
	if err := s.Run(context.Background()); err == nil {
		t.Error("Run after Close returned nil")
	}
}

// TestMetrics: a session's series pass the Prometheus linter and go away
// with the session.
func TestMetrics(t *testing.T) {
	b := newLab(t)
	frrtest.StartBFDD(t, b.gw, frrSingle)
	s := startServer(t, b.h, gwPeer)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(s.Server))
	s.waitState(t, "gw", Up, 10*time.Second)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	want := `# HELP uplinkd_bfd_session_state 1 for the BFD session's current state (admin-down, down, init, up).
# TYPE uplinkd_bfd_session_state gauge
uplinkd_bfd_session_state{gateway="gw",state="admin-down"} 0
uplinkd_bfd_session_state{gateway="gw",state="down"} 0
uplinkd_bfd_session_state{gateway="gw",state="init"} 0
uplinkd_bfd_session_state{gateway="gw",state="up"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "uplinkd_bfd_session_state"); err != nil {
		t.Error(err)
	}
	s.Set(nil)
	waitFor(t, 5*time.Second, "the session to go", func() bool { return len(s.Status()) == 0 })
	if n, err := testutil.GatherAndCount(reg, "uplinkd_bfd_session_state", "uplinkd_bfd_packets_total"); err != nil || n != 0 {
		t.Errorf("%d series left after the session went (%v)", n, err)
	}
}

// TestSameConfig: a reload reads key files afresh, so keys compare by
// content; only a real change renegotiates (a poll).
func TestSameConfig(t *testing.T) {
	k := func(s string) *Key { return &Key{Type: AuthKeyedSHA1, ID: 1, Secret: []byte(s)} }
	base := Config{MinTx: time.Second, MinRx: time.Second, Multiplier: 3}
	withKey := func(key *Key) Config { c := base; c.Key = key; return c }
	slower := base
	slower.MinTx = 2 * time.Second
	tests := []struct {
		name string
		a, b Config
		want bool
	}{
		{"identical", base, base, true},
		{"same key read twice", withKey(k("a")), withKey(k("a")), true},
		{"other secret", withKey(k("a")), withKey(k("b")), false},
		{"key added", base, withKey(k("a")), false},
		{"timer changed", base, slower, false},
	}
	for _, tt := range tests {
		if got := sameConfig(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestServerStopsEverything: with sessions and their sockets open, Close
// leaves no goroutine of the server behind (owner, readers).
func TestServerStopsEverything(t *testing.T) {
	b := newLab(t)
	p6 := gwPeer
	p6.Name, p6.Remote = "gw6", netip.MustParseAddr("2001:db8:1::1")
	mh := Peer{Name: "far", Remote: netip.MustParseAddr("198.18.2.2"), Local: netip.MustParseAddr("198.18.1.2"), Multihop: true, Config: gwPeer.Config}
	s := New(Options{Enter: b.h.Do})
	s.Set([]Peer{gwPeer, p6, mh})
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	waitFor(t, 5*time.Second, "three sessions", func() bool { return len(s.Status()) == 3 })
	waitFor(t, 5*time.Second, "packets sent", func() bool { return s.Status()[0].Counters.Sent > 0 })
	s.Close()
	s.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"bfd.(*owner).read", "bfd.(*Server).Run"} {
		if strings.Contains(stacks, fn) {
			t.Errorf("%s still running after Close", fn)
		}
	}
}

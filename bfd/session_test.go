package bfd

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var fast = Config{MinTx: 50 * time.Millisecond, MinRx: 50 * time.Millisecond, Multiplier: 3}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// TestReceiveTable is §6.8.6's state table: what one received packet does
// to a session in each state.
func TestReceiveTable(t *testing.T) {
	tests := []struct {
		local, remote State
		want          State
		diag          Diag
	}{
		{Down, Down, Init, DiagNone},
		{Down, Init, Up, DiagNone},
		{Down, Up, Down, DiagNone},
		{Down, AdminDown, Down, DiagNone},
		{Init, Init, Up, DiagNone},
		{Init, Up, Up, DiagNone},
		{Init, Down, Init, DiagNone},
		{Init, AdminDown, Down, DiagNeighborDown},
		{Up, Up, Up, DiagNone},
		{Up, Init, Up, DiagNone},
		{Up, Down, Down, DiagNeighborDown},
		{Up, AdminDown, Down, DiagNeighborDown},
		{AdminDown, Up, AdminDown, DiagAdminDown},
	}
	for _, tt := range tests {
		s := sessionIn(t, tt.local)
		p := &Packet{Version: 1, State: tt.remote, DetectMult: 3, MyDiscr: 0x2222, YourDiscr: 0x1111, MinTx: ms(50), MinRx: ms(50)}
		s.Observe(Event{Kind: EvPacket, Packet: p}, t0.Add(time.Second))
		if got := [2]any{s.State(), s.Info().Diag}; got != [2]any{tt.want, tt.diag} {
			t.Errorf("%s receiving %s: got %v, want %v %v", tt.local, tt.remote, got, tt.want, tt.diag)
		}
	}
}

// sessionIn returns a session driven into st by packets from a peer.
func sessionIn(t *testing.T, st State) *Session {
	t.Helper()
	s := NewSession(fast, 0x1111, fixedRand(0.5), t0)
	feed := func(remote State, your uint32) {
		p := &Packet{Version: 1, State: remote, DetectMult: 3, MyDiscr: 0x2222, YourDiscr: your, MinTx: ms(50), MinRx: ms(50)}
		s.Observe(Event{Kind: EvPacket, Packet: p}, t0)
	}
	switch st {
	case Init:
		feed(Down, 0)
	case Up:
		feed(Init, 0x1111)
	case AdminDown:
		s.Observe(Event{Kind: EvAdminDown}, t0)
	}
	if s.State() != st {
		t.Fatalf("could not drive a session to %s: it is %s", st, s.State())
	}
	return s
}

func TestDiscards(t *testing.T) {
	up := func() *Session { return sessionIn(t, Up) }
	tests := []struct {
		name string
		s    *Session
		p    Packet
	}{
		{"no discriminator for us in an Up packet", up(), Packet{State: Up, MyDiscr: 0x2222}},
		{"no discriminator for us in an Init packet", up(), Packet{State: Init, MyDiscr: 0x2222}},
		{"someone else's discriminator", up(), Packet{State: Up, MyDiscr: 0x2222, YourDiscr: 0x9999}},
		{"auth section on an unauthenticated session", up(), Packet{State: Up, MyDiscr: 0x2222, YourDiscr: 0x1111, Auth: &Auth{Type: AuthKeyedSHA1}}},
	}
	for _, tt := range tests {
		tt.p.Version, tt.p.DetectMult = 1, 3
		out := tt.s.Observe(Event{Kind: EvPacket, Packet: &tt.p}, t0.Add(time.Second))
		if out.Discarded == nil || tt.s.State() != Up {
			t.Errorf("%s: discarded=%v state=%s, want a discard and Up", tt.name, out.Discarded, tt.s.State())
		}
	}
}

// TestHandshake: two active sessions come up through Down/Init/Up at the
// slow rate, then a poll brings both to the configured 50 ms.
func TestHandshake(t *testing.T) {
	m := newSim(t, fast, fast)
	m.run(3 * time.Second)
	want := []stamped{{200 * time.Microsecond, Transition{Down, Init, DiagNone}}, {400 * time.Microsecond, Transition{Init, Up, DiagNone}}}
	if diff := cmp.Diff(want, m.peers[0].log); diff != "" {
		t.Errorf("a's transitions (-want +got):\n%s", diff)
	}
	for i, p := range m.peers {
		inf := p.s.Info()
		if inf.State != Up || inf.TxInterval != ms(50) || inf.DetectTime != ms(150) || inf.Polling {
			t.Errorf("peer %d: %+v, want Up at 50 ms / 150 ms with the poll over", i, inf)
		}
		// 50 ms less 0-25 % jitter: 20-27 packets a second.
		if r := m.rate(i, time.Second); r < 20 || r > 27 {
			t.Errorf("peer %d sends %.0f packets/s, want 20-27", i, r)
		}
	}
}

// TestNegotiation: the slower side's wishes win in each direction.
func TestNegotiation(t *testing.T) {
	slow := Config{MinTx: ms(300), MinRx: ms(200), Multiplier: 5}
	m := newSim(t, fast, slow)
	m.run(3 * time.Second)
	a, b := m.peers[0].s.Info(), m.peers[1].s.Info()
	// a sends at max(its 50, b's rx 200); detects at b's 5 × max(its rx 50, b's tx 300).
	if a.TxInterval != ms(200) || a.DetectTime != ms(1500) {
		t.Errorf("a: tx %v detect %v, want 200ms and 1.5s", a.TxInterval, a.DetectTime)
	}
	if b.TxInterval != ms(300) || b.DetectTime != ms(600) {
		t.Errorf("b: tx %v detect %v, want 300ms and 600ms", b.TxInterval, b.DetectTime)
	}
}

// TestDetection: a silent path is declared down one detection time after
// the last packet that got through (3 × 50 ms), with diag 1, and the
// session comes back once packets flow again.
func TestDetection(t *testing.T) {
	m := newSim(t, fast, fast)
	m.run(3 * time.Second)
	cut := m.now
	m.dropBA = true
	m.run(time.Second)
	log := m.peers[0].log
	last := log[len(log)-1]
	if last.T.To != Down || last.T.Diag != DiagTimeExpired {
		t.Fatalf("a: %+v, want Down with control-detection-time-expired", last)
	}
	if d := last.At - cut.Sub(t0); d <= ms(100) || d > ms(150) {
		t.Errorf("down %v after the cut, want within (100, 150] ms", d)
	}
	// b still hears a: a's Down carries no discriminator for b (a forgot
	// b when it timed out, §6.8.1), which a Down packet may (§6.8.6), so b
	// goes down at once with diag 3, not a detection time later.
	var bl *stamped
	for i, s := range m.peers[1].log {
		if s.T.From == Up {
			bl = &m.peers[1].log[i]
		}
	}
	if bl == nil || bl.T.To != Down || bl.T.Diag != DiagNeighborDown || bl.At != last.At+m.delay {
		t.Errorf("b: %+v, want Up → Down with neighbor-signaled-session-down when a's Down arrives (%v)", bl, last.At+m.delay)
	}
	m.dropBA = false
	m.run(3 * time.Second)
	for i, p := range m.peers {
		if p.s.State() != Up {
			t.Errorf("peer %d is %s after recovery", i, p.s.State())
		}
	}
}

// TestPassive: a passive session never speaks first, and answers once
// spoken to.
func TestPassive(t *testing.T) {
	pas := fast
	pas.Passive = true
	m := newSim(t, pas, fast)
	m.stopped[1] = true
	m.run(10 * time.Second)
	if n := m.peers[0].sent; n != 0 {
		t.Fatalf("passive session sent %d packets to a silent peer", n)
	}
	m.stopped[1] = false
	m.peers[1].s.Observe(Event{Kind: EvTimer}, m.now) // wake b
	m.run(3 * time.Second)
	if m.peers[0].s.State() != Up || m.peers[1].s.State() != Up {
		t.Errorf("states %s/%s, want Up/Up", m.peers[0].s.State(), m.peers[1].s.State())
	}
}

// TestAdminDown: a peer disabling its session is a Down with diag 3 here,
// not a detection timeout.
func TestAdminDown(t *testing.T) {
	m := newSim(t, fast, fast)
	m.run(3 * time.Second)
	m.apply(1, Event{Kind: EvAdminDown})
	m.run(ms(10))
	if inf := m.peers[0].s.Info(); inf.State != Down || inf.Diag != DiagNeighborDown || inf.RemoteState != AdminDown {
		t.Errorf("a: %+v, want Down, neighbor-signaled-session-down, remote admin-down", inf)
	}
}

// TestDemand: with both ends in demand mode, no periodic packet flows
// once Up; a verification is a poll answered at once; a verification
// over a dead path is a Down one detection time after the poll began.
func TestDemand(t *testing.T) {
	dem := fast
	dem.Demand = true
	m := newSim(t, dem, dem)
	m.run(3 * time.Second)
	sent := [2]int{m.peers[0].sent, m.peers[1].sent}
	m.run(10 * time.Second)
	for i, p := range m.peers {
		if p.sent != sent[i] {
			t.Errorf("peer %d sent %d packets in 10 s of demand mode", i, p.sent-sent[i])
		}
		if inf := p.s.Info(); inf.State != Up || !inf.DemandActive || !inf.RemoteDemand {
			t.Errorf("peer %d: %+v, want Up in demand mode both ways", i, inf)
		}
	}
	m.apply(0, Event{Kind: EvVerify})
	m.run(time.Second)
	if got := m.peers[0].sent - sent[0]; got != 1 || m.peers[0].s.State() != Up {
		t.Errorf("an answered poll cost %d packets and left %s, want 1 and Up", got, m.peers[0].s.State())
	}
	m.dropBA = true
	poll := m.now
	m.apply(0, Event{Kind: EvVerify})
	m.run(time.Second)
	log := m.peers[0].log
	last := log[len(log)-1]
	if last.T.To != Down || last.T.Diag != DiagTimeExpired || last.At != poll.Sub(t0)+ms(150) {
		t.Errorf("a: %+v, want Down with diag 1 at the poll + 150 ms (%v)", last, poll.Sub(t0)+ms(150))
	}
}

// TestDemandOneSided: only a asks for demand mode: b stops sending, a
// keeps sending to b (b still times a out), and a detects b's death only
// through a poll.
func TestDemandOneSided(t *testing.T) {
	dem := fast
	dem.Demand = true
	m := newSim(t, dem, fast)
	m.run(3 * time.Second)
	if r := m.rate(1, time.Second); r != 0 {
		t.Errorf("b sends %.0f packets/s to a peer in demand mode", r)
	}
	if r := m.rate(0, time.Second); r < 20 {
		t.Errorf("a sends %.0f packets/s, b needs them for its detection", r)
	}
}

// TestReconfigure: a longer transmit interval takes effect only after
// the peer answers the poll that announces it (§6.8.3).
func TestReconfigure(t *testing.T) {
	m := newSim(t, fast, fast)
	m.run(3 * time.Second)
	slower := fast
	slower.MinTx = ms(200)
	m.dropBA = true // the poll's Final cannot come back yet
	m.apply(0, Event{Kind: EvConfig, Config: slower})
	if inf := m.peers[0].s.Info(); inf.TxInterval != ms(50) || !inf.Polling {
		t.Errorf("before the Final: %+v, want still 50 ms, polling", inf)
	}
	m.dropBA = false
	m.run(ms(100))
	if inf := m.peers[0].s.Info(); inf.TxInterval != ms(200) || inf.Polling {
		t.Errorf("after the Final: %+v, want 200 ms, poll over", inf)
	}
	if inf := m.peers[1].s.Info(); inf.DetectTime != ms(600) {
		t.Errorf("b's detection time %v, want 3 × 200 ms", inf.DetectTime)
	}
}

func TestJitter(t *testing.T) {
	tests := []struct {
		mult uint8
		r    float64
		want time.Duration
	}{
		{3, 0, ms(75)},
		{3, 0.5, 87500 * time.Microsecond},
		{3, 0.999999, ms(100) - 100*time.Nanosecond},
		{1, 0, ms(75)},
		{1, 0.999999, ms(90)},
	}
	for _, tt := range tests {
		s := NewSession(Config{MinTx: ms(100), MinRx: ms(100), Multiplier: tt.mult}, 1, func() float64 { return tt.r }, t0)
		s.txInUse = ms(100)
		if got := s.interval(); got.Round(time.Microsecond) != tt.want.Round(time.Microsecond) {
			t.Errorf("mult %d rand %v: %v, want %v", tt.mult, tt.r, got, tt.want)
		}
	}
}

// TestAuthSessions: matching keys come up; a mismatch stays Down with
// every packet discarded as an authentication failure.
func TestAuthSessions(t *testing.T) {
	for _, typ := range []AuthType{AuthKeyedSHA1, AuthMeticulousSHA} {
		ka, kb := fast, fast
		ka.Key = &Key{Type: typ, ID: 1, Secret: []byte("s3cret")}
		kb.Key = &Key{Type: typ, ID: 1, Secret: []byte("s3cret")}
		m := newSim(t, ka, kb)
		m.run(3 * time.Second)
		if m.peers[0].s.State() != Up || len(m.peers[0].disc)+len(m.peers[1].disc) != 0 {
			t.Errorf("%s: %s with %v %v, want Up and no discards", typ, m.peers[0].s.State(), m.peers[0].disc, m.peers[1].disc)
		}
		kb.Key = &Key{Type: typ, ID: 1, Secret: []byte("other")}
		m = newSim(t, ka, kb)
		m.run(5 * time.Second)
		if m.peers[0].s.State() != Down || len(m.peers[0].disc) == 0 || !errors.Is(m.peers[0].disc[0], ErrAuth) {
			t.Errorf("%s mismatch: %s, discards %v; want Down and auth failures", typ, m.peers[0].s.State(), m.peers[0].disc)
		}
	}
}

package bfd

import (
	"testing"
	"time"
)

// sim wires two sessions back to back through the codec, on a virtual
// clock: it runs exactly the Observe path the server runs, with packets
// encoded, signed, decoded and checked on the way.
type sim struct {
	t       *testing.T
	now     time.Time
	delay   time.Duration
	peers   [2]*simPeer
	flight  []flight
	dropAB  bool // drop a → b
	dropBA  bool // drop b → a
	stopped [2]bool
}

type simPeer struct {
	s     *Session
	sent  int
	log   []stamped
	disc  []error
	sends []time.Time
}

type stamped struct {
	At time.Duration // since the start
	T  Transition
}

type flight struct {
	at  time.Time
	to  int
	raw []byte
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixedRand returns a jitter source cycling through vs.
func fixedRand(vs ...float64) func() float64 {
	i := 0
	return func() float64 { v := vs[i%len(vs)]; i++; return v }
}

func newSim(t *testing.T, a, b Config) *sim {
	return &sim{t: t, now: t0, delay: 200 * time.Microsecond, peers: [2]*simPeer{
		{s: NewSession(a, 0x1111, fixedRand(0.5, 0.1, 0.9), t0)},
		{s: NewSession(b, 0x2222, fixedRand(0.3, 0.7), t0)},
	}}
}

func (m *sim) apply(i int, ev Event) {
	p := m.peers[i]
	out := p.s.Observe(ev, m.now)
	if out.Transition != nil {
		p.log = append(p.log, stamped{m.now.Sub(t0), *out.Transition})
	}
	if out.Discarded != nil {
		p.disc = append(p.disc, out.Discarded)
	}
	for _, pkt := range out.Send {
		var key []byte
		if k := p.s.Key(); k != nil {
			key = k.Secret
		}
		raw, err := pkt.Marshal(key)
		if err != nil {
			m.t.Fatal(err)
		}
		p.sent++
		p.sends = append(p.sends, m.now)
		if (i == 0 && m.dropAB) || (i == 1 && m.dropBA) || m.stopped[1-i] {
			continue
		}
		m.flight = append(m.flight, flight{at: m.now.Add(m.delay), to: 1 - i, raw: raw})
	}
}

// run advances the clock to until, firing timers and delivering packets
// in time order.
func (m *sim) run(d time.Duration) {
	until := m.now.Add(d)
	for steps := 0; ; steps++ {
		if steps > 1e6 {
			m.t.Fatal("sim: no progress")
		}
		next, what := until, -1
		for i, p := range m.peers {
			if n := p.s.Next(); !m.stopped[i] && !n.IsZero() && n.Before(next) {
				next, what = n, i
			}
		}
		fi := -1
		for j, f := range m.flight {
			if !f.at.After(next) {
				next, fi = f.at, j
			}
		}
		if next.After(until) || (what < 0 && fi < 0) {
			m.now = until
			return
		}
		m.now = next
		if fi >= 0 {
			f := m.flight[fi]
			m.flight = append(m.flight[:fi], m.flight[fi+1:]...)
			pkt, err := Decode(f.raw)
			if err != nil {
				m.t.Fatal(err)
			}
			m.apply(f.to, Event{Kind: EvPacket, Packet: pkt, Raw: f.raw})
			continue
		}
		m.apply(what, Event{Kind: EvTimer})
	}
}

// rate is the number of packets peer i sent in the last d, per second.
func (m *sim) rate(i int, d time.Duration) float64 {
	n := 0
	for _, at := range m.peers[i].sends {
		if at.After(m.now.Add(-d)) {
			n++
		}
	}
	return float64(n) / d.Seconds()
}

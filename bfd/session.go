package bfd

import (
	"fmt"
	"time"
)

// Config is the local side of one session.
type Config struct {
	MinTx      time.Duration // bfd.DesiredMinTxInterval once Up
	MinRx      time.Duration // bfd.RequiredMinRxInterval
	Multiplier uint8         // bfd.DetectMult
	Passive    bool          // wait for the peer to speak first (§6.1)
	Demand     bool          // ask the peer to stop periodic packets once Up (§6.6)
	Key        *Key          // nil: no authentication
}

// slowTx is the least transmit interval while the session is not Up
// (§6.8.3): a peer that is down costs one packet a second.
const slowTx = time.Second

// EventKind says what happened to a session.
type EventKind int

const (
	EvTimer     EventKind = iota // a deadline returned by Next has passed
	EvPacket                     // a Control packet for this session arrived
	EvVerify                     // the traffic evidence asks for proof now: start a poll sequence
	EvAdminDown                  // the session is being disabled
	EvAdminUp                    // the session is enabled again
	EvConfig                     // Config changed (timers renegotiated with a poll)
)

// Event is the input of Session.Observe.
type Event struct {
	Kind   EventKind
	Packet *Packet // EvPacket: decoded
	Raw    []byte  // EvPacket: as received, for the digest
	Config Config  // EvConfig
}

// Transition is a change of the local session state.
type Transition struct {
	From, To State
	Diag     Diag // local diag after the change
}

// Output is what Observe asks the owner to do.
type Output struct {
	Send       []*Packet   // transmit now, in order; auth sections filled, digests not
	Transition *Transition // the local state changed
	Discarded  error       // the packet was dropped, and why (counted, logged at Debug)
}

// Session is one BFD session's state machine (RFC 5880 §6.8). It is pure:
// no clock, no sockets, no goroutines; the owner feeds it events with the
// time they happened and calls Observe(EvTimer) at Next().
type Session struct {
	cfg  Config
	rand func() float64 // [0,1): transmit jitter (§6.8.7) and the first auth sequence

	state       State
	diag        Diag
	localDiscr  uint32
	remoteDiscr uint32
	remoteState State
	remoteDiag  Diag
	remoteDem   bool
	remoteMinRx time.Duration // their Required Min RX: bounds our transmit rate
	remoteMinTx time.Duration // their Desired Min TX: bounds our detection time
	remoteMult  uint8

	desiredTx time.Duration // advertised
	txInUse   time.Duration // used for our transmit interval
	rxInUse   time.Duration // used for our detection time

	polling   bool
	pollStart time.Time
	txAt      time.Time // next periodic packet; zero: none scheduled
	detectAt  time.Time // detection deadline; zero: not armed

	xmitSeq uint32
	rxAuth  rxAuth
}

// NewSession returns a session in state Down at now, its first packet due
// at once (unless passive). localDiscr must be non-zero and unique on this
// system; rand supplies jitter (math/rand/v2's Float64 in production, a
// fixed sequence in tests).
func NewSession(cfg Config, localDiscr uint32, rand func() float64, now time.Time) *Session {
	s := &Session{
		cfg: cfg, rand: rand, state: Down, localDiscr: localDiscr,
		remoteState: Down, remoteMinRx: time.Microsecond,
		rxInUse: cfg.MinRx,
	}
	s.desiredTx = max(cfg.MinTx, slowTx)
	s.txInUse = s.desiredTx
	if cfg.Key != nil {
		s.xmitSeq = uint32(rand() * (1 << 32))
	}
	s.schedule(now)
	return s
}

// Observe applies one event at now and returns what to send and whether
// the state changed.
func (s *Session) Observe(ev Event, now time.Time) Output {
	var out Output
	from := s.state
	switch ev.Kind {
	case EvTimer:
		s.timers(now, &out)
	case EvPacket:
		s.receive(ev.Packet, ev.Raw, now, &out)
	case EvVerify:
		if s.state == Up && !s.polling {
			s.startPoll(now, &out)
		}
	case EvAdminDown:
		if s.state != AdminDown {
			// The peer is kept: the AdminDown packets must reach its
			// session, so they carry its discriminator.
			s.state, s.diag = AdminDown, DiagAdminDown
			s.polling, s.detectAt = false, time.Time{}
		}
	case EvAdminUp:
		if s.state == AdminDown {
			s.state, s.diag = Down, DiagNone
		}
	case EvConfig:
		s.reconfigure(ev.Config, now, &out)
	}
	if s.state != from {
		s.enter(from, now, &out)
	}
	s.schedule(now)
	return out
}

// enter applies what a state change implies: slow timers outside Up, the
// configured ones (through a poll) in Up, and an immediate packet so the
// peer follows without waiting for the next periodic one.
func (s *Session) enter(from State, now time.Time, out *Output) {
	out.Transition = &Transition{From: from, To: s.state, Diag: s.diag}
	if s.state == Up {
		s.desiredTx = s.cfg.MinTx
		if s.desiredTx < s.txInUse {
			s.txInUse = s.desiredTx
		}
		s.startPoll(now, out) // announce the new timers (§6.8.3)
		return
	}
	s.polling = false
	s.desiredTx = max(s.cfg.MinTx, slowTx)
	s.txInUse, s.rxInUse = s.desiredTx, s.cfg.MinRx
	if s.mayTransmit() || s.state == AdminDown {
		out.Send = append(out.Send, s.packet(false))
	}
}

func (s *Session) startPoll(now time.Time, out *Output) {
	s.polling, s.pollStart = true, now
	if s.demandActive() {
		// The peer sends nothing on its own: the poll's deadline is the
		// only detection there is (§6.8.4).
		s.detectAt = now.Add(s.detectTime())
	}
	if s.mayTransmit() {
		out.Send = append(out.Send, s.packet(false))
		s.txAt = now.Add(s.interval())
	}
}

func (s *Session) reconfigure(cfg Config, now time.Time, out *Output) {
	old := s.cfg
	s.cfg = cfg
	if cfg.Key == nil || old.Key == nil || cfg.Key.Type != old.Key.Type {
		s.rxAuth = rxAuth{}
	}
	if s.state != Up {
		s.desiredTx = max(cfg.MinTx, slowTx)
		s.txInUse, s.rxInUse = s.desiredTx, cfg.MinRx
		return
	}
	s.desiredTx = cfg.MinTx
	// §6.8.3: a larger transmit interval, or a smaller receive interval,
	// takes effect only once the peer has acknowledged it.
	if s.desiredTx < s.txInUse {
		s.txInUse = s.desiredTx
	}
	if cfg.MinRx > s.rxInUse {
		s.rxInUse = cfg.MinRx
	}
	if old.MinTx != cfg.MinTx || old.MinRx != cfg.MinRx || old.Multiplier != cfg.Multiplier || old.Demand != cfg.Demand {
		s.polling = false
		s.startPoll(now, out)
	}
}

// resetRemote forgets the peer, as §6.8.1 asks when it times out.
func (s *Session) resetRemote() {
	s.remoteDiscr, s.remoteState, s.remoteDem = 0, Down, false
	s.remoteMinRx, s.remoteMinTx, s.remoteMult = time.Microsecond, 0, 0
	s.polling = false
	s.detectAt = time.Time{}
	s.rxAuth = rxAuth{}
}

func (s *Session) timers(now time.Time, out *Output) {
	if !s.detectAt.IsZero() && !now.Before(s.detectAt) {
		if s.state == Init || s.state == Up {
			s.state, s.diag = Down, DiagTimeExpired
		}
		s.resetRemote()
	}
	if !s.txAt.IsZero() && !now.Before(s.txAt) {
		if s.mayTransmit() && s.periodic() {
			out.Send = append(out.Send, s.packet(false))
		}
		s.txAt = now.Add(s.interval())
	}
}

func (s *Session) receive(p *Packet, raw []byte, now time.Time, out *Output) {
	if err := s.rxAuth.check(s.cfg.Key, p, raw); err != nil {
		out.Discarded = err
		return
	}
	if p.YourDiscr == 0 && p.State != Down && p.State != AdminDown {
		// Only a peer that is down may not know us (§6.8.6); a peer
		// that restarted or timed us out says so with Down and zero.
		out.Discarded = fmt.Errorf("discarding a %s packet with no discriminator for us", p.State)
		return
	}
	if p.YourDiscr != 0 && p.YourDiscr != s.localDiscr {
		out.Discarded = fmt.Errorf("discarding a packet for discriminator %d: ours is %d", p.YourDiscr, s.localDiscr)
		return
	}
	s.remoteDiscr, s.remoteState, s.remoteDiag, s.remoteDem = p.MyDiscr, p.State, p.Diag, p.Demand
	s.remoteMinRx, s.remoteMinTx, s.remoteMult = p.MinRx, p.MinTx, p.DetectMult
	if p.Final && s.polling {
		s.polling = false
		s.txInUse, s.rxInUse = s.desiredTx, s.cfg.MinRx
	}
	if s.state == AdminDown {
		return
	}
	switch {
	case p.State == AdminDown:
		if s.state != Down {
			s.state, s.diag = Down, DiagNeighborDown
		}
	case s.state == Down && p.State == Down:
		s.state = Init
	case s.state == Down && p.State == Init, s.state == Init && (p.State == Init || p.State == Up):
		s.state = Up
	case s.state == Up && p.State == Down:
		s.state, s.diag = Down, DiagNeighborDown
	}
	if p.Poll {
		out.Send = append(out.Send, s.packet(true))
	}
	switch {
	case !s.demandActive():
		s.detectAt = now.Add(s.detectTime())
	case !s.polling:
		s.detectAt = time.Time{}
	}
}

// schedule keeps txAt consistent with whether periodic packets are due and
// at what interval: none is scheduled while the peer is in demand mode, or
// while we are passive and have not heard from it.
func (s *Session) schedule(now time.Time) {
	if !s.mayTransmit() || !s.periodic() {
		s.txAt = time.Time{}
		return
	}
	if s.txAt.IsZero() {
		s.txAt = now // the first packet goes out at once
		return
	}
	if iv := s.interval(); s.txAt.After(now.Add(iv)) {
		s.txAt = now.Add(iv)
	}
}

// mayTransmit: §6.8.7's absolute bans.
func (s *Session) mayTransmit() bool {
	if s.remoteMinRx == 0 {
		return false
	}
	return !(s.cfg.Passive && s.remoteDiscr == 0)
}

// periodic reports whether periodic packets are due: not while the peer has
// asked for demand mode and both ends are Up, unless we are polling.
func (s *Session) periodic() bool {
	return s.polling || !(s.remoteDem && s.state == Up && s.remoteState == Up)
}

// demandActive: we asked the peer to stop sending and it is Up, so its
// silence proves nothing (§6.6).
func (s *Session) demandActive() bool {
	return s.cfg.Demand && s.state == Up && s.remoteState == Up
}

// interval is the jittered transmit interval (§6.8.7): reduced by 0-25 %
// at random, or 10-25 % with a detect multiplier of 1.
func (s *Session) interval() time.Duration {
	iv := max(s.txInUse, s.remoteMinRx)
	f := 0.75 + 0.25*s.rand()
	if s.cfg.Multiplier == 1 {
		f = 0.75 + 0.15*s.rand()
	}
	return time.Duration(float64(iv) * f)
}

// detectTime is the asynchronous detection time (§6.8.4): the peer's
// multiplier times the slower of what we require and what it sends at.
func (s *Session) detectTime() time.Duration {
	m := s.remoteMult
	if m == 0 {
		m = s.cfg.Multiplier
	}
	return time.Duration(m) * max(s.rxInUse, s.remoteMinTx)
}

// packet builds the next Control packet; final answers a poll.
func (s *Session) packet(final bool) *Packet {
	p := &Packet{
		Version: version, Diag: s.diag, State: s.state,
		Poll: s.polling && !final, Final: final,
		Demand:     s.cfg.Demand && s.state == Up && s.remoteState == Up,
		DetectMult: s.cfg.Multiplier, MyDiscr: s.localDiscr, YourDiscr: s.remoteDiscr,
		MinTx: s.desiredTx, MinRx: s.cfg.MinRx,
	}
	if k := s.cfg.Key; k != nil {
		s.xmitSeq++
		p.Auth = &Auth{Type: k.Type, KeyID: k.ID, Seq: s.xmitSeq}
	}
	return p
}

// Next is when Observe(EvTimer) must be called; zero when nothing is due.
func (s *Session) Next() time.Time {
	switch {
	case s.txAt.IsZero():
		return s.detectAt
	case s.detectAt.IsZero() || s.txAt.Before(s.detectAt):
		return s.txAt
	}
	return s.detectAt
}

// Info is a session's state for status and metrics.
type Info struct {
	State          State         `json:"state"`
	Diag           Diag          `json:"diag"`
	LocalDiscr     uint32        `json:"local_discriminator"`
	RemoteDiscr    uint32        `json:"remote_discriminator"`
	RemoteState    State         `json:"remote_state"`
	RemoteDiag     Diag          `json:"remote_diag"`
	TxInterval     time.Duration `json:"-"`             // negotiated, before jitter; Status carries it in seconds
	DetectTime     time.Duration `json:"-"`             // negotiated
	DemandActive   bool          `json:"demand"`        // the peer sends nothing periodically
	RemoteDemand   bool          `json:"remote_demand"` // we send nothing periodically
	Polling        bool          `json:"polling"`
	RemoteMultiply uint8         `json:"remote_multiplier"`
}

// Info returns the session's state.
func (s *Session) Info() Info {
	return Info{
		State: s.state, Diag: s.diag, LocalDiscr: s.localDiscr,
		RemoteDiscr: s.remoteDiscr, RemoteState: s.remoteState, RemoteDiag: s.remoteDiag,
		TxInterval: max(s.txInUse, s.remoteMinRx), DetectTime: s.detectTime(),
		DemandActive: s.demandActive(), RemoteDemand: !s.periodic() && s.state == Up,
		Polling: s.polling, RemoteMultiply: s.remoteMult,
	}
}

// State returns the local session state.
func (s *Session) State() State { return s.state }

// Key returns the session's authentication key, for signing what it sends.
func (s *Session) Key() *Key { return s.cfg.Key }

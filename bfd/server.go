package bfd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Peer is one configured session: whom to talk to, from where, how.
type Peer struct {
	Name      string     // the gateway's name: the key of status, metrics and changes
	Remote    netip.Addr // the peer's address
	Local     netip.Addr // source address; required for multihop, optional for single hop
	Interface string     // single hop: the link the peer is on
	Multihop  bool       // RFC 5883 on UDP 4784 instead of RFC 5881 on 3784
	MinTTL    int        // multihop: least TTL accepted; 0 means DefaultMinTTL
	Config
}

// DefaultMinTTL is the least TTL a multihop packet may arrive with: one
// router between the peers, as FRR's default minimum-ttl 254.
const DefaultMinTTL = 254

// housekeeping bounds the owner's sleep: it re-resolves interfaces (a PPP
// or DHCP link may be recreated under its name) and stamps liveness.
const housekeeping = time.Second

// Change is a session state change, for the detector.
type Change struct {
	Name string
	At   time.Time
	Transition
	Info Info
}

// Counters of one session since it was created.
type Counters struct {
	Received     uint64 `json:"received"`
	Sent         uint64 `json:"sent"`
	SendErrors   uint64 `json:"send_errors"`
	AuthFailures uint64 `json:"auth_failures"`
	Discarded    uint64 `json:"discarded"` // wrong state, discriminator or TTL
}

// Status is one session as status and metrics show it.
type Status struct {
	Name      string     `json:"gateway"`
	Remote    netip.Addr `json:"remote"`
	Local     netip.Addr `json:"local,omitzero"`
	Interface string     `json:"interface,omitempty"`
	Multihop  bool       `json:"multihop"`
	Info
	TxIntervalSeconds float64   `json:"tx_interval_seconds"`
	DetectTimeSeconds float64   `json:"detection_time_seconds"`
	Since             time.Time `json:"since"`
	LastDiscard       string    `json:"last_discard,omitempty"`
	Counters          Counters  `json:"counters"`
}

// Options configures a Server; zero values are production defaults.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
	Rand   func() float64   // jitter; default math/rand/v2.Float64
	// Enter, when set, runs every socket and interface lookup: tests pass a
	// namespace's Do so that the server lives in a lab namespace while the
	// test process stays in its own.
	Enter func(func() error) error
}

// Server runs every BFD session of the daemon. One goroutine, Run, owns
// the sessions and the sockets; the other methods may be called from any
// goroutine, never block on it, and work before Run starts.
type Server struct {
	log   *slog.Logger
	now   func() time.Time
	rand  func() float64
	enter func(func() error) error

	kick chan struct{} // cap 1: Set or Verify has left work for the owner
	mu   sync.Mutex    // guards the mailboxes below, never held across a channel op
	want []Peer        // latest Set, nil when consumed
	set  bool
	ver  map[string]bool
	out  []Change

	updates chan struct{} // cap 1: Drain has something
	snap    atomic.Pointer[[]Status]
	alive   atomic.Int64
	unknown atomic.Uint64 // packets for no session

	done      chan struct{}
	closeOnce sync.Once
	running   sync.WaitGroup
}

// New returns a Server with no sessions.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Enter == nil {
		o.Enter = func(f func() error) error { return f() }
	}
	s := &Server{log: o.Logger, now: o.Now, rand: o.Rand, enter: o.Enter,
		kick: make(chan struct{}, 1), updates: make(chan struct{}, 1),
		ver: map[string]bool{}, done: make(chan struct{})}
	s.snap.Store(&[]Status{})
	return s
}

// Set replaces the configured sessions. Sessions whose address, interface
// and hop mode are unchanged keep running (new timers go through a poll).
func (s *Server) Set(peers []Peer) {
	s.mu.Lock()
	s.want, s.set = slices.Clone(peers), true
	s.mu.Unlock()
	s.poke()
}

// Verify asks the session of gateway name for proof of life now: in demand
// mode it starts a poll sequence, otherwise it is a no-op (the peer speaks
// periodically anyway). This is the hint the traffic evidence gives when
// packets toward the gateway go unanswered.
func (s *Server) Verify(name string) {
	s.mu.Lock()
	s.ver[name] = true
	s.mu.Unlock()
	s.poke()
}

func (s *Server) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Updates signals (coalesced) that Drain has changes.
func (s *Server) Updates() <-chan struct{} { return s.updates }

// Drain returns the changes since the last Drain, oldest first.
func (s *Server) Drain() []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.out
	s.out = nil
	return out
}

// Status returns every session, sorted by name.
func (s *Server) Status() []Status { return slices.Clone(*s.snap.Load()) }

// Alive returns when the owner goroutine last ran; it runs at least every
// second while Run is active. Zero before Run starts.
func (s *Server) Alive() time.Time {
	if n := s.alive.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Unknown counts packets that matched no session.
func (s *Server) Unknown() uint64 { return s.unknown.Load() }

// Close stops Run, which sends every session's peer an AdminDown packet
// first, and waits for it. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	s.running.Wait()
	return nil
}

// entry is the owner's view of one session.
type entry struct {
	peer    Peer
	s       *Session
	tx      *sender
	ifindex int
	st      Status
}

type listenKey struct {
	port int
	v6   bool
}

// owner is the state only Run's goroutine touches.
type owner struct {
	*Server
	byName  map[string]*entry
	byDiscr map[uint32]*entry
	lis     map[listenKey]*listener
	rx      chan received
	stop    chan struct{}
	readers sync.WaitGroup
	dirty   bool
}

// Run owns the sessions until ctx ends or Close is called. It returns an
// error only if it cannot start (Close was already called).
func (s *Server) Run(ctx context.Context) error {
	select {
	case <-s.done:
		return errors.New("running the bfd server: already closed")
	default:
	}
	s.running.Add(1)
	defer s.running.Done()
	o := &owner{Server: s, byName: map[string]*entry{}, byDiscr: map[uint32]*entry{},
		lis: map[listenKey]*listener{}, rx: make(chan received, 64), stop: make(chan struct{})}
	defer o.shutdown()
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastHouse := s.now()
	for {
		now := s.now()
		s.alive.Store(now.UnixNano())
		if now.Sub(lastHouse) >= housekeeping {
			o.resolve(now)
			lastHouse = now
		}
		o.fire(now)
		o.publish()
		timer.Reset(o.sleep(now))
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case r := <-o.rx:
			o.receive(r, s.now())
		case <-s.kick:
			o.mail(s.now())
		case <-timer.C:
		}
	}
}

func (o *owner) sleep(now time.Time) time.Duration {
	d := housekeeping
	for _, e := range o.byName {
		if n := e.s.Next(); !n.IsZero() && n.Sub(now) < d {
			d = n.Sub(now)
		}
	}
	return max(d, 0)
}

// fire runs every session whose deadline has come.
func (o *owner) fire(now time.Time) {
	for _, e := range o.byName {
		if n := e.s.Next(); !n.IsZero() && !now.Before(n) {
			o.apply(e, Event{Kind: EvTimer}, now)
		}
	}
}

// apply runs one event through a session and carries out its output.
func (o *owner) apply(e *entry, ev Event, now time.Time) {
	out := e.s.Observe(ev, now)
	for _, p := range out.Send {
		o.send(e, p)
	}
	if out.Discarded != nil {
		if errors.Is(out.Discarded, ErrAuth) {
			e.st.Counters.AuthFailures++
		} else {
			e.st.Counters.Discarded++
		}
		e.st.LastDiscard = out.Discarded.Error()
		o.log.Debug("bfd packet discarded", "gateway", e.peer.Name, "err", out.Discarded)
	}
	if t := out.Transition; t != nil {
		e.st.Since = now
		info := e.s.Info()
		o.log.Info("bfd session "+t.To.String(), "gateway", e.peer.Name, "iface", e.peer.Interface,
			"from", t.From.String(), "diag", t.Diag.String(), "remote_diag", info.RemoteDiag.String(), "remote", e.peer.Remote.String())
		o.mu.Lock()
		o.out = append(o.out, Change{Name: e.peer.Name, At: now, Transition: *t, Info: info})
		o.mu.Unlock()
		select {
		case o.updates <- struct{}{}:
		default:
		}
	}
	o.dirty = true
}

func (o *owner) send(e *entry, p *Packet) {
	var key []byte
	if k := e.s.Key(); k != nil {
		key = k.Secret
	}
	b, err := p.Marshal(key)
	if err == nil && e.tx == nil {
		err = errors.New("no socket (interface missing?)")
	}
	if err == nil {
		err = e.tx.send(b)
	}
	if err != nil {
		e.st.Counters.SendErrors++
		o.log.Debug("bfd send failed", "gateway", e.peer.Name, "err", err)
		return
	}
	e.st.Counters.Sent++
}

func (o *owner) receive(r received, now time.Time) {
	e, err := o.match(r)
	if err != nil {
		o.unknown.Add(1)
		o.log.Debug("bfd packet for no session", "err", err)
		return
	}
	if e.peer.Multihop {
		if min := cmpOr(e.peer.MinTTL, DefaultMinTTL); r.ttl < min {
			e.st.Counters.Discarded++
			e.st.LastDiscard = fmt.Sprintf("TTL %d below %d", r.ttl, min)
			return
		}
	} else if r.ttl != gtsmTTL {
		// GTSM (RFC 5881 §5): only a neighbour on the link can send 255.
		e.st.Counters.Discarded++
		e.st.LastDiscard = fmt.Sprintf("TTL %d, single hop needs 255", r.ttl)
		return
	}
	e.st.Counters.Received++
	o.apply(e, Event{Kind: EvPacket, Packet: r.pkt, Raw: r.raw}, now)
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// match finds the session a packet belongs to (§6.8.6): by our
// discriminator when the peer knows it, else by addresses and link.
func (o *owner) match(r received) (*entry, error) {
	fits := func(e *entry) bool {
		if e.peer.Multihop != r.multihop || e.peer.Remote != r.src {
			return false
		}
		if e.peer.Multihop {
			return !e.peer.Local.IsValid() || e.peer.Local == r.dst
		}
		return e.ifindex != 0 && e.ifindex == r.ifindex
	}
	if d := r.pkt.YourDiscr; d != 0 {
		e := o.byDiscr[d]
		if e == nil || !fits(e) {
			return nil, fmt.Errorf("matching a packet from %s for discriminator %d: no such session", r.src, d)
		}
		return e, nil
	}
	for _, e := range o.byName {
		if fits(e) {
			return e, nil
		}
	}
	return nil, fmt.Errorf("matching a packet from %s on ifindex %d: no session", r.src, r.ifindex)
}

// mail takes Set and Verify requests.
func (o *owner) mail(now time.Time) {
	o.mu.Lock()
	want, set := o.want, o.set
	o.want, o.set = nil, false
	ver := o.ver
	o.ver = map[string]bool{}
	o.mu.Unlock()
	if set {
		o.reconcile(want, now)
	}
	for name := range ver {
		if e := o.byName[name]; e != nil {
			o.apply(e, Event{Kind: EvVerify}, now)
		}
	}
}

func sameSession(a, b Peer) bool {
	return a.Remote == b.Remote && a.Local == b.Local && a.Interface == b.Interface && a.Multihop == b.Multihop
}

func (o *owner) reconcile(want []Peer, now time.Time) {
	keep := map[string]bool{}
	for _, p := range want {
		keep[p.Name] = true
		e := o.byName[p.Name]
		switch {
		case e != nil && sameSession(e.peer, p):
			old := e.peer
			e.peer = p
			if !sameConfig(old.Config, p.Config) {
				o.apply(e, Event{Kind: EvConfig, Config: p.Config}, now)
			}
			continue
		case e != nil:
			o.remove(e, now)
		}
		o.add(p, now)
	}
	for name, e := range o.byName {
		if !keep[name] {
			o.remove(e, now)
		}
	}
	o.listeners()
	o.dirty = true
}

// sameConfig compares keys by content: a reload reads them afresh.
func sameConfig(a, b Config) bool {
	ka, kb := a.Key, b.Key
	a.Key, b.Key = nil, nil
	return a == b && sameKey(ka, kb)
}

func sameKey(a, b *Key) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Type == b.Type && a.ID == b.ID && string(a.Secret) == string(b.Secret)
}

func (o *owner) add(p Peer, now time.Time) {
	var d uint32
	for d == 0 || o.byDiscr[d] != nil {
		d = uint32(o.rand() * (1 << 32))
	}
	e := &entry{peer: p, st: Status{Name: p.Name, Remote: p.Remote, Local: p.Local, Interface: p.Interface, Multihop: p.Multihop, Since: now}}
	o.open(e)
	e.s = NewSession(p.Config, d, o.rand, now)
	o.byName[p.Name], o.byDiscr[d] = e, e
}

// open (re)opens the session's socket, resolving its interface.
func (o *owner) open(e *entry) {
	if e.tx != nil {
		e.tx.close()
		e.tx = nil
	}
	e.ifindex = 0
	if !e.peer.Multihop {
		idx, err := o.ifindex(e.peer.Interface)
		if err != nil {
			o.log.Debug("bfd interface not found", "gateway", e.peer.Name, "iface", e.peer.Interface, "err", err)
			return
		}
		e.ifindex = idx
	}
	var tx *sender
	err := o.enter(func() (err error) { tx, err = dial(e.peer); return err })
	if err != nil {
		o.log.Warn("bfd cannot open its socket", "gateway", e.peer.Name, "iface", e.peer.Interface, "err", err)
		return
	}
	e.tx = tx
}

// resolve reopens the sockets of sessions whose interface appeared or was
// recreated with another index.
func (o *owner) resolve(time.Time) {
	for _, e := range o.byName {
		if e.peer.Multihop {
			if e.tx == nil {
				o.open(e)
			}
			continue
		}
		idx, _ := o.ifindex(e.peer.Interface)
		if idx != e.ifindex || (idx != 0 && e.tx == nil) {
			o.open(e)
		}
	}
	if len(o.lis) < len(o.wantListeners()) {
		o.listeners() // a socket that failed to open: retry
	}
}

func (o *owner) ifindex(name string) (int, error) {
	idx := 0
	err := o.enter(func() error {
		ifi, err := net.InterfaceByName(name)
		if err == nil {
			idx = ifi.Index
		}
		return err
	})
	return idx, err
}

// remove tells the peer the session is administratively down, then
// forgets it.
func (o *owner) remove(e *entry, now time.Time) {
	o.apply(e, Event{Kind: EvAdminDown}, now)
	if e.tx != nil {
		e.tx.close()
	}
	delete(o.byName, e.peer.Name)
	delete(o.byDiscr, e.s.localDiscr)
}

func (o *owner) wantListeners() map[listenKey]bool {
	want := map[listenKey]bool{}
	for _, e := range o.byName {
		port := PortSingleHop
		if e.peer.Multihop {
			port = PortMultihop
		}
		want[listenKey{port, e.peer.Remote.Is6()}] = true
	}
	return want
}

// listeners opens the receive sockets the sessions need and closes the
// others.
func (o *owner) listeners() {
	want := o.wantListeners()
	for k, l := range o.lis {
		if !want[k] {
			l.close()
			delete(o.lis, k)
		}
	}
	for k := range want {
		if o.lis[k] != nil {
			continue
		}
		var l *listener
		err := o.enter(func() (err error) { l, err = listen(k.port, k.v6, k.port == PortMultihop); return err })
		if err != nil {
			o.log.Warn("bfd cannot listen", "err", err)
			continue
		}
		o.lis[k] = l
		o.readers.Add(1)
		go o.read(l)
	}
}

// read hands every datagram of l to the owner until l is closed.
func (o *owner) read(l *listener) {
	defer o.readers.Done()
	buf := make([]byte, 1500)
	for {
		r, err := l.read(buf, func(err error) {
			o.unknown.Add(1)
			o.log.Debug("bfd packet malformed", "err", err)
		})
		if err != nil {
			return
		}
		select {
		case o.rx <- r:
		case <-o.stop:
			return
		}
	}
}

// publish refreshes the status snapshot after changes.
func (o *owner) publish() {
	if !o.dirty {
		return
	}
	o.dirty = false
	st := make([]Status, 0, len(o.byName))
	for _, e := range o.byName {
		e.st.Info = e.s.Info()
		e.st.TxIntervalSeconds, e.st.DetectTimeSeconds = e.st.TxInterval.Seconds(), e.st.DetectTime.Seconds()
		st = append(st, e.st)
	}
	slices.SortFunc(st, func(a, b Status) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	o.snap.Store(&st)
}

// shutdown sends AdminDown for every session (RFC 5882 §3.2: the peer
// must not take it for a failure of the path), closes every socket and
// waits for the readers.
func (o *owner) shutdown() {
	now := o.now()
	for _, e := range o.byName {
		o.remove(e, now)
	}
	o.publish()
	close(o.stop)
	for k, l := range o.lis {
		l.close()
		delete(o.lis, k)
	}
	o.readers.Wait()
}

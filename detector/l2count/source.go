package l2count

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Neighbours is what the Source needs of the kernel besides its table:
// interface names (chains hook a device by name) and the link-layer
// address the neighbour cache holds for each gateway.
type Neighbours interface {
	LinkName(index int) (string, error)
	// MACs returns the usable link-layer addresses (NUD_VALID entries)
	// of the neighbours on the interface with index, both families.
	MACs(index int) (map[netip.Addr]net.HardwareAddr, error)
}

// Table is the part of *Counter a Source drives.
type Table interface {
	Sync(want []Key) (int, error)
	Counts() (map[Key]Counts, error)
	Withdraw() error
}

// GatewayCounts is the traffic evidence of one gateway. The counters only
// grow: a MAC change or a reset of the kernel's counts (a flushed ruleset,
// a neighbour silent for a day) continues from where they were.
type GatewayCounts struct {
	Tx, Rx         uint64
	LastTx, LastRx time.Time        // zero: unknown (interface counters, or no packet yet)
	MAC            net.HardwareAddr // what is counted; nil when unresolved or in fallback
}

// Mode says where a Source's evidence comes from.
type Mode string

const (
	ModeNeighbour Mode = "neighbour" // per gateway: uplinkd's tcx programs or nftables table
	ModeInterface Mode = "interface" // the interface's counters, shared by its gateways
)

// SourceConfig configures a Source.
type SourceConfig struct {
	Table      Table
	Neighbours Neighbours
	// Interface reads an interface's own packet counters: the fallback
	// where the kernel cannot count per neighbour.
	Interface func(index int) (tx, rx uint64, err error)
	Logger    *slog.Logger
	Now       func() time.Time // nil: time.Now
}

// Source turns gateway addresses into per-gateway counts: it follows each
// gateway's MAC in the neighbour cache, keeps the table counting exactly
// the gateways it is asked about, and falls back to interface counters
// where the kernel cannot count per neighbour (for good) or the table
// cannot be written (until the next try, retryAfter later).
type Source struct {
	cfg SourceConfig

	mu       sync.Mutex
	ifaces   map[int]*ifaceState
	synced   map[Key]bool // what the table was last made to count
	dirty    bool
	syncedAt time.Time
	retryAt  time.Time
	mode     Mode
	reason   string // why ModeInterface
	failing  bool   // the last Sync failed (transiently)
	withdraw bool   // Withdraw was called: nothing is installed again
}

type ifaceState struct {
	name   string
	seen   time.Time // last Counters call, for pruning
	gws    map[netip.Addr]*gwState
	macs   map[netip.Addr]net.HardwareAddr
	macsAt time.Time // when macs was read
}

type gwState struct {
	key     Key
	keyed   bool
	base    Counts // accumulated from earlier keys and resets
	lastRaw Counts
}

const (
	// macsEvery bounds how often the neighbour cache is read per
	// interface: the poller asks every 10 ms under traffic, and a new
	// MAC counted up to 100 ms late only delays evidence (packets to an
	// uncounted MAC are no silence).
	macsEvery  = 100 * time.Millisecond
	retryAfter = time.Second
	// resyncEvery re-reads the table even when nothing changed: a
	// flushed ruleset (a reload of nftables.service) or an edited rule is
	// repaired within it. An unchanged table costs reads only.
	resyncEvery = 5 * time.Second
	// forgetAfter drops an interface nobody has asked about (all its
	// gated gateways left the policy): its rules go at the next Sync.
	forgetAfter = 10 * time.Second
)

// NewSource returns a Source in ModeNeighbour; the first Counters call
// installs what it needs.
func NewSource(cfg SourceConfig) *Source {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, ifaces: map[int]*ifaceState{}, synced: map[Key]bool{}, mode: ModeNeighbour}
}

// Mode reports where the evidence comes from and, for ModeInterface, why.
func (s *Source) Mode() (Mode, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == ModeNeighbour && s.failing {
		return ModeInterface, s.reason
	}
	return s.mode, s.reason
}

// Counters returns the counts of each gateway in gws on the interface
// with index: out[i] belongs to gws[i].
func (s *Source) Counters(index int, gws []netip.Addr) ([]GatewayCounts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if s.mode == ModeInterface || s.withdraw || !slices.ContainsFunc(gws, netip.Addr.IsValid) {
		// Without an address the gateway is the link itself (a
		// point-to-point device): the only peer there, so the
		// interface's counters are its own, and it has no MAC to key.
		return s.fromInterface(index, gws)
	}
	st, err := s.iface(index, now)
	if err != nil {
		return nil, err
	}
	if st.macs == nil || now.Sub(st.macsAt) >= macsEvery {
		macs, err := s.cfg.Neighbours.MACs(index)
		if err != nil {
			return nil, fmt.Errorf("reading neighbours of %s: %w", st.name, err)
		}
		st.macs, st.macsAt = macs, now
	}
	s.follow(st, gws, st.macs)
	s.prune(now)
	if err := s.sync(now); err != nil {
		return s.fromInterface(index, gws)
	}
	counts, err := s.cfg.Table.Counts()
	if err != nil {
		s.cfg.Logger.Warn("reading per-neighbour counters failed; using interface counters", "iface", st.name, "err", err)
		return s.fromInterface(index, gws)
	}
	out := make([]GatewayCounts, len(gws))
	for i, a := range gws {
		g := st.gws[a]
		if !g.keyed {
			out[i] = GatewayCounts{Tx: g.base.Tx, Rx: g.base.Rx}
			continue
		}
		raw := counts[g.key]
		if raw.Tx < g.lastRaw.Tx || raw.Rx < g.lastRaw.Rx {
			g.base.Tx += g.lastRaw.Tx // the kernel's counts restarted
			g.base.Rx += g.lastRaw.Rx
		}
		g.lastRaw = raw
		out[i] = GatewayCounts{Tx: g.base.Tx + raw.Tx, Rx: g.base.Rx + raw.Rx,
			LastTx: raw.LastTx, LastRx: raw.LastRx, MAC: g.key.HardwareAddr()}
	}
	return out, nil
}

func (s *Source) iface(index int, now time.Time) (*ifaceState, error) {
	st := s.ifaces[index]
	if st == nil {
		name, err := s.cfg.Neighbours.LinkName(index)
		if err != nil {
			return nil, fmt.Errorf("reading the name of interface %d: %w", index, err)
		}
		st = &ifaceState{name: name, gws: map[netip.Addr]*gwState{}}
		s.ifaces[index] = st
	}
	st.seen = now
	return st, nil
}

// follow points each gateway at the key of its current MAC. A gateway
// whose MAC changed keeps its totals: the old key's counts become its base.
func (s *Source) follow(st *ifaceState, gws []netip.Addr, macs map[netip.Addr]net.HardwareAddr) {
	want := map[netip.Addr]bool{}
	for _, a := range gws {
		want[a] = true
		g := st.gws[a]
		if g == nil {
			g = &gwState{}
			st.gws[a] = g
		}
		et := EtherTypeIPv4
		if a.Is6() && !a.Is4In6() {
			et = EtherTypeIPv6
		}
		k, err := NewKey(st.name, macs[a], et)
		if err != nil {
			continue // unresolved: keep counting the last MAC, if any
		}
		if g.keyed && g.key == k {
			continue
		}
		if g.keyed {
			s.cfg.Logger.Info("gateway MAC changed; counting the new one", "iface", st.name, "gateway", a,
				"old", g.key.HardwareAddr(), "new", k.HardwareAddr())
		}
		g.base.Tx += g.lastRaw.Tx
		g.base.Rx += g.lastRaw.Rx
		g.lastRaw = Counts{}
		g.key, g.keyed = k, true
		s.dirty = true
	}
	for a := range st.gws {
		if !want[a] {
			delete(st.gws, a)
			s.dirty = true
		}
	}
}

func (s *Source) prune(now time.Time) {
	for i, st := range s.ifaces {
		if now.Sub(st.seen) > forgetAfter {
			delete(s.ifaces, i)
			s.dirty = true
		}
	}
}

// sync installs the keys every gateway is counted by when they changed,
// and every resyncEvery in any case.
func (s *Source) sync(now time.Time) error {
	if !s.dirty && !s.failing && now.Sub(s.syncedAt) < resyncEvery {
		return nil
	}
	if s.failing && now.Before(s.retryAt) {
		return errors.New("waiting to retry")
	}
	var want []Key
	seen := map[Key]bool{}
	for _, st := range s.ifaces {
		for _, g := range st.gws {
			if g.keyed && !seen[g.key] {
				seen[g.key] = true
				want = append(want, g.key)
			}
		}
	}
	n, err := s.cfg.Table.Sync(want)
	switch {
	case errors.Is(err, ErrUnsupported):
		s.mode, s.reason = ModeInterface, err.Error()
		s.cfg.Logger.Warn("per-neighbour counting unavailable; traffic evidence from interface counters, which cannot tell gateways sharing an interface apart", "err", err)
		return err
	case err != nil:
		if !s.failing {
			s.cfg.Logger.Warn("installing per-neighbour counters failed; interface counters meanwhile", "err", err)
		}
		s.failing, s.reason, s.retryAt = true, err.Error(), now.Add(retryAfter)
		return err
	}
	if s.failing {
		s.cfg.Logger.Info("per-neighbour counters installed again")
	}
	if n > 0 {
		s.cfg.Logger.Debug("per-neighbour counters synced", "writes", n, "keys", len(want))
	}
	s.failing, s.reason, s.dirty, s.synced, s.syncedAt = false, "", false, seen, now
	return nil
}

func (s *Source) fromInterface(index int, gws []netip.Addr) ([]GatewayCounts, error) {
	if s.cfg.Interface == nil {
		return nil, errors.New("reading interface counters: no fallback configured")
	}
	tx, rx, err := s.cfg.Interface(index)
	if err != nil {
		return nil, err
	}
	out := make([]GatewayCounts, len(gws))
	for i := range out {
		out[i] = GatewayCounts{Tx: tx, Rx: rx}
	}
	return out, nil
}

// Withdraw removes the table (on_exit = "withdraw"); the Source counts
// from interface counters afterwards.
func (s *Source) Withdraw() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.withdraw = true
	if s.mode == ModeInterface && !s.failing && len(s.synced) == 0 {
		return nil // nothing was ever installed
	}
	return s.cfg.Table.Withdraw()
}

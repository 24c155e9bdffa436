package detector

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// The detector reaches the kernel through one small interface per
// concern, each speaking the detector's own types: Links, Neighbours,
// Addresses, LinkModes and TrafficCounters. Netlink is the production
// adapter of all of them; detectortest.Kernel is the in-memory one that
// scenario tests drive through the same code path.

// Links reads interfaces and follows their changes.
type Links interface {
	// Link reads the interface called name. An interface that does not
	// exist is an error that wraps ErrNotFound.
	Link(name string) (Link, error)
	// SubscribeLinks sends every existing interface, then every change
	// (a removal as Deleted), until done is closed or the subscription
	// fails; onErr is told why (ENOBUFS included). ch is closed when it
	// ends, after which the caller re-reads state and subscribes again.
	SubscribeLinks(ch chan<- Link, done <-chan struct{}, onErr func(error)) error
}

// Neighbours reads the neighbour cache, asks the kernel to resolve or
// re-validate an entry, and follows its changes.
type Neighbours interface {
	// Neighbours lists the entries of the interface with index, of one
	// family (AnyFamily for both).
	Neighbours(index int, fam Family) ([]Neighbour, error)
	// Resolve asks the kernel to resolve addr as if traffic used the
	// entry (NTF_USE): an ARP request or neighbour solicitation.
	Resolve(index int, addr netip.Addr) error
	// Revalidate sets the entry of addr to PROBE, so the kernel sends a
	// unicast ARP request or solicitation to hw: the neighbour probe.
	// A kernel that refuses it gives an error wrapping ErrNotSupported.
	Revalidate(index int, addr netip.Addr, hw net.HardwareAddr) error
	// SubscribeNeighbours behaves as SubscribeLinks, for neighbours.
	SubscribeNeighbours(ch chan<- Neighbour, done <-chan struct{}, onErr func(error)) error
}

// Addresses reads the local addresses of an interface: probe sources.
type Addresses interface {
	Addresses(index int, fam Family) ([]Address, error)
}

// LinkModes reads speed, duplex and auto-negotiation. Drivers that do
// not report them (veth reports a subset) give ErrNotSupported.
type LinkModes interface {
	LinkMode(name string) (LinkMode, error)
}

// TrafficCounters is the source of traffic evidence: the packets sent to
// and received from the gateways of one interface. The production source
// reads the interface's counters (RTM_GETSTATS), the same for every
// gateway on it; a per-gateway source (counting by the gateway's
// link-layer address) replaces it without any other change, since the
// poller keeps a separate silence per gateway.
type TrafficCounters interface {
	// Counters reads the counters of each gateway address in gws on the
	// interface with index: out[i] belongs to gws[i]. An interface that
	// is gone is an error.
	Counters(index int, gws []netip.Addr) ([]Counters, error)
}

// Kernel is every kernel interface at once, as Netlink and
// detectortest.Kernel implement them.
type Kernel interface {
	Links
	Neighbours
	Addresses
	LinkModes
	TrafficCounters
}

// ErrNotFound says an interface does not exist.
var ErrNotFound = errors.New("not found")

// ErrNotSupported says the kernel or the driver does not offer what was
// asked (a link mode, a neighbour probe).
var ErrNotSupported = errors.New("not supported by the driver")

// Family is an address family filter, numbered as policy.FamilyOf
// numbers families: Family(policy.FamilyOf(addr)) is addr's.
type Family uint8

const (
	AnyFamily Family = 0
	IPv4      Family = 4
	IPv6      Family = 6
)

// Link is what the detector knows of one interface.
type Link struct {
	Name    string
	Index   int
	AdminUp bool
	Carrier bool // admin up and lower layer up
	Deleted bool // removed, or absent when read
}

// Counters are packet counters, in each direction.
type Counters struct {
	Tx, Rx uint64
}

// NUD is a neighbour cache state, with the kernel's values (NUD_*) so
// that a mask of several states reads as the kernel's.
type NUD uint16

const (
	NUDIncomplete NUD = 0x01
	NUDReachable  NUD = 0x02
	NUDStale      NUD = 0x04
	NUDDelay      NUD = 0x08
	NUDProbe      NUD = 0x10
	NUDFailed     NUD = 0x20
	NUDNoARP      NUD = 0x40
	NUDPermanent  NUD = 0x80
	NUDNone       NUD = 0x00
)

// String is the kernel's name of the state, as `ip neigh` prints it.
func (s NUD) String() string {
	switch s {
	case NUDIncomplete:
		return "INCOMPLETE"
	case NUDReachable:
		return "REACHABLE"
	case NUDStale:
		return "STALE"
	case NUDDelay:
		return "DELAY"
	case NUDProbe:
		return "PROBE"
	case NUDFailed:
		return "FAILED"
	case NUDNoARP:
		return "NOARP"
	case NUDPermanent:
		return "PERMANENT"
	case NUDNone:
		return "NONE"
	}
	return "UNKNOWN"
}

// Neighbour is one entry of the neighbour cache.
type Neighbour struct {
	Index        int
	Addr         netip.Addr
	State        NUD
	HwAddr       net.HardwareAddr
	ConfirmedAge time.Duration // age of the last confirmation
	Deleted      bool          // a removal
}

// Address is a local address of an interface.
type Address struct {
	IP netip.Addr
	// Tentative is set while duplicate address detection runs or after
	// it failed: the address cannot be a source yet.
	Tentative bool
}

// LinkMode is what ethtool says about an interface's negotiation.
type LinkMode struct {
	SpeedMbps   int  // 0 when unknown
	FullDuplex  bool // meaningful only when Duplex is known
	DuplexKnown bool
	Autoneg     bool
}

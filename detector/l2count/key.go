package l2count

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"sort"
	"time"
)

// Ethertypes of the families that are counted.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeIPv6 uint16 = 0x86dd
)

// Key is one neighbour on one interface: what is counted.
type Key struct {
	Iface     string
	MAC       [6]byte
	EtherType uint16
}

// NewKey builds a Key from a link-layer address; it fails unless mac is an
// EUI-48 address (the only kind netdev payload matching here handles).
func NewKey(iface string, mac net.HardwareAddr, etherType uint16) (Key, error) {
	if len(mac) != 6 {
		return Key{}, fmt.Errorf("counting neighbour %s on %s: not an EUI-48 address", mac, iface)
	}
	k := Key{Iface: iface, EtherType: etherType}
	copy(k.MAC[:], mac)
	return k, nil
}

// HardwareAddr returns the key's MAC as a net.HardwareAddr.
func (k Key) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(k.MAC[:]) }

func (k Key) family() string {
	switch k.EtherType {
	case EtherTypeIPv4:
		return "ip"
	case EtherTypeIPv6:
		return "ip6"
	}
	return fmt.Sprintf("0x%04x", k.EtherType)
}

// String is "eth0 02:00:00:00:00:01 ip", as the rules' comments read.
func (k Key) String() string {
	return fmt.Sprintf("%s %s %s", k.Iface, k.HardwareAddr(), k.family())
}

func (k Key) less(o Key) bool {
	if k.Iface != o.Iface {
		return k.Iface < o.Iface
	}
	if k.MAC != o.MAC {
		return string(k.MAC[:]) < string(o.MAC[:])
	}
	return k.EtherType < o.EtherType
}

func sortKeys(ks []Key) { sort.Slice(ks, func(i, j int) bool { return ks[i].less(ks[j]) }) }

// Dir is a direction of counting.
type Dir uint8

const (
	Rx Dir = iota // received from the neighbour (ingress, source MAC)
	Tx            // sent to the neighbour (egress, destination MAC)
)

func (d Dir) String() string {
	if d == Tx {
		return "tx"
	}
	return "rx"
}

// id is the element of the "last" set a rule refreshes: a stable hash of
// the key and direction, so that a restarted daemon finds the same element
// without keeping state anywhere but the kernel. Plan refuses the rare
// collision.
func (k Key) id(d Dir) uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s %s", d, k)
	return h.Sum32()
}

func idBytes(id uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, id)
	return b
}

// Counts is what the kernel counted for one Key.
type Counts struct {
	Tx, Rx uint64 // packets sent to and received from the neighbour
	// LastTx and LastRx are when the last packet passed each way, with
	// the kernel's millisecond resolution; zero when none was seen since
	// the rule was installed (or within the set's memory, lastMemory).
	LastTx, LastRx time.Time
}

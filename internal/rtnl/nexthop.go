package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Attribute numbers of include/uapi/linux/nexthop.h that x/sys/unix does
// not define (yet).
const (
	nhaFDB      = 0xb
	nhaResGroup = 0xc

	nhaResGroupBuckets         = 1
	nhaResGroupIdleTimer       = 2
	nhaResGroupUnbalancedTimer = 3
	nhaResGroupUnbalancedTime  = 4
	sizeofNhmsg                = 8
	sizeofNexthopGrp           = 8
	userHZ                     = 100 // clock_t ticks per second in NHA_RES_GROUP timers
	maxClockT                  = 1<<32 - 1
	maxWeight                  = 256
	rtaNHID                    = 30 // RTA_NH_ID
	nexthopGrpTypeMpath        = 0
	nexthopGrpTypeResilient    = 1
)

// GroupType is NHA_GROUP_TYPE.
type GroupType uint16

const (
	// Multipath is the classic hash-threshold group: every change of the
	// member list moves a share of every member's flows.
	Multipath GroupType = nexthopGrpTypeMpath
	// Resilient (Linux 5.13+) maps flows to a table of buckets; removing a
	// member moves only its own buckets, and adding one moves only buckets
	// that have been idle for IdleTimer (or any, after UnbalancedTimer).
	Resilient GroupType = nexthopGrpTypeResilient
)

func (t GroupType) String() string {
	switch t {
	case Multipath:
		return "mpath"
	case Resilient:
		return "resilient"
	}
	return fmt.Sprintf("grouptype(%d)", uint16(t))
}

// Member is one entry of a group: a nexthop id and its weight, 1..256.
type Member struct {
	ID     uint32
	Weight uint16
}

// ResilientParams are the NHA_RES_GROUP attributes of a resilient group.
// Timers travel as clock_t (1/100 s), so they are rounded to 10 ms.
type ResilientParams struct {
	Buckets         uint16
	IdleTimer       time.Duration
	UnbalancedTimer time.Duration // 0: never force a busy bucket to move
}

// Nexthop is one kernel nexthop object: a gateway (Gateway and/or OIF), a
// blackhole, or a group of other nexthop objects (Group non-empty).
type Nexthop struct {
	ID       uint32
	Family   uint8 // unix.AF_INET or AF_INET6; AF_UNSPEC for a group
	Protocol uint8
	// Flags are nh_flags. RTNH_F_ONLINK is ours to set; the kernel adds
	// RTNH_F_DEAD and RTNH_F_LINKDOWN on its own in dumps.
	Flags     uint32
	Gateway   netip.Addr
	OIF       uint32
	Blackhole bool

	Group     []Member
	Type      GroupType
	Resilient ResilientParams // only for Type == Resilient
}

// IsGroup reports whether n is a group.
func (n Nexthop) IsGroup() bool { return len(n.Group) > 0 }

// MarshalNexthop encodes the nhmsg and attributes of a RTM_NEWNEXTHOP
// request for n.
func MarshalNexthop(n Nexthop) ([]byte, error) {
	if n.ID == 0 {
		return nil, errors.New("encoding nexthop: id 0 asks the kernel to choose one, which no owner could find again")
	}
	hdr := make([]byte, sizeofNhmsg)
	hdr[0] = n.Family
	hdr[2] = n.Protocol
	binary.NativeEndian.PutUint32(hdr[4:], n.Flags)
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.NHA_ID, n.ID)
	switch {
	case n.IsGroup():
		if n.Gateway.IsValid() || n.OIF != 0 || n.Blackhole {
			return nil, fmt.Errorf("encoding nexthop %d: a group has no gateway, device or blackhole of its own", n.ID)
		}
		if n.Family != unix.AF_UNSPEC {
			return nil, fmt.Errorf("encoding nexthop %d: a group's family must be AF_UNSPEC", n.ID)
		}
		grp := make([]byte, 0, sizeofNexthopGrp*len(n.Group))
		for _, m := range n.Group {
			if m.Weight < 1 || m.Weight > maxWeight {
				return nil, fmt.Errorf("encoding nexthop %d: member %d has weight %d, want 1..%d", n.ID, m.ID, m.Weight, maxWeight)
			}
			var e [sizeofNexthopGrp]byte
			binary.NativeEndian.PutUint32(e[0:], m.ID)
			e[4] = uint8(m.Weight - 1)
			grp = append(grp, e[:]...)
		}
		ae.Bytes(unix.NHA_GROUP, grp)
		ae.Uint16(unix.NHA_GROUP_TYPE, uint16(n.Type))
		if n.Type == Resilient {
			p := n.Resilient
			idle, unbal := clockTicks(p.IdleTimer), clockTicks(p.UnbalancedTimer)
			if idle > maxClockT || unbal > maxClockT {
				return nil, fmt.Errorf("encoding nexthop %d: resilient timers over %d s", n.ID, maxClockT/userHZ)
			}
			ae.Nested(nhaResGroup, func(nae *netlink.AttributeEncoder) error {
				if p.Buckets != 0 {
					nae.Uint16(nhaResGroupBuckets, p.Buckets)
				}
				nae.Uint32(nhaResGroupIdleTimer, uint32(idle))
				nae.Uint32(nhaResGroupUnbalancedTimer, uint32(unbal))
				return nil
			})
		}
	case n.Blackhole:
		ae.Flag(unix.NHA_BLACKHOLE, true)
	default:
		if n.OIF == 0 {
			return nil, fmt.Errorf("encoding nexthop %d: a gateway nexthop needs a device", n.ID)
		}
		ae.Uint32(unix.NHA_OIF, n.OIF)
		if n.Gateway.IsValid() {
			if (n.Family == unix.AF_INET) != n.Gateway.Is4() {
				return nil, fmt.Errorf("encoding nexthop %d: gateway %s does not match family %d", n.ID, n.Gateway, n.Family)
			}
			ae.Bytes(unix.NHA_GATEWAY, n.Gateway.AsSlice())
		}
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encoding nexthop %d: %w", n.ID, err)
	}
	return append(hdr, attrs...), nil
}

func clockTicks(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second/userHZ/2) / (time.Second / userHZ))
}

// UnmarshalNexthop decodes one RTM_NEWNEXTHOP message body.
func UnmarshalNexthop(b []byte) (Nexthop, error) {
	if len(b) < sizeofNhmsg {
		return Nexthop{}, fmt.Errorf("decoding nexthop: %d bytes, shorter than nhmsg", len(b))
	}
	n := Nexthop{Family: b[0], Protocol: b[2], Flags: binary.NativeEndian.Uint32(b[4:8])}
	ad, err := netlink.NewAttributeDecoder(b[sizeofNhmsg:])
	if err != nil {
		return Nexthop{}, fmt.Errorf("decoding nexthop: %w", err)
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NHA_ID:
			n.ID = ad.Uint32()
		case unix.NHA_OIF:
			n.OIF = ad.Uint32()
		case unix.NHA_GATEWAY:
			if a, ok := netip.AddrFromSlice(ad.Bytes()); ok {
				n.Gateway = a
			}
		case unix.NHA_BLACKHOLE:
			n.Blackhole = true
		case unix.NHA_GROUP_TYPE:
			n.Type = GroupType(ad.Uint16())
		case unix.NHA_GROUP:
			ad.Do(func(g []byte) error {
				if len(g)%sizeofNexthopGrp != 0 {
					return fmt.Errorf("NHA_GROUP of %d bytes", len(g))
				}
				for i := 0; i < len(g); i += sizeofNexthopGrp {
					// weight_high (Linux 6.12+) carries weights above 256.
					w := uint16(g[i+4]) | uint16(g[i+5])<<8
					n.Group = append(n.Group, Member{ID: binary.NativeEndian.Uint32(g[i:]), Weight: w + 1})
				}
				return nil
			})
		case nhaResGroup:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case nhaResGroupBuckets:
						n.Resilient.Buckets = nad.Uint16()
					case nhaResGroupIdleTimer:
						n.Resilient.IdleTimer = time.Duration(nad.Uint32()) * (time.Second / userHZ)
					case nhaResGroupUnbalancedTimer:
						n.Resilient.UnbalancedTimer = time.Duration(nad.Uint32()) * (time.Second / userHZ)
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return Nexthop{}, fmt.Errorf("decoding nexthop: %w", err)
	}
	return n, nil
}

// Equal reports whether two nexthops are the same object as far as an
// owner can set it: the kernel's own flags (dead, linkdown) are ignored.
func (n Nexthop) Equal(o Nexthop) bool {
	const ours = unix.RTNH_F_ONLINK
	if n.ID != o.ID || n.Family != o.Family || n.Protocol != o.Protocol || n.Flags&ours != o.Flags&ours ||
		n.Gateway != o.Gateway || n.OIF != o.OIF || n.Blackhole != o.Blackhole || n.Type != o.Type ||
		!slices.Equal(n.Group, o.Group) {
		return false
	}
	return n.Type != Resilient || n.Resilient == o.Resilient
}

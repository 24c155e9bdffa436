package rtnl

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

const sizeofRtmsg = 12

// Route is a kernel route as far as this package writes it: its key
// (Family, Table, Dst, Metric, Tos), and either a nexthop object (NHID) or
// a single Gateway/OIF. Multipath routes without nexthop objects stay with
// vishvananda/netlink, which encodes RTA_MULTIPATH already.
type Route struct {
	Family   uint8 // unix.AF_INET or AF_INET6
	Table    uint32
	Dst      netip.Prefix
	Metric   uint32
	Tos      uint8
	Protocol uint8
	Type     uint8 // unix.RTN_*; 0 is RTN_UNICAST
	Src      netip.Addr
	NHID     uint32 // RTA_NH_ID: the route's nexthops are this object's
	Gateway  netip.Addr
	OIF      uint32
}

// MarshalRoute encodes the rtmsg and attributes of a RTM_NEWROUTE request.
func MarshalRoute(r Route) ([]byte, error) {
	if r.NHID != 0 && (r.Gateway.IsValid() || r.OIF != 0) {
		return nil, fmt.Errorf("encoding route %s: a route via nexthop object %d has no gateway or device of its own", r.Dst, r.NHID)
	}
	scope := uint8(unix.RT_SCOPE_UNIVERSE)
	if r.NHID == 0 && !r.Gateway.IsValid() && r.OIF != 0 && r.Family == unix.AF_INET {
		scope = unix.RT_SCOPE_LINK
	}
	return marshalRoute(r, scope, true)
}

// MarshalRouteDelete encodes a RTM_DELROUTE request that names the route
// by key, type and protocol only, so that the kernel removes it whatever
// its nexthops and never matches another protocol's route. Scope NOWHERE
// is the kernel's "any scope", as `ip route del` sends it.
func MarshalRouteDelete(r Route) ([]byte, error) {
	return marshalRoute(Route{Family: r.Family, Table: r.Table, Dst: r.Dst, Metric: r.Metric, Tos: r.Tos, Protocol: r.Protocol, Type: r.Type}, unix.RT_SCOPE_NOWHERE, false)
}

func marshalRoute(r Route, scope uint8, full bool) ([]byte, error) {
	if !r.Dst.IsValid() {
		return nil, fmt.Errorf("encoding route in table %d: no destination", r.Table)
	}
	if (r.Family == unix.AF_INET) != r.Dst.Addr().Is4() {
		return nil, fmt.Errorf("encoding route %s: family %d does not match", r.Dst, r.Family)
	}
	typ := r.Type
	if typ == 0 {
		typ = unix.RTN_UNICAST
	}
	hdr := make([]byte, sizeofRtmsg)
	hdr[0] = r.Family
	hdr[1] = uint8(r.Dst.Bits())
	hdr[3] = r.Tos
	hdr[4] = uint8(min(r.Table, unix.RT_TABLE_COMPAT))
	hdr[5] = r.Protocol
	hdr[6] = scope
	hdr[7] = typ
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.RTA_TABLE, r.Table)
	if r.Dst.Bits() > 0 {
		ae.Bytes(unix.RTA_DST, r.Dst.Masked().Addr().AsSlice())
	}
	if r.Metric != 0 {
		ae.Uint32(unix.RTA_PRIORITY, r.Metric)
	}
	if full {
		if r.Src.IsValid() {
			ae.Bytes(unix.RTA_PREFSRC, r.Src.AsSlice())
		}
		if r.NHID != 0 {
			ae.Uint32(rtaNHID, r.NHID)
		}
		if r.Gateway.IsValid() {
			ae.Bytes(unix.RTA_GATEWAY, r.Gateway.AsSlice())
		}
		if r.OIF != 0 {
			ae.Uint32(unix.RTA_OIF, r.OIF)
		}
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encoding route %s: %w", r.Dst, err)
	}
	return append(hdr, attrs...), nil
}

// UnmarshalRoute decodes one RTM_NEWROUTE message body. A route via a
// nexthop object also carries, in the kernel's compatibility mode
// (net.ipv4.nexthop_compat_mode = 1), the expanded gateway or multipath
// nexthops; NHID is what identifies it, and those are left out.
func UnmarshalRoute(b []byte) (Route, error) {
	if len(b) < sizeofRtmsg {
		return Route{}, fmt.Errorf("decoding route: %d bytes, shorter than rtmsg", len(b))
	}
	r := Route{Family: b[0], Tos: b[3], Table: uint32(b[4]), Protocol: b[5], Type: b[7]}
	bits := int(b[1])
	var dst netip.Addr
	ad, err := netlink.NewAttributeDecoder(b[sizeofRtmsg:])
	if err != nil {
		return Route{}, fmt.Errorf("decoding route: %w", err)
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.RTA_TABLE:
			r.Table = ad.Uint32()
		case unix.RTA_DST:
			dst, _ = netip.AddrFromSlice(ad.Bytes())
		case unix.RTA_PRIORITY:
			r.Metric = ad.Uint32()
		case unix.RTA_PREFSRC:
			r.Src, _ = netip.AddrFromSlice(ad.Bytes())
		case rtaNHID:
			r.NHID = ad.Uint32()
		case unix.RTA_GATEWAY:
			r.Gateway, _ = netip.AddrFromSlice(ad.Bytes())
		case unix.RTA_OIF:
			r.OIF = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return Route{}, fmt.Errorf("decoding route: %w", err)
	}
	if !dst.IsValid() {
		dst = netip.IPv4Unspecified()
		if r.Family == unix.AF_INET6 {
			dst = netip.IPv6Unspecified()
		}
	}
	r.Dst = netip.PrefixFrom(dst, bits)
	if r.NHID != 0 {
		r.Gateway, r.OIF = netip.Addr{}, 0
	}
	return r, nil
}

// routeDumpRequest is the body of a strict RTM_GETROUTE dump of one
// family and protocol: with NETLINK_GET_STRICT_CHK the kernel itself sends
// only the routes whose rtm_protocol matches.
func routeDumpRequest(family, protocol uint8) []byte {
	hdr := make([]byte, sizeofRtmsg)
	hdr[0] = family
	hdr[5] = protocol
	return hdr
}

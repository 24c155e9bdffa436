package routing

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// rtMessage builds one rtnetlink route notification as the kernel sends
// it: nlmsghdr, rtmsg, then attributes.
type rtAttr struct {
	typ uint16
	val []byte
}

func rtMessage(typ uint16, hdr [8]byte, flags uint32, attrs ...rtAttr) []byte {
	body := append([]byte{}, hdr[:]...)
	body = binary.NativeEndian.AppendUint32(body, flags)
	for _, a := range attrs {
		l := unix.SizeofRtAttr + len(a.val)
		body = binary.NativeEndian.AppendUint16(body, uint16(l))
		body = binary.NativeEndian.AppendUint16(body, a.typ)
		body = append(body, a.val...)
		for len(body)%unix.RTA_ALIGNTO != 0 {
			body = append(body, 0)
		}
	}
	msg := binary.NativeEndian.AppendUint32(nil, uint32(unix.NLMSG_HDRLEN+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = append(msg, make([]byte, 10)...) // flags, seq, pid
	return append(msg, body...)
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// hdr is an rtmsg header: family, dst_len, src_len, tos, table, protocol,
// scope, type.
func hdr(af, dstLen, tos, table, proto byte) [8]byte {
	return [8]byte{af, dstLen, 0, tos, table, proto, 0, unix.RTN_UNICAST}
}

func TestParseRouteEvent(t *testing.T) {
	v4 := func(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }
	v6 := func(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }
	for _, c := range []struct {
		name string
		msg  []byte
		want RouteEvent
		ok   bool
	}{
		{"bgp prefix in main",
			rtMessage(unix.RTM_NEWROUTE, hdr(unix.AF_INET, 24, 0, 254, 186), 0,
				rtAttr{unix.RTA_TABLE, u32(254)}, rtAttr{unix.RTA_DST, v4("198.19.7.0")}, rtAttr{unix.RTA_PRIORITY, u32(20)}, rtAttr{unix.RTA_OIF, u32(2)}),
			RouteEvent{Family: 4, Table: 254, Dst: netip.MustParsePrefix("198.19.7.0/24"), Metric: 20, Protocol: 186}, true},
		{"default without RTA_DST, table above 255 only in RTA_TABLE",
			rtMessage(unix.RTM_NEWROUTE, hdr(unix.AF_INET, 0, 0, unix.RT_TABLE_COMPAT, 212), 0, rtAttr{unix.RTA_TABLE, u32(20001)}),
			RouteEvent{Family: 4, Table: 20001, Dst: netip.MustParsePrefix("0.0.0.0/0"), Protocol: 212}, true},
		{"ipv6 delete with tos-free key and metric",
			rtMessage(unix.RTM_DELROUTE, hdr(unix.AF_INET6, 64, 0, 201, 212), 0,
				rtAttr{unix.RTA_TABLE, u32(201)}, rtAttr{unix.RTA_DST, v6("2001:db8:f000:1::")}, rtAttr{unix.RTA_PRIORITY, u32(1024)}),
			RouteEvent{Family: 6, Table: 201, Dst: netip.MustParsePrefix("2001:db8:f000:1::/64"), Metric: 1024, Protocol: 212, Deleted: true}, true},
		{"tos is part of the key",
			rtMessage(unix.RTM_NEWROUTE, hdr(unix.AF_INET, 0, 0x10, 254, 4), 0),
			RouteEvent{Family: 4, Table: 254, Dst: netip.MustParsePrefix("0.0.0.0/0"), Tos: 0x10, Protocol: 4}, true},
		{"cloned route", rtMessage(unix.RTM_NEWROUTE, hdr(unix.AF_INET6, 128, 0, 254, 2), unix.RTM_F_CLONED), RouteEvent{}, false},
		{"local table", rtMessage(unix.RTM_NEWROUTE, hdr(unix.AF_INET, 32, 0, 255, 2), 0, rtAttr{unix.RTA_TABLE, u32(255)}), RouteEvent{}, false},
		{"other family (ipmr)", rtMessage(unix.RTM_NEWROUTE, hdr(128, 32, 0, 254, 17), 0), RouteEvent{}, false},
		{"not a route message", rtMessage(unix.RTM_NEWRULE, hdr(unix.AF_INET, 0, 0, 254, 212), 0), RouteEvent{}, false},
		{"prefix length beyond the family", rtMessage(unix.RTM_NEWROUTE, hdr(unix.AF_INET, 33, 0, 254, 186), 0), RouteEvent{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			typ := binary.NativeEndian.Uint16(c.msg[4:6])
			got, ok := parseRouteEvent(typ, c.msg[unix.NLMSG_HDRLEN:])
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v", ok, c.ok)
			}
			if !ok {
				return
			}
			if diff := cmp.Diff(c.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
	// A truncated header is no event, and does not panic.
	full := rtMessage(unix.RTM_NEWROUTE, hdr(unix.AF_INET, 24, 0, 254, 186), 0, rtAttr{unix.RTA_DST, v4("198.19.7.0")})
	for n := unix.NLMSG_HDRLEN; n < len(full); n++ {
		parseRouteEvent(unix.RTM_NEWROUTE, full[unix.NLMSG_HDRLEN:n])
	}
	if _, ok := parseRouteEvent(unix.RTM_NEWROUTE, full[unix.NLMSG_HDRLEN:unix.NLMSG_HDRLEN+8]); ok {
		t.Errorf("a header of 8 bytes parsed as an event")
	}
}

func TestAnyMessage(t *testing.T) {
	foreign := rtMessage(unix.RTM_NEWROUTE, hdr(unix.AF_INET, 24, 0, 254, 186), 0)
	owned := rtMessage(unix.RTM_DELROUTE, hdr(unix.AF_INET, 0, 0, 201, 212), 0)
	isOwned := func(typ uint16, body []byte) bool {
		ev, ok := parseRouteEvent(typ, body)
		return ok && ev.Protocol == 212
	}
	for _, c := range []struct {
		name  string
		dgram []byte
		want  bool
	}{
		{"one foreign", foreign, false},
		{"foreign then owned", append(append([]byte{}, foreign...), owned...), true},
		{"owned", owned, true},
		{"empty", nil, false},
		{"length beyond the datagram", owned[:len(owned)-1], false},
	} {
		if got := anyMessage(c.dgram, isOwned); got != c.want {
			t.Errorf("%s: anyMessage = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestInterest(t *testing.T) {
	p := mustPolicy(t, twoISPs)
	in := newInterest(212, Desired(p, nil))
	def4 := netip.MustParsePrefix("0.0.0.0/0")
	for _, c := range []struct {
		name string
		ev   RouteEvent
		want bool
	}{
		{"bgp prefix in main, where uplinkd has its default", RouteEvent{Family: 4, Table: 254, Dst: netip.MustParsePrefix("198.19.7.0/24"), Metric: 20, Protocol: 186}, false},
		{"bgp default in main at another metric", RouteEvent{Family: 4, Table: 254, Dst: def4, Metric: 20, Protocol: 186}, false},
		{"foreign default on uplinkd's key in main", RouteEvent{Family: 4, Table: 254, Dst: def4, Protocol: 186}, true},
		{"foreign default leaving uplinkd's key in table 201", RouteEvent{Family: 4, Table: 201, Dst: def4, Protocol: 3, Deleted: true}, true},
		{"foreign ipv6 default in main (not wanted: no ipv6 in this policy)", RouteEvent{Family: 6, Table: 254, Dst: netip.MustParsePrefix("::/0"), Metric: 1024, Protocol: 186}, false},
		{"owned route deleted anywhere", RouteEvent{Family: 4, Table: 77, Dst: netip.MustParsePrefix("198.18.9.0/24"), Protocol: 212, Deleted: true}, true},
		{"owned route appearing in an unmanaged table", RouteEvent{Family: 6, Table: 300, Dst: netip.MustParsePrefix("2001:db8::/64"), Metric: 1024, Protocol: 212}, true},
		{"foreign route in a table of another family", RouteEvent{Family: 6, Table: 201, Dst: netip.MustParsePrefix("::/0"), Metric: 1024, Protocol: 186}, false},
	} {
		if got := in.relevant(c.ev); got != c.want {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.want)
		}
	}
}

// foreignPrefix4 is the i-th of 131,070 distinct prefixes inside
// 198.19.0.0/16 (every /17 to /32), a stand-in for a BGP table.
func foreignPrefix4(i int) netip.Prefix {
	for bits := 32; bits >= 17; bits-- {
		n := 1 << (bits - 16)
		if i < n {
			base := uint32(198)<<24 | uint32(19)<<16 | uint32(i)<<(32-bits)
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(base >> 24), byte(base >> 16), byte(base >> 8), byte(base)}), bits)
		}
		i -= n
	}
	panic("foreignPrefix4: index beyond 198.19.0.0/16")
}

// foreignPrefix6 is the i-th /64 in 2001:db8:f000::/36.
func foreignPrefix6(i int) netip.Prefix {
	var a [16]byte
	a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
	binary.BigEndian.PutUint16(a[4:], uint16(0xf000+i>>16))
	binary.BigEndian.PutUint16(a[6:], uint16(i))
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

func TestRouteSocketFilterSize(t *testing.T) {
	// The lab-sized policy: a few tuples, one program.
	small := newInterest(212, Desired(mustPolicy(t, twoISPs), nil))
	prog, err := routeSocketFilter(small)
	if err != nil || prog == nil {
		t.Fatalf("small policy: %d instructions, %v", len(prog), err)
	}
	// Keys that differ only in what the filter does not look at (the
	// prefix itself, metric) share a tuple.
	many := &interest{proto: 212, keys: map[RouteKey]bool{}}
	for i := 0; i < 1000; i++ {
		many.keys[RouteKey{Family: 4, Table: 254, Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i % 250)}), 32), Metric: uint32(i)}] = true
	}
	if prog, err := routeSocketFilter(many); err != nil || len(prog) != 18+7+1 {
		t.Errorf("1,000 keys of one tuple: %d instructions (%v), want 26", len(prog), err)
	}
	// A thousand per-gateway tables: too many tuples for one program;
	// no kernel filter, the RouteFilter alone decides.
	tables := &interest{proto: 212, keys: map[RouteKey]bool{}}
	for i := 0; i < 1000; i++ {
		tables.keys[RouteKey{Family: 4, Table: uint32(10000 + i), Dst: netip.MustParsePrefix("0.0.0.0/0")}] = true
	}
	if prog, err := routeSocketFilter(tables); err != nil || prog != nil {
		t.Errorf("1,000 tables: %d instructions (%v), want no program", len(prog), err)
	}
}

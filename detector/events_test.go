package detector

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

func linkUpdate(typ uint16, name string, index int, flags uint32, tx, rx uint64) netlink.LinkUpdate {
	a := netlink.NewLinkAttrs()
	a.Name, a.Index, a.RawFlags = name, index, flags
	a.Statistics = &netlink.LinkStatistics{TxPackets: tx, RxPackets: rx}
	u := netlink.LinkUpdate{Link: &netlink.Veth{LinkAttrs: a}}
	u.Header.Type = typ
	return u
}

func TestLinkFromUpdate(t *testing.T) {
	up := uint32(unix.IFF_UP | unix.IFF_LOWER_UP | unix.IFF_RUNNING)
	tests := []struct {
		name string
		u    netlink.LinkUpdate
		want Link
		ok   bool
	}{
		{"carrier", linkUpdate(unix.RTM_NEWLINK, "eth1", 4, up, 10, 20), Link{Name: "eth1", Index: 4, AdminUp: true, Carrier: true}, true},
		{"no carrier", linkUpdate(unix.RTM_NEWLINK, "eth1", 4, unix.IFF_UP, 0, 0), Link{Name: "eth1", Index: 4, AdminUp: true}, true},
		{"admin down keeps no carrier even with lower up", linkUpdate(unix.RTM_NEWLINK, "eth1", 4, unix.IFF_LOWER_UP, 0, 0), Link{Name: "eth1", Index: 4}, true},
		{"deleted", linkUpdate(unix.RTM_DELLINK, "eth1", 4, up, 0, 0), Link{Name: "eth1", Index: 4, Deleted: true}, true},
		{"re-created under a new index", linkUpdate(unix.RTM_NEWLINK, "eth1", 9, up, 0, 0), Link{Name: "eth1", Index: 9, AdminUp: true, Carrier: true}, true},
		{"nameless", linkUpdate(unix.RTM_NEWLINK, "", 4, up, 0, 0), Link{}, false},
		{"no link", netlink.LinkUpdate{}, Link{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := linkFromUpdate(tc.u)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func neighUpdate(typ uint16, ip string, state int, mac string, confirmed uint32) netlink.NeighUpdate {
	n := netlink.Neigh{LinkIndex: 4, Family: unix.AF_INET, State: state, IP: net.ParseIP(ip), Confirmed: confirmed}
	if mac != "" {
		n.HardwareAddr, _ = net.ParseMAC(mac)
	}
	return netlink.NeighUpdate{Type: typ, Neigh: n}
}

func TestNeighFromUpdate(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:01:01")
	gw := netip.MustParseAddr("198.18.1.1")
	tests := []struct {
		name   string
		u      netlink.NeighUpdate
		want   Neighbour
		ok     bool
		advice NeighAdvice
	}{
		{"reachable is a confirmation", neighUpdate(unix.RTM_NEWNEIGH, "198.18.1.1", netlink.NUD_REACHABLE, "02:00:00:00:01:01", 150),
			Neighbour{Index: 4, Addr: gw, State: NUDReachable, HwAddr: mac, ConfirmedAge: 1500 * ms}, true, NeighConfirmed},
		{"failed is negative", neighUpdate(unix.RTM_NEWNEIGH, "198.18.1.1", netlink.NUD_FAILED, "", 0),
			Neighbour{Index: 4, Addr: gw, State: NUDFailed}, true, NeighFailed},
		{"incomplete starts a check", neighUpdate(unix.RTM_NEWNEIGH, "198.18.1.1", netlink.NUD_INCOMPLETE, "", 0),
			Neighbour{Index: 4, Addr: gw, State: NUDIncomplete}, true, NeighIncomplete},
		{"stale says nothing", neighUpdate(unix.RTM_NEWNEIGH, "198.18.1.1", netlink.NUD_STALE, "02:00:00:00:01:01", 3000),
			Neighbour{Index: 4, Addr: gw, State: NUDStale, HwAddr: mac, ConfirmedAge: 30 * time.Second}, true, NeighNone},
		{"deleted says nothing", neighUpdate(unix.RTM_DELNEIGH, "198.18.1.1", netlink.NUD_REACHABLE, "02:00:00:00:01:01", 0),
			Neighbour{Index: 4, Addr: gw, State: NUDReachable, HwAddr: mac, Deleted: true}, true, NeighNone},
		{"v4-mapped address is unmapped", neighUpdate(unix.RTM_NEWNEIGH, "::ffff:198.18.1.1", netlink.NUD_PROBE, "", 0),
			Neighbour{Index: 4, Addr: gw, State: NUDProbe}, true, NeighNone},
		{"no address", netlink.NeighUpdate{Neigh: netlink.Neigh{LinkIndex: 4}}, Neighbour{}, false, NeighNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := neighFromUpdate(tc.u)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if ok {
				if a := adviceOf(got); a != tc.advice {
					t.Errorf("advice %v, want %v", a, tc.advice)
				}
			}
		})
	}
}

func TestTrafficState(t *testing.T) {
	type sample struct {
		at     time.Duration
		tx, rx uint64
	}
	type out struct {
		Rx     bool
		Silent time.Duration
	}
	tests := []struct {
		name    string
		samples []sample
		want    []out
	}{
		{"idle", []sample{{0, 5, 5}, {10 * ms, 5, 5}, {20 * ms, 5, 5}}, []out{{}, {}, {}}},
		{"two-way traffic is never silent", []sample{{0, 0, 0}, {10 * ms, 10, 10}, {20 * ms, 20, 20}},
			[]out{{}, {true, 0}, {true, 0}}},
		{"tx without rx grows from the first unanswered packet (midpoint of its sample period)",
			[]sample{{0, 0, 0}, {10 * ms, 10, 10}, {20 * ms, 20, 10}, {30 * ms, 30, 10}, {80 * ms, 80, 10}},
			[]out{{}, {true, 0}, {false, 5 * ms}, {false, 15 * ms}, {false, 65 * ms}}},
		{"a lone packet is not silence",
			[]sample{{0, 0, 0}, {10 * ms, 1, 0}, {500 * ms, 1, 0}, {900 * ms, 2, 0}},
			[]out{{}, {}, {}, {}}},
		{"sporadic packets far apart are not a flow",
			[]sample{{0, 0, 0}, {10 * ms, 1, 0}, {4010 * ms, 2, 0}, {8010 * ms, 3, 0}, {12010 * ms, 4, 0}},
			[]out{{}, {}, {}, {}, {}}},
		{"a slow flow is",
			[]sample{{0, 0, 0}, {10 * ms, 1, 0}, {1010 * ms, 2, 0}, {2010 * ms, 3, 0}},
			[]out{{}, {}, {}, {false, 2005 * ms}}},
		{"rx resets the silence",
			[]sample{{0, 0, 0}, {10 * ms, 10, 0}, {70 * ms, 70, 0}, {80 * ms, 80, 1}},
			[]out{{}, {false, 5 * ms}, {false, 65 * ms}, {true, 0}}},
		{"counter reset (interface re-created) starts over",
			[]sample{{0, 100, 100}, {10 * ms, 200, 100}, {20 * ms, 300, 100}, {30 * ms, 5, 0}, {40 * ms, 10, 0}},
			[]out{{}, {false, 5 * ms}, {false, 15 * ms}, {}, {false, 5 * ms}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s trafficState
			var got []out
			for _, x := range tc.samples {
				rx, sil := s.sample(x.tx, x.rx, t0.Add(x.at))
				got = append(got, out{rx, sil})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func echoBytes(t testing.TB, typ icmp.Type, id, seq int, data []byte) []byte {
	b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}).Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMatchReply(t *testing.T) {
	gw := netip.MustParseAddr("198.18.1.1")
	const id = 0x1234
	e := &pendingEcho{id: id, target: gw}
	copy(e.token[:], "0123456789abcdef")
	tests := []struct {
		name string
		r    EchoReply
		src  netip.Addr
		want string
	}{
		{"match", EchoReply{ID: id, Seq: 7, Data: e.token[:]}, gw, ""},
		{"wrong id", EchoReply{ID: id + 1, Seq: 7, Data: e.token[:]}, gw, "id mismatch"},
		{"wrong source", EchoReply{ID: id, Seq: 7, Data: e.token[:]}, netip.MustParseAddr("198.18.2.1"), "source 198.18.2.1 is not the target 198.18.1.1"},
		{"wrong token", EchoReply{ID: id, Seq: 7, Data: []byte("0123456789abcdeX")}, gw, "payload token mismatch"},
		{"short payload", EchoReply{ID: id, Seq: 7, Data: []byte("0123")}, gw, "payload token mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := matchReply(e, tc.r, tc.src)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("matchReply = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseEchoReply(t *testing.T) {
	tok := []byte("0123456789abcdef")
	if r, ok := ParseEchoReply(echoBytes(t, ipv4.ICMPTypeEchoReply, 9, 3, tok), false); !ok || r.ID != 9 || r.Seq != 3 || !bytes.Equal(r.Data, tok) {
		t.Errorf("v4 reply: %+v %v", r, ok)
	}
	if r, ok := ParseEchoReply(echoBytes(t, ipv6.ICMPTypeEchoReply, 9, 3, tok), true); !ok || r.ID != 9 || r.Seq != 3 {
		t.Errorf("v6 reply: %+v %v", r, ok)
	}
	if _, ok := ParseEchoReply(echoBytes(t, ipv4.ICMPTypeEcho, 9, 3, tok), false); ok {
		t.Error("an echo request parsed as a reply")
	}
	if _, ok := ParseEchoReply([]byte{0, 0}, false); ok {
		t.Error("truncated message parsed")
	}
}

func TestBuildEchoPacket(t *testing.T) {
	msg := &icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 1, Seq: 2, Data: []byte("token")}}
	src, dst := netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.18.100.1")
	b, err := BuildEchoPacket(msg, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ipv4.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.TotalLen != len(b) || !h.Src.Equal(src.AsSlice()) || !h.Dst.Equal(dst.AsSlice()) || h.Protocol != 1 || h.TTL != 64 {
		t.Errorf("header %+v", h)
	}
	if checksum(b[:20]) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	if checksum(b[20:]) != 0 {
		t.Error("ICMP checksum does not verify")
	}
	m6 := &icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: 1, Seq: 2, Data: []byte("token")}}
	s6, d6 := netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:100::1")
	b6, err := BuildEchoPacket(m6, s6, d6)
	if err != nil {
		t.Fatal(err)
	}
	if b6[0]>>4 != 6 || b6[6] != 58 || int(b6[4])<<8|int(b6[5]) != len(b6)-40 {
		t.Errorf("IPv6 header % x", b6[:40])
	}
	// The ICMPv6 checksum covers a pseudo-header.
	ps := append(append(icmp.IPv6PseudoHeader(s6.AsSlice(), d6.AsSlice())[:0:0], icmp.IPv6PseudoHeader(s6.AsSlice(), d6.AsSlice())...), b6[40:]...)
	binaryLen := len(b6) - 40
	ps[32], ps[33], ps[34], ps[35] = byte(binaryLen>>24), byte(binaryLen>>16), byte(binaryLen>>8), byte(binaryLen)
	ps[39] = 58
	if checksum(ps) != 0 {
		t.Error("ICMPv6 checksum does not verify")
	}
	if _, err := BuildEchoPacket(msg, src, d6); err == nil {
		t.Error("mixed families accepted")
	}
}

func TestShortErr(t *testing.T) {
	if got := shortErr(errors.Join(errTimeout)); got != "no reply" {
		t.Errorf("got %q", got)
	}
	if got := shortErr(unix.ECONNREFUSED); got != "refused" {
		t.Errorf("got %q", got)
	}
}

// FuzzLinkUpdate feeds arbitrary link updates (any type, name, index,
// flags and counters) through our translation: nothing may panic, a
// translated update always names its interface, and carrier implies
// admin up and a live link.
func FuzzLinkUpdate(f *testing.F) {
	f.Add(uint16(unix.RTM_NEWLINK), "eth1", 4, uint32(unix.IFF_UP|unix.IFF_LOWER_UP), uint64(1), uint64(2), true)
	f.Add(uint16(unix.RTM_DELLINK), "eth1", 4, uint32(unix.IFF_UP|unix.IFF_LOWER_UP), uint64(1), uint64(2), false)
	f.Fuzz(func(t *testing.T, typ uint16, name string, index int, flags uint32, tx, rx uint64, stats bool) {
		u := linkUpdate(typ, name, index, flags, tx, rx)
		if !stats {
			u.Link.Attrs().Statistics = nil
		}
		li, ok := linkFromUpdate(u)
		if !ok {
			return
		}
		if li.Name == "" || li.Name != name {
			t.Fatalf("translated name %q from %q", li.Name, name)
		}
		if li.Carrier && (!li.AdminUp || li.Deleted || flags&unix.IFF_LOWER_UP == 0) {
			t.Fatalf("carrier from flags %#x type %d: %+v", flags, typ, li)
		}
		if typ == unix.RTM_DELLINK && !li.Deleted {
			t.Fatal("RTM_DELLINK not translated as deleted")
		}
	})
}

// FuzzNeighUpdate: arbitrary neighbour updates (any address bytes, state,
// link-layer address and age) never panic, and an accepted one has a
// valid, unmapped address and a non-negative age.
func FuzzNeighUpdate(f *testing.F) {
	f.Add(uint16(unix.RTM_NEWNEIGH), 4, []byte{198, 18, 1, 1}, netlink.NUD_REACHABLE, []byte{2, 0, 0, 0, 1, 1}, uint32(100))
	f.Add(uint16(unix.RTM_DELNEIGH), 4, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, netlink.NUD_FAILED, []byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, typ uint16, index int, ip []byte, state int, mac []byte, confirmed uint32) {
		u := netlink.NeighUpdate{Type: typ, Neigh: netlink.Neigh{LinkIndex: index, IP: ip, State: state, HardwareAddr: mac, Confirmed: confirmed}}
		ni, ok := neighFromUpdate(u)
		if !ok {
			return
		}
		if !ni.Addr.IsValid() || ni.Addr.Is4In6() || ni.Index == 0 || ni.ConfirmedAge < 0 {
			t.Fatalf("accepted %+v", ni)
		}
		if a := adviceOf(ni); ni.Deleted && a != NeighNone {
			t.Fatalf("advice %v from a deleted entry", a)
		}
		_ = ni.State.String()
	})
}

// FuzzEchoReply: any ICMP payload, from any source, is parsed without
// panicking and never matches a pending probe unless it carries its id,
// source and token.
func FuzzEchoReply(f *testing.F) {
	tok := []byte("0123456789abcdef")
	f.Add(echoBytes(f, ipv4.ICMPTypeEchoReply, 0x1234, 1, tok), false, []byte{198, 18, 1, 1})
	f.Add(echoBytes(f, ipv6.ICMPTypeEchoReply, 0x1234, 1, tok), true, []byte{198, 18, 1, 2})
	f.Add([]byte{0, 0, 0, 0}, false, []byte{})
	f.Fuzz(func(t *testing.T, b []byte, v6 bool, src []byte) {
		r, ok := ParseEchoReply(b, v6)
		if !ok {
			return
		}
		a, _ := netip.AddrFromSlice(src)
		e := &pendingEcho{id: 0x1234, target: netip.MustParseAddr("198.18.1.1")}
		copy(e.token[:], tok)
		if matchReply(e, r, a.Unmap()) == nil {
			if r.ID != 0x1234 || a.Unmap() != e.target || !bytes.Equal(r.Data[:tokenLen], tok) {
				t.Fatalf("matched a reply that is not ours: %+v from %v", r, a)
			}
		}
	})
}

package rtnl

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// netipEq compares netip values by ==, as their unexported fields require.
var netipEq = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func TestNexthopRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		nh   Nexthop
	}{
		{"ipv4 gateway", Nexthop{ID: 1, Family: unix.AF_INET, Protocol: 212, Gateway: netip.MustParseAddr("198.18.1.1"), OIF: 3}},
		{"ipv6 gateway onlink", Nexthop{ID: 2, Family: unix.AF_INET6, Protocol: 212, Flags: unix.RTNH_F_ONLINK, Gateway: netip.MustParseAddr("2001:db8::1"), OIF: 4}},
		{"device only", Nexthop{ID: 3, Family: unix.AF_INET, Protocol: 212, OIF: 5}},
		{"blackhole", Nexthop{ID: 4, Protocol: 212, Blackhole: true}},
		{"mpath group", Nexthop{ID: 10, Protocol: 212, Group: []Member{{1, 1}, {2, 256}}, Type: Multipath}},
		{"resilient group", Nexthop{ID: 11, Protocol: 212, Group: []Member{{1, 3}, {3, 1}}, Type: Resilient,
			Resilient: ResilientParams{Buckets: 128, IdleTimer: 120 * time.Second, UnbalancedTimer: 300 * time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := MarshalNexthop(tt.nh)
			if err != nil {
				t.Fatal(err)
			}
			got, err := UnmarshalNexthop(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.nh, got, netipEq); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if !tt.nh.Equal(got) {
				t.Errorf("Equal is false after a round trip")
			}
		})
	}
}

// TestNexthopWire pins the bytes the kernel reads: weights travel as
// weight-1 in struct nexthop_grp, timers as clock_t (1/100 s).
func TestNexthopWire(t *testing.T) {
	b, err := MarshalNexthop(Nexthop{ID: 11, Protocol: 212, Group: []Member{{ID: 7, Weight: 3}}, Type: Resilient,
		Resilient: ResilientParams{Buckets: 64, IdleTimer: 2500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != unix.AF_UNSPEC || b[2] != 212 {
		t.Fatalf("nhmsg = % x, want family 0 and protocol 212", b[:sizeofNhmsg])
	}
	attrs, err := netlink.UnmarshalAttributes(b[sizeofNhmsg:])
	if err != nil {
		t.Fatal(err)
	}
	var sawGroup, sawRes bool
	for _, a := range attrs {
		switch a.Type {
		case unix.NHA_GROUP:
			sawGroup = true
			if id, w := binary.NativeEndian.Uint32(a.Data), a.Data[4]; id != 7 || w != 2 {
				t.Errorf("nexthop_grp = id %d weight byte %d, want 7 and 2", id, w)
			}
		case nhaResGroup | netlink.Nested, nhaResGroup:
			sawRes = true
			nested, err := netlink.UnmarshalAttributes(a.Data)
			if err != nil {
				t.Fatal(err)
			}
			got := map[uint16]uint32{}
			for _, n := range nested {
				switch n.Type {
				case nhaResGroupBuckets:
					got[n.Type] = uint32(binary.NativeEndian.Uint16(n.Data))
				default:
					got[n.Type] = binary.NativeEndian.Uint32(n.Data)
				}
			}
			want := map[uint16]uint32{nhaResGroupBuckets: 64, nhaResGroupIdleTimer: 250, nhaResGroupUnbalancedTimer: 0}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("NHA_RES_GROUP (-want +got):\n%s", diff)
			}
		}
	}
	if !sawGroup || !sawRes {
		t.Errorf("NHA_GROUP seen %v, NHA_RES_GROUP seen %v; want both", sawGroup, sawRes)
	}
}

func TestMarshalNexthopRefuses(t *testing.T) {
	tests := []struct {
		name string
		nh   Nexthop
		want string
	}{
		{"id 0", Nexthop{Family: unix.AF_INET, OIF: 1}, "id 0"},
		{"weight 0", Nexthop{ID: 1, Group: []Member{{ID: 2}}}, "weight 0"},
		{"weight 257", Nexthop{ID: 1, Group: []Member{{ID: 2, Weight: 257}}}, "weight 257"},
		{"group with gateway", Nexthop{ID: 1, Group: []Member{{2, 1}}, Gateway: netip.MustParseAddr("198.18.0.1")}, "no gateway"},
		{"group with family", Nexthop{ID: 1, Family: unix.AF_INET, Group: []Member{{2, 1}}}, "AF_UNSPEC"},
		{"gateway without device", Nexthop{ID: 1, Family: unix.AF_INET, Gateway: netip.MustParseAddr("198.18.0.1")}, "needs a device"},
		{"family mismatch", Nexthop{ID: 1, Family: unix.AF_INET6, OIF: 1, Gateway: netip.MustParseAddr("198.18.0.1")}, "does not match"},
		{"timer too long", Nexthop{ID: 1, Group: []Member{{2, 1}}, Type: Resilient, Resilient: ResilientParams{IdleTimer: 1 << 62}}, "timers over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MarshalNexthop(tt.nh)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("MarshalNexthop error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNexthopEqualIgnoresKernelFlags(t *testing.T) {
	a := Nexthop{ID: 1, Family: unix.AF_INET, Protocol: 212, Gateway: netip.MustParseAddr("198.18.0.1"), OIF: 2}
	b := a
	b.Flags = unix.RTNH_F_DEAD | unix.RTNH_F_LINKDOWN
	if !a.Equal(b) {
		t.Errorf("dead/linkdown flags made nexthops differ")
	}
	b.Flags = unix.RTNH_F_ONLINK
	if a.Equal(b) {
		t.Errorf("onlink is ours and must make nexthops differ")
	}
	g := Nexthop{ID: 10, Group: []Member{{1, 1}}, Type: Resilient, Resilient: ResilientParams{Buckets: 64}}
	h := g
	h.Resilient.Buckets = 128
	if g.Equal(h) {
		t.Errorf("resilient groups with 64 and 128 buckets compare equal")
	}
}

func TestRouteRoundTrip(t *testing.T) {
	tests := []Route{
		{Family: unix.AF_INET, Table: 100, Dst: netip.MustParsePrefix("0.0.0.0/0"), Protocol: 212, Type: unix.RTN_UNICAST, NHID: 10},
		{Family: unix.AF_INET6, Table: 1000, Dst: netip.MustParsePrefix("2001:db8:1::/48"), Metric: 5, Protocol: 212, Type: unix.RTN_UNICAST, Src: netip.MustParseAddr("2001:db8::5"), NHID: 11},
		{Family: unix.AF_INET, Table: 254, Dst: netip.MustParsePrefix("198.19.0.0/16"), Tos: 0x10, Protocol: 212, Type: unix.RTN_UNICAST, Gateway: netip.MustParseAddr("198.18.0.1"), OIF: 3},
	}
	for _, want := range tests {
		b, err := MarshalRoute(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalRoute(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, netipEq); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", want.Dst, diff)
		}
	}
	if _, err := MarshalRoute(Route{Family: unix.AF_INET, Dst: netip.MustParsePrefix("0.0.0.0/0"), NHID: 1, OIF: 2}); err == nil {
		t.Errorf("a route with both a nexthop object and a device was encoded")
	}
}

func TestReleaseAtLeast(t *testing.T) {
	tests := []struct {
		release string
		want    bool
	}{
		{"6.18.44-fc-v669", true}, {"5.13.0", true}, {"5.12.19-generic", false}, {"5.13-rc1", true},
		{"4.19.0", false}, {"10.0", true}, {"", false}, {"garbage", false},
	}
	for _, tt := range tests {
		if got := releaseAtLeast(tt.release, 5, 13); got != tt.want {
			t.Errorf("releaseAtLeast(%q, 5, 13) = %v, want %v", tt.release, got, tt.want)
		}
	}
}

package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestBFD(t *testing.T) {
	head := "[gateway.isp1]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\nsources = [\"198.18.1.2\"]\ntable = 101\n"
	tests := []struct {
		name string
		bfd  string
		want *BFD
	}{
		{"absent", "", nil},
		{"disabled", "[gateway.isp1.bfd]\nmin_tx = \"50ms\"\n", nil},
		{"defaults", "[gateway.isp1.bfd]\nenabled = true\n", &BFD{
			MinTx: 300 * time.Millisecond, MinRx: 300 * time.Millisecond, Multiplier: 3,
			Peer: netip.MustParseAddr("198.18.1.1"), Source: netip.MustParseAddr("198.18.1.2"),
			Down: BFDDownImmediate, Auth: BFDAuthNone}},
		{"everything", `[gateway.isp1.bfd]
enabled = true
min_tx = "50ms"
min_rx = "20ms"
multiplier = 5
passive = true
multihop = true
demand = true
peer = "198.18.100.1"
source = "198.18.1.3"
down = "check"
auth = "meticulous-keyed-sha1"
key_id = 9
key_file = "/etc/uplinkd/isp1.bfd.key"
`, &BFD{MinTx: 50 * time.Millisecond, MinRx: 20 * time.Millisecond, Multiplier: 5,
			Passive: true, Multihop: true, Demand: true,
			Peer: netip.MustParseAddr("198.18.100.1"), Source: netip.MustParseAddr("198.18.1.3"),
			Down: BFDDownCheck, Auth: BFDAuthMeticulousSHA1, KeyID: 9, KeyFile: "/etc/uplinkd/isp1.bfd.key"}},
	}
	for _, tt := range tests {
		p, err := Parse(tt.name+".toml", []byte(head+tt.bfd), Options{})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, p.Gateway("isp1").BFD, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

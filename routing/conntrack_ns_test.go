package routing

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
)

// TestFlushConntrackInNamespace fills the NAT lab's conntrack table with 32
// UDP flows and 4 TCP streams over every uplink, plus an entry of the
// router's own that no uplink carries, then flushes uplink 1 by each
// selector: exactly uplink 1's entries go, and every other entry is the
// same entry afterwards (same tuple, same start time).
func TestFlushConntrackInNamespace(t *testing.T) {
	tests := []struct {
		mode  netlab.NATMode
		scope ConntrackScope
		marks bool
	}{
		{netlab.NATSNAT, ConntrackScope{Gateway: "g1", Family: 4, SNAT: []netip.Addr{netlab.NATAddr(1)}}, false},
		{netlab.NATMasquerade, ConntrackScope{Gateway: "g1", Family: 4, Interface: netlab.NATRouterIf(1)}, false},
		{netlab.NATMasquerade, ConntrackScope{Gateway: "g1", Family: 4, Mark: 0x100, Mask: 0xff00}, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+"/"+tt.scope.Match(), func(t *testing.T) {
			n := nstest.NewNATLab(t, tt.mode)
			n.StartEcho(t)
			n.Router.Sysctl(t, "net.netfilter.nf_conntrack_timestamp", "1")
			if tt.marks {
				var rs string
				rs += "add table ip uplmark\nadd chain ip uplmark post { type filter hook postrouting priority mangle; }\n"
				for u := 1; u <= netlab.NATUplinks; u++ {
					rs += fmt.Sprintf("add rule ip uplmark post oifname %q ct mark set 0x%x\n", netlab.NATRouterIf(u), u<<8|0x5)
				}
				if out, err := n.Router.RunInput(rs, "nft", "-f", "-"); err != nil {
					t.Fatalf("nft: %v\n%s", err, out)
				}
			}
			n.ClassicDefault(t, 1, 2, 3, 4)
			if err := n.Client.Ping(t, netlab.NATRouterLAN.String()); err != nil { // the router's own entry
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			tcpDone := make(chan error, 4)
			for i := 0; i < 4; i++ {
				go func(port int) {
					_, err := netlab.RunTCP(ctx, n.Client.Host, netlab.TCPConfig{Target: netip.AddrPortFrom(netlab.TargetAddr4, netlab.DiscardPort), LocalPort: port, Chunk: 256, Rate: 20, Duration: 800 * time.Millisecond})
					tcpDone <- err
				}(42000 + i)
			}
			ports := make([]int, 32)
			for i := range ports {
				ports[i] = 43000 + i
			}
			if _, err := netlab.RunUDP(ctx, n.Client.Host, netlab.UDPConfig{Target: netip.AddrPortFrom(netlab.TargetAddr4, netlab.EchoPort), Flows: 32, Ports: ports, Rate: 32 * 20, Duration: 800 * time.Millisecond}, nil); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 4; i++ {
				if err := <-tcpDone; err != nil {
					t.Fatal(err)
				}
			}

			before := n.Conntrack(t)
			var ours, others []string
			for _, f := range before {
				if netlab.UplinkOf(f) == 1 {
					ours = append(ours, netlab.EntryKey(f))
				} else {
					others = append(others, netlab.EntryKey(f))
				}
			}
			if len(ours) == 0 || len(others) < 2 {
				t.Fatalf("uplink 1 has %d entries, the rest %d: the flows did not spread", len(ours), len(others))
			}
			ct, err := NewKernelConntrack(n.Router.NsHandle())
			if err != nil {
				t.Fatal(err)
			}
			defer ct.Close()
			flushed, err := FlushConntrack(ct, tt.scope)
			if err != nil {
				t.Fatal(err)
			}
			if flushed != len(ours) {
				t.Errorf("flushed %d entries, uplink 1 had %d", flushed, len(ours))
			}
			var after []string
			own := false
			for _, f := range n.Conntrack(t) {
				if netlab.UplinkOf(f) == 1 {
					t.Errorf("uplink 1's entry left: %s", netlab.EntryKey(f))
				}
				if a, _ := netip.AddrFromSlice(f.Forward.DstIP); a.Unmap() == netlab.NATRouterLAN {
					own = true
				}
				after = append(after, netlab.EntryKey(f))
			}
			if !own {
				t.Errorf("the router's own entry (the client's ping to %s) is missing", netlab.NATRouterLAN)
			}
			slices.Sort(others)
			slices.Sort(after)
			if !slices.Equal(others, after) {
				t.Errorf("the other entries changed:\nbefore %q\nafter  %q", others, after)
			}
			t.Logf("flushed %d of uplink 1, kept %d others (the router's own included)", flushed, len(after))
		})
	}
}

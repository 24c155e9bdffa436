package netlab

import (
	"fmt"
	"strconv"
	"strings"
)

// CountTable is the nftables table (family netdev) where the lab counts
// what a gateway receives from the Host. It is separate from FaultTable so
// that Recover does not reset the counts.
const CountTable = "uplcount"

// Counts are packets a gateway received from the Host on its downlink.
type Counts struct {
	Echo4, Echo6 uint64 // ICMP/ICMPv6 echo requests: the detector's probes (lab traffic is UDP/TCP)
	ARP          uint64 // ARP requests
}

// Echo is every echo request, both families.
func (c Counts) Echo() uint64 { return c.Echo4 + c.Echo6 }

// Sub returns c - o.
func (c Counts) Sub(o Counts) Counts {
	return Counts{Echo4: c.Echo4 - o.Echo4, Echo6: c.Echo6 - o.Echo6, ARP: c.ARP - o.ARP}
}

// InstallCounters adds named counters for echo requests and ARP requests
// arriving on iface in h's namespace.
func InstallCounters(h *Host, iface string) error {
	if err := nftBinary(); err != nil {
		return err
	}
	if err := validIfName(iface); err != nil {
		return err
	}
	rs := fmt.Sprintf(`add table netdev %[1]s
add counter netdev %[1]s echo4
add counter netdev %[1]s echo6
add counter netdev %[1]s arpreq
add chain netdev %[1]s count { type filter hook ingress device %[2]q priority -600; policy accept; }
add rule netdev %[1]s count icmp type echo-request counter name echo4
add rule netdev %[1]s count icmpv6 type echo-request counter name echo6
add rule netdev %[1]s count arp operation request counter name arpreq
`, CountTable, iface)
	if out, err := h.RunInput(rs, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("[%s] installing counters: %v: %s", h.Name, err, out)
	}
	return nil
}

// ReadCounters reads the counters InstallCounters made.
func ReadCounters(h *Host) (Counts, error) {
	out, err := h.Run("nft", "list", "counters", "table", "netdev", CountTable)
	if err != nil {
		return Counts{}, fmt.Errorf("[%s] reading counters: %v: %s", h.Name, err, out)
	}
	return parseCounters(out)
}

// parseCounters reads `nft list counters` output:
//
//	counter echo4 {
//		packets 3 bytes 252
//	}
func parseCounters(out string) (Counts, error) {
	var c Counts
	var name string
	seen := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "counter":
			name = f[1]
		case len(f) >= 2 && f[0] == "packets":
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return c, fmt.Errorf("parsing counter %s: %w", name, err)
			}
			switch name {
			case "echo4":
				c.Echo4 = n
			case "echo6":
				c.Echo6 = n
			case "arpreq":
				c.ARP = n
			default:
				continue
			}
			seen++
		}
	}
	if seen != 3 {
		return c, fmt.Errorf("parsing counters: found %d of 3 in %q", seen, out)
	}
	return c, nil
}

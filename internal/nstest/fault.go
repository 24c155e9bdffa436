package nstest

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// FaultTable is the nftables table (family netdev) holding every fault the
// harness injects into a namespace. One fixed name lets Recover remove all
// faults with a single `nft delete table`, and since it exists only inside lab
// namespaces it cannot clash with the machine's own ruleset.
const FaultTable = "uplnstest"

// ndTypes are the ICMPv6 neighbour discovery messages (types 133-137) that
// an "IP blackhole" must let through: the fault being modelled is a gateway
// that still answers ARP/ND but no longer forwards, the case a carrier or
// neighbour check cannot see.
const ndTypes = "{ nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect }"

type faultState struct {
	chains map[string]string // iface -> nft chain holding its ingress fault
	arpOff map[string]bool   // ifaces set NOARP by BlackholeARP
	down   map[string]bool   // ifaces set down by LinkDown
}

func nftBinary(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nstest: faults need the nft binary (apt-get install -y nftables): %v", err)
	}
}

// chainName maps an interface to an nft identifier. Interface names may
// contain characters nft identifiers cannot, so they are sanitised; a
// collision between two sanitised names gets a numeric suffix.
func (h *Host) chainName(iface string) string {
	if c, ok := h.faults.chains[iface]; ok {
		return c
	}
	var sb strings.Builder
	sb.WriteString("in_")
	for _, r := range iface {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	name := sb.String()
	used := map[string]bool{}
	for _, c := range h.faults.chains {
		used[c] = true
	}
	for i := 1; used[name]; i++ {
		name = fmt.Sprintf("%s_%d", sb.String(), i)
	}
	if h.faults.chains == nil {
		h.faults.chains = map[string]string{}
	}
	h.faults.chains[iface] = name
	return name
}

// setIngressFault replaces the ingress fault on iface with rules. Using a
// netdev ingress hook filters before the IP stack, ARP and bridging see the
// packet, so exactly "what arrives on this wire" is affected and routing
// decisions in the namespace do not matter.
func (h *Host) setIngressFault(t testing.TB, iface string, rules []string) {
	t.Helper()
	nftBinary(t)
	if err := validIfName(iface); err != nil {
		t.Fatalf("nstest: [%s] %v", h.Name, err)
	}
	if _, err := h.Handle.LinkByName(iface); err != nil {
		t.Fatalf("nstest: [%s] fault on %s: %v", h.Name, iface, err)
	}
	h.mu.Lock()
	chain := h.chainName(iface)
	h.mu.Unlock()
	var sb strings.Builder
	fmt.Fprintf(&sb, "add table netdev %s\n", FaultTable)
	fmt.Fprintf(&sb, "add chain netdev %s %s { type filter hook ingress device %q priority -500; policy accept; }\n", FaultTable, chain, iface)
	fmt.Fprintf(&sb, "flush chain netdev %s %s\n", FaultTable, chain)
	for _, r := range rules {
		fmt.Fprintf(&sb, "add rule netdev %s %s %s\n", FaultTable, chain, r)
	}
	// nft -f applies the file as one transaction: the old fault is replaced
	// atomically, there is no instant where the link is healthy.
	if out, err := h.RunInput(sb.String(), "nft", "-f", "-"); err != nil {
		t.Fatalf("nstest: [%s] nft: %v\n%s\nruleset:\n%s", h.Name, err, out, sb.String())
	}
}

// BlackholeIP drops every IPv4 and IPv6 packet arriving on iface, except ARP
// and ICMPv6 neighbour discovery, while the carrier stays up: the "gateway is
// alive at layer 2 but black-holes traffic" failure the detector exists for.
// It replaces any other ingress fault on iface.
func (h *Host) BlackholeIP(t testing.TB, iface string) {
	t.Helper()
	h.setIngressFault(t, iface, []string{
		"meta protocol arp counter accept",
		"icmpv6 type " + ndTypes + " counter accept",
		"meta protocol { ip, ip6 } counter drop",
	})
}

// BlackholeARP drops everything arriving on iface, including ARP and ND,
// and turns ARP off on it (so the namespace stops resolving and answering
// neighbours on that side too). Neighbour entries pointing at this host
// will go FAILED. It replaces any other ingress fault on iface.
func (h *Host) BlackholeARP(t testing.TB, iface string) {
	t.Helper()
	h.setIngressFault(t, iface, []string{"counter drop"})
	l, err := h.Handle.LinkByName(iface)
	if err == nil {
		err = h.Handle.LinkSetARPOff(l)
	}
	if err != nil {
		t.Fatalf("nstest: [%s] arp off %s: %v", h.Name, iface, err)
	}
	h.mu.Lock()
	if h.faults.arpOff == nil {
		h.faults.arpOff = map[string]bool{}
	}
	h.faults.arpOff[iface] = true
	h.mu.Unlock()
}

// Loss drops percent% (0-100) of the IPv4/IPv6 packets arriving on iface at
// random. ARP and neighbour discovery are exempt so that a test asking for N%
// loss gets N% loss on its probes, not a compounded figure from failed
// neighbour resolution. It replaces any other ingress fault on iface.
func (h *Host) Loss(t testing.TB, iface string, percent int) {
	t.Helper()
	if percent < 0 || percent > 100 {
		t.Fatalf("nstest: Loss percent %d out of range 0-100", percent)
	}
	rules := []string{
		"meta protocol arp counter accept",
		"icmpv6 type " + ndTypes + " counter accept",
	}
	switch {
	case percent == 100:
		// numgen values are 0-99, so "< 100" is rejected by nft.
		rules = append(rules, "meta protocol { ip, ip6 } counter drop")
	case percent > 0:
		rules = append(rules, fmt.Sprintf("meta protocol { ip, ip6 } numgen random mod 100 < %d counter drop", percent))
	}
	h.setIngressFault(t, iface, rules)
}

// LinkDown sets iface administratively down in this namespace; the veth peer
// in the other namespace loses carrier (NO-CARRIER, oper state down), which is
// how a dead cable or switch port looks to the host.
func (h *Host) LinkDown(t testing.TB, iface string) {
	t.Helper()
	l, err := h.Handle.LinkByName(iface)
	if err == nil {
		err = h.Handle.LinkSetDown(l)
	}
	if err != nil {
		t.Fatalf("nstest: [%s] link down %s: %v", h.Name, iface, err)
	}
	h.mu.Lock()
	if h.faults.down == nil {
		h.faults.down = map[string]bool{}
	}
	h.faults.down[iface] = true
	h.mu.Unlock()
}

// LinkUp reverts LinkDown.
func (h *Host) LinkUp(t testing.TB, iface string) {
	t.Helper()
	l, err := h.Handle.LinkByName(iface)
	if err == nil {
		err = h.Handle.LinkSetUp(l)
	}
	if err != nil {
		t.Fatalf("nstest: [%s] link up %s: %v", h.Name, iface, err)
	}
	h.mu.Lock()
	delete(h.faults.down, iface)
	h.mu.Unlock()
}

// Recover undoes every fault injected on this host: the fault table is
// deleted, ARP turned back on and downed links set up again.
func (h *Host) Recover(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	hadNft := len(h.faults.chains) > 0
	arpOff := sortedKeys(h.faults.arpOff)
	down := sortedKeys(h.faults.down)
	h.faults = faultState{}
	h.mu.Unlock()

	if hadNft {
		if out, err := h.Run("nft", "delete", "table", "netdev", FaultTable); err != nil {
			t.Fatalf("nstest: [%s] removing fault table: %v\n%s", h.Name, err, out)
		}
	}
	for _, iface := range arpOff {
		l, err := h.Handle.LinkByName(iface)
		if err == nil {
			err = h.Handle.LinkSetARPOn(l)
		}
		if err != nil {
			t.Fatalf("nstest: [%s] arp on %s: %v", h.Name, iface, err)
		}
	}
	for _, iface := range down {
		h.LinkUp(t, iface)
	}
}

// FaultRuleset returns the current fault table as nft prints it (empty if
// none), for debugging failed tests.
func (h *Host) FaultRuleset() string {
	out, err := h.Run("nft", "list", "table", "netdev", FaultTable)
	if err != nil {
		return ""
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

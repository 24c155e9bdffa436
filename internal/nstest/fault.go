package nstest

import (
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// FaultTable is the nftables table (family netdev) holding every fault the
// harness injects into a namespace (see netlab.FaultTable).
const FaultTable = netlab.FaultTable

func (h *Host) must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
}

// BlackholeIP drops every IPv4 and IPv6 packet arriving on iface, except ARP
// and ICMPv6 neighbour discovery, while the carrier stays up: the "gateway is
// alive at layer 2 but black-holes traffic" failure the detector exists for.
// It replaces any other ingress fault on iface.
func (h *Host) BlackholeIP(t testing.TB, iface string) {
	t.Helper()
	h.must(t, h.Host.BlackholeIP(iface))
}

// BlackholeIP6 drops every IPv6 packet arriving on iface except neighbour
// discovery; IPv4 keeps flowing. It replaces any other ingress fault.
func (h *Host) BlackholeIP6(t testing.TB, iface string) {
	t.Helper()
	h.must(t, h.Host.BlackholeIP6(iface))
}

// BlackholeARP drops everything arriving on iface, including ARP and ND,
// and turns ARP off on it. Neighbour entries pointing at this host will go
// FAILED. It replaces any other ingress fault on iface.
func (h *Host) BlackholeARP(t testing.TB, iface string) {
	t.Helper()
	h.must(t, h.Host.BlackholeARP(iface))
}

// Loss drops percent% (0-100) of the IPv4/IPv6 packets arriving on iface at
// random; ARP and neighbour discovery are exempt. It replaces any other
// ingress fault on iface.
func (h *Host) Loss(t testing.TB, iface string, percent int) {
	t.Helper()
	h.must(t, h.Host.Loss(iface, percent))
}

// LinkDown sets iface administratively down in this namespace; the veth peer
// in the other namespace loses carrier (NO-CARRIER, oper state down).
func (h *Host) LinkDown(t testing.TB, iface string) {
	t.Helper()
	h.must(t, h.Host.LinkDown(iface))
}

// LinkUp reverts LinkDown.
func (h *Host) LinkUp(t testing.TB, iface string) {
	t.Helper()
	h.must(t, h.Host.LinkUp(iface))
}

// Flap takes iface down and up every period for duration, in the
// background, leaving it up; Recover stops it early.
func (h *Host) Flap(t testing.TB, iface string, period, duration time.Duration) {
	t.Helper()
	h.must(t, h.Host.Flap(iface, period, duration))
}

// Recover undoes every fault injected on this host: flapping stops, the
// fault table is deleted, ARP turned back on and downed links set up again.
func (h *Host) Recover(t testing.TB) {
	t.Helper()
	h.must(t, h.Host.Recover())
}

package netlab

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// FaultTable is the nftables table (family netdev) holding every fault
// injected into a namespace. One fixed name lets Recover remove all faults
// with a single `nft delete table`, and since it exists only inside lab
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
	flaps  map[string]*flap  // ifaces being flapped
}

// flap is a goroutine toggling a link, owned by its Host.
type flap struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (f *flap) halt() {
	f.once.Do(func() { close(f.stop) })
	<-f.done
}

func nftBinary() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("faults need the nft binary (apt-get install -y nftables): %w", err)
	}
	return nil
}

// chainName maps an interface to an nft identifier. Interface names may
// contain characters nft identifiers cannot, so they are sanitised; a
// collision between two sanitised names gets a numeric suffix. Call with
// h.mu held.
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

// setIngressFault replaces the ingress fault on iface with rules. A netdev
// ingress hook filters before the IP stack, ARP and bridging see the
// packet, so exactly "what arrives on this wire" is affected and routing
// decisions in the namespace do not matter.
func (h *Host) setIngressFault(iface string, rules []string) error {
	if err := nftBinary(); err != nil {
		return err
	}
	if err := validIfName(iface); err != nil {
		return fmt.Errorf("[%s] %w", h.Name, err)
	}
	if _, err := h.Handle.LinkByName(iface); err != nil {
		return fmt.Errorf("[%s] fault on %s: %w", h.Name, iface, err)
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
		return fmt.Errorf("[%s] nft: %v\n%s\nruleset:\n%s", h.Name, err, out, sb.String())
	}
	return nil
}

// BlackholeIP drops every IPv4 and IPv6 packet arriving on iface, except ARP
// and ICMPv6 neighbour discovery, while the carrier stays up: the "gateway is
// alive at layer 2 but black-holes traffic" failure the detector exists for.
// It replaces any other ingress fault on iface.
func (h *Host) BlackholeIP(iface string) error {
	return h.setIngressFault(iface, []string{
		"meta protocol arp counter accept",
		"icmpv6 type " + ndTypes + " counter accept",
		"meta protocol { ip, ip6 } counter drop",
	})
}

// BlackholeIP6 is BlackholeIP for IPv6 only: IPv4 keeps flowing, the
// dual-stack gateway whose IPv6 side dies on its own.
func (h *Host) BlackholeIP6(iface string) error {
	return h.setIngressFault(iface, []string{
		"icmpv6 type " + ndTypes + " counter accept",
		"meta protocol ip6 counter drop",
	})
}

// BlackholeARP drops everything arriving on iface, including ARP and ND,
// and turns ARP off on it (so the namespace stops resolving and answering
// neighbours on that side too). Neighbour entries pointing at this host
// will go FAILED. It replaces any other ingress fault on iface.
func (h *Host) BlackholeARP(iface string) error {
	if err := h.setIngressFault(iface, []string{"counter drop"}); err != nil {
		return err
	}
	l, err := h.Handle.LinkByName(iface)
	if err == nil {
		err = h.Handle.LinkSetARPOff(l)
	}
	if err != nil {
		return fmt.Errorf("[%s] turning arp off on %s: %w", h.Name, iface, err)
	}
	h.mu.Lock()
	if h.faults.arpOff == nil {
		h.faults.arpOff = map[string]bool{}
	}
	h.faults.arpOff[iface] = true
	h.mu.Unlock()
	return nil
}

// Loss drops percent% (0-100) of the IPv4/IPv6 packets arriving on iface at
// random, with nft numgen (this kernel class has no netem qdisc). ARP and
// neighbour discovery are exempt so that N% loss means N% loss on the
// traffic, not a compounded figure from failed neighbour resolution. It
// replaces any other ingress fault on iface.
func (h *Host) Loss(iface string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("loss percent %d out of range 0-100", percent)
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
	return h.setIngressFault(iface, rules)
}

// LinkDown sets iface administratively down in this namespace; the veth peer
// in the other namespace loses carrier (NO-CARRIER, oper state down), which is
// how a dead cable or switch port looks to the other side.
func (h *Host) LinkDown(iface string) error {
	if err := h.setLink(iface, false); err != nil {
		return err
	}
	h.mu.Lock()
	if h.faults.down == nil {
		h.faults.down = map[string]bool{}
	}
	h.faults.down[iface] = true
	h.mu.Unlock()
	return nil
}

// LinkUp reverts LinkDown.
func (h *Host) LinkUp(iface string) error {
	if err := h.setLink(iface, true); err != nil {
		return err
	}
	h.mu.Lock()
	delete(h.faults.down, iface)
	h.mu.Unlock()
	return nil
}

func (h *Host) setLink(iface string, up bool) error {
	if h.Handle == nil {
		return fmt.Errorf("[%s] namespace closed", h.Name)
	}
	l, err := h.Handle.LinkByName(iface)
	if err == nil {
		if up {
			err = h.Handle.LinkSetUp(l)
		} else {
			err = h.Handle.LinkSetDown(l)
		}
	}
	if err != nil {
		state := "down"
		if up {
			state = "up"
		}
		return fmt.Errorf("[%s] setting %s %s: %w", h.Name, iface, state, err)
	}
	return nil
}

// Flap takes iface down and up again every period (down for one period, up
// for the next) until duration has passed, Recover is called or the lab is
// closed, whichever comes first; the link is left up. It returns at once:
// the flapping runs on a goroutine owned by the host. A second Flap on the
// same interface replaces the first.
func (h *Host) Flap(iface string, period, duration time.Duration) error {
	if period <= 0 || duration <= 0 {
		return fmt.Errorf("flap period %v and duration %v must be positive", period, duration)
	}
	if _, err := h.Handle.LinkByName(iface); err != nil {
		return fmt.Errorf("[%s] flapping %s: %w", h.Name, iface, err)
	}
	h.stopFlap(iface)
	f := &flap{stop: make(chan struct{}), done: make(chan struct{})}
	h.mu.Lock()
	if h.faults.flaps == nil {
		h.faults.flaps = map[string]*flap{}
	}
	h.faults.flaps[iface] = f
	h.mu.Unlock()
	if err := h.setLink(iface, false); err != nil {
		close(f.done)
		h.stopFlap(iface)
		return err
	}
	go func() {
		defer close(f.done)
		// Always end with the link up: a flap is a transient fault.
		defer func() { _ = h.setLink(iface, true) }()
		tick := time.NewTicker(period)
		defer tick.Stop()
		end := time.NewTimer(duration)
		defer end.Stop()
		down := true
		for {
			select {
			case <-f.stop:
				return
			case <-end.C:
				return
			case <-tick.C:
				down = !down
				_ = h.setLink(iface, !down)
			}
		}
	}()
	return nil
}

// FlapDone returns a channel closed when the flapping of iface has ended
// (nil if it is not flapping).
func (h *Host) FlapDone(iface string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f := h.faults.flaps[iface]; f != nil {
		return f.done
	}
	return nil
}

func (h *Host) stopFlap(iface string) {
	h.mu.Lock()
	f := h.faults.flaps[iface]
	delete(h.faults.flaps, iface)
	h.mu.Unlock()
	if f != nil {
		f.halt()
	}
}

func (h *Host) stopFlaps() {
	h.mu.Lock()
	flaps := h.faults.flaps
	h.faults.flaps = nil
	h.mu.Unlock()
	for _, f := range flaps {
		f.halt()
	}
}

// Recover undoes every fault injected on this host: flapping stops, the
// fault table is deleted, ARP is turned back on and downed links are set up
// again.
func (h *Host) Recover() error {
	h.stopFlaps()
	h.mu.Lock()
	hadNft := len(h.faults.chains) > 0
	arpOff := sortedKeys(h.faults.arpOff)
	down := sortedKeys(h.faults.down)
	h.faults = faultState{}
	h.mu.Unlock()

	if hadNft {
		if out, err := h.Run("nft", "delete", "table", "netdev", FaultTable); err != nil {
			return fmt.Errorf("[%s] removing fault table: %v\n%s", h.Name, err, out)
		}
	}
	for _, iface := range arpOff {
		l, err := h.Handle.LinkByName(iface)
		if err == nil {
			err = h.Handle.LinkSetARPOn(l)
		}
		if err != nil {
			return fmt.Errorf("[%s] turning arp on on %s: %w", h.Name, iface, err)
		}
	}
	for _, iface := range down {
		if err := h.LinkUp(iface); err != nil {
			return err
		}
	}
	return nil
}

// FaultRuleset returns the current fault table as nft prints it (empty if
// none), for debugging.
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

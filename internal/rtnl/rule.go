package rtnl

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

const (
	sizeofFibRuleHdr = 12
	frActToTbl       = 1 // FR_ACT_TO_TBL
	fraProtocol      = 21
)

// Rule is an ip rule that looks up a table, as uplinkd writes them.
// Selectors left zero are absent; Mask == 0 means no fwmark selector.
type Rule struct {
	Family   uint8 // unix.AF_INET or AF_INET6
	Priority uint32
	Src      netip.Prefix
	Dst      netip.Prefix
	Mark     uint32
	Mask     uint32
	IIF      string
	Table    uint32
	Protocol uint8
}

// MarshalRule encodes the fib_rule_hdr and attributes of a RTM_NEWRULE or
// RTM_DELRULE request. A delete carries every selector and the protocol,
// so the kernel removes this rule and never another program's rule at the
// same priority.
func MarshalRule(r Rule) ([]byte, error) {
	hdr := make([]byte, sizeofFibRuleHdr)
	hdr[0] = r.Family
	if r.Table < 256 {
		hdr[4] = uint8(r.Table)
	}
	hdr[7] = frActToTbl
	ae := netlink.NewAttributeEncoder()
	for _, sel := range []struct {
		p   netip.Prefix
		typ uint16
		off int
	}{{r.Dst, unix.FRA_DST, 1}, {r.Src, unix.FRA_SRC, 2}} {
		if !sel.p.IsValid() || sel.p.Bits() == 0 {
			continue
		}
		if (r.Family == unix.AF_INET) != sel.p.Addr().Is4() {
			return nil, fmt.Errorf("encoding rule %d: selector %s does not match family %d", r.Priority, sel.p, r.Family)
		}
		hdr[sel.off] = uint8(sel.p.Bits())
		ae.Bytes(sel.typ, sel.p.Masked().Addr().AsSlice())
	}
	ae.Uint32(unix.FRA_PRIORITY, r.Priority)
	if r.Mask != 0 {
		ae.Uint32(unix.FRA_FWMARK, r.Mark)
		ae.Uint32(unix.FRA_FWMASK, r.Mask)
	}
	ae.Uint32(unix.FRA_TABLE, r.Table)
	if r.IIF != "" {
		ae.String(unix.FRA_IIFNAME, r.IIF)
	}
	if r.Protocol != 0 {
		ae.Uint8(fraProtocol, r.Protocol)
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encoding rule %d: %w", r.Priority, err)
	}
	return append(hdr, attrs...), nil
}

// RuleRequest builds the RTM_NEWRULE request that adds r. Rules have no
// replace; an add of a rule that exists is EEXIST.
func RuleRequest(r Rule) (Request, error) {
	b, err := MarshalRule(r)
	if err != nil {
		return Request{}, err
	}
	return Request{Type: unix.RTM_NEWRULE, Flags: FlagsAdd, Data: b, What: fmt.Sprintf("adding rule %d", r.Priority)}, nil
}

// RuleDeleteRequest builds the RTM_DELRULE request for r.
func RuleDeleteRequest(r Rule) (Request, error) {
	b, err := MarshalRule(r)
	if err != nil {
		return Request{}, err
	}
	return Request{Type: unix.RTM_DELRULE, Data: b, What: fmt.Sprintf("deleting rule %d", r.Priority)}, nil
}

// fraL3mdev is FRA_L3MDEV: the rule looks up the table of the flow's VRF
// (ip rule add l3mdev), the rule that makes VRFs route by their tables.
const fraL3mdev = 19

// L3mdevFamilies dumps the rules of both families and says which have an
// l3mdev rule (unix.AF_INET, AF_INET6), whoever added it: the kernel
// adds one at priority 1000 with its first VRF, and operators move it.
func (c *Conn) L3mdevFamilies() (map[uint8]bool, error) {
	bodies, err := c.dump(unix.RTM_GETRULE, make([]byte, sizeofFibRuleHdr))
	if err != nil {
		return nil, fmt.Errorf("dumping rules: %w", err)
	}
	out := map[uint8]bool{}
	for _, b := range bodies {
		if len(b) < sizeofFibRuleHdr {
			return nil, fmt.Errorf("decoding rule: %d bytes", len(b))
		}
		ad, err := netlink.NewAttributeDecoder(b[sizeofFibRuleHdr:])
		if err != nil {
			return nil, fmt.Errorf("decoding rule: %w", err)
		}
		for ad.Next() {
			if ad.Type() == fraL3mdev && ad.Uint8() != 0 {
				out[b[0]] = true
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decoding rule: %w", err)
		}
	}
	return out, nil
}

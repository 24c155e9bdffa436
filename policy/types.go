package policy

import (
	"encoding"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Reserved routing table numbers (linux/rtnetlink.h). uplinkd never lets a
// gateway own one of these, because the kernel or iproute2 already give them
// a meaning.
const (
	TableUnspec  = 0
	TableDefault = 253
	TableMain    = 254
	TableLocal   = 255
)

// Weight is a multipath nexthop weight. The kernel stores weight-1 in a
// byte (rtnh_hops), so 1..256 is the whole usable range.
type Weight int

func (w *Weight) UnmarshalText(b []byte) error {
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 0, 64)
	if err != nil {
		return fmt.Errorf("weight %q is not a whole number", b)
	}
	if n < 1 || n > 256 {
		return fmt.Errorf("weight %d is out of range 1..256", n)
	}
	*w = Weight(n)
	return nil
}

// Tier orders gateways in a group: the lowest tier with a healthy member
// carries all the traffic.
type Tier int

func (t *Tier) UnmarshalText(b []byte) error {
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 0, 64)
	if err != nil {
		return fmt.Errorf("tier %q is not a whole number", b)
	}
	if n < 0 || n > 255 {
		return fmt.Errorf("tier %d is out of range 0..255", n)
	}
	*t = Tier(n)
	return nil
}

// Table is a routing table reference as written: a number, or a name to be
// resolved against rt_tables. Resolution happens in validation, because
// Parse receives the name map through Options.
type Table struct {
	ID   uint32
	Name string // empty when written as a number
}

func (t *Table) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return fmt.Errorf("table name is empty")
	}
	if s[0] >= '0' && s[0] <= '9' {
		n, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return fmt.Errorf("table %q is not a number in 0..4294967295 or a name", s)
		}
		*t = Table{ID: uint32(n)}
		return nil
	}
	if s[0] == '-' {
		return fmt.Errorf("table %s is negative", s)
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("table name %q has a character rt_tables cannot hold", s)
		}
	}
	*t = Table{Name: s}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("250ms",
// "2s", "1m30s"). Bare numbers are refused: "interval = 5" is ambiguous.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q is not valid (use units, e.g. \"250ms\" or \"2s\")", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// Ratio is a fraction in 0..1, written either as a TOML float (0.05) or as a
// percentage string ("5%").
type Ratio float64

func (r *Ratio) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("ratio %q is not a number or a percentage", s)
	}
	if pct {
		v /= 100
	}
	if v < 0 || v > 1 {
		return fmt.Errorf("ratio %s is out of range 0..1 (0%%..100%%)", s)
	}
	*r = Ratio(v)
	return nil
}

// Addr is an IP address without a zone unless it is link-local.
type Addr struct{ netip.Addr }

func (a *Addr) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("address %q is not an IPv4 or IPv6 address", s)
	}
	if v.Is4In6() {
		v = v.Unmap()
	}
	if v.IsUnspecified() || v.IsMulticast() {
		return fmt.Errorf("address %s cannot be used here", v)
	}
	a.Addr = v
	return nil
}

// GatewayAddr is a gateway's address: an IP address, or "auto" for one
// learned from the interface (the default route a DHCP client, the
// kernel from router advertisements, or pppd installed there).
type GatewayAddr struct {
	Addr
	Auto bool
}

func (a *GatewayAddr) UnmarshalText(b []byte) error {
	if strings.TrimSpace(string(b)) == "auto" {
		*a = GatewayAddr{Auto: true}
		return nil
	}
	a.Auto = false
	return a.Addr.UnmarshalText(b)
}

// Prefix is an IP prefix; a bare address means a host prefix (/32, /128),
// as ip rule's "from 198.18.1.2" does.
type Prefix struct{ netip.Prefix }

func (p *Prefix) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "default" {
		return fmt.Errorf("prefix \"default\" is ambiguous: write 0.0.0.0/0 or ::/0")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("prefix %q is not an address or a prefix", s)
		}
		p.Prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return nil
	}
	v, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("prefix %q is not valid", s)
	}
	if v != v.Masked() {
		return fmt.Errorf("prefix %s has host bits set (did you mean %s?)", s, v.Masked())
	}
	p.Prefix = v
	return nil
}

// Mark is a firewall mark with an optional mask, written "0x10" or
// "0x10/0xff" as ip rule does.
type Mark struct {
	Value uint32
	Mask  uint32 // 0xffffffff when no mask was written
}

func (m *Mark) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	val, mask, hasMask := strings.Cut(s, "/")
	v, err := strconv.ParseUint(val, 0, 32)
	if err != nil {
		return fmt.Errorf("fwmark %q is not a 32-bit number", s)
	}
	m.Value, m.Mask = uint32(v), math.MaxUint32
	if hasMask {
		mk, err := strconv.ParseUint(mask, 0, 32)
		if err != nil {
			return fmt.Errorf("fwmark mask %q is not a 32-bit number", mask)
		}
		m.Mask = uint32(mk)
	}
	if m.Value&^m.Mask != 0 {
		return fmt.Errorf("fwmark %s has bits outside its mask", s)
	}
	return nil
}

func (m Mark) String() string {
	if m.Mask == math.MaxUint32 {
		return fmt.Sprintf("0x%x", m.Value)
	}
	return fmt.Sprintf("0x%x/0x%x", m.Value, m.Mask)
}

// PriorityBand is the inclusive range of ip rule priorities that uplinkd
// owns, written "1000-1999".
type PriorityBand struct{ Min, Max uint32 }

func (p *PriorityBand) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
	z, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("rule priority band %q is not of the form \"1000-1999\"", s)
	}
	if a < 1 || z > 32765 || a > z {
		return fmt.Errorf("rule priority band %s must lie within 1..32765, low to high (0, 32766 and 32767 hold the kernel's own rules)", s)
	}
	p.Min, p.Max = uint32(a), uint32(z)
	return nil
}

// Uint8 is a small integer such as a route protocol number.
type Uint8 uint8

func (u *Uint8) UnmarshalText(b []byte) error {
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 8)
	if err != nil {
		return fmt.Errorf("%q is not a number in 0..255", b)
	}
	*u = Uint8(n)
	return nil
}

// Uint32 is a non-negative number such as a metric or a rule priority.
type Uint32 uint32

func (u *Uint32) UnmarshalText(b []byte) error {
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32)
	if err != nil {
		return fmt.Errorf("%q is not a number in 0..4294967295", b)
	}
	*u = Uint32(n)
	return nil
}

// Count is a positive counter threshold such as down_count.
type Count int

func (c *Count) UnmarshalText(b []byte) error {
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 0, 64)
	if err != nil || n < 1 || n > 1000 {
		return fmt.Errorf("count %s is out of range 1..1000", strings.TrimSpace(string(b)))
	}
	*c = Count(n)
	return nil
}

// Float is a non-negative number such as a damping penalty.
type Float float64

func (f *Float) UnmarshalText(b []byte) error {
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s is not a non-negative number", strings.TrimSpace(string(b)))
	}
	*f = Float(v)
	return nil
}

// Bool accepts TOML booleans only; it exists so that a wrong type is a
// positioned, collected error like every other field.
type Bool bool

func (v *Bool) UnmarshalText(b []byte) error {
	switch strings.TrimSpace(string(b)) {
	case "true":
		*v = true
	case "false":
		*v = false
	default:
		return fmt.Errorf("%q is not true or false", b)
	}
	return nil
}

// enumText checks b against the allowed values of an enum type, so the
// error carries the key's position like any other bad value.
func enumText[E ~string](key string, b []byte, choices ...E) (E, error) {
	s := E(strings.TrimSpace(string(b)))
	if slices.Contains(choices, s) {
		return s, nil
	}
	names := make([]string, len(choices))
	for i, c := range choices {
		names[i] = string(c)
	}
	return "", fmt.Errorf("%s %q is not one of %s", key, s, strings.Join(names, ", "))
}

func (g *Gating) UnmarshalText(b []byte) (err error) {
	*g, err = enumText("gating", b, GatingGated, GatingAlways, GatingNever)
	return err
}

func (p *Pin) UnmarshalText(b []byte) (err error) {
	*p, err = enumText("pin", b, PinDevice, PinSource, PinMark)
	return err
}

func (o *OnDown) UnmarshalText(b []byte) (err error) {
	*o, err = enumText("on_down", b, TableKeep, TableFailover)
	return err
}

func (l *LastResort) UnmarshalText(b []byte) (err error) {
	*l, err = enumText("last_resort", b, LastResortKeep, LastResortUnreachable, LastResortBlackhole, LastResortRemove)
	return err
}

// Word is a free-form identifier-like string (interface names, enums).
// Enum membership is checked in validation so the message can list choices.
type Word string

func (w *Word) UnmarshalText(b []byte) error { *w = Word(strings.TrimSpace(string(b))); return nil }

// textField wraps a value whose UnmarshalText may fail, so that decoding
// goes on past a bad value and validation can report every problem at once,
// each with the key's position. It implements toml.Unmarshaler rather than
// encoding.TextUnmarshaler so that a value of the wrong TOML type (an array
// where a weight belongs) is collected too instead of aborting the decode.
type textField[T any, PT interface {
	*T
	encoding.TextUnmarshaler
}] struct {
	V   T
	Set bool
	Err error
	Raw string
}

func (f *textField[T, PT]) UnmarshalTOML(data any) error {
	f.Set = true
	switch d := data.(type) {
	case string:
		f.Raw = d
	case int64:
		f.Raw = strconv.FormatInt(d, 10)
	case float64:
		f.Raw = strconv.FormatFloat(d, 'g', -1, 64)
	case bool:
		f.Raw = strconv.FormatBool(d)
	case []any, []map[string]any:
		f.Err = fmt.Errorf("value must be a single string, number or boolean, not an array")
		return nil
	case map[string]any:
		f.Err = fmt.Errorf("value must be a single string, number or boolean, not a table")
		return nil
	default:
		f.Err = fmt.Errorf("value must be a single string, number or boolean, not a %T", data)
		return nil
	}
	var v T
	if err := PT(&v).UnmarshalText([]byte(f.Raw)); err != nil {
		f.Err = err
		return nil
	}
	f.V = v
	return nil
}

// FlushConntrack says when uplinkd deletes a gateway's conntrack entries:
// those whose reply direction targets the uplink (see Conntrack).
type FlushConntrack string

const (
	// FlushNever leaves conntrack alone (the default): uplinkd deletes
	// kernel state it does not own only where the policy asks for it.
	FlushNever FlushConntrack = "never"
	// FlushOnDown flushes right after the gateway's routes are withdrawn,
	// so the next packet of each flow is NATed again through the uplink
	// that now carries it. Needed with `snat to`: the kernel keeps that
	// mapping for as long as the flow keeps sending.
	FlushOnDown FlushConntrack = "on_down"
	// FlushOnUp flushes right after the gateway's routes are back: for
	// entries of the uplink that outlived its outage.
	FlushOnUp FlushConntrack = "on_up"
	// FlushBoth is on_down and on_up.
	FlushBoth FlushConntrack = "both"
)

func (f *FlushConntrack) UnmarshalText(b []byte) (err error) {
	*f, err = enumText("flush_conntrack", b, FlushNever, FlushOnDown, FlushOnUp, FlushBoth)
	return err
}

// OnDown reports whether entries are flushed when the gateway goes down.
func (f FlushConntrack) OnDown() bool { return f == FlushOnDown || f == FlushBoth }

// OnUp reports whether entries are flushed when the gateway comes back.
func (f FlushConntrack) OnUp() bool { return f == FlushOnUp || f == FlushBoth }

// Buckets is the bucket count of a resilient nexthop group.
type Buckets int

func (n *Buckets) UnmarshalText(b []byte) error {
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 0, 64)
	if err != nil || v < 2 || v > 4096 {
		return fmt.Errorf("buckets %s is out of range 2..4096", strings.TrimSpace(string(b)))
	}
	*n = Buckets(v)
	return nil
}

// Multipath is how group defaults are installed ([daemon] multipath).
type Multipath string

const (
	// MultipathAuto (the default) is MultipathGroups on a host that
	// forwards every family its groups route, MultipathClassic on one
	// that does not. The daemon decides at start (internal/daemon,
	// multipathForm): a router's forwarded flows gain from resilient
	// groups, a host's own connections need classic multipath, the only
	// form whose nexthop choice honours the source address they picked.
	MultipathAuto Multipath = "auto"
	// MultipathClassic is one RTA_MULTIPATH route per group.
	MultipathClassic Multipath = "classic"
	// MultipathGroups uses kernel nexthop objects, resilient groups where
	// the kernel has them (Linux 5.13+), falling back to plain nexthop
	// groups and then to classic routes.
	MultipathGroups Multipath = "groups"
)

func (m *Multipath) UnmarshalText(b []byte) (err error) {
	*m, err = enumText("multipath", b, MultipathAuto, MultipathClassic, MultipathGroups)
	return err
}

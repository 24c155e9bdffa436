package rtnl

import (
	"net"
	"net/netip"
	"testing"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BenchmarkRules adds and deletes 10,000 source rules in a namespace:
// pipelined (Batch), one request and one ACK at a time through the same
// socket (Do), and through vishvananda/netlink as the reconciler did. The
// kernel's own cost (a rule list walk per add) is in all three; the
// difference is the round trips. Adds go in descending priority, which
// makes the kernel's insertion walk stop at once.
func BenchmarkRules(b *testing.B) {
	const n = 10000
	lab := nstest.New(b)
	h := lab.Host("bench")
	c, err := Dial(h.NsHandle())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rules := make([]Rule, n)
	for i := range rules {
		src := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(i%250 + 1)}), 32)
		rules[n-1-i] = Rule{Family: unix.AF_INET, Priority: uint32(1000 + i), Src: src, Table: uint32(10000 + i/10), Protocol: 212}
	}
	var adds, dels []Request
	for _, r := range rules {
		a, _ := RuleRequest(r)
		d, _ := RuleDeleteRequest(r)
		adds, dels = append(adds, a), append(dels, d)
	}
	check := func(errs []error) {
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("batch", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			check(c.Batch(adds))
			b.StopTimer()
			check(c.Batch(dels))
			b.StartTimer()
		}
	})
	b.Run("one-at-a-time", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, r := range adds {
				if err := c.Do(r); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			check(c.Batch(dels))
			b.StartTimer()
		}
	})
	b.Run("vishvananda", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, r := range rules {
				nr := netlink.NewRule()
				nr.Family, nr.Priority, nr.Table, nr.Protocol = unix.AF_INET, int(r.Priority), int(r.Table), r.Protocol
				nr.Src = &net.IPNet{IP: r.Src.Addr().AsSlice(), Mask: net.CIDRMask(r.Src.Bits(), 32)}
				if err := h.Handle.RuleAdd(nr); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			check(c.Batch(dels))
			b.StartTimer()
		}
	})
}

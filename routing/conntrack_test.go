package routing

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeConntrack holds entries and deletes through the same predicate the
// kernel adapter hands to the library.
type fakeConntrack struct {
	addrs   map[string][]netip.Addr
	entries []ConntrackEntry
	dumps   int
	err     error
}

func (f *fakeConntrack) InterfaceAddrs(iface string, family int) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range f.addrs[iface] {
		if (family == 4) == a.Is4() {
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *fakeConntrack) DeleteConntrack(family int, match func(ConntrackEntry) bool) (int, error) {
	f.dumps++
	if f.err != nil {
		return 0, f.err
	}
	n := 0
	kept := f.entries[:0]
	for _, e := range f.entries {
		if e.Family == family && match(e) {
			n++
			continue
		}
		kept = append(kept, e)
	}
	f.entries = kept
	return n, nil
}

func TestFlushConntrack(t *testing.T) {
	a := netip.MustParseAddr
	up1, up2 := a("198.18.61.2"), a("198.18.62.2")
	entries := func() []ConntrackEntry {
		return []ConntrackEntry{
			{Family: 4, Proto: 17, ReplyDst: up1, Mark: 0x100},
			{Family: 4, Proto: 6, ReplyDst: up1, Mark: 0x100},
			{Family: 4, Proto: 17, ReplyDst: up2, Mark: 0x200},
			{Family: 4, Proto: 17, ReplyDst: a("198.18.50.2"), Mark: 0x180}, // inbound to the LAN, same mark under 0xff00
			{Family: 6, Proto: 17, ReplyDst: a("2001:db8:61::2"), Mark: 0x100},
		}
	}
	tests := []struct {
		name  string
		scope ConntrackScope
		want  int
		left  []netip.Addr // reply destinations left, in order
		dumps int
	}{
		{"snat", ConntrackScope{Gateway: "g1", Family: 4, SNAT: []netip.Addr{up1}}, 2,
			[]netip.Addr{up2, a("198.18.50.2"), a("2001:db8:61::2")}, 1},
		{"mark under mask", ConntrackScope{Gateway: "g1", Family: 4, Mark: 0x100, Mask: 0xff00}, 3,
			[]netip.Addr{up2, a("2001:db8:61::2")}, 1},
		{"exact mark", ConntrackScope{Gateway: "g1", Family: 4, Mark: 0x100, Mask: 0xffffffff}, 2,
			[]netip.Addr{up2, a("198.18.50.2"), a("2001:db8:61::2")}, 1},
		{"interface", ConntrackScope{Gateway: "g1", Family: 4, Interface: "up1"}, 2,
			[]netip.Addr{up2, a("198.18.50.2"), a("2001:db8:61::2")}, 1},
		{"ipv6 interface", ConntrackScope{Gateway: "g1v6", Family: 6, Interface: "up1"}, 1,
			[]netip.Addr{up1, up1, up2, a("198.18.50.2")}, 1},
		{"interface without addresses dumps nothing", ConntrackScope{Gateway: "g9", Family: 4, Interface: "up9"}, 0,
			[]netip.Addr{up1, up1, up2, a("198.18.50.2"), a("2001:db8:61::2")}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := &fakeConntrack{addrs: map[string][]netip.Addr{"up1": {up1, a("2001:db8:61::2")}}, entries: entries()}
			n, err := FlushConntrack(ct, tt.scope)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Errorf("flushed %d, want %d", n, tt.want)
			}
			var left []netip.Addr
			for _, e := range ct.entries {
				left = append(left, e.ReplyDst)
			}
			if diff := cmp.Diff(tt.left, left, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("entries left (-want +got):\n%s", diff)
			}
			if ct.dumps != tt.dumps {
				t.Errorf("%d dumps, want %d", ct.dumps, tt.dumps)
			}
		})
	}
}

func TestFlushConntrackError(t *testing.T) {
	ct := &fakeConntrack{err: errors.New("boom")}
	_, err := FlushConntrack(ct, ConntrackScope{Gateway: "g1", Family: 4, SNAT: []netip.Addr{netip.MustParseAddr("198.18.61.2")}})
	if err == nil || err.Error() != "flushing conntrack of gateway g1 (by snat): boom" {
		t.Errorf("error = %v", err)
	}
}

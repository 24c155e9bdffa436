package daemon

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOffLink(t *testing.T) {
	p := mustParse(t, `
[gateway.dhcp]
address = "198.18.1.1"
interface = "eth1"
[gateway.ppp]
address = "198.18.9.1"
interface = "ppp0"
[gateway.ra]
address = "fe80::1"
interface = "eth2"
[gateway.v6]
address = "2001:db8:2::1"
interface = "eth2"
[gateway.late]
address = "198.18.3.1"
interface = "eth3"
[group.wan]
gateways = ["dhcp", "ppp", "late"]
[group.wan6]
gateways = ["ra", "v6"]
`)
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name   string
		onlink map[string][]netip.Prefix
		want   map[string]string
	}{
		{"all on-link", map[string][]netip.Prefix{
			"eth1": {pfx("198.18.1.0/24")}, "ppp0": {pfx("198.18.9.1/32")}, "eth2": {pfx("2001:db8:2::/64")},
		}, map[string]string{}},
		{"lease released, no IPv6 global address; eth3 absent is not a hold", map[string][]netip.Prefix{
			"eth1": nil, "ppp0": {pfx("198.18.9.1/32")}, "eth2": {pfx("fe80::/64")},
		}, map[string]string{
			"dhcp": "198.18.1.1 is not on-link on eth1 (no address in its subnet)",
			"v6":   "2001:db8:2::1 is not on-link on eth2 (no address in its subnet)",
		}},
		{"a new lease in another subnet", map[string][]netip.Prefix{
			"eth1": {pfx("198.18.100.0/24")}, "ppp0": {pfx("198.18.9.1/32")}, "eth2": {pfx("2001:db8:2::/64")}, "eth3": {pfx("198.18.3.0/24")},
		}, map[string]string{"dhcp": "198.18.1.1 is not on-link on eth1 (no address in its subnet)"}},
	} {
		if d := cmp.Diff(tc.want, offLink(p, tc.onlink)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

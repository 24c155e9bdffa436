package policy

import (
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProbeKindsParse(t *testing.T) {
	data, err := os.ReadFile("../testdata/probe-kinds.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("probe-kinds.toml", data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	eq := cmp.Options{cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })}
	g := p.Gateway("isp1")
	wantHTTP := []HTTPCheck{
		{URL: "http://198.18.100.80/health", Addr: netip.MustParseAddrPort("198.18.100.80:80"), RequestURI: "/health",
			Status: 204, ServerName: "probe.example.net", CAFile: "/etc/uplinkd/probe-ca.pem"},
		{URL: "https://198.18.100.80:8443/ready?full=1", Addr: netip.MustParseAddrPort("198.18.100.80:8443"), HTTPS: true,
			RequestURI: "/ready?full=1", Status: 204, ServerName: "probe.example.net", CAFile: "/etc/uplinkd/probe-ca.pem"},
	}
	if d := cmp.Diff(wantHTTP, g.Probe.HTTP, eq); d != "" {
		t.Errorf("http (-want +got):\n%s", d)
	}
	ans := netip.MustParseAddr("198.18.100.80")
	wantDNS := []DNSCheck{
		{Server: netip.MustParseAddrPort("198.18.100.53:53"), Name: "probe.example.net.", Type: "A", Answer: ans},
		{Server: netip.MustParseAddrPort("198.18.100.54:5353"), Name: "probe.example.net.", Type: "A", Answer: ans},
	}
	if d := cmp.Diff(wantDNS, g.Probe.DNS, eq); d != "" {
		t.Errorf("dns (-want +got):\n%s", d)
	}
	if n := g.Probe.Remotes(); n != 5 {
		t.Errorf("Remotes() = %d, want 5 (1 icmp, 2 http, 2 dns)", n)
	}
	g6 := p.Gateway("isp6")
	want6 := []DNSCheck{{Server: netip.MustParseAddrPort("[2001:db8:100::53]:53"), Name: "probe.example.net.", Type: "AAAA"}}
	if d := cmp.Diff(want6, g6.Probe.DNS, eq); d != "" {
		t.Errorf("dns on an IPv6 gateway (-want +got):\n%s", d)
	}
}

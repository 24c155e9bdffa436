package policy

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// HTTPCheck is one HTTP(S) GET probe: a request to Addr (the URL's host,
// an address, so that the probe goes where the route through the gateway
// goes, with no resolver in between) that must answer Status.
type HTTPCheck struct {
	URL        string // as written; the metrics' target label
	Addr       netip.AddrPort
	HTTPS      bool
	RequestURI string // path and query
	Status     int    // the status the answer must carry
	ServerName string // Host header and TLS name; the address if empty
	CAFile     string // PEM roots for HTTPS; the system's if empty
}

// DNSCheck is one DNS query probe: Name of type Type sent to Server, which
// must answer NOERROR with at least one record of that type, and Answer
// among them when Answer is set.
type DNSCheck struct {
	Server netip.AddrPort
	Name   string // fully qualified, with the trailing dot
	Type   string // "A" or "AAAA"
	Answer netip.Addr
}

// HTTPStatus is an HTTP status code, 100..599.
type HTTPStatus int

func (s *HTTPStatus) UnmarshalText(b []byte) error {
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 100 || n > 599 {
		return fmt.Errorf("HTTP status %s is not 100..599", strings.TrimSpace(string(b)))
	}
	*s = HTTPStatus(n)
	return nil
}

type fHTTPStatus = textField[HTTPStatus, *HTTPStatus]

// probeKinds validates the HTTP and DNS probe keys into g.Probe.
func (v *validator) probeKinds(r *rawProbe, g *Gateway, at func(...string) []string, obj string) {
	sameFamily := func(a netip.Addr) bool { return !g.hasFamily() || a.Unmap().Is4() == (g.Family() == 4) }
	status := 200
	if check(v, r.HTTPStatus, at("probe", "http_status"), obj) {
		status = int(r.HTTPStatus.V)
	}
	var serverName, caFile string
	if check(v, r.HTTPServerName, at("probe", "http_server_name"), obj) {
		serverName = string(r.HTTPServerName.V)
	}
	if check(v, r.HTTPCAFile, at("probe", "http_ca_file"), obj) {
		caFile = string(r.HTTPCAFile.V)
		if !strings.HasPrefix(caFile, "/") {
			v.addAt(at("probe", "http_ca_file"), obj, "http_ca_file %q must be an absolute path", caFile)
		}
	}
	for _, t := range r.HTTP {
		if !check(v, t, at("probe", "http"), obj) {
			continue
		}
		c, err := parseHTTPCheck(string(t.V))
		if err != nil {
			v.addAt(at("probe", "http"), obj, "http probe %q: %v", t.V, err)
			continue
		}
		if !sameFamily(c.Addr.Addr()) {
			v.addAt(at("probe", "http"), obj, "probe target %s is not of the gateway's address family", c.Addr.Addr())
			continue
		}
		c.Status, c.ServerName, c.CAFile = status, serverName, caFile
		g.Probe.HTTP = append(g.Probe.HTTP, c)
	}
	if len(g.Probe.HTTP) == 0 && (r.HTTPStatus.Set || r.HTTPServerName.Set || r.HTTPCAFile.Set) {
		v.addAt(at("probe"), obj, "http_status, http_server_name and http_ca_file need an http probe")
	}

	name := ""
	if check(v, r.DNSName, at("probe", "dns_name"), obj) {
		name = strings.ToLower(string(r.DNSName.V))
		if !strings.HasSuffix(name, ".") {
			name += "."
		}
		if len(name) > 254 || strings.Contains(name, "..") || name == "." {
			v.addAt(at("probe", "dns_name"), obj, "dns_name %q is not a domain name", r.DNSName.V)
		}
	}
	typ := "A"
	if g.hasFamily() && g.Family() == 6 {
		typ = "AAAA"
	}
	typ = v.enum(r.DNSType, at("probe", "dns_type"), obj, typ, "A", "AAAA")
	var answer netip.Addr
	if check(v, r.DNSAnswer, at("probe", "dns_answer"), obj) {
		answer = r.DNSAnswer.V.Addr.WithZone("")
		if answer.Is4() != (typ == "A") {
			v.addAt(at("probe", "dns_answer"), obj, "dns_answer %s cannot answer a query of type %s", answer, typ)
		}
	}
	for _, t := range r.DNS {
		if !check(v, t, at("probe", "dns"), obj) {
			continue
		}
		ap, err := parseHostPort(string(t.V), 53)
		if err != nil {
			v.addAt(at("probe", "dns"), obj, "dns probe server %q is not an address or address:port (IPv6 as [2001:db8::53]:53)", t.V)
			continue
		}
		if !sameFamily(ap.Addr()) {
			v.addAt(at("probe", "dns"), obj, "probe target %s is not of the gateway's address family", ap.Addr())
			continue
		}
		g.Probe.DNS = append(g.Probe.DNS, DNSCheck{Server: ap, Name: name, Type: typ, Answer: answer})
	}
	switch {
	case len(g.Probe.DNS) > 0 && name == "":
		v.addAt(at("probe", "dns"), obj, "a dns probe needs dns_name, the name it asks for")
	case len(g.Probe.DNS) == 0 && (r.DNSName.Set || r.DNSType.Set || r.DNSAnswer.Set):
		v.addAt(at("probe"), obj, "dns_name, dns_type and dns_answer need a dns probe")
	}
}

// parseHTTPCheck reads an http:// or https:// URL whose host is an
// address.
func parseHTTPCheck(s string) (HTTPCheck, error) {
	u, err := url.Parse(s)
	if err != nil {
		return HTTPCheck{}, fmt.Errorf("not a URL")
	}
	c := HTTPCheck{URL: s}
	port := uint16(80)
	switch u.Scheme {
	case "http":
	case "https":
		c.HTTPS, port = true, 443
	default:
		return c, fmt.Errorf("scheme must be http or https")
	}
	if u.User != nil || u.Fragment != "" {
		return c, fmt.Errorf("no user info or fragment")
	}
	if c.Addr, err = parseHostPort(u.Host, port); err != nil {
		return c, fmt.Errorf("the host must be an address (the probe must not depend on a resolver); set http_server_name for the Host header and TLS name")
	}
	c.RequestURI = u.RequestURI()
	return c, nil
}

// parseHostPort reads "addr", "addr:port", "v6" or "[v6]:port".
func parseHostPort(s string, def uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("not an address")
	}
	return netip.AddrPortFrom(a.Unmap(), def), nil
}

package detector

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/uplinkd/uplinkd/policy"
)

// dnsReply builds an answer to q with the given header changes and
// records.
func dnsReply(t *testing.T, id uint16, name string, typ dnsmessage.Type, rcode dnsmessage.RCode, trunc bool, rrs ...dnsmessage.Resource) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RCode: rcode, Truncated: trunc})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	b.StartAnswers()
	for _, rr := range rrs {
		switch body := rr.Body.(type) {
		case *dnsmessage.AResource:
			b.AResource(rr.Header, *body)
		case *dnsmessage.AAAAResource:
			b.AAAAResource(rr.Header, *body)
		case *dnsmessage.CNAMEResource:
			b.CNAMEResource(rr.Header, *body)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestDNSCheckAnswer(t *testing.T) {
	const name = "probe.example.net."
	n := dnsmessage.MustNewName(name)
	a := func(ip string) dnsmessage.Resource {
		return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET},
			Body: &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()}}
	}
	cname := dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: n, Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET},
		Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("elsewhere.example.net.")}}
	want := &policy.DNSCheck{Name: name, Type: "A", Answer: netip.MustParseAddr("198.18.100.80")}
	anyA := &policy.DNSCheck{Name: name, Type: "A"}
	for _, tc := range []struct {
		name   string
		check  *policy.DNSCheck
		msg    []byte
		ours   bool
		errHas string
	}{
		{"the expected answer", want, dnsReply(t, 7, name, dnsmessage.TypeA, dnsmessage.RCodeSuccess, false, a("198.18.100.9"), a("198.18.100.80")), true, ""},
		{"another ID is not ours", want, dnsReply(t, 8, name, dnsmessage.TypeA, dnsmessage.RCodeSuccess, false, a("198.18.100.80")), false, ""},
		{"another question is not ours", want, dnsReply(t, 7, "other.example.net.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, false, a("198.18.100.80")), false, ""},
		{"another type is not ours", want, dnsReply(t, 7, name, dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, false), false, ""},
		{"garbage is not ours", want, []byte{0, 7, 0x80}, false, ""},
		{"NXDOMAIN", want, dnsReply(t, 7, name, dnsmessage.TypeA, dnsmessage.RCodeNameError, false), true, "answered NameError"},
		{"SERVFAIL", anyA, dnsReply(t, 7, name, dnsmessage.TypeA, dnsmessage.RCodeServerFailure, false), true, "answered ServerFailure"},
		{"a CNAME alone", anyA, dnsReply(t, 7, name, dnsmessage.TypeA, dnsmessage.RCodeSuccess, false, cname), true, "no A record"},
		{"truncated, empty", anyA, dnsReply(t, 7, name, dnsmessage.TypeA, dnsmessage.RCodeSuccess, true), true, "truncated"},
		{"any A will do", anyA, dnsReply(t, 7, name, dnsmessage.TypeA, dnsmessage.RCodeSuccess, false, cname, a("198.18.100.9")), true, ""},
		{"the wrong address", want, dnsReply(t, 7, name, dnsmessage.TypeA, dnsmessage.RCodeSuccess, false, a("198.18.100.9")), true, "want 198.18.100.80"},
	} {
		ours, err := dnsCheckAnswer(tc.check, 7, tc.msg)
		if ours != tc.ours {
			t.Errorf("%s: ours = %v, want %v", tc.name, ours, tc.ours)
			continue
		}
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.errHas)
		}
	}
	// The query asks for what the check says, recursively.
	q, id, err := dnsQuery(&policy.DNSCheck{Name: name, Type: "AAAA"})
	if err != nil {
		t.Fatal(err)
	}
	var ps dnsmessage.Parser
	h, err := ps.Start(q)
	if err != nil || h.ID != id || !h.RecursionDesired || h.Response {
		t.Fatalf("query header %+v (%v)", h, err)
	}
	if qs, err := ps.AllQuestions(); err != nil || len(qs) != 1 || qs[0].Type != dnsmessage.TypeAAAA || qs[0].Name.String() != name {
		t.Errorf("query questions %v (%v)", qs, err)
	}
}

package detector

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/uplinkd/uplinkd/policy"
)

// probeDNS sends one query for t.DNS's name over a UDP socket pinned like
// every probe, and succeeds when the server answers NOERROR with a record
// of the asked type (and the expected address among them, when the policy
// names one). The socket is connected, so the kernel delivers only the
// server's datagrams; a reply must also carry the query's random ID and
// question, or it is ignored.
func (p *SocketProber) probeDNS(ctx context.Context, t Target) (time.Duration, error) {
	c := t.DNS
	if c == nil {
		return 0, errors.New("dns probe without a check")
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	q, id, err := dnsQuery(c)
	if err != nil {
		return 0, err
	}
	d := pinnedDialer(t, "udp")
	var conn net.Conn
	if err := InNamespace(p.ns, func() error {
		var err error
		conn, err = d.DialContext(ctx, "udp", c.Server.String())
		return err
	}); err != nil {
		return 0, fmt.Errorf("opening a socket to %s via %s: %w", c.Server, t.Iface, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // unblocks Read at once
	defer stop()
	start := p.now()
	if _, err := conn.Write(q); err != nil {
		return 0, fmt.Errorf("querying %s via %s: %w", c.Server, t.Iface, err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return 0, fmt.Errorf("querying %s for %s via %s: %w", c.Server, c.Name, t.Iface, errTimeout)
		}
		ok, err := dnsCheckAnswer(c, id, buf[:n])
		if !ok {
			continue // not our answer
		}
		if err != nil {
			return 0, fmt.Errorf("querying %s for %s via %s: %w", c.Server, c.Name, t.Iface, err)
		}
		return p.now().Sub(start), nil
	}
}

func dnsType(c *policy.DNSCheck) dnsmessage.Type {
	if c.Type == "AAAA" {
		return dnsmessage.TypeAAAA
	}
	return dnsmessage.TypeA
}

// dnsQuery builds a recursive query with a random ID.
func dnsQuery(c *policy.DNSCheck) ([]byte, uint16, error) {
	var idb [2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, 0, err
	}
	id := binary.BigEndian.Uint16(idb[:])
	name, err := dnsmessage.NewName(c.Name)
	if err != nil {
		return nil, 0, fmt.Errorf("dns_name %q: %w", c.Name, err)
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, 0, err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: dnsType(c), Class: dnsmessage.ClassINET}); err != nil {
		return nil, 0, err
	}
	msg, err := b.Finish()
	return msg, id, err
}

// dnsCheckAnswer reports whether msg answers the query (ours: false means
// ignore it) and, if it does, what is wrong with the answer.
func dnsCheckAnswer(c *policy.DNSCheck, id uint16, msg []byte) (bool, error) {
	var ps dnsmessage.Parser
	h, err := ps.Start(msg)
	if err != nil || h.ID != id || !h.Response {
		return false, nil
	}
	qs, err := ps.AllQuestions()
	if err != nil || len(qs) != 1 || qs[0].Type != dnsType(c) || !strings.EqualFold(qs[0].Name.String(), c.Name) {
		return false, nil
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		return true, fmt.Errorf("answered %s", strings.TrimPrefix(h.RCode.String(), "RCode"))
	}
	ans, err := ps.AllAnswers()
	if err != nil {
		return true, fmt.Errorf("parsing the answer: %w", err)
	}
	var got []netip.Addr
	for _, rr := range ans {
		switch b := rr.Body.(type) {
		case *dnsmessage.AResource:
			if dnsType(c) == dnsmessage.TypeA {
				got = append(got, netip.AddrFrom4(b.A))
			}
		case *dnsmessage.AAAAResource:
			if dnsType(c) == dnsmessage.TypeAAAA {
				got = append(got, netip.AddrFrom16(b.AAAA))
			}
		}
	}
	if len(got) == 0 {
		if h.Truncated {
			return true, errors.New("answer truncated, with no record")
		}
		return true, fmt.Errorf("no %s record in the answer", c.Type)
	}
	if !c.Answer.IsValid() {
		return true, nil
	}
	for _, a := range got {
		if a == c.Answer {
			return true, nil
		}
	}
	return true, fmt.Errorf("answered %v, want %s among them", got, c.Answer)
}

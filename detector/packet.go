package detector

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The prober's packets, as pure functions: parsing and matching echo
// replies, and building the echo requests sent as frames.

// EchoReply is a parsed ICMP or ICMPv6 echo reply.
type EchoReply struct {
	ID, Seq uint16
	Data    []byte
}

// ParseEchoReply parses an ICMP message (without IP header) and reports
// whether it is an echo reply. It never panics on any input.
func ParseEchoReply(b []byte, v6 bool) (EchoReply, bool) {
	proto := 1
	if v6 {
		proto = 58
	}
	m, err := icmp.ParseMessage(proto, b)
	if err != nil {
		return EchoReply{}, false
	}
	if m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply {
		return EchoReply{}, false
	}
	e, ok := m.Body.(*icmp.Echo)
	if !ok {
		return EchoReply{}, false
	}
	return EchoReply{ID: uint16(e.ID), Seq: uint16(e.Seq), Data: e.Data}, true
}

// matchReply says whether reply r from src answers pending echo e.
// Anything else is ignored, whatever it claims.
func matchReply(e *pendingEcho, r EchoReply, src netip.Addr) error {
	switch {
	case r.ID != e.id:
		return errors.New("id mismatch")
	case src != e.target:
		return fmt.Errorf("source %s is not the target %s", src, e.target)
	case len(r.Data) < tokenLen || !bytes.Equal(r.Data[:tokenLen], e.token[:]):
		return errors.New("payload token mismatch")
	}
	return nil
}

// BuildEchoPacket returns an IPv4 or IPv6 packet carrying the ICMP message
// from src to dst, checksums filled in.
func BuildEchoPacket(msg *icmp.Message, src, dst netip.Addr) ([]byte, error) {
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("source %s and destination %s differ in family", src, dst)
	}
	if dst.Is4() {
		body, err := msg.Marshal(nil)
		if err != nil {
			return nil, err
		}
		h := make([]byte, 20, 20+len(body))
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(body)))
		var idb [2]byte
		_, _ = rand.Read(idb[:])
		copy(h[4:6], idb[:])
		h[6] = 0x40 // DF
		h[8] = 64
		h[9] = 1
		s4, d4 := src.As4(), dst.As4()
		copy(h[12:16], s4[:])
		copy(h[16:20], d4[:])
		binary.BigEndian.PutUint16(h[10:], checksum(h))
		return append(h, body...), nil
	}
	body, err := msg.Marshal(icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice()))
	if err != nil {
		return nil, err
	}
	h := make([]byte, 40, 40+len(body))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(body)))
	h[6] = 58
	h[7] = 64
	s16, d16 := src.As16(), dst.As16()
	copy(h[8:24], s16[:])
	copy(h[24:40], d16[:])
	return append(h, body...), nil
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

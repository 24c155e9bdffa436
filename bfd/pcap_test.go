package bfd

import (
	"encoding/binary"
	"os"
	"testing"
)

// captured is one UDP payload from a pcap under testdata, with the IP TTL
// it arrived with.
type captured struct {
	src, dst []byte
	sport    uint16
	dport    uint16
	ttl      uint8
	payload  []byte
}

// readPcap reads the classic pcap files tcpdump -w writes (Ethernet link
// type, IPv4) and returns their UDP payloads in order. Enough of a reader
// for our captures, not a general one: anything else fails the test.
func readPcap(t testing.TB, path string) []captured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian microsecond pcap", path)
	}
	if lt := binary.LittleEndian.Uint32(b[20:]); lt != 1 {
		t.Fatalf("%s: link type %d, want Ethernet", path, lt)
	}
	var out []captured
	for off := 24; off < len(b); {
		if off+16 > len(b) {
			t.Fatalf("%s: truncated record header at %d", path, off)
		}
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : off+16+n]
		off += 16 + n
		if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			t.Fatalf("%s: not an IPv4 frame", path)
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 {
			t.Fatalf("%s: not UDP", path)
		}
		udp := ip[ihl:]
		out = append(out, captured{
			src: ip[12:16], dst: ip[16:20], ttl: ip[8],
			sport: binary.BigEndian.Uint16(udp), dport: binary.BigEndian.Uint16(udp[2:]),
			payload: udp[8:binary.BigEndian.Uint16(udp[4:])],
		})
	}
	return out
}

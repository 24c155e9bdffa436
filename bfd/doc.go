// Package bfd is uplinkd's Bidirectional Forwarding Detection: RFC 5880
// asynchronous and demand mode, single hop (RFC 5881, UDP 3784, GTSM) and
// multihop (RFC 5883, UDP 4784), with no authentication or keyed SHA1 /
// meticulous keyed SHA1.
//
// Where a gateway speaks BFD (FRR, BIRD, most routers) a session is the
// strongest advice another layer can give (RFC 1122 §3.3.1.4): the peer's
// forwarding plane itself answers, at an agreed rate, and says why it went
// down. The detector consumes a session's state as evidence; this package
// knows nothing of gateways beyond a name.
//
// The package is three layers, each testable on its own:
//
//   - packet.go, auth.go: the wire format. The codec is our own, not
//     gopacket's layers.BFD: the only maintained gopacket is a large
//     dependency for 24 bytes, and it neither computes nor checks SHA1
//     digests, which is the part worth getting right. It is table-tested
//     against packets captured from FRR's bfdd and from BIRD (the only one
//     of the two with keyed SHA1), see testdata/capture.sh, and fuzzed.
//   - session.go, timers.go: one session's state machine, §6.8, as a pure
//     Observe(event, now) with the clock and the jitter source injected: no
//     time.Now, no sockets, so every rule of the RFC is a table test.
//   - server.go, transport.go: one goroutine owns every session; readers
//     (one per socket) hand it packets; it sends what the machines ask for
//     and sleeps until the earliest deadline. Sockets send with TTL 255 and
//     single-hop sessions drop anything received with a TTL below 255
//     (GTSM, RFC 5082), read through IP_RECVTTL / IPV6_RECVHOPLIMIT.
//
// Demand mode (§6.6) is how uplinkd meets RFC 1122 with BFD: once both ends
// are Up and ask for it, neither sends periodic packets; when the traffic
// evidence says packets to the gateway go unanswered, Server.Verify starts
// a poll sequence, and a poll unanswered for one detection time is a Down.
package bfd

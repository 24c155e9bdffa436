// Package l2count counts, in the kernel, the packets a host exchanges with
// each of its gateways: per neighbour, meaning the gateway's link-layer
// address plus the family (ethertype), the packets sent to it, the packets
// received from it, and the time of the last packet each way.
//
// Why: an interface's packet counters cannot tell gateways apart. On the
// realserver of the LVS HOWTO §37.1 (one NIC, one source address per
// director, every director on one LAN), or on a dual-stack uplink, replies
// from a live gateway keep the interface's rx counter moving and hide the
// silent death of the other. Counting per neighbour restores the gated
// decision "sent to gw1, nothing from gw1 for tx_without_rx" without
// pinging anybody while traffic flows normally (RFC 1122 §3.3.1.4).
//
// How: one nftables table of uplinkd's own, family netdev, named "uplinkd"
// (see docs/design.md for why nftables and not tc/eBPF). For every managed
// interface it holds an ingress chain and an egress chain; for every
// counted neighbour, one rule in each that matches the neighbour's MAC
// (source on ingress, destination on egress) and ethertype and updates
// the neighbour's element of the dynamic set "seen": the element's counter
// is the packets, its remaining timeout tells when the last one passed,
// and one dump of the set is the whole read. Only IPv4 and IPv6 frames are
// counted, and on ingress only those addressed to this host: a dead
// gateway that still answers ARP or neighbour discovery, or multicasts
// router advertisements, gives no evidence of forwarding.
//
// Ownership follows the routing package's rules: Plan(want, have) is pure
// and table-tested; the apply is one nftables transaction (so counting
// never has a gap, and a MAC change swaps rules atomically); a restart
// adopts the table with zero writes; Withdraw deletes the table and nothing
// else. Nothing outside the table is read or written: an operator's
// rulesets and tc qdiscs are not touched.
//
// Where the kernel lacks what is needed (no nf_tables, no netdev egress
// hook, no dynamic sets), Sync returns an error wrapping ErrUnsupported and
// the caller falls back to interface counters, saying so.
package l2count

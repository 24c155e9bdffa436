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
// How, by preference: two tc programs of uplinkd's own, uplinkd_rx and
// uplinkd_tx, attached with tcx to the managed interfaces (BPFCounter),
// counting in one per-CPU hash map, uplinkd_seen, keyed by interface
// index, the neighbour's MAC, the ethertype and the direction: one JITed
// lookup per frame, a hit only for keys uplinkd put there. Where eBPF
// cannot be loaded (no tcx, no CAP_BPF or CAP_SYS_ADMIN at start), one
// nftables table of uplinkd's own, family netdev, named "uplinkd"
// (Counter): for every managed interface an ingress chain and an egress
// chain; for every counted neighbour, one rule in each that matches the
// neighbour's MAC and ethertype and updates its element of the dynamic
// set "seen". docs/design.md weighs the two and has their costs. Both
// count only IPv4 and IPv6 frames, and on ingress only those addressed to
// this host: a dead gateway that still answers ARP or neighbour
// discovery, or multicasts router advertisements, gives no evidence of
// forwarding. Both implement Table, which the Source drives.
//
// Ownership follows the routing package's rules: Plan and PlanBPF are
// pure and table-tested; a restart adopts what is there with zero writes
// (the programs by name and kernel tag, with their counts; the table by
// name); Withdraw detaches uplinkd's programs or deletes its table, and
// nothing else. The programs hand every frame on (TCX_NEXT): an
// operator's tcx programs, tc filters and nftables tables see what they
// saw before.
//
// Where the kernel lacks both, Sync returns an error wrapping
// ErrUnsupported and the caller falls back to interface counters, saying
// so.
package l2count

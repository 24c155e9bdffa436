// Package rtnl speaks the parts of rtnetlink that vishvananda/netlink
// v1.3.1 lacks, on mdlayher/netlink: kernel nexthop objects
// (RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP) with weighted and
// resilient groups, routes that point at a nexthop object (RTA_NH_ID),
// and a pipelined batch of writes (many requests sent, then their ACKs
// read) for large reconciles.
//
// It speaks its own small types (Nexthop, Route) and knows nothing about
// policy or ownership: the routing package decides what to write and what
// is its own; this package only encodes, sends and decodes. Why an encoder
// of our own rather than a library is in docs/design.md ("Nexthop
// objects: the library").
//
// Every message is built by a pure Marshal function and read by a pure
// Unmarshal function, so the wire format is table-tested without a socket;
// the privileged tests then run the same code against a namespace's kernel.
package rtnl

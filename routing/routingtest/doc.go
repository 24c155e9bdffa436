// Package routingtest holds MemKernel, the in-memory kernel that tests and
// demos put behind routing.Reconciler in place of a real namespace.
//
// MemKernel implements routing.Netlink and routing.Watcher, so a test
// through it runs the production code path (Plan, the apply, the read-back
// and the watcher's interest) and differs from production only below the
// kernel boundary. It models the kernel's keying as uplinkd meets it
// (several routes per key, IPv6 nexthop merging, link removal) and injects
// errors on chosen operations, so that scenario tests catch ownership and
// error-handling bugs without root.
//
// Production code never imports this package; it lives apart so that the
// fake is not part of routing's API.
package routingtest

// Package routing turns a validated policy and per-gateway health into
// kernel routing state (per-gateway tables, ip rules, weighted multipath
// defaults and announce routes, IPv4 and IPv6) and keeps it there.
//
// The work is split so that every decision can be tested without a kernel:
// Desired is a pure function of policy and health, Plan is a pure diff of two
// States, and only Reconciler.Apply talks to the kernel, through the small
// Netlink interface that *netlink.Handle satisfies and routingtest.MemKernel
// fakes (tests only: production code never imports routingtest).
//
// Ownership is by route protocol number: a route or rule is uplinkd's if and
// only if its protocol equals Config.Protocol. Plan never emits a write for
// anything else; a foreign route on a key uplinkd wants is reported as a
// conflict instead of being replaced, because NLM_F_REPLACE would silently
// take it over. That includes a foreign route beside an owned one on its
// key (`ip route prepend`/`append`) and, for IPv6, a foreign nexthop the
// kernel merged into an owned multipath route. Conflicts are logged at
// Error, counted in uplinkd_route_conflicts, returned by
// Reconciler.Conflicts and retried on every resync until they end.
//
// A nexthop whose interface does not exist is never written: the other
// members of its route are, so the host keeps a route wherever one can
// exist.
//
// Changes to a route that exists are always replaces (one RTM_NEWROUTE with
// NLM_F_REPLACE), never delete-then-add, so a host never spends a moment
// without a default route. Rules have no replace, so a changed rule is added
// before the old one is deleted.
//
// Netlink events are only hints: the reconciler re-reads what it owns,
// debounced, and also resyncs on a timer, after ENOBUFS and after an
// interrupted dump, since rules have no subscription of their own in the
// library and events can be lost.
//
// uplinkd must stay cheap beside a routing daemon holding a full BGP table.
// A re-read therefore asks the kernel for owned routes only (Kernel, with
// NETLINK_GET_STRICT_CHK), and reads foreign routes only from tables where
// a wanted key is not held; route events that cannot concern an owned or
// wanted key are dropped in the watcher before they cost a re-read.
package routing

// Package reliability holds uplinkd's fault-injection suite: privileged
// tests that run the real binary (built once, driven through
// internal/daemontest) inside nstest namespaces, with traffic flowing, and
// break things the way production does — the daemon is SIGKILLed, an uplink
// is deleted, re-created and renamed, its address is renewed, the gateway's
// MAC moves, the netlink socket overflows, another program fights over the
// routes, every gateway dies, hooks hang, fail and flood, reloads are
// broken or arrive in storms, and a third host spoofs echo replies from a
// dead gateway. Hostile policies must be refused before the kernel is
// touched. BenchmarkSoak flaps a gateway for ten minutes (UPLINKD_SOAK) and
// reports goroutines, memory, descriptors and route churn.
//
// Why a package of its own: these tests judge the daemon as a whole, from
// the outside, the way an operator would (ip monitor, ip route, /metrics,
// the log, the hooks), so they must not share code paths with the daemon
// they are judging. The package has only test files and this doc; the
// spoofer used by the security test is a small program in testdata/spoofer,
// built by TestMain.
//
// Every test asserts outcomes (a state reached, a count that stays at
// zero, a bound on repairs) with bounded polling, never wall-clock
// durations, and everything runs in namespaces created and deleted by
// nstest: the root namespace is never touched.
package reliability

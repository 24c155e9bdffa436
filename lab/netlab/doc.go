// Package netlab builds network labs out of Linux network namespaces: the
// error-returning core behind the privileged test harness (internal/nstest)
// and the lab program (lab/cmd/uplinkd-lab, `make demo` and `make bench`).
//
// Why it exists: uplinkd's job is to change routes and to notice when a
// gateway silently stops forwarding, and none of that can be trusted from
// mocks. Exercising it against a real kernel on a shared machine is only
// acceptable if the lab can never touch the real network configuration,
// never leaks state when something fails or someone presses Ctrl-C, and
// never hangs. Those guarantees are written (and reviewed) once, here.
//
// Safety rules the package enforces, and why:
//
//   - The root network namespace is never modified. Every namespace is created
//     with `ip netns add`, and veth pairs are created from inside the first
//     namespace with the peer placed directly into the second one, so no
//     interface ever exists in the root namespace, not even transiently.
//     Sysctl refuses keys outside "net." because other sysctl trees are
//     global and would leak out of the namespace.
//   - Namespace names carry a per-lab random prefix ("upl" + 6 hex digits +
//     "-" + short host name) so that concurrent runs on one machine cannot
//     collide, and a leaked namespace can be traced back to the machine and
//     run that produced it. The package never touches namespaces it did not
//     create: there is deliberately no "sweep stale namespaces" helper,
//     because on a shared machine another run's namespaces look exactly like
//     stale ones.
//   - Addresses are restricted to the benchmarking range 198.18.0.0/15 and the
//     documentation range 2001:db8::/32 (AddAddr refuses anything else), so a
//     mistake can never shadow a real destination.
//   - Processes started in a namespace are placed in their own process group
//     and killed with SIGKILL by that group id before being reaped; the group
//     is only ever signalled while its leader is known to be unreaped, so a
//     recycled PID can never be hit. Any other process still found inside a
//     lab namespace is killed before the namespace is deleted so the
//     namespace really disappears. Children get PDEATHSIG, so even a
//     SIGKILLed lab program leaves no daemon behind.
//   - Lab.Close is idempotent and concurrency-safe, and HandleSignals runs it
//     on Ctrl-C if the program does not do so in time.
//   - Everything is bounded in time: Run has a 30 s timeout, Ping sends one
//     packet with a 1 s wait, process reaping has a deadline, a flap ends by
//     itself, and the traffic generator has a fixed duration and count.
//
// Faults (BlackholeIP, BlackholeARP, Loss, LinkDown, Flap) are implemented
// inside the lab namespaces with nftables netdev ingress chains and link
// state, because this kernel class has no netem qdisc. They live in a single
// table named "uplnstest" per namespace so Recover can undo them wholesale.
//
// On top of the primitives: the TwoUplinks topology and its named faults
// (topo.go), a UDP/TCP traffic generator and echo responder that measure
// outages as the longest gap in replies (traffic.go), a route-change monitor
// (monitor.go), per-gateway probe counters (counters.go) and daemon
// resource usage from /proc (procstat.go).
//
// The package must not import any other uplinkd package: it judges their
// behaviour from the outside, and nstest (a dependency of their tests) is
// built on it.
package netlab

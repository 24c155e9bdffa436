// Package nstest is the privileged test harness shared by every test of
// uplinkd that needs real kernel networking (routing, detector, daemon
// end-to-end and lab tests).
//
// Why it exists: the daemon's job is to change routes, rules and neighbour
// state, and to notice when a gateway silently stops forwarding. None of that
// can be trusted from mocks; it has to be exercised against the kernel. Doing
// so on a developer's machine or a shared CI runner is only acceptable if the
// tests can never touch the real network configuration, never leak state when
// they fail, and never hang. Centralising the namespace plumbing here means
// those guarantees are written (and reviewed) once instead of in every test.
//
// The namespace primitives themselves live in lab/netlab, which returns
// errors so that the lab program (lab/cmd/uplinkd-lab) can use them too; nstest
// is the thin testing wrapper: same primitives, failing the test instead of
// returning errors, with teardown bound to t.Cleanup.
//
// Safety rules the package enforces (through netlab), and why:
//
//   - The root network namespace is never modified. Every namespace is created
//     with `ip netns add`, and veth pairs are created from inside the first
//     namespace with the peer placed directly into the second one, so no
//     interface ever exists in the root namespace, not even transiently. Sysctl
//     refuses keys outside "net." because other sysctl trees are global and
//     would leak out of the namespace.
//   - Namespace names carry a per-lab random prefix ("upl" + 6 hex digits +
//     "-" + short host name) so that concurrent test runs by different people
//     or CI jobs on one machine cannot collide, and a leaked namespace can be
//     traced back to the machine and run that produced it. The harness never
//     touches namespaces it did not create: there is deliberately no "sweep
//     stale namespaces" helper, because on a shared machine another run's
//     namespaces look exactly like stale ones.
//   - Addresses are restricted to the benchmarking range 198.18.0.0/15 and the
//     documentation range 2001:db8::/32 (AddAddr rejects anything else), so a
//     mistake can never shadow a real destination.
//   - Cleanup is registered with t.Cleanup at creation time, so it also runs
//     when the test calls t.Fatal or panics. Processes started in a namespace
//     are placed in their own process group and killed with SIGKILL by that
//     group id before being reaped; the group is only ever signalled while its
//     leader is known to be unreaped, so a recycled PID can never be hit (this
//     machine class runs with pid_max=32768, where reuse is not theoretical).
//     Any other process still found inside a lab namespace is killed before
//     the namespace is deleted so the namespace really disappears.
//   - Everything is bounded in time: Run has a 30 s timeout, Ping sends one
//     packet with a 1 s wait, process reaping has a deadline.
//
// Peer daemons (FRR, keepalived, dnsmasq, radvd, pppoe-server/pppd, DHCP
// clients, anything with compiled-in paths) are started with StartPeer, never
// Start. Flags do not move every file they write: FRR's ospfd writes
// /run/frr/ospfd-gr.json and -N still creates /run/frr/<ns>; keepalived
// unlinks /run/bfd.pid unless told -b. StartPeer runs the daemon inside
// `ip netns exec` under `unshare --mount --propagation private`, where /etc,
// /run, /var/lib and /var/log (netlab.PrivateTrees) are overlays whose
// upper layer is a tmpfs mounted on a t.TempDir(): the daemon reads the
// host's files, and whatever it creates, changes or unlinks there dies with
// it. No mount reaches the host's mount table and no directory is created
// on the host (a tree's missing subdirectory, such as /var/lib/frr, is made
// in the overlay). Adopting it is a one-word change:
//
//	h.StartPeer(t, "/usr/sbin/radvd", "-n", "-C", conf, "-p", filepath.Join(dir, "radvd.pid"))
//
// Still pass the test's own paths for what the test reads (config, pid
// files, sockets, leases): they stay on the host's filesystem, under the
// test's temp dir, and are visible to it; each StartPeer gets its own
// overlay, so two peers meet only through such paths. While the peer runs,
// /proc/PID/root shows its private view. TestStartPeerKeepsHostPathsPrivate
// proves the isolation for each kind of peer.
//
// Faults (BlackholeIP, BlackholeARP, Loss, LinkDown, Flap) are implemented inside
// the lab namespaces with nftables netdev ingress chains and link state,
// because this kernel has no netem qdisc. They live in a single table named
// "uplnstest" per namespace so Recover can undo them wholesale.
//
// The package must not import any other uplinkd package but netlab: it is a dependency of
// their tests, and an import in the other direction would create cycles and
// couple the harness to the code it is supposed to judge.
package nstest

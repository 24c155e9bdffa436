// Package detector decides, for every gateway in the policy, whether it is
// up, suspect, degraded or down.
//
// It follows RFC 1122 §3.3.1.4: advice from other layers comes first
// (carrier, neighbour confirmations and failures, interface counters), a
// first-hop gateway is probed only while traffic is being sent to it with no
// fresh sign of life, and dead gateways are probed slowly until they return.
//
// Watchers (links, neighbours, traffic counters, probes) each run in their
// own goroutine and send typed events on channels to the one health
// goroutine, which owns every Machine. A Machine is a pure state machine,
// Observe(event, now), with the clock injected, so that every threshold,
// hysteresis and damping rule is tested without a kernel or a wall clock.
//
// The kernel is reached only through small interfaces that speak the
// detector's own types (kernel.go): Links, Neighbours, Addresses,
// LinkModes, TrafficCounters, and the Prober. Netlink adapts
// vishvananda/netlink and ethtool to them, SocketProber sends probes;
// package detectortest holds in-memory fakes, through which scenario
// tests drive the whole detector on the same code path. Probe kinds are
// registered once (kinds.go), and every long-lived worker reports its
// progress (Liveness).
//
// Files: detector.go (Config, New, Run, the API), health.go (the health
// goroutine's handling of evidence), machine.go and event.go (the pure
// state machine and its events), state.go (states, transitions, status),
// traffic.go (counters into silence), watchers.go (links, neighbours,
// link modes), round.go, neighprobe.go and kinds.go (probe rounds),
// prober.go (sockets), liveness.go, metrics.go.
package detector

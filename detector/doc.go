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
// The kernel is reached only through two small interfaces, Netlink and
// Prober; scenario tests drive the whole detector through fakes of them.
package detector

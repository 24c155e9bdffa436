// Package daemon is `uplinkd run`: it joins the detector (gateway health) and
// the routing reconciler (kernel state) in one process, and adds what
// operators need around them: hooks, hot reload, metrics, a status API, a
// root-only control socket, keepalived track files, systemd notification,
// and least privilege.
//
// One goroutine, Core.Loop, owns the health snapshot. It turns
// every detector transition into a routing.Snapshot, computes the desired
// state and hands it to the reconciler at once: there is no polling delay
// between "down" and the route change. Everything else (signal handling, the
// control socket, the HTTP server) talks to the loop over channels or reads
// snapshots published under a mutex that is never held across a channel
// operation.
//
// Reloads are coalesced: requests that arrive while one is pending are
// folded into it, so a burst of SIGHUPs causes one reload, and a reload
// with an unchanged policy makes no kernel writes at all.
//
// A restart adopts what uplinkd owns: before the detector starts, the
// daemon reads its routes and rules, and the gateways they show withdrawn
// start down (routing.Withdrawn), so a restart over a kernel that already
// matches writes nothing and never puts a dead gateway back. The others'
// first verdicts come from the probes (detector.Config.StartProbed), and
// route changes wait for all of them (startHold): a kept route with every
// gateway dead looks like the all-up one, and must not move per verdict.
//
// Start-up refuses, with the exact reason and before the kernel is touched,
// a policy that is invalid, a policy file or hook executable that anyone but
// root can write, and a process without CAP_NET_ADMIN (and, with
// Options.RequireInterfaces, a missing non-optional interface; by default
// an absent interface is a down gateway that rejoins when it appears). Once its sockets are open the daemon keeps only
// CAP_NET_ADMIN and CAP_NET_RAW in every capability set of every thread
// (hooks inherit that bounding set).
//
// Where to look:
//
//   - run.go: Run, the wiring, top to bottom: preflight, build, listen,
//     initial apply, capability drop, serve, stop.
//   - core.go: Core, the health loop's state and what it needs of the
//     detector (HealthSource) and the reconciler (RouteSink).
//   - loop.go: Core.Loop and what a detector transition does: routes,
//     track files, group bookkeeping, hooks.
//   - conditions.go: [condition.NAME] in the loop: facts in (health, and
//     condwatch's links, addresses and track files), the pure evaluator,
//     then routes, metrics, track files and hooks out.
//   - groups.go: policy lookups the loop and status share (groups of a
//     gateway, their tables); which gateways are standby is routing's
//     rule (routing.Standby).
//   - reload.go: Reload, the coalesced reload and what it keeps.
//   - status.go: the status document and its assembly; table.go: its text
//     rendering for `uplinkd status`.
//   - preflight.go, caps.go: the checks before start and least privilege.
//   - control.go, server.go: the control socket and the HTTP listener.
//   - liveness.go: the progress every long-lived worker reports, which
//     /healthz and the watchdog follow.
//   - track.go, metrics.go, logging.go: keepalived track files, the
//     daemon's own metrics, the logger.
package daemon

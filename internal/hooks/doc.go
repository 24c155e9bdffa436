// Package hooks runs the operator's external commands on gateway, group and
// route events: what ifstated, keepalived notify scripts and mwan3.user do
// in the field.
//
// Hooks run as root, so the runner is deliberately conservative:
//
//   - argv only, never a shell, and nothing from the event (and therefore
//     nothing that may have come from the network) is ever put into argv;
//     the event reaches the hook only through UPLINKD_* environment
//     variables, on top of a clean environment (PATH only);
//   - the executable is opened and checked by securefile (root-owned, every
//     directory on its path as written, symlink directories included) and
//     that descriptor is what runs, through /proc/self/fd/3;
//   - every run goes through a reaper (reaper.go: uplinkd re-executed as a
//     child subreaper), so when a run ends, by exit or timeout, everything
//     it started is killed and reaped: background, setsid'd and
//     pipe-holding children included;
//   - runs of one hook are serialised in event order by one goroutine per
//     hook reading a bounded queue, so "down" can never overtake "up";
//   - Fire never blocks: detection and routing must not wait for a slow
//     script. A hook that is hopelessly behind (queue full) loses the event,
//     which is logged and counted with result "dropped".
//
// After start-up the daemon keeps only CAP_NET_ADMIN and CAP_NET_RAW, and
// hooks inherit that bounding set: a hook runs as uid 0 but can only change
// network configuration and open raw sockets, not load modules, read other
// users' files past their permissions, and so on.
package hooks

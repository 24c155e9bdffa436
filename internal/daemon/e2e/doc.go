// Package e2e runs the real uplinkd binary, built once per test binary,
// inside nstest namespaces: two uplinks, traffic, real faults, and the
// daemon driven as an operator would (signals, `uplinkd reload`, `uplinkd
// status`, /metrics, the systemd notify socket).
//
// It is its own package so that `go test ./internal/daemon`, the pure and
// fake-kernel tests of the daemon's logic, does not build the binary.
package e2e

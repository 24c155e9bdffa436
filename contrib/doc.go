// Package contrib holds no code: it is the home of the files that fit
// uplinkd into an operator's host (systemd unit, iproute2 names, Grafana
// dashboard, Prometheus alerts, example policies and hooks) and of the tests
// that keep them true. Those tests check that every metric the dashboard
// and the alerts name is one uplinkd exports (against docs/design.md, and
// against a running daemon's /metrics in a namespace), that every example
// policy is valid, and, in contrib/examples, that each example does in real
// namespaces what its comments promise.
package contrib

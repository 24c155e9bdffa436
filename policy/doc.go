// Package policy reads uplinkd's TOML policy language.
//
// The policy is the operator's whole statement of intent: which gateways
// exist, how they are grouped into default routes, which per-source tables
// and ip rules send traffic to them, which routes are announced only while
// something is healthy, how aggressively each gateway is checked, and which
// hooks run on transitions.
//
// Parse is pure on purpose: it decodes, fills defaults and validates without
// reading the filesystem or the kernel, so that `uplinkd check`, the daemon's
// hot reload and the fuzzer all exercise exactly the same code. The one piece
// of host state a policy may refer to, table names from
// /etc/iproute2/rt_tables, is passed in through Options; LoadRTTables reads
// it for callers that want the host's view.
//
// Errors are collected rather than returned at the first problem, because an
// operator fixing a policy at 3am wants the whole list in one run. Each error
// carries the file, line and column of the offending key where the TOML
// decoder or the key index can tell, and names the object it concerns
// (`gateway "isp2": weight 0 is out of range 1..256`).
package policy

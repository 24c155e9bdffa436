// Command uplinkd detects dead gateways and keeps multipath and policy
// routes pointed at live ones.
//
// It is one binary with subcommands rather than a daemon plus helper tools,
// so that what `uplinkd check` and `uplinkd plan` accept is, by
// construction, exactly what `uplinkd run` will do: they share the policy
// parser and the routing planner. Subcommands register themselves in
// init functions; each has its own FlagSet so `uplinkd CMD --help` documents
// every flag.
package main

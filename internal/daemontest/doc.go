// Package daemontest runs the real uplinkd binary inside nstest namespaces
// for the privileged tests of contrib/: it builds the binary once, writes a
// policy (an example, with only the [daemon] paths moved into the test's
// temporary directory), starts `uplinkd run` in a namespace and talks to it
// the way an operator does, through `uplinkd status` and /metrics.
//
// Driving the binary rather than internal/daemon is the point: the examples
// promise what the installed program does with the installed files.
package daemontest

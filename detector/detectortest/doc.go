// Package detectortest holds fakes of the detector's kernel boundary: an
// in-memory Kernel (links, neighbours, addresses, link modes and traffic
// counters, with injected errors and blocks), a Prober, and helpers that
// run a detector in a test and record its transitions. The fakes sit
// behind the same interfaces, and so the same code path, as the
// production netlink adapter and socket prober.
package detectortest

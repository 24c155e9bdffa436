package routing

// The scenario tests are external (package routing_test) because they run
// the reconciler over routingtest.MemKernel, and routingtest imports
// routing: an internal test importing it would be an import cycle. This
// file, compiled only into the tests, gives them what the exported API
// cannot. Keep it small; each name says why it is here.

// The repair rate limit, so that TestScenarioRepairRateLimit asserts the
// limit itself rather than a copy of it.
const (
	RepairBurst = repairBurst
	RepairRate  = repairRate
)

// Relevant is the filter Run hands its watcher (its interest as of the
// last reconcile), so that TestScenarioForeignTable can count what it
// drops beside foreign churn without running Run.
func (r *Reconciler) Relevant(ev RouteEvent) bool { return r.relevant(ev) }

// Test fixtures shared with the internal tests (helpers_test.go), which
// cannot move out of package routing.
var (
	MustPolicy = mustPolicy
	Dump       = dump
	StartRun   = startRun
	Eventually = eventually
)

const TwoISPs = twoISPs

type SilentWatcher = silentWatcher

// GroupSlot is the first id slot of a group's nexthop object, so that a
// test can put a foreign object where the group would go.
func GroupSlot(owner string, family int) uint32 {
	return newNexthopIDs(212, nil).group(owner, family)[0]
}

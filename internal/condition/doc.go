// Package condition evaluates the policy's [condition.NAME] objects: compound
// states over gateway and group health, links, addresses, track files and
// other conditions, with hold times before a change is believed.
//
// The Evaluator is pure. The daemon's health loop gathers Facts (health from
// the detector, links and addresses from netlink, track files from inotify)
// and calls Observe with the time; Observe returns the conditions that
// changed. A pending hold time is a Deadline the loop arms a timer for, so
// nothing here polls and nothing reads the clock: tests drive it with
// whatever times they like.
//
// Conditions are computed in dependency order (policy.ConditionOrder), so a
// term "condition X" sees X's state from the same Observe, and a change
// ripples through a chain of conditions in one call. Every condition starts
// down: the first Observe that finds its terms holding brings it up, after
// hold_up, and reports the change, so a start-up is seen by hooks as the
// condition coming up rather than as nothing.
package condition

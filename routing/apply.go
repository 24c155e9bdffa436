package routing

// This file carries a plan out: one netlink write per op, the errors that
// mean success, and the bookkeeping of what was written.

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
)

// recordNexthops notes in ownNH what the applied ops wrote on IPv6 keys.
func (r *Reconciler) recordNexthops(applied []Op) {
	for _, op := range applied {
		if op.Route == nil || op.Route.Family != 6 {
			continue
		}
		if op.Kind == OpDelete || op.Route.Type != Unicast {
			delete(r.ownNH, op.Route.Key())
		} else {
			r.ownNH[op.Route.Key()] = op.Route.Nexthops
		}
	}
}

// ownedAfter is the owned state once ops succeeded: want without the
// routes left to a foreign owner.
func ownedAfter(want State, ops []Op) State {
	conflicts := map[RouteKey]bool{}
	for _, op := range ops {
		if op.Kind == OpConflict {
			conflicts[op.Route.Key()] = true
		}
	}
	if len(conflicts) == 0 {
		return want
	}
	out := State{Rules: want.Rules}
	for _, rt := range want.Routes {
		if !conflicts[rt.Key()] {
			out.Routes = append(out.Routes, rt)
		}
	}
	return out
}

// execute runs ops in order. retry reports an add that found its key taken
// since the read: success for now, but the cache is stale.
func (r *Reconciler) execute(ops []Op, l links, repair bool) (errs []error, applied []Op, retry bool) {
	verbose := len(ops) <= 20 || repair
	batched := map[int]error{} // results of rule ops already sent in a batch
	for i, op := range ops {
		var err error
		kind := op.Kind.String()
		switch {
		case op.Kind == OpConflict:
			err = fmt.Errorf("installing %s: %w %q (proto %d); not replacing what uplinkd does not own",
				RouteString(*op.Route), ErrConflict, RouteString(*op.Old), op.Old.Protocol)
			r.log.Error("route conflict", "table", op.Route.Table, "route", RouteString(*op.Route), "foreign", RouteString(*op.Old), "err", err)
			errs = append(errs, err)
			continue
		case op.Object == ObjRoute:
			err = r.writeRoute(op, l, &retry)
		case op.Object == ObjRule:
			if _, done := batched[i]; !done {
				r.batchRules(ops, i, batched)
			}
			if raw, done := batched[i]; done {
				err = r.ruleResult(op, raw)
			} else {
				err = r.writeRule(op)
			}
		case op.Object == ObjNexthop:
			err = r.writeNexthop(op, &retry)
		default:
			err = fmt.Errorf("applying %s: no write path for %s", op.Kind, op.Object)
		}
		if err != nil {
			errs = append(errs, err)
			r.log.Error("netlink write failed", "op", kind, "object", op.Object.String(), "table", tableOf(op), "err", err)
			continue
		}
		applied = append(applied, op)
		msg := "changed route"
		if repair {
			msg = "repaired drift"
		}
		if verbose {
			r.log.Info(msg, "op", kind, "object", op.Object.String(), "table", tableOf(op), "line", op.String())
		} else {
			r.log.Debug(msg, "op", kind, "object", op.Object.String(), "table", tableOf(op), "line", op.String())
		}
	}
	if !verbose && len(applied) > 0 {
		r.log.Info("applied routing changes", "writes", len(applied))
	}
	return errs, applied, retry
}

// ErrConflict is wrapped by the error of every OpConflict.
var ErrConflict = errors.New("key held by foreign route")

func tableOf(op Op) uint32 {
	switch op.Object {
	case ObjRule:
		return op.Rule.Table
	case ObjRoute:
		return op.Route.Table
	}
	return 0
}

func (r *Reconciler) writeRoute(op Op, l links, retry *bool) error {
	rt := *op.Route
	switch op.Kind {
	case OpDelete:
		// Delete by key, type and protocol only: the kernel then removes
		// every nexthop of a multipath route (IPv6 siblings included) and
		// never matches a route of another protocol. Scope NOWHERE is the
		// kernel's "any scope", as `ip route del` sends it; the zero value
		// would ask for universe scope, and an IPv4 route without a
		// gateway (link scope) would then meet ESRCH, which reads as
		// already gone.
		nr := &netlink.Route{
			Family:   afOf(rt.Family),
			Dst:      ipNet(rt.Dst),
			Table:    int(rt.Table),
			Priority: int(rt.Metric),
			Tos:      int(rt.Tos),
			Type:     int(rt.Type),
			Protocol: netlink.RouteProtocol(rt.Protocol),
			Scope:    netlink.SCOPE_NOWHERE,
		}
		err := r.nl.RouteDel(nr)
		r.cfg.Metrics.write("route", "delete", ignore(err, isGone))
		if err != nil && !isGone(err) {
			return fmt.Errorf("deleting route %s: %w", RouteString(rt), err)
		}
		return nil
	case OpAdd:
		if rt.NHID != 0 {
			return r.writeRouteVia(op, retry)
		}
		nr, err := toNetlinkRoute(rt, l)
		if err != nil {
			return fmt.Errorf("adding route %s: %w", RouteString(rt), err)
		}
		// NLM_F_EXCL, not replace: the key was free when read, and if
		// something took it since, replacing could take over a route
		// uplinkd does not own. EEXIST is success; the resync that
		// follows sorts out whose it is.
		err = r.nl.RouteAdd(nr)
		r.cfg.Metrics.write("route", "add", ignore(err, isExist))
		if isExist(err) {
			*retry = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("adding route %s: %w", RouteString(rt), err)
		}
		return nil
	default:
		if rt.NHID != 0 {
			return r.writeRouteVia(op, retry)
		}
		nr, err := toNetlinkRoute(rt, l)
		if err != nil {
			return fmt.Errorf("replacing route %s: %w", RouteString(rt), err)
		}
		err = r.nl.RouteReplace(nr)
		r.cfg.Metrics.write("route", "replace", err)
		if err != nil {
			return fmt.Errorf("replacing route %s: %w", RouteString(rt), err)
		}
		return nil
	}
}

func (r *Reconciler) writeRule(op Op) error {
	nr := toNetlinkRule(*op.Rule)
	var err error
	if op.Kind == OpDelete {
		err = r.nl.RuleDel(nr)
	} else {
		err = r.nl.RuleAdd(nr)
	}
	return r.ruleResult(op, err)
}

// ruleResult is what a rule write's kernel error means, whichever way the
// write went (one at a time or in a batch): EEXIST on add and ENOENT on
// delete are success.
func (r *Reconciler) ruleResult(op Op, err error) error {
	ru := *op.Rule
	if op.Kind == OpDelete {
		r.cfg.Metrics.write("rule", "delete", ignore(err, isGone))
		if err != nil && !isGone(err) {
			return fmt.Errorf("deleting rule %s: %w", RuleString(ru), err)
		}
		return nil
	}
	r.cfg.Metrics.write("rule", "add", ignore(err, isExist))
	if err != nil && !isExist(err) {
		return fmt.Errorf("adding rule %s: %w", RuleString(ru), err)
	}
	return nil
}

// RuleBatcher is a Netlink that can pipeline rule writes (Kernel does).
// Each result is the error one RuleAdd or RuleDel would have returned.
type RuleBatcher interface {
	RuleBatch(del bool, rules []Rule) []error
}

// minBatch is the smallest run of rule writes worth a batch.
const minBatch = 8

// batchRules sends the run of rule ops of one kind that starts at ops[i]
// in one pipelined batch, when the kernel boundary can and the run is
// long enough, and records each raw result in done. Adds go in
// descending priority: the kernel walks its rule list to the insertion
// point, so ascending adds walk all of it every time. The run's order
// among its own rules does not matter to the kernel's final state, and
// the ops around it keep their place.
func (r *Reconciler) batchRules(ops []Op, i int, done map[int]error) {
	b, ok := r.nl.Netlink.(RuleBatcher)
	if !ok {
		return
	}
	j := i
	for j < len(ops) && ops[j].Object == ObjRule && ops[j].Kind == ops[i].Kind {
		j++
	}
	if j-i < minBatch {
		return
	}
	idx := make([]int, 0, j-i)
	for k := i; k < j; k++ {
		idx = append(idx, k)
	}
	del := ops[i].Kind == OpDelete
	if !del {
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(ops[b].Rule.Priority, ops[a].Rule.Priority) })
	}
	rules := make([]Rule, len(idx))
	for k, x := range idx {
		rules[k] = *ops[x].Rule
	}
	r.nl.writes.Add(int64(len(rules)))
	for k, err := range b.RuleBatch(del, rules) {
		done[idx[k]] = err
	}
}

func ignore(err error, benign func(error) bool) error {
	if err != nil && benign(err) {
		return nil
	}
	return err
}

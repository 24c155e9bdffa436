package routing

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// This file is the reconciler's side of nexthop objects: which form the
// group defaults take, reading the owned objects, and writing them around
// the route ops.

// nexthopState is what a reconcile knows of the nexthop objects.
type nexthopState struct {
	owned   []NexthopObj // protocol and id band ours
	foreign []uint32     // ids in our band held by another protocol
}

// Form returns the form group defaults are installed in, for status and
// metrics.
func (r *Reconciler) Form() Form {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.form
}

// FormReason says why group defaults take the form Form returns: the
// caller's reason (Config.FormReason), or what the kernel lacks.
func (r *Reconciler) FormReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.formWhy
}

// chooseForm settles the form once: Config.Form, capped by what the
// kernel offers.
func (r *Reconciler) chooseForm() {
	form, why := FormClassic, "no nexthop kernel configured"
	if r.nh != nil {
		form, why = r.nh.BestForm()
	}
	if want := r.cfg.Form; want != FormAuto && want < form {
		form, why = want, cmp.Or(r.cfg.FormReason, "Config.Form asks for "+want.String())
	} else if why == "" {
		why = r.cfg.FormReason
	}
	r.mu.Lock()
	r.form, r.formWhy = form, why
	r.mu.Unlock()
	if form != FormResilient {
		r.log.Info("group defaults without resilient nexthop groups", "form", form.String(), "reason", why)
	}
	r.cfg.Metrics.setForm(form)
}

// fallBack lowers the form after the kernel refused a group of the
// current form, so the next reconcile builds what the kernel accepts.
func (r *Reconciler) fallBack(err error) {
	r.mu.Lock()
	from := r.form
	if from > FormClassic {
		r.form--
		r.formWhy = fmt.Sprintf("the kernel refused a %s group: %v", from, err)
	}
	to := r.form
	r.mu.Unlock()
	r.log.Warn("kernel refused a nexthop group; falling back", "from", from.String(), "to", to.String(), "err", err)
	r.cfg.Metrics.setForm(to)
}

// readNexthops reads the owned nexthop objects and marks the owned routes
// of have that go through one (Route.NHID), filling their Nexthops from
// the group when the kernel's dump had none (nexthop_compat_mode = 0).
func (r *Reconciler) readNexthops(have *State) (nexthopState, error) {
	var st nexthopState
	if r.nh == nil {
		return st, nil
	}
	all, err := r.nh.Nexthops()
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		// A kernel without nexthop objects (Linux < 5.3) holds none.
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("dumping nexthop objects: %w", err)
	}
	byID := map[uint32]NexthopObj{}
	for _, o := range all {
		switch {
		case !InBand(o.ID, r.cfg.Protocol):
		case o.Protocol == r.cfg.Protocol:
			st.owned = append(st.owned, o)
			byID[o.ID] = o
		default:
			st.foreign = append(st.foreign, o.ID)
		}
	}
	slices.SortFunc(st.owned, func(a, b NexthopObj) int { return cmp.Compare(a.ID, b.ID) })
	for _, fam := range []int{4, 6} {
		ids, err := r.nh.RouteNHIDs(fam, r.cfg.Protocol)
		if err != nil {
			return st, fmt.Errorf("dumping IPv%d routes via nexthop objects: %w", fam, err)
		}
		for i := range have.Routes {
			rt := &have.Routes[i]
			id, ok := ids[rt.Key()]
			if !ok {
				continue
			}
			rt.NHID = id
			if g, ok := byID[id]; ok && len(rt.Nexthops) == 0 {
				for _, m := range g.Group {
					if gw, ok := byID[m.ID]; ok {
						rt.Nexthops = append(rt.Nexthops, Nexthop{Gateway: gw.Gateway, Dev: gw.Dev, Weight: m.Weight})
					}
				}
				rt.Nexthops = normNexthops(rt.Nexthops)
			}
		}
	}
	return st, nil
}

// lower returns want with the group defaults through nexthop groups of
// the current form, and the objects that needs.
func (r *Reconciler) lower(want State, st nexthopState) (State, lowering) {
	r.mu.Lock()
	form := r.form
	r.mu.Unlock()
	lw := lowerGroups(want, form, r.cfg.Protocol, st.owned, st.foreign)
	if len(lw.route) == 0 {
		return want, lw
	}
	out := State{Routes: slices.Clone(want.Routes), Rules: want.Rules}
	for i := range out.Routes {
		if id, ok := lw.route[out.Routes[i].Key()]; ok {
			out.Routes[i].NHID = id
		}
	}
	return out, lw
}

// nexthopOps wraps nexthop writes as Ops, so OnApplied, logs and hooks see
// them like route and rule writes.
func nexthopOps(ops []NexthopOp) []Op {
	out := make([]Op, len(ops))
	for i := range ops {
		o := ops[i].Obj
		out[i] = Op{Kind: ops[i].Kind, Object: ObjNexthop, Nexthop: &o, OldNexthop: ops[i].Old}
	}
	return out
}

var errNoNexthopKernel = errors.New("no nexthop kernel configured")

func (r *Reconciler) writeNexthop(op Op, retry *bool) error {
	o := *op.Nexthop
	if r.nh == nil {
		return fmt.Errorf("%s nexthop %s: %w", op.Kind, NexthopString(o), errNoNexthopKernel)
	}
	r.nl.writes.Add(1)
	err := r.nh.WriteNexthop(op.Kind, o)
	switch op.Kind {
	case OpDelete:
		r.cfg.Metrics.write("nexthop", "delete", ignore(err, isGone))
		if err != nil && !isGone(err) {
			return fmt.Errorf("deleting nexthop %s: %w", NexthopString(o), err)
		}
		return nil
	case OpAdd:
		r.cfg.Metrics.write("nexthop", "add", ignore(err, isExist))
		if isExist(err) {
			*retry = true
			return nil
		}
	default:
		r.cfg.Metrics.write("nexthop", "replace", err)
	}
	if err != nil {
		// A kernel that predates resilient groups rejects their
		// attributes: build plain groups from the next reconcile on.
		// Other refusals are errors like any other write's.
		if o.Resilient != nil && r.Form() == FormResilient && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
			r.fallBack(err)
		}
		return fmt.Errorf("%s nexthop %s: %w", op.Kind, NexthopString(o), err)
	}
	return nil
}

// writeRouteVia adds or replaces a route through its nexthop group.
func (r *Reconciler) writeRouteVia(op Op, retry *bool) error {
	rt := *op.Route
	if r.nh == nil {
		return fmt.Errorf("%s route %s: %w", op.Kind, RouteString(rt), errNoNexthopKernel)
	}
	r.nl.writes.Add(1)
	err := r.nh.WriteRouteVia(op.Kind, rt)
	if op.Kind == OpAdd {
		r.cfg.Metrics.write("route", "add", ignore(err, isExist))
		if isExist(err) {
			*retry = true
			return nil
		}
	} else {
		r.cfg.Metrics.write("route", "replace", err)
	}
	if err != nil {
		return fmt.Errorf("%s route %s: %w", op.Kind, RouteString(rt), err)
	}
	return nil
}

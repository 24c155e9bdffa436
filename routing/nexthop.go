package routing

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Form is how a group's default is installed.
type Form int

const (
	// FormAuto (Config.Form) is the best form the kernel offers.
	FormAuto Form = iota
	// FormClassic is one route with RTA_MULTIPATH: the kernel hashes each
	// flow onto a nexthop by hash-threshold, so changing the member list
	// moves a share of every member's flows.
	FormClassic
	// FormGroup is a kernel nexthop group (Linux 5.3+), still
	// hash-threshold: it behaves like FormClassic on a change.
	FormGroup
	// FormResilient is a resilient nexthop group (Linux 5.13+): flows map
	// to buckets, removing a member moves only its buckets, and a member
	// that comes back gets only buckets idle for the group's idle timer.
	FormResilient
)

func (f Form) String() string {
	switch f {
	case FormAuto:
		return "auto"
	case FormClassic:
		return "classic"
	case FormGroup:
		return "mpath"
	case FormResilient:
		return "resilient"
	}
	return "form(" + strconv.Itoa(int(f)) + ")"
}

// Resilience holds a resilient group's parameters. The kernel rounds
// timers to 10 ms.
type Resilience struct {
	Buckets         int
	IdleTimer       time.Duration
	UnbalancedTimer time.Duration
}

// DefaultResilience is a resilient group's settings when the policy sets
// none: 128 buckets (a fair share within 1/128 for any weights of up to
// 256 over a handful of gateways), buckets idle for 2 minutes move to a
// returning gateway (nf_conntrack's UDP stream timeout: an idle UDP flow
// has lost its NAT mapping by then anyway), and a busy bucket is never
// forced to move (0).
var DefaultResilience = Resilience{Buckets: 128, IdleTimer: 120 * time.Second}

// GroupMember is one member of a nexthop group.
type GroupMember struct {
	ID     uint32
	Weight int // 1..256
}

// NexthopObj is a kernel nexthop object as uplinkd writes it: a gateway
// (Gateway on Dev) or a group of gateway objects.
type NexthopObj struct {
	ID       uint32
	Family   int // 4 or 6 for a gateway; 0 for a group
	Protocol uint8
	Gateway  netip.Addr
	Dev      string
	Group    []GroupMember
	// Resilient is set for a resilient group; a group without it is a
	// hash-threshold (mpath) group.
	Resilient *Resilience

	Owner string // informational, as Route.Owner
}

// IsGroup reports whether o is a group.
func (o NexthopObj) IsGroup() bool { return len(o.Group) > 0 }

func (o NexthopObj) equal(w NexthopObj) bool {
	if o.ID != w.ID || o.Family != w.Family || o.Protocol != w.Protocol || o.Gateway != w.Gateway || o.Dev != w.Dev ||
		!slices.Equal(o.Group, w.Group) || (o.Resilient == nil) != (w.Resilient == nil) {
		return false
	}
	return o.Resilient == nil || *o.Resilient == *w.Resilient
}

// Kind is what a replace cannot change, as a kernel model needs it:
// "gateway", "mpath" or "resilient/BUCKETS".
func (o NexthopObj) Kind() string { return o.kind() }

// kindOf is what a replace cannot change: a gateway cannot become a
// group, nor a group change its type or a resilient group its bucket
// count (the kernel refuses with EINVAL).
func (o NexthopObj) kind() string {
	switch {
	case !o.IsGroup():
		return "gateway"
	case o.Resilient == nil:
		return "mpath"
	}
	return "resilient/" + strconv.Itoa(o.Resilient.Buckets)
}

// NexthopString renders an object as `ip nexthop` would.
func NexthopString(o NexthopObj) string {
	var b strings.Builder
	fmt.Fprintf(&b, "id %d", o.ID)
	if !o.IsGroup() {
		if o.Gateway.IsValid() {
			fmt.Fprintf(&b, " via %s", o.Gateway)
		}
		if o.Dev != "" {
			fmt.Fprintf(&b, " dev %s", o.Dev)
		}
	} else {
		b.WriteString(" group ")
		for i, m := range o.Group {
			if i > 0 {
				b.WriteByte('/')
			}
			b.WriteString(strconv.FormatUint(uint64(m.ID), 10))
			if m.Weight > 1 {
				fmt.Fprintf(&b, ",%d", m.Weight)
			}
		}
		if r := o.Resilient; r != nil {
			fmt.Fprintf(&b, " type resilient buckets %d idle_timer %d unbalanced_timer %d",
				r.Buckets, int(r.IdleTimer/time.Second), int(r.UnbalancedTimer/time.Second))
		}
	}
	fmt.Fprintf(&b, " proto %d", o.Protocol)
	return b.String()
}

// The id band of uplinkd's nexthop objects: the top byte is the route
// protocol (212 by default: 0xd4000000..0xd4ffffff), gateways in the
// lower half, groups in the upper half with two slots each, so that a
// group whose kind must change (type, bucket count) is built anew in the
// other slot and the route moved over before the old one is deleted.
const (
	idSpan      = 1 << 23
	groupSlots  = idSpan / 2
	groupOffset = idSpan
)

func idBase(proto uint8) uint32 { return uint32(proto) << 24 }

// InBand reports whether id is in the band of protocol proto.
func InBand(id uint32, proto uint8) bool { return id>>24 == uint32(proto) }

func hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// nexthopIDs assigns stable ids: a gateway's from its family, address and
// device, a group's from its owner and family, each probing forward on a
// collision in a fixed (sorted) order, so the same policy always gets the
// same ids and a restart finds its objects where it left them.
type nexthopIDs struct {
	proto uint8
	used  map[uint32]string
	gw    map[string]uint32
}

func newNexthopIDs(proto uint8, foreign []uint32) *nexthopIDs {
	ids := &nexthopIDs{proto: proto, used: map[uint32]string{}, gw: map[string]uint32{}}
	for _, id := range foreign {
		// Held by another program: never ours to write, so skipped.
		ids.used[id] = "\x00foreign"
	}
	return ids
}

func gwKey(family int, nh Nexthop) string {
	return fmt.Sprintf("%d %s %s", family, nh.Gateway, nh.Dev)
}

func (ids *nexthopIDs) take(key string, base, span, stride uint32) uint32 {
	h := hash32(key) % span
	for i := uint32(0); i < span; i++ {
		id := idBase(ids.proto) + base + ((h+i)%span)*stride
		if owner, ok := ids.used[id]; !ok || owner == key {
			ids.used[id] = key
			return id
		}
	}
	panic("routing: nexthop id band exhausted")
}

func (ids *nexthopIDs) gateway(family int, nh Nexthop) uint32 {
	k := gwKey(family, nh)
	if id, ok := ids.gw[k]; ok {
		return id
	}
	id := ids.take(k, 0, idSpan, 1)
	ids.gw[k] = id
	return id
}

// group returns the two slots of a group.
func (ids *nexthopIDs) group(owner string, family int) [2]uint32 {
	id := ids.take(fmt.Sprintf("%s %d", owner, family), groupOffset, groupSlots, 2)
	return [2]uint32{id, id + 1}
}

// lowering is the nexthop objects of a desired state: which routes go
// through a group, and the objects they need.
type lowering struct {
	objs  []NexthopObj // gateways first, then groups, each by id
	route map[RouteKey]uint32
}

// lowerGroups turns the default route of each group in want (Owner
// "group/...", unicast, with nexthops) into a route via a nexthop group
// of form, with one gateway object per member. have is the owned objects
// now installed: a group keeps the slot it is in when its kind still
// fits, and moves to its other slot when it does not.
func lowerGroups(want State, form Form, proto uint8, have []NexthopObj, foreign []uint32) lowering {
	lw := lowering{route: map[RouteKey]uint32{}}
	if form == FormClassic || form == FormAuto {
		return lw
	}
	haveByID := make(map[uint32]NexthopObj, len(have))
	for _, o := range have {
		haveByID[o.ID] = o
	}
	ids := newNexthopIDs(proto, foreign)
	var routes []*Route
	for i := range want.Routes {
		r := &want.Routes[i]
		if strings.HasPrefix(r.Owner, "group/") && r.Type == Unicast && len(r.Nexthops) > 0 {
			routes = append(routes, r)
		}
	}
	// Gateways first, in a fixed order, so their ids do not depend on
	// which groups come first.
	var gws []NexthopObj
	seen := map[uint32]bool{}
	for _, r := range routes {
		for _, nh := range r.Nexthops {
			id := ids.gateway(r.Family, nh)
			if !seen[id] {
				seen[id] = true
				// Owned by the first group that names it, as the
				// policy knows gateways by name, not by address.
				gws = append(gws, NexthopObj{ID: id, Family: r.Family, Protocol: proto, Gateway: nh.Gateway, Dev: nh.Dev, Owner: r.Owner})
			}
		}
	}
	var groups []NexthopObj
	for _, r := range routes {
		g := NexthopObj{Protocol: proto, Owner: r.Owner}
		for _, nh := range r.Nexthops {
			g.Group = append(g.Group, GroupMember{ID: ids.gateway(r.Family, nh), Weight: max(nh.Weight, 1)})
		}
		slices.SortFunc(g.Group, func(a, b GroupMember) int { return cmp.Compare(a.ID, b.ID) })
		if form == FormResilient {
			rc := DefaultResilience
			if r.Resilience != nil {
				rc = *r.Resilience
			}
			g.Resilient = &rc
		}
		slots := ids.group(r.Owner, r.Family)
		g.ID = slots[0]
		if cur, ok := haveByID[slots[1]]; ok && cur.kind() == g.kind() {
			g.ID = slots[1]
		} else if cur, ok := haveByID[slots[0]]; ok && cur.kind() != g.kind() {
			g.ID = slots[1]
		}
		groups = append(groups, g)
		lw.route[r.Key()] = g.ID
	}
	byID := func(a, b NexthopObj) int { return cmp.Compare(a.ID, b.ID) }
	slices.SortFunc(gws, byID)
	slices.SortFunc(groups, byID)
	lw.objs = append(gws, groups...)
	return lw
}

// NexthopOp is one write of a nexthop object.
type NexthopOp struct {
	Kind OpKind // OpAdd, OpReplace or OpDelete
	Obj  NexthopObj
	Old  *NexthopObj // the installed object a replace overwrites
}

func (op NexthopOp) String() string {
	if op.Kind == OpDelete {
		return "- nexthop " + NexthopString(op.Obj)
	}
	return "+ nexthop " + NexthopString(op.Obj)
}

// planNexthops returns the writes that turn the owned objects have into
// want, as two lists: before the routes change (adds and replaces,
// gateways before the groups that name them) and after (deletes, groups
// before their members). A delete can never come first: deleting a
// nexthop object deletes every route that uses it.
func planNexthops(want, have []NexthopObj) (before, after []NexthopOp) {
	haveByID := make(map[uint32]*NexthopObj, len(have))
	for i := range have {
		haveByID[have[i].ID] = &have[i]
	}
	wantIDs := make(map[uint32]bool, len(want))
	for _, w := range want {
		wantIDs[w.ID] = true
		cur, ok := haveByID[w.ID]
		switch {
		case !ok:
			before = append(before, NexthopOp{Kind: OpAdd, Obj: w})
		case cur.kind() != w.kind():
			// Cannot happen: lowerGroups moves a group whose kind
			// changes to its other slot, and gateway and group ids come
			// from separate halves of the band. Should it ever, the
			// replace fails with EINVAL and the error says so, rather
			// than a delete taking the group's routes with it.
			before = append(before, NexthopOp{Kind: OpReplace, Obj: w, Old: cur})
		case !cur.equal(w):
			before = append(before, NexthopOp{Kind: OpReplace, Obj: w, Old: cur})
		}
	}
	var delGroups, delGateways []NexthopOp
	for _, h := range have {
		if wantIDs[h.ID] {
			continue
		}
		if h.IsGroup() {
			delGroups = append(delGroups, NexthopOp{Kind: OpDelete, Obj: h})
		} else {
			delGateways = append(delGateways, NexthopOp{Kind: OpDelete, Obj: h})
		}
	}
	slices.SortStableFunc(before, func(a, b NexthopOp) int {
		return cmp.Compare(boolInt(a.Obj.IsGroup()), boolInt(b.Obj.IsGroup()))
	})
	return before, append(append(after, delGroups...), delGateways...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

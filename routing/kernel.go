package routing

import (
	"errors"
	"fmt"
	"github.com/uplinkd/uplinkd/internal/rtnl"
	"log/slog"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Kernel is the production Netlink of one network namespace. Writes, rule
// dumps and link dumps go through an ordinary rtnetlink handle; route dumps
// go through a second socket with NETLINK_GET_STRICT_CHK (Linux 4.20+), on
// which the kernel itself honours the table, protocol and type a dump
// request carries. Beside a full BGP table that is the difference between
// walking a million routes in the kernel and copying, parsing and
// discarding a million routes in uplinkd on every resync.
//
// The second socket exists because strict checking also applies to the
// library's rule dumps, whose request (an ifinfomsg where the kernel wants
// a fib_rule_hdr) a strict kernel rejects.
//
// On an older kernel the option cannot be set; Kernel then says so once at
// Info and dumps through the ordinary handle, where the library applies
// the same filters in userspace: the results are identical, only slower.
type Kernel struct {
	*netlink.Handle
	dump   *netlink.Handle
	strict bool
	batch  *rtnl.Conn // pipelined rule writes (RuleBatch)
}

// NewKernel opens the sockets of a Kernel in the network namespace ns
// (netns.None(): the current one). logger may be nil (discard).
func NewKernel(ns netns.NsHandle, logger *slog.Logger) (*Kernel, error) {
	logger = orDiscard(logger)
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle: %w", err)
	}
	k := &Kernel{Handle: h, dump: h}
	if k.batch, err = rtnl.Dial(ns); err != nil {
		h.Close()
		return nil, fmt.Errorf("opening netlink batch socket: %w", err)
	}
	d, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		k.batch.Close()
		h.Close()
		return nil, fmt.Errorf("opening netlink dump handle: %w", err)
	}
	if err := d.SetStrictCheck(true); err != nil {
		d.Close()
		logger.Info("kernel lacks NETLINK_GET_STRICT_CHK (Linux < 4.20); route dumps are filtered in userspace, which costs a full dump per resync beside large routing tables", "err", err)
		return k, nil
	}
	k.dump, k.strict = d, true
	return k, nil
}

// StrictDumps reports whether the kernel filters route dumps itself.
func (k *Kernel) StrictDumps() bool { return k.strict }

// RouteListFilteredIter implements Netlink. The filter's Table, Protocol
// and Type go into the request (rtm_table or RTA_TABLE, rtm_protocol,
// rtm_type) and LinkIndex as RTA_OIF; a strict kernel then sends only the
// matching routes, and the library checks them again either way. Tos,
// Priority, Dst, Src, Gw and Scope must stay unset: a strict kernel
// rejects dump requests that carry them.
//
// A strict, family-specific dump of a table that does not exist fails
// with ENOENT; to the reconciler that is an empty table, as it is on a
// kernel without strict checking.
func (k *Kernel) RouteListFilteredIter(family int, filter *netlink.Route, mask uint64, f func(netlink.Route) bool) error {
	err := k.dump.RouteListFilteredIter(family, filter, mask, f)
	if k.strict && errors.Is(err, unix.ENOENT) && filter != nil && filter.Table != 0 && mask&netlink.RT_FILTER_TABLE != 0 {
		return nil
	}
	return err
}

// Close closes both sockets. It is idempotent.
func (k *Kernel) Close() {
	if k.dump != k.Handle {
		k.dump.Close()
	}
	k.batch.Close()
	k.Handle.Close()
}

// RuleBatch implements RuleBatcher: the rules go pipelined over one
// socket (internal/rtnl), up to rtnl.Window in flight, and each result is
// what one RuleAdd or RuleDel would have returned.
func (k *Kernel) RuleBatch(del bool, rules []Rule) []error {
	reqs := make([]rtnl.Request, len(rules))
	errs := make([]error, len(rules))
	for i, r := range rules {
		rr := rtnl.Rule{Family: uint8(afOf(r.Family)), Priority: r.Priority, Src: r.From, Dst: r.To, Mark: r.Mark, Mask: r.Mask,
			IIF: r.IIF, Table: r.Table, Protocol: r.Protocol}
		var err error
		if del {
			reqs[i], err = rtnl.RuleDeleteRequest(rr)
		} else {
			reqs[i], err = rtnl.RuleRequest(rr)
		}
		if err != nil {
			errs[i] = err
		}
	}
	// Encoding errors stay in errs; only the rest are sent.
	var send []rtnl.Request
	var idx []int
	for i := range reqs {
		if errs[i] == nil {
			send = append(send, reqs[i])
			idx = append(idx, i)
		}
	}
	for j, err := range k.batch.Batch(send) {
		errs[idx[j]] = err
	}
	return errs
}

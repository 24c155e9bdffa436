package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// FailoverConfig is one silent failure and return of uplink 1 of the NAT
// lab under traffic. The lab kills the uplink (ISP 1 drops everything
// from the router, carrier and ARP stay up) and brings it back; Down and
// Up are what the code under test does about it, called at RouteDownAt and
// RouteUpAt: withdraw uplink 1 from the router's default, and restore it.
type FailoverConfig struct {
	Flows    int // UDP flows, each its own source port from FirstPort
	TCP      int // bounded TCP streams beside them
	Rate     int // UDP packets per second, all flows together
	Duration time.Duration

	DieAt, RouteDownAt, ReturnAt, RouteUpAt time.Duration
	Down, Up                                func() error

	FirstPort int // default 44000
}

// FailoverResult is what the flows saw.
type FailoverResult struct {
	Traffic *Traffic
	// Uplink of each flow (the Server interface its replies came through)
	// before the failure, while uplink 1 was out, and at the end.
	Before, During, After []string
	// MovedAtFailover counts the flows of uplinks 2..4 that changed uplink
	// when uplink 1 was withdrawn; MovedAtReturn the flows that changed
	// uplink when it was restored (BusyMovedAtReturn: those that started
	// on uplinks 2..4; every flow sends throughout, so each is busy).
	MovedAtFailover, MovedAtReturn, BusyMovedAtReturn int
	// Uplink1Flows is how many flows used uplink 1 before the failure;
	// Resumed is, for the slowest of them, the time from the route change
	// to its first answered packet (-1 if one never recovered).
	Uplink1Flows int
	Resumed      time.Duration
	// Conntrack entries of uplinks 2..4 before the failure, and how many
	// of them were still the same entries (tuple and start time) after
	// the route change.
	OthersBefore, OthersKept int
	TCPErrors                []error
	// HealthyTCPBroken counts the TCP streams that ended in an error and
	// had not gone through uplink 1 before the failure (by their conntrack
	// entries; a stream not found there counts too): a stream through
	// uplink 1 cannot keep its NAT mapping, another should never break.
	HealthyTCPBroken int
}

// RunFailover runs cfg's scenario. The router's default must be in place
// and the echo responder running.
func (n *NATLab) RunFailover(ctx context.Context, cfg FailoverConfig) (*FailoverResult, error) {
	if cfg.FirstPort == 0 {
		cfg.FirstPort = 44000
	}
	if !(cfg.DieAt < cfg.RouteDownAt && cfg.RouteDownAt < cfg.ReturnAt && cfg.ReturnAt <= cfg.RouteUpAt && cfg.RouteUpAt < cfg.Duration) {
		return nil, errors.New("failover: the times must run die < route down < return <= route up < end")
	}
	if err := n.Router.Sysctl("net.netfilter.nf_conntrack_timestamp", "1"); err != nil {
		return nil, err
	}
	res := &FailoverResult{}
	var evMu sync.Mutex
	var evErr error
	var before, after map[string]bool
	var tcpUplink map[int]int // TCP stream's local port: its uplink before the failure
	note := func(err error) {
		if err != nil {
			evMu.Lock()
			evErr = errors.Join(evErr, err)
			evMu.Unlock()
		}
	}
	events := make(chan struct{})
	started := func(start time.Time) {
		go func() {
			defer close(events)
			at := func(d time.Duration) bool {
				t := time.NewTimer(time.Until(start.Add(d)))
				defer t.Stop()
				select {
				case <-ctx.Done():
					return false
				case <-t.C:
					return true
				}
			}
			if !at(cfg.DieAt - 50*time.Millisecond) {
				return
			}
			before, _ = n.otherEntries()
			tcpUplink = n.tcpUplinks(cfg.FirstPort+500, cfg.TCP)
			if !at(cfg.DieAt) {
				return
			}
			note(n.ISP(1).BlackholeIP(NATISPIf))
			if !at(cfg.RouteDownAt) {
				return
			}
			note(cfg.Down())
			if !at(cfg.RouteDownAt + 200*time.Millisecond) {
				return
			}
			var err error
			after, err = n.otherEntries()
			note(err)
			if !at(cfg.ReturnAt) {
				return
			}
			note(n.ISP(1).Recover())
			if !at(cfg.RouteUpAt) {
				return
			}
			note(cfg.Up())
		}()
	}
	type tcpEnd struct {
		port int
		err  error
	}
	tcpErr := make(chan tcpEnd, cfg.TCP)
	for i := 0; i < cfg.TCP; i++ {
		go func(port int) {
			_, err := RunTCP(ctx, n.Client, TCPConfig{Target: netip.AddrPortFrom(TargetAddr4, DiscardPort), LocalPort: port, Chunk: 256, Rate: 20, Duration: cfg.Duration})
			tcpErr <- tcpEnd{port, err}
		}(cfg.FirstPort + 500 + i)
	}
	ports := make([]int, cfg.Flows)
	for i := range ports {
		ports[i] = cfg.FirstPort + i
	}
	tr, err := RunUDP(ctx, n.Client, UDPConfig{Target: netip.AddrPortFrom(TargetAddr4, EchoPort), Flows: cfg.Flows, Ports: ports, Rate: cfg.Rate, Duration: cfg.Duration}, started)
	<-events
	for i := 0; i < cfg.TCP; i++ {
		if e := <-tcpErr; e.err != nil {
			res.TCPErrors = append(res.TCPErrors, fmt.Errorf("through uplink %d: %w", tcpUplink[e.port], e.err))
			if tcpUplink[e.port] != 1 { // uplinks 2..4, or not seen in conntrack: not excused
				res.HealthyTCPBroken++
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if evErr != nil {
		return nil, fmt.Errorf("failover scenario: %w", evErr)
	}
	res.Traffic = tr
	res.analyse(cfg, before, after)
	return res, nil
}

func (r *FailoverResult) analyse(cfg FailoverConfig, before, after map[string]bool) {
	tr := r.Traffic
	up1 := NATServerIf(1)
	// Windows clear of the transitions: a flow's uplink is where its
	// last answered packet in the window went.
	r.Before = make([]string, len(tr.Flows))
	r.During = make([]string, len(tr.Flows))
	r.After = make([]string, len(tr.Flows))
	r.Resumed = 0
	for f := range tr.Flows {
		r.Before[f] = tr.ViaOf(f, cfg.DieAt-500*time.Millisecond, cfg.DieAt)
		r.During[f] = tr.ViaOf(f, cfg.RouteDownAt+500*time.Millisecond, cfg.ReturnAt)
		r.After[f] = tr.ViaOf(f, cfg.Duration-500*time.Millisecond, cfg.Duration)
		switch {
		case r.Before[f] == up1:
			r.Uplink1Flows++
			first := tr.flowFirstReply(f, cfg.RouteDownAt)
			if first < 0 {
				r.Resumed = -1
			} else if r.Resumed >= 0 {
				r.Resumed = max(r.Resumed, first-cfg.RouteDownAt)
			}
		case r.During[f] != r.Before[f]:
			r.MovedAtFailover++
		}
		if r.After[f] != r.During[f] {
			r.MovedAtReturn++
			if r.Before[f] != up1 {
				r.BusyMovedAtReturn++
			}
		}
	}
	r.OthersBefore = len(before)
	for k := range before {
		if after[k] {
			r.OthersKept++
		}
	}
}

// flowFirstReply is the receive time of the first reply to a packet of
// flow sent at or after from, or -1.
func (t *Traffic) flowFirstReply(flow int, from time.Duration) time.Duration {
	f := t.Flows[flow]
	best := time.Duration(-1)
	for seq, s := range f.Sent {
		if s >= from && f.Recv[seq] >= 0 && (best < 0 || f.Recv[seq] < best) {
			best = f.Recv[seq]
		}
	}
	return best
}

// otherEntries is the set of conntrack entries of uplinks 2..4, each as
// its original tuple and start time.
func (n *NATLab) otherEntries() (map[string]bool, error) {
	flows, err := n.Conntrack()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, f := range flows {
		if u := UplinkOf(f); u >= 2 {
			out[EntryKey(f)] = true
		}
	}
	return out, nil
}

// tcpUplinks maps the local ports of the n TCP streams from first to the
// uplink their conntrack entries use (0: unknown).
func (n *NATLab) tcpUplinks(first, count int) map[int]int {
	out := map[int]int{}
	flows, err := n.Conntrack()
	if err != nil {
		return out
	}
	for _, f := range flows {
		if p := int(f.Forward.SrcPort); f.Forward.Protocol == 6 && p >= first && p < first+count {
			out[p] = UplinkOf(f)
		}
	}
	return out
}

// EntryKey identifies a conntrack entry across dumps: its original tuple
// and its start time (with net.netfilter.nf_conntrack_timestamp = 1), so
// an entry deleted and recreated shows as another one.
func EntryKey(f *netlink.ConntrackFlow) string {
	return fmt.Sprintf("%d %s:%d>%s:%d @%d", f.Forward.Protocol, f.Forward.SrcIP, f.Forward.SrcPort, f.Forward.DstIP, f.Forward.DstPort, f.TimeStart)
}

// String is the result as one line, for logs and the bench table.
func (r *FailoverResult) String() string {
	resumed := "never"
	if r.Resumed >= 0 {
		resumed = r.Resumed.Round(time.Millisecond).String()
	}
	counts := map[string]int{}
	for _, u := range r.Before {
		counts[u]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	spread := ""
	for _, k := range keys {
		spread += fmt.Sprintf(" %s:%d", k, counts[k])
	}
	return fmt.Sprintf("flows before:%s; failover: %d of %d healthy flows moved, uplink 1's %d resumed after %s, conntrack of uplinks 2..4 kept %d/%d; return: %d moved (%d busy of uplinks 2..4); tcp errors %d (%d not through uplink 1)",
		spread, r.MovedAtFailover, len(r.Before)-r.Uplink1Flows, r.Uplink1Flows, resumed, r.OthersKept, r.OthersBefore, r.MovedAtReturn, r.BusyMovedAtReturn, len(r.TCPErrors), r.HealthyTCPBroken)
}

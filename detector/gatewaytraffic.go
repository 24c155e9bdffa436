package detector

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netns"

	"github.com/uplinkd/uplinkd/detector/l2count"
)

// GatewayTraffic is the per-gateway TrafficCounters: each gateway's own
// packets, counted in the kernel by its link-layer address and family
// (package l2count, in uplinkd's nftables table). Replies through one
// gateway then no longer hide the silence of another on the same
// interface. Where the kernel cannot count per neighbour it falls back to
// the interface counters of iface, and PerGateway says so.
type GatewayTraffic struct {
	src   *l2count.Source
	table *l2count.Counter
	neigh *l2count.NetlinkNeighbours
}

// NewGatewayTraffic opens the per-gateway source of namespace ns
// (netns.None(): the caller's). It writes nothing until the first
// Counters call; iface is the fallback, not owned.
func NewGatewayTraffic(ns netns.NsHandle, iface TrafficCounters, log *slog.Logger) (*GatewayTraffic, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	table, err := l2count.Open(ns)
	if err != nil {
		return nil, fmt.Errorf("opening per-gateway counters: %w", err)
	}
	neigh, err := l2count.OpenNeighbours(ns)
	if err != nil {
		table.Close()
		return nil, fmt.Errorf("opening per-gateway counters: %w", err)
	}
	return &GatewayTraffic{table: table, neigh: neigh, src: l2count.NewSource(l2count.SourceConfig{
		Table: table, Neighbours: neigh, Logger: log.With("component", "l2count"),
		Interface: func(index int) (uint64, uint64, error) {
			cs, err := iface.Counters(index, []netip.Addr{{}})
			if err != nil {
				return 0, 0, err
			}
			if len(cs) != 1 {
				return 0, 0, errors.New("reading interface counters: no answer")
			}
			return cs[0].Tx, cs[0].Rx, nil
		},
	})}, nil
}

func (g *GatewayTraffic) Counters(index int, gws []netip.Addr) ([]Counters, error) {
	cs, err := g.src.Counters(index, gws)
	if err != nil {
		return nil, err
	}
	out := make([]Counters, len(cs))
	for i, c := range cs {
		out[i] = Counters{Tx: c.Tx, Rx: c.Rx}
	}
	return out, nil
}

// PerGateway reports whether the counts are each gateway's own and, when
// they are the interface's (the fallback), why.
func (g *GatewayTraffic) PerGateway() (bool, string) {
	m, why := g.src.Mode()
	return m == l2count.ModeNeighbour, why
}

// Withdraw deletes uplinkd's nftables table (on_exit = "withdraw").
func (g *GatewayTraffic) Withdraw() error { return g.src.Withdraw() }

// Close releases the sockets; the table stays for the next start to adopt.
func (g *GatewayTraffic) Close() error {
	var errs []error
	if g.table != nil {
		errs = append(errs, g.table.Close())
	}
	if g.neigh != nil {
		errs = append(errs, g.neigh.Close())
	}
	return errors.Join(errs...)
}

// perGateway is a TrafficCounters that may tell gateways apart.
type perGateway interface{ PerGateway() (bool, string) }

// trafficPerGateway reports whether t tells the gateways of one interface
// apart, and why not.
func trafficPerGateway(t TrafficCounters) (bool, string) {
	if pg, ok := t.(perGateway); ok {
		return pg.PerGateway()
	}
	return false, "interface counters"
}

// GatewayTrafficOf wraps a Source built elsewhere (a test's, with a fake
// table); Close then closes nothing.
func GatewayTrafficOf(src *l2count.Source) *GatewayTraffic { return &GatewayTraffic{src: src} }

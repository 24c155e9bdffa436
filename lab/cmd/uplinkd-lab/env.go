package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// env is one lab: the TwoUplinks namespaces, the echo responder on the
// server and the probe counters on both gateways.
type env struct {
	lab         *netlab.Lab
	tu          *netlab.TwoUplinks
	echo        *netlab.Proc
	stopSignals func()
}

// setupLab builds a lab and arranges for it to be torn down on Ctrl-C. The
// returned context ends on the first signal; the caller must call close.
func setupLab(parent context.Context, stderr io.Writer) (*env, context.Context, error) {
	lab, err := netlab.New()
	if err != nil {
		return nil, nil, fmt.Errorf("creating lab: %w", err)
	}
	e := &env{lab: lab}
	ctx, stop := lab.HandleSignals(parent, 10*time.Second)
	e.stopSignals = stop
	if err := e.build(ctx); err != nil {
		if cerr := e.close(); cerr != nil {
			fmt.Fprintf(stderr, "uplinkd-lab: %v\n", cerr)
		}
		return nil, nil, err
	}
	return e, ctx, nil
}

func (e *env) build(ctx context.Context) error {
	tu, err := netlab.NewTwoUplinks(e.lab)
	if err != nil {
		return fmt.Errorf("building topology: %w", err)
	}
	e.tu = tu
	return e.prepare(ctx)
}

// prepare readies a built topology for traffic: the host's multipath hash,
// the gateways' probe counters and the server's echo responder.
func (e *env) prepare(ctx context.Context) error {
	tu := e.tu
	// A layer-4 multipath hash, as a router spreading many flows would
	// use: with the default layer-3 hash every flow from the one host to
	// the one server would take the same nexthop.
	for _, k := range []string{"net.ipv4.fib_multipath_hash_policy", "net.ipv6.fib_multipath_hash_policy"} {
		if err := tu.Host.Sysctl(k, "1"); err != nil {
			return err
		}
	}
	for _, gw := range []*netlab.Host{tu.GW1, tu.GW2} {
		if err := netlab.InstallCounters(gw, netlab.GWDownlinkIf); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the lab binary: %w", err)
	}
	e.echo, err = tu.Server.Start(self, "echo", "--max", "30m")
	if err != nil {
		return err
	}
	if !poll(ctx, 10*time.Second, func() bool { return strings.Contains(e.echo.Output(), "ready") }) {
		return fmt.Errorf("starting the echo responder: not ready after 10s: %s", strings.TrimSpace(e.echo.Output()))
	}
	return nil
}

// close tears the lab down (processes, then namespaces).
func (e *env) close() error {
	err := e.lab.Close()
	e.stopSignals()
	return err
}

// kernelBaseline gives the host what a user has without uplinkd: a static
// multipath default with the kernel's own dead-nexthop avoidance turned
// on. Only inside the lab's host namespace.
func (e *env) kernelBaseline() error {
	h := e.tu.Host
	for _, k := range []string{
		"net.ipv4.fib_multipath_use_neigh",
		"net.ipv4.conf.all.ignore_routes_with_linkdown",
		"net.ipv4.conf." + netlab.HostUplink1If + ".ignore_routes_with_linkdown",
		"net.ipv4.conf." + netlab.HostUplink2If + ".ignore_routes_with_linkdown",
	} {
		if err := h.Sysctl(k, "1"); err != nil {
			return err
		}
	}
	_, err := h.MustRun("ip", "route", "add", "default", "proto", "static",
		"nexthop", "via", netlab.GW1Addr4.String(), "dev", netlab.HostUplink1If, "weight", "1",
		"nexthop", "via", netlab.GW2Addr4.String(), "dev", netlab.HostUplink2If, "weight", "1")
	return err
}

// defaultRoute is `ip route show default` in the host, as printed.
func (e *env) defaultRoute() string {
	out, err := e.tu.Host.Run("ip", "-4", "route", "show", "default")
	if err != nil {
		return "(ip route failed: " + strings.TrimSpace(out) + ")"
	}
	return strings.TrimRight(out, "\n")
}

// routeUsesBoth reports whether the host's default route has a nexthop
// through each gateway.
func (e *env) routeUsesBoth() bool {
	r := e.defaultRoute()
	return strings.Contains(r, "via "+netlab.GW1Addr4.String()) && strings.Contains(r, "via "+netlab.GW2Addr4.String())
}

// routeUses reports whether the host's default route goes through gateway n.
func (e *env) routeUses(n int) bool {
	gw := netlab.GW1Addr4
	if n == 2 {
		gw = netlab.GW2Addr4
	}
	return strings.Contains(e.defaultRoute(), "via "+gw.String())
}

// counts reads the probe counters of both gateways.
func (e *env) counts() ([2]netlab.Counts, error) {
	var c [2]netlab.Counts
	for i, gw := range []*netlab.Host{e.tu.GW1, e.tu.GW2} {
		v, err := netlab.ReadCounters(gw)
		if err != nil {
			return c, err
		}
		c[i] = v
	}
	return c, nil
}

// flows picks source ports so that half the flows leave through each
// uplink under the current multipath route.
func (e *env) flows(n int, proto string, dport, first int) ([]int, map[int]string, error) {
	per := map[string]int{netlab.HostUplink1If: n / 2, netlab.HostUplink2If: n - n/2}
	return netlab.PickPorts(e.tu.Host, netlab.TargetAddr4, proto, dport, per, first)
}

// ifaceGateway names the gateway behind a server interface.
func ifaceGateway(iface string) string {
	switch iface {
	case netlab.ServerGW1If:
		return "gw1"
	case netlab.ServerGW2If:
		return "gw2"
	}
	return iface
}

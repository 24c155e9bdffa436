package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
)

// asMainEnv makes the test binary behave as uplinkd-lab itself, so the lab
// can start its echo responder (`uplinkd-lab echo`) from os.Executable()
// in the server namespace as it does in production.
const asMainEnv = "UPLINKD_LAB_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Setenv(asMainEnv, "1") // inherited by the children this binary starts
	os.Exit(m.Run())
}

// lossPolicy is demo.toml with gw1 probed on a timer (so loss on a gateway
// that still forwards most traffic shows up in probe results) and moved to
// a lower tier while degraded, so a lossy gw1 gives its traffic to gw2
// whether it is judged degraded or down.
const lossPolicy = `
[daemon]
listen = "127.0.0.1:9474"
log_format = "json"
control_socket = ""

[kernel]
fib_multipath_hash_policy = "l4"

[profile.lossy]
gating = "always"
interval = "100ms"
window = "3s"
min_samples = 5
# At 60 % loss three good probes in a row are not rare; ten are (1e-4), so
# gw1 cannot slip back in while the fault lasts. Probing a down gw1 every
# 200 ms still brings it back within seconds once the loss is gone.
up_count = 10
recovery_interval = "200ms"

[gateway.gw1]
address = "198.18.1.1"
interface = "eth1"
profile = "lossy"
degraded_tier = 2
[gateway.gw1.probe]
icmp = ["198.18.100.2"]

[gateway.gw2]
address = "198.18.2.1"
interface = "eth2"
[gateway.gw2.probe]
icmp = ["198.18.100.2"]

[group.wan]
gateways = ["gw1", "gw2"]
`

// TestFailoverAndBack runs a short lab per fault family: with traffic
// flowing over both gateways, gw1 fails; every flow must end up answered
// through gw2 alone; gw1 recovers; traffic must flow through gw1 again. It
// asserts where traffic went, never how fast: timings are the bench's job.
func TestFailoverAndBack(t *testing.T) {
	bin, err := daemontest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	demoPolicy := filepath.Join(daemontest.Root(), "contrib", "examples", "demo.toml")
	lossFile := filepath.Join(t.TempDir(), "loss.toml")
	if err := os.WriteFile(lossFile, []byte(lossPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fault  netlab.Fault
		policy string
		opts   netlab.FaultOptions
	}{
		{netlab.FaultBlackhole, demoPolicy, netlab.FaultOptions{}},
		{netlab.FaultLinkDown, demoPolicy, netlab.FaultOptions{}},
		{netlab.FaultUpstream, demoPolicy, netlab.FaultOptions{}},
		{netlab.FaultLoss, lossFile, netlab.FaultOptions{LossPercent: 60}},
	} {
		t.Run(string(tc.fault), func(t *testing.T) {
			failoverAndBack(t, bin, tc.policy, tc.fault, tc.opts)
		})
	}
}

func failoverAndBack(t *testing.T, bin, policyFile string, fault netlab.Fault, opts netlab.FaultOptions) {
	ntu := nstest.NewTwoUplinks(t)
	e := &env{lab: ntu.Lab.Lab, stopSignals: func() {}, tu: &netlab.TwoUplinks{
		Lab: ntu.Lab.Lab, Host: ntu.Host.Host, GW1: ntu.GW1.Host, GW2: ntu.GW2.Host, Server: ntu.Server.Host,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := e.prepare(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(ctx, e.tu.Host, bin, policyFile, listen)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("uplinkd output:\n%s", netlab.Tail(d.p.Output(), 8000))
		}
		_ = d.stop()
	}()
	waitFor(t, 20*time.Second, "a default route over both gateways", e.routeUsesBoth, e.defaultRoute)

	ports, _, err := e.flows(demoFlows, "udp", netlab.EchoPort, 40000)
	if err != nil {
		t.Fatal(err)
	}
	prog := &netlab.Progress{}
	run := startUDPProgress(ctx, e.tu.Host, ports, 150*time.Second, prog)
	defer run.stop()
	recent := func(iface string) func() bool {
		return func() bool { return time.Since(prog.LastVia(iface)) < 200*time.Millisecond }
	}
	waitFor(t, 10*time.Second, "replies through both gateways", func() bool {
		return recent(netlab.ServerGW1If)() && recent(netlab.ServerGW2If)()
	}, e.defaultRoute)

	if err := e.tu.Inject(1, fault, opts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the default route to leave gw1", func() bool { return !e.routeUses(1) }, e.defaultRoute)
	// Packets already on their way through gw1 may still come back.
	time.Sleep(300 * time.Millisecond)
	moved := time.Now()
	waitFor(t, 10*time.Second, "every flow answered", func() bool { return prog.Flowing(100 * time.Millisecond) }, e.defaultRoute)
	time.Sleep(time.Second)
	failedOver := time.Now()

	if err := e.tu.Inject(1, netlab.FaultRecover, netlab.FaultOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "gw1 back in the default route", func() bool { return e.routeUses(1) }, e.defaultRoute)
	back := time.Now()
	waitFor(t, 10*time.Second, "replies through gw1 again", recent(netlab.ServerGW1If), e.defaultRoute)
	time.Sleep(500 * time.Millisecond)

	tr, err := run.stop()
	if err != nil {
		t.Fatal(err)
	}
	off := func(at time.Time) time.Duration { return at.Sub(tr.Start) }
	during := tr.Delivered(off(moved), off(failedOver))
	if during.Via[netlab.ServerGW1If] != 0 || during.Via[netlab.ServerGW2If] == 0 {
		t.Errorf("after failover, replies came %v; want all through gw2 (%s)", during.Via, netlab.ServerGW2If)
	}
	if g := tr.LongestGap(off(moved), off(failedOver)); g.Open {
		t.Errorf("after failover, flow :%d got no reply any more (%d lost)", tr.Flows[g.Flow].Port, g.Lost)
	}
	after := tr.Delivered(off(back), tr.End)
	if after.Via[netlab.ServerGW1If] == 0 || after.Via[netlab.ServerGW2If] == 0 {
		t.Errorf("after recovery, replies came %v; want both gateways used again", after.Via)
	}
	if g := tr.LongestGap(off(back), tr.End+time.Millisecond); g.Open {
		t.Errorf("after recovery, flow :%d got no reply any more", tr.Flows[g.Flow].Port)
	}
	t.Logf("%s: failed over: %s; back: %s", fault, during, after)
}

// waitFor polls cond every 20 ms up to timeout and fails the test, showing
// state(), if it never holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; state:\n%s", timeout, what, strings.TrimSpace(state()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package reliability

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
)

// Fault 1: uplinkd (IPv4 and IPv6 groups, per-source tables) is SIGKILLed (no on_exit handling, no chance to clean
// up) while traffic flows. The routes and rules stay in the kernel while
// it is gone; the restart with the same policy writes nothing — neither
// `ip monitor route rule` nor uplinkd_netlink_writes_total{result="ok"}
// sees a change — and health converges again without a false "down".
func TestSIGKILLRestartWritesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pol := r.policy(polOpts{Tables: true, V6: true})
	r.traffic(60 * time.Second)
	r.start(pol)
	r.waitBothUp()
	r.waitState("isp1v6", "up")
	r.waitState("isp2v6", "up")
	before := r.owned()
	if !strings.Contains(before, "table 201") || !strings.Contains(before, "lookup 201") || !strings.Contains(before, "-6 route default") || !strings.Contains(before, "lookup 211") {
		t.Fatalf("the policy's tables and rules are not installed:\n%s", before)
	}

	r.signal(syscall.SIGKILL)
	if err := r.Host.Wait(r.d.Cmd, 10*time.Second); err == nil {
		t.Fatal("uplinkd exited cleanly after SIGKILL?")
	}
	// Gone: nothing withdraws anything. Watch for a while with traffic on.
	hold(t, 2*time.Second, "routes in place while uplinkd is dead", func() (bool, string) {
		now := r.owned()
		return now == before, fmt.Sprintf("owned state changed:\n%s\nwant\n%s", now, before)
	})
	if err := r.Host.Ping(t, "-c", "1", "-W", "1", "198.18.100.1"); err != nil {
		t.Fatalf("no traffic through the routes left by the dead daemon: %v", err)
	}

	mon := r.monitor()
	mark := len(r.Host.Output(mon))
	d := r.start(pol)
	r.waitBothUp()
	r.waitState("isp1v6", "up")
	r.waitState("isp2v6", "up")
	// Let the reconciler and the detector run a while: any late write or
	// false transition would show now.
	time.Sleep(3 * time.Second)

	if ch := ownedChanges(r.Host.Output(mon), mark); len(ch) > 0 {
		t.Errorf("the restart changed %d owned routes/rules:\n%s", len(ch), strings.Join(ch, "\n"))
	}
	if ok, present := r.metric("uplinkd_netlink_writes_total", map[string]string{"result": "ok"}); present && ok != 0 {
		t.Errorf("uplinkd_netlink_writes_total{result=ok} = %v after the restart, want 0 or absent", ok)
	}
	if after := r.owned(); after != before {
		t.Errorf("owned state changed across the restart:\nbefore\n%s\nafter\n%s", before, after)
	}
	if downs := logTransitions(d.Output(), "down"); len(downs) > 0 {
		t.Errorf("false down after the restart:\n%s", strings.Join(downs, "\n"))
	}
	if h := r.hookEvents("gateway_down"); len(h) > 0 {
		t.Errorf("gateway_down hook fired across the restart: %q", h)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range st.Gateways {
		if g.State != "up" {
			t.Errorf("gateway %s is %s after the restart, want up", g.Name, g.State)
		}
	}
	t.Logf("restart: %d owned routes/rules kept, 0 written", strings.Count(before, "\n")+1)
}

// Issue 11.1: a restart while a gateway is dead adopts the kernel state it
// left. isp1 dies (IP black-holed, ARP still answered) and is withdrawn;
// then uplinkd is SIGKILLed, or SIGTERMed with on_exit = "leave", and
// started again with traffic flowing. Before the fix every gateway started
// up (a REACHABLE neighbour counted), isp1 was written back into the
// multipath default and withdrawn again about 375 ms later: 2 writes and
// a gap on every flow the kernel hashed to isp1. Now: 0 writes in the 10 s
// after start, no packet lost on flows that would hash to isp1 (they stay
// on isp2, the live gateway), and isp1 stays out until its fault is
// removed.
func TestRestartOverDeadGateway(t *testing.T) {
	for name, sig := range map[string]syscall.Signal{"SIGKILL": syscall.SIGKILL, "SIGTERM": syscall.SIGTERM} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			restartOverDeadGateway(t, sig)
		})
	}
}

func restartOverDeadGateway(t *testing.T, sig syscall.Signal) {
	r := newRig(t)
	r.Host.Sysctl(t, "net.ipv4.fib_multipath_hash_policy", "1") // flows spread by port
	r.echo()
	pol := daemontest.SetDaemonKeys(r.policy(polOpts{}), map[string]string{"on_exit": `"leave"`})
	r.start(pol)
	r.waitBothUp()
	// Flows chosen while both gateways carry: half of them hash to isp1
	// whenever isp1 is in the route.
	ports, devOf, err := netlab.PickPorts(r.Host.Host, nstest.TargetAddr4, "udp", netlab.EchoPort,
		map[string]int{nstest.HostUplink1If: 3, nstest.HostUplink2If: 3}, 20000)
	if err != nil {
		t.Fatal(err)
	}

	r.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	r.waitState("isp1", "down")
	r.waitFor(10*time.Second, "isp1 out of the default route", func() (bool, string) {
		def := r.mainDefault()
		return !strings.Contains(def, nstest.GW1Addr4.String()), def
	})

	var prog netlab.Progress
	stop := make(chan struct{})
	res := make(chan *netlab.Traffic, 1)
	go func() {
		tr, err := netlab.RunUDP(context.Background(), r.Host.Host, netlab.UDPConfig{
			Target: netip.AddrPortFrom(nstest.TargetAddr4, netlab.EchoPort), Flows: len(ports), Ports: ports,
			Rate: 300, Duration: 25 * time.Second, Stop: stop, Progress: &prog,
		}, nil)
		if err != nil {
			t.Errorf("traffic: %v", err)
		}
		res <- tr
	}()
	r.waitFor(10*time.Second, "every flow answered through isp2", func() (bool, string) {
		return prog.Flowing(200 * time.Millisecond), "not yet"
	})

	r.signal(sig)
	if err := r.Host.Wait(r.d.Cmd, 15*time.Second); (err == nil) != (sig == syscall.SIGTERM) {
		t.Fatalf("uplinkd after %v: %v", sig, err)
	}
	mon := r.monitor()
	mark := len(r.Host.Output(mon))
	restart := time.Now()
	d := r.launch(pol)
	r.waitJudged(d)
	// The 10 s after start: isp1 never comes back, even for a moment.
	for time.Since(restart) < 10*time.Second {
		if def := r.mainDefault(); strings.Contains(def, nstest.GW1Addr4.String()) {
			t.Fatalf("%v after start: isp1 is back in the default route while dead: %q", time.Since(restart), def)
		}
		time.Sleep(100 * time.Millisecond)
	}
	window := time.Since(restart)
	close(stop)
	tr := <-res

	if ch := ownedChanges(r.Host.Output(mon), mark); len(ch) > 0 {
		t.Errorf("the restart changed %d owned routes/rules:\n%s", len(ch), strings.Join(ch, "\n"))
	}
	if w, present := r.metric("uplinkd_netlink_writes_total", map[string]string{"result": "ok"}); present && w != 0 {
		t.Errorf("uplinkd_netlink_writes_total{result=ok} = %v in the %v after start, want 0", w, window.Round(time.Second))
	}
	g, err := d.Gateway("isp1")
	if err != nil {
		t.Fatal(err)
	}
	if g.State != "down" || g.Reason != "absent from owned routes at start" {
		t.Errorf("isp1 after the restart: state %s, reason %q; want down, \"absent from owned routes at start\"", g.State, g.Reason)
	}
	if tr != nil {
		from := restart.Sub(tr.Start)
		to := from + window
		if gap := tr.LongestGap(from, to); !gap.Valid || gap.Lost > 0 {
			t.Errorf("flows lost packets across the restart (flow port %d, hashed to %s with both gateways up): %d lost over %.0f ms",
				tr.Flows[gap.Flow].Port, devOf[tr.Flows[gap.Flow].Port], gap.Lost, gap.Ms())
		}
		dl := tr.Delivered(from, to)
		if dl.Via[nstest.ServerGW1If] > 0 || dl.Via[nstest.ServerGW2If] == 0 {
			t.Errorf("traffic across the restart went %s; want everything through isp2 (server %s)", dl, nstest.ServerGW2If)
		}
		t.Logf("restart after %v: %s, 0 writes", sig, dl)
	}

	// The dead gateway rejoins once its fault is gone, after up_count good
	// probes.
	r.GW1.Recover(t)
	r.waitBothUp()
}

// TestRestartKeepAllDown: with last_resort = "keep" and both gateways
// dead (IP black-holed, ARP still answered), the kept default names both,
// as the all-up one does, so nothing is adopted as down. A SIGKILL and a
// restart over it must write nothing in the 10 s after start: the first
// verdict (one gateway down, the other still unknown) must not move the
// route onto the other only for the next to move it back.
func TestRestartKeepAllDown(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pol := r.policy(polOpts{})
	r.start(pol)
	r.waitBothUp()
	r.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	r.GW2.BlackholeIP(t, nstest.GWDownlinkIf)
	r.waitState("isp1", "down")
	r.waitState("isp2", "down")
	r.waitFor(10*time.Second, "both gateways kept in the default", func() (bool, string) {
		def := r.mainDefault()
		return twoNexthops.MatchString(def), def
	})
	before := r.owned()

	r.signal(syscall.SIGKILL)
	if err := r.Host.Wait(r.d.Cmd, 10*time.Second); err == nil {
		t.Fatal("uplinkd exited cleanly after SIGKILL?")
	}
	mon := r.monitor()
	mark := len(r.Host.Output(mon))
	restart := time.Now()
	d := r.launch(pol)
	r.waitJudged(d)
	r.waitState("isp1", "down")
	r.waitState("isp2", "down")
	if rest := 10*time.Second - time.Since(restart); rest > 0 {
		time.Sleep(rest) // any late write would show in the window
	}
	if ch := ownedChanges(r.Host.Output(mon), mark); len(ch) > 0 {
		t.Errorf("the restart changed %d owned routes/rules:\n%s\nuplinkd:\n%s", len(ch), strings.Join(ch, "\n"), tail(d.Output(), 4000))
	}
	if w, present := r.metric("uplinkd_netlink_writes_total", map[string]string{"result": "ok"}); present && w != 0 {
		t.Errorf("uplinkd_netlink_writes_total{result=ok} = %v in the 10 s after start, want 0", w)
	}
	if after := r.owned(); after != before {
		t.Errorf("owned state changed across the restart:\nbefore\n%s\nafter\n%s", before, after)
	}
	r.GW2.Recover(t)
	r.waitFor(30*time.Second, "isp2 alone in the default once it is back", func() (bool, string) {
		def := r.mainDefault()
		return strings.Contains(def, "via 198.18.2.1") && !strings.Contains(def, "198.18.1.1"), def
	})
}

// echo runs the lab's UDP echo responder on the Server's target address
// until the test ends.
func (r *rig) echo() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.Server.Do(func() error { return netlab.ServeEcho(ctx, nstest.TargetAddr4, func() { close(ready) }) })
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		r.t.Fatalf("echo responder: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		r.t.Fatal("echo responder did not start")
	}
	r.t.Cleanup(func() { cancel(); <-done })
}

package reliability

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
	"golang.org/x/sys/unix"
)

// Fault 4: the gateway's MAC address changes, as when the backup of a
// VRRP pair takes over and announces itself. Traffic keeps flowing and the
// gateway never goes down.
func TestGatewayMACChangeNoFalseDown(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.traffic(60 * time.Second)
	d := r.start(r.policy(polOpts{}))
	r.waitBothUp()
	changes0, _ := r.metric("uplinkd_neighbour_lladdr_changes_total", map[string]string{"gateway": "isp1"})

	for i, mac := range []string{"02:00:5e:00:01:01", "02:00:5e:00:01:02", "02:00:5e:00:01:01"} {
		// The new master takes the address and announces it: its ARP
		// request for the host carries the new MAC, which the host's
		// kernel takes into its neighbour entry for the gateway.
		// One command, as a VRRP master takes over: the address moves
		// and is announced at once (three separate execs left a window
		// of 100+ ms under load in which the host sent to the old MAC,
		// a real outage that a fast detector rightly calls down).
		if _, err := r.GW1.Run("sh", "-c", fmt.Sprintf("ip link set dev %[1]s address %[2]s && ip neigh flush dev %[1]s && ping -n -q -c 1 -W 1 %[3]s",
			nstest.GWDownlinkIf, mac, nstest.Host1Addr4)); err != nil {
			t.Fatalf("failover %d: the new master cannot reach the host: %v", i, err)
		}
		r.waitFor(10*time.Second, "the host to learn the new MAC", func() (bool, string) {
			n := r.ipOut("neigh", "show", nstest.GW1Addr4.String(), "dev", nstest.HostUplink1If)
			return strings.Contains(n, mac), n
		})
		hold(t, 2*time.Second, "isp1 up after the MAC change", func() (bool, string) {
			s := r.state("isp1")
			return s == "up", "isp1 is " + s
		})
	}
	if downs := logTransitions(d.Output(), "down"); len(downs) > 0 {
		t.Errorf("MAC changes caused a false down:\n%s", strings.Join(downs, "\n"))
	}
	if h := r.hookEvents("gateway_down"); len(h) > 0 {
		t.Errorf("gateway_down fired on a MAC change: %q", h)
	}
	// Each failover changed the host's neighbour entry for isp1 once, and
	// the detector must have seen each one (it is what makes it re-check
	// the gateway instead of trusting the old confirmation).
	changes, _ := r.metric("uplinkd_neighbour_lladdr_changes_total", map[string]string{"gateway": "isp1"})
	if got := changes - changes0; got != 3 {
		t.Errorf("uplinkd_neighbour_lladdr_changes_total{gateway=isp1} rose by %v over 3 MAC changes, want 3 (%v -> %v)", got, changes0, changes)
	}
	t.Logf("3 MAC changes: isp1 stayed up; uplinkd_neighbour_lladdr_changes_total{gateway=isp1} %v -> %v", changes0, changes)
}

// Fault 5: the netlink subscriptions overflow (ENOBUFS). uplinkd is
// stalled with SIGSTOP — as a starved or swapped-out daemon would be — so
// its sockets stop draining, while a burst of tens of thousands of foreign
// route changes overflows their receive buffers, and an owned route is
// deleted in the middle of it. (A smaller buffer cannot be forced from
// outside: net.core.rmem_max is read-only in a child namespace on this
// kernel and uplinkd has no buffer-size knob.) After SIGCONT uplinkd finds
// the overflow, resyncs in full and ends in the right state.
func TestNetlinkOverflowResyncs(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.traffic(90 * time.Second)
	d := r.start(r.policy(polOpts{Tables: true}))
	r.waitBothUp()
	want := r.owned()
	enobufs0, _ := r.metric("uplinkd_resyncs_total", map[string]string{"reason": "enobufs"})

	// Foreign defaults of other metrics in table 201: the route socket's
	// kernel filter keeps them (family, prefix length and table of a
	// wanted key), so they reach and overflow the socket, and only the
	// reconciler's own filter drops them. Routes elsewhere never would.
	const n = 6000
	var add, del strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&add, "route add default dev lo table 201 metric %d\n", i+1)
		fmt.Fprintf(&del, "route del default dev lo table 201 metric %d\n", i+1)
	}
	proc := r.Host.ProcOf(d.Cmd)
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = proc.Signal(syscall.SIGCONT)
		}
	}()
	for round := 0; round < 3; round++ {
		if out, err := r.Host.RunInput(add.String(), "ip", "-batch", "-"); err != nil {
			t.Fatalf("adding the burst: %v: %s", err, out)
		}
		if round == 1 {
			// An owned route vanishes while the sockets overflow: only a
			// full re-read can find out.
			r.ipOut("route", "del", "default", "table", "201", "proto", "212")
		}
		if out, err := r.Host.RunInput(del.String(), "ip", "-batch", "-"); err != nil {
			t.Fatalf("deleting the burst: %v: %s", err, out)
		}
	}
	// The detector's link and neighbour subscriptions overflow too: a
	// veth pair inside the host namespace flapped a thousand times, and
	// thousands of neighbour entries on eth2 added and removed.
	r.ipOut("link", "add", "flap0", "type", "veth", "peer", "name", "flap1")
	var flaps, neigh strings.Builder
	for i := 0; i < 1000; i++ {
		flaps.WriteString("link set flap0 up\nlink set flap0 down\n")
	}
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&neigh, "neigh replace 198.18.2.%d lladdr 02:00:00:00:%02x:%02x dev eth2 nud permanent\n", i%250+3, i/256, i%256)
	}
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&neigh, "neigh del 198.18.2.%d dev eth2\n", i+3)
	}
	for _, batch := range []string{flaps.String(), neigh.String()} {
		if out, err := r.Host.RunInput(batch, "ip", "-batch", "-"); err != nil {
			t.Fatalf("bursting links and neighbours: %v: %s", err, tail(out, 500))
		}
	}
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	r.waitFor(30*time.Second, "a resync for ENOBUFS", func() (bool, string) {
		v, _ := r.metric("uplinkd_resyncs_total", map[string]string{"reason": "enobufs"})
		return v > enobufs0, fmt.Sprintf("uplinkd_resyncs_total{reason=enobufs} = %v", v)
	})
	r.waitFor(30*time.Second, "the owned state restored", func() (bool, string) {
		now := r.owned()
		return now == want, fmt.Sprintf("owned now:\n%s\nwant:\n%s", now, want)
	})
	r.waitBothUp()
	resubs := strings.Count(d.Output(), "subscription failed, resubscribing")
	// uplinkd keeps working after the overflow: the detector still sees a
	// carrier loss (through its resubscribed link watcher) and the routes
	// follow.
	r.GW1.LinkDown(t, nstest.GWDownlinkIf)
	r.waitFor(30*time.Second, "isp1 out of the default after the overflow", func() (bool, string) {
		def := r.mainDefault()
		return !strings.Contains(def, "198.18.1.1") && strings.Contains(def, "198.18.2.1"), def
	})
	// With nexthop objects the kernel itself drops a gateway whose link
	// lost carrier from the group, so the route may change before the
	// detector has said so: wait for the detector too.
	r.waitFor(30*time.Second, "the carrier loss seen by the detector", func() (bool, string) {
		downs := logTransitions(d.Output(), "down")
		return len(downs) > 0, strings.Join(downs, "\n")
	})
	enobufs, _ := r.metric("uplinkd_resyncs_total", map[string]string{"reason": "enobufs"})
	downs := logTransitions(d.Output(), "down")
	if len(downs) != 1 || !strings.Contains(downs[0], "cause=carrier") {
		t.Errorf("want exactly one down, for the carrier loss, got:\n%s", strings.Join(downs, "\n"))
	}
	t.Logf("stalled through 3 bursts of %d foreign route adds+deletes, 2,000 link flaps and 3,250 neighbour changes: %v ENOBUFS resyncs, %d detector resubscriptions, owned state restored, carrier loss still seen",
		n, enobufs-enobufs0, resubs)
}

// Fault 6: another program fights over uplinkd's routes and rules: it
// deletes the owned default, replaces it with a wrong one of uplinkd's
// protocol and deletes an owned rule, in a bounded loop. uplinkd repairs
// each, counts the repairs, and stays within its rate limit (a burst of 5
// repair passes, then 2 per second) rather than spinning. A foreign route
// in a managed table is left alone throughout.
func TestRouteFightRepairedRateLimited(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.traffic(60 * time.Second)
	r.start(r.policy(polOpts{Tables: true}))
	r.waitBothUp()
	want := r.owned()
	r.ipOut("route", "add", "198.19.7.0/24", "via", "198.18.1.1", "dev", nstest.HostUplink1If, "table", "201", "proto", "static")
	foreign := r.ipOut("route", "show", "table", "201", "proto", "static")

	repairs := func() float64 {
		v, _ := r.metric("uplinkd_drift_repairs_total", nil)
		return v
	}
	r0 := repairs()
	const iterations = 60
	const pause = 0.1 // seconds
	script := fmt.Sprintf(`for i in $(seq 1 %d); do
  ip route del default table main proto 212 2>/dev/null
  ip route replace default via 198.18.2.1 dev eth2 proto 212 table 201 2>/dev/null
  ip rule del priority 1001 2>/dev/null
  sleep %v
done`, iterations, pause)
	start := time.Now()
	fighter := r.Host.Start(t, "sh", "-c", script)
	if err := r.Host.Wait(fighter, 60*time.Second); err != nil {
		t.Fatalf("the fighter: %v\n%s", err, r.Host.Output(fighter))
	}
	during := repairs() - r0
	// The window ends when the counter is read, so every token the
	// limiter could have refilled by then is counted.
	window := time.Since(start).Seconds()

	r.waitFor(30*time.Second, "the owned state repaired after the fight", func() (bool, string) {
		now := r.owned()
		return now == want, fmt.Sprintf("owned now:\n%s\nwant:\n%s", now, want)
	})
	total := repairs() - r0
	if total == 0 {
		t.Fatal("no drift repairs counted")
	}
	// Each repair pass may fix the route, the replaced route and the rule:
	// at most 3 objects per token. The limiter allows a burst of 5 passes,
	// then 2 per second (routing's repairBurst and repairRate), measured
	// from before the first attack to the reading of the counter: that is
	// the real limit, with no factor for timing.
	const perPass, burst, rate = 3, 5, 2
	budget := perPass * (burst + rate*window)
	if during > budget {
		t.Errorf("%v repairs in %.1fs of fighting: more than the limiter's budget of %.1f objects (%d per pass, %d passes + %d/s)", during, window, budget, perPass, burst, rate)
	}
	if now := r.ipOut("route", "show", "table", "201", "proto", "static"); now != foreign {
		t.Errorf("the foreign route in managed table 201 was touched: %q, want %q", now, foreign)
	}
	if fam, _ := r.metric("uplinkd_drift_repairs_total", map[string]string{"object": "rule"}); fam == 0 {
		t.Errorf("rule repairs not counted")
	}
	t.Logf("fight: %d rounds of 3 attacks over %.1fs; %v objects repaired during it (budget %.0f), %v in total; foreign route untouched",
		iterations, window, during, budget, total)
}

// Fault 7: every gateway dies. With the default last_resort ("keep") the
// host is never without a default route — polled every 20 ms and watched
// on a route subscription for deletions — and with "unreachable" the
// default becomes an unreachable route; both come back when a gateway does.
func TestAllGatewaysDown(t *testing.T) {
	for _, lr := range []string{"", "unreachable"} {
		name := lr
		if name == "" {
			name = "default-keep"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.traffic(60 * time.Second)
			r.start(r.policy(polOpts{LastResort: lr}))
			r.waitBothUp()
			mon, err := netlab.MonitorRoutes(r.Host.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer mon.Close()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			var gaps []string
			polls := 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				tk := time.NewTicker(20 * time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tk.C:
					}
					out, err := r.Host.Run("ip", "route", "show", "default", "table", "main")
					mu.Lock()
					polls++
					if err != nil || strings.TrimSpace(out) == "" {
						gaps = append(gaps, fmt.Sprintf("%s: %q %v", time.Now().Format("15:04:05.000"), out, err))
					}
					mu.Unlock()
				}
			}()
			r.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
			r.GW2.BlackholeIP(t, nstest.GWDownlinkIf)
			r.waitState("isp1", "down")
			r.waitState("isp2", "down")
			switch lr {
			case "":
				r.waitFor(10*time.Second, "both gateways kept in the default", func() (bool, string) {
					def := r.mainDefault()
					return twoNexthops.MatchString(def), def
				})
			case "unreachable":
				r.waitFor(10*time.Second, "an unreachable default", func() (bool, string) {
					def := r.mainDefault()
					return strings.HasPrefix(def, "unreachable default"), def
				})
			}
			time.Sleep(time.Second)
			r.GW2.Recover(t)
			r.waitFor(30*time.Second, "isp2 back in the default", func() (bool, string) {
				def := r.mainDefault()
				return r.state("isp2") == "up" && strings.Contains(def, "via 198.18.2.1") && !strings.Contains(def, "198.18.1.1") && !strings.Contains(def, "unreachable"),
					fmt.Sprintf("isp2 %s default %q", r.state("isp2"), def)
			})
			close(stop)
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if len(gaps) > 0 {
				t.Errorf("the host was without a default route in %d of %d polls: %s", len(gaps), polls, strings.Join(gaps, "; "))
			}
			for _, e := range mon.Events() {
				if e.Type == unix.RTM_DELROUTE && e.Default && e.Table == unix.RT_TABLE_MAIN && e.Route.Family == unix.AF_INET {
					t.Errorf("the main default was deleted at %s: %+v", e.At.Format("15:04:05.000"), e.Route)
				}
			}
			if err := mon.Err(); err != nil {
				t.Errorf("the route monitor lost events (%v): the no-deletion proof is incomplete", err)
			}
			t.Logf("last_resort %q: %d polls of the default, %d without one, %d route events, 0 deletions of the default", lr, polls, len(gaps), len(mon.Events()))
		})
	}
}

// Fault 8: hooks misbehave — one hangs, one fails, one prints megabytes —
// on every gateway event. The daemon is unaffected: routes still follow
// the gateway, /status answers throughout, the hooks are counted with the
// right results, and the output the daemon keeps (its log) stays bounded.
func TestMisbehavingHooks(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	hang := r.writeFile("hang-hook", "#!/bin/sh\nexec sleep 3600\n", 0o755)
	const hookTimeout = 5 * time.Second
	fail := r.writeFile("fail-hook", "#!/bin/sh\necho failing on purpose >&2\nexit 3\n", 0o755)
	// 8 MiB per run, in lines, to stdout and stderr.
	chatty := r.writeFile("chatty-hook", "#!/bin/sh\nhead -c 4194304 /dev/zero | tr '\\0' 'x' | fold -w 100\nhead -c 4194304 /dev/zero | tr '\\0' 'y' | fold -w 100 >&2\n", 0o755)
	extra := ""
	for _, h := range []struct{ name, path string }{{"hang", hang}, {"fail", fail}, {"chatty", chatty}} {
		extra += fmt.Sprintf("\n[hook.%s]\ncommand = [%q]\nevents = [\"gateway_up\", \"gateway_down\", \"route_changed\"]\ntimeout = %q\n", h.name, h.path, hookTimeout.String())
	}
	r.traffic(90 * time.Second)
	d := r.start(r.policy(polOpts{Extra: extra}))
	r.waitBothUp()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var statusErrs []string
	calls := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			_, err := d.Status() // its own 2 s timeout
			mu.Lock()
			calls++
			if err != nil {
				statusErrs = append(statusErrs, err.Error())
			}
			mu.Unlock()
		}
	}()
	const cycles = 3
	var backs []string
	for i := 0; i < cycles; i++ {
		r.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
		r.waitFor(30*time.Second, "isp1 out of the default with hooks misbehaving", func() (bool, string) {
			def := r.mainDefault()
			return r.state("isp1") == "down" && !strings.Contains(def, "198.18.1.1"), def
		})
		// The down just queued a run of the hanging hook that lasts its
		// whole timeout. Had hooks blocked the daemon, isp1's return
		// would wait for it.
		recovered := time.Now()
		r.GW1.Recover(t)
		r.waitBothUp()
		back := time.Since(recovered)
		if back >= hookTimeout {
			t.Errorf("cycle %d: isp1 took %v to return, as long as the hanging hook's timeout: hooks block the daemon", i, back)
		}
		backs = append(backs, back.Round(time.Millisecond).String())
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	if len(statusErrs) > 0 {
		t.Errorf("/status failed %d of %d times while hooks misbehaved: %q", len(statusErrs), calls, statusErrs)
	}
	mu.Unlock()
	r.waitFor(30*time.Second, "every hook run accounted", func() (bool, string) {
		to, _ := r.metric("uplinkd_hook_runs_total", map[string]string{"hook": "hang", "result": "timeout"})
		fl, _ := r.metric("uplinkd_hook_runs_total", map[string]string{"hook": "fail", "result": "failed"})
		ch, _ := r.metric("uplinkd_hook_runs_total", map[string]string{"hook": "chatty"})
		return to >= cycles && fl >= 2*cycles && ch >= 2*cycles, fmt.Sprintf("hang timeouts %v, fail failures %v, chatty runs %v", to, fl, ch)
	})
	chattyRuns, _ := r.metric("uplinkd_hook_runs_total", map[string]string{"hook": "chatty"})
	logged := len(d.Output())
	printed := int(chattyRuns) * 8 << 20
	// Each run keeps at most 64 KiB of output; everything else the daemon
	// logged at info over these cycles is a few KB.
	limit := int(chattyRuns)*(64<<10+4096) + 256<<10
	if logged > limit {
		t.Errorf("the daemon logged %d bytes for %v chatty runs (%d bytes printed): more than the bound %d", logged, chattyRuns, printed, limit)
	}
	pid := r.d.Cmd.Process.Pid
	u, err := netlab.ReadUsage(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d down/up cycles; isp1 back after %v (hang hook timeout %v); hooks printed %d MiB, daemon log %d KiB; /status answered %d/%d; peak RSS %d MiB",
		cycles, backs, hookTimeout, printed>>20, logged>>10, calls, calls, u.PeakRSS>>20)
}

// Fault 9a: a reload with a broken policy is refused — by `uplinkd
// reload` with the reason, and on SIGHUP — and the old policy keeps
// running: its routes stay and a gateway death is still acted on.
func TestBrokenReloadKeepsPolicy(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.traffic(60 * time.Second)
	pol := r.policy(polOpts{Tables: true})
	d := r.start(pol)
	r.waitBothUp()
	before := r.owned()
	r.rewrite(pol + "\n[gateway.broken]\naddress = \"not an address\"\ninterface = \"eth1\"\n")
	out, err := d.Reload()
	if err == nil {
		t.Fatalf("a broken policy was reloaded: %s", out)
	}
	if !strings.Contains(out, "not an address") && !strings.Contains(out, "line") {
		t.Errorf("the refusal does not say what is wrong: %q", out)
	}
	r.signal(syscall.SIGHUP)
	r.waitFor(10*time.Second, "the SIGHUP reload refused", func() (bool, string) {
		return strings.Count(d.Output(), "reload refused") >= 2, "refusals logged: " + strconv.Itoa(strings.Count(d.Output(), "reload refused"))
	})
	if v, _ := r.metric("uplinkd_config_last_reload_successful", nil); v != 0 {
		t.Errorf("uplinkd_config_last_reload_successful = %v after a refused reload, want 0", v)
	}
	if now := r.owned(); now != before {
		t.Errorf("a refused reload changed the owned state:\n%s\nwant\n%s", now, before)
	}
	r.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	r.waitFor(30*time.Second, "the old policy still acting on a dead gateway", func() (bool, string) {
		def := r.mainDefault()
		return !strings.Contains(def, "198.18.1.1") && strings.Contains(def, "198.18.2.1"), def
	})
	// Fixed, the policy reloads again.
	r.rewrite(pol)
	if out, err := d.Reload(); err != nil {
		t.Fatalf("reloading the fixed policy: %v: %s", err, out)
	}
	if v, _ := r.metric("uplinkd_config_last_reload_successful", nil); v != 1 {
		t.Errorf("uplinkd_config_last_reload_successful = %v after a good reload, want 1", v)
	}
	t.Logf("broken reload: refused with %q", firstLine(out))
}

// Fault 9b: a reload storm — 100 SIGHUPs within a second, the policy
// unchanged — writes nothing: no owned route or rule changes on `ip
// monitor` and the write counter does not move. The daemon keeps running.
func TestReloadStormNoChurn(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.traffic(60 * time.Second)
	d := r.start(r.policy(polOpts{Tables: true, V6: true}))
	r.waitBothUp()
	time.Sleep(500 * time.Millisecond)
	writes0, _ := r.metric("uplinkd_netlink_writes_total", nil)
	mon := r.monitor()
	mark := len(r.Host.Output(mon))
	proc := r.Host.ProcOf(d.Cmd)
	for i := 0; i < 100; i++ {
		if err := proc.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Millisecond)
	}
	r.waitFor(10*time.Second, "the storm's reloads done", func() (bool, string) {
		v, _ := r.metric("uplinkd_config_last_reload_successful", nil)
		return v == 1 && strings.Contains(d.Output(), "policy reloaded"), fmt.Sprintf("last reload successful %v", v)
	})
	time.Sleep(time.Second)
	if ch := ownedChanges(r.Host.Output(mon), mark); len(ch) > 0 {
		t.Errorf("the reload storm changed %d owned routes/rules:\n%s", len(ch), strings.Join(ch, "\n"))
	}
	writes, _ := r.metric("uplinkd_netlink_writes_total", nil)
	if writes != writes0 {
		t.Errorf("uplinkd_netlink_writes_total went from %v to %v during the storm", writes0, writes)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatalf("uplinkd does not answer after the storm: %v", err)
	}
	for _, g := range st.Gateways {
		if g.State != "up" {
			t.Errorf("gateway %s is %s after the storm", g.Name, g.State)
		}
	}
	reloads := strings.Count(d.Output(), "policy reloaded")
	t.Logf("100 SIGHUPs in about 1s: %d reloads performed (coalesced), 0 writes, 0 owned changes", reloads)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

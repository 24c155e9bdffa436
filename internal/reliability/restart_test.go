package reliability

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
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

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/frrtest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// bfdSection gives isp1 a BFD session with FRR's bfdd on GW1 at 50 ms × 3.
const bfdSection = `
[gateway.isp1.bfd]
enabled = true
min_tx = "50ms"
min_rx = "50ms"
multiplier = 3
`

func (l *lab) bfdOf(name string) *daemon.GatewayStatus {
	for _, g := range l.status().Gateways {
		if g.Name == name {
			return &g
		}
	}
	l.t.Fatalf("no gateway %q in status", name)
	return nil
}

// TestBFDGateway: the daemon runs a BFD session with FRR's bfdd on the
// gateway; status and metrics show it; a silent blackhole takes the
// gateway down through BFD (before the probes would); it comes back; a
// reload without the bfd section ends the session and its series.
func TestBFDGateway(t *testing.T) {
	l := newLab(t)
	f := frrtest.StartBFDD(t, l.GW1, fmt.Sprintf(`hostname gw1
!
bfd
 peer %s local-address %s interface %s
  receive-interval 50
  transmit-interval 50
  detect-multiplier 3
 !
!
`, nstest.Host1Addr4, nstest.GW1Addr4, nstest.GWDownlinkIf))
	// The base policy probes every gateway on a fast timer, and with
	// learned timeouts those probes now call a blackhole in about 60 ms,
	// before BFD's 150 ms detection time: isp1 is left to BFD alone here,
	// so the verdict tested is the session's.
	l.start(l.basePolicy(1, bfdSection+"\n[gateway.isp1.detect]\ngating = \"never\"\n"))
	l.waitBothUp()
	l.waitFor("the BFD session up at 50 ms", func() bool {
		b := l.bfdOf("isp1").BFD
		return b != nil && b.State.String() == "up" && b.RemoteDiscr != 0 && b.TxIntervalSeconds == 0.05 && !b.Polling
	})
	if ps := f.Peers(); len(ps) != 1 || ps[0].Status != "up" {
		t.Errorf("FRR's view: %+v, want one session up", ps)
	}
	if b := l.bfdOf("isp2").BFD; b != nil {
		t.Errorf("isp2 has no bfd section but shows a session: %+v", b)
	}
	if v := l.metric("uplinkd_bfd_session_state", map[string]string{"gateway": "isp1", "state": "up"}); v != 1 {
		t.Errorf("uplinkd_bfd_session_state{isp1,up} = %v, want 1", v)
	}
	mf := l.metrics()
	for _, n := range designMetrics(t) {
		if _, ok := mf[n]; bfdSessionMetric(n) && !ok {
			t.Errorf("metric %s (docs/design.md) is not served while a session runs", n)
		}
	}

	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	at := time.Now()
	l.waitFor("isp1 down", func() bool { return l.gatewayState("isp1") == "down" })
	g := l.bfdOf("isp1")
	t.Logf("isp1 down within %v (status polling included): %s", time.Since(at).Round(time.Millisecond), g.Reason)
	if !strings.HasPrefix(g.Reason, "bfd session down") {
		t.Errorf("isp1 went down for %q, want the BFD session's verdict", g.Reason)
	}
	l.GW1.Recover(t)
	l.waitFor("isp1 back up", func() bool { return l.gatewayState("isp1") == "up" })

	l.writeFile("uplinkd.toml", l.basePolicy(1, ""), 0o600)
	l.signal(syscall.SIGHUP)
	l.waitFor("the session to end with the bfd section", func() bool { return l.bfdOf("isp1").BFD == nil })
	if v := l.metric("uplinkd_bfd_session_state", map[string]string{"gateway": "isp1"}); v > 0 {
		t.Errorf("uplinkd_bfd_session_state for isp1 still exported (%v) after the reload", v)
	}
	l.waitFor("FRR to see us leave", func() bool {
		ps := f.Peers()
		return len(ps) == 1 && ps[0].Status != "up"
	})
}

// TestBFDDemandBetweenDaemons: uplinkd on the host and uplinkd on GW1 (as
// the responder) run a demand-mode session. While traffic through isp1 is
// answered no BFD packet flows; when GW1 black-holes it, the detector's
// "tx without rx" makes the session poll, and the unanswered poll takes
// isp1 down.
func TestBFDDemandBetweenDaemons(t *testing.T) {
	l := newLab(t)
	daemontest.Start(t, l.GW1, binary, fmt.Sprintf(`
[daemon]
listen = %q

[gateway.host]
address = "%s"
interface = "%s"
[gateway.host.bfd]
enabled = true
passive = true
demand = true
min_tx = "50ms"
min_rx = "50ms"

# Something to manage (uplinkd refuses a policy that manages nothing): a
# table no rule looks up.
[group.back]
gateways = ["host"]
table = 100
`, listen, nstest.Host1Addr4, nstest.GWDownlinkIf))
	l.start(l.basePolicy(1, bfdSection+"demand = true\n"))
	l.waitBothUp()
	l.waitFor("the session up in demand mode both ways", func() bool {
		b := l.bfdOf("isp1").BFD
		return b != nil && b.State.String() == "up" && b.DemandActive && b.RemoteDemand && !b.Polling
	})
	// Traffic through isp1 only (bound to its interface), bounded: 10 s.
	ping := l.Host.Start(t, "ping", "-q", "-I", nstest.HostUplink1If, "-i", "0.01", "-c", "1000", "-W", "1", nstest.TargetAddr4.String())
	defer l.Host.Stop(ping)
	time.Sleep(500 * time.Millisecond)
	c0 := l.bfdOf("isp1").BFD.Counters
	time.Sleep(2 * time.Second)
	c1 := l.bfdOf("isp1").BFD.Counters
	n := c1.Sent - c0.Sent + c1.Received - c0.Received
	t.Logf("demand mode under 100 pkt/s of answered traffic: %d BFD packets in 2 s", n)
	if n > 2 { // one spurious verification at most: a poll and its final
		t.Errorf("%d BFD packets in 2 s while traffic was answered, want none", n)
	}

	l.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	at := time.Now()
	l.waitFor("isp1 down", func() bool { return l.gatewayState("isp1") == "down" })
	g := l.bfdOf("isp1")
	t.Logf("isp1 down within %v (status polling included): %s; session %s/%s", time.Since(at).Round(time.Millisecond), g.Reason, g.BFD.State, g.BFD.Diag)
	l.waitFor("the session to go down after its poll", func() bool {
		b := l.bfdOf("isp1").BFD
		return b.State.String() != "up" && b.Counters.Sent > c1.Sent
	})
	l.GW1.Recover(t)
	l.waitFor("isp1 back up", func() bool { return l.gatewayState("isp1") == "up" })
}

// bfdSessionMetric says whether name is one of the per-session BFD series,
// which exist only while a session does.
func bfdSessionMetric(name string) bool {
	return strings.HasPrefix(name, "uplinkd_bfd_session_") || name == "uplinkd_bfd_packets_total"
}

func designMetrics(t *testing.T) []string {
	design, err := os.ReadFile(filepath.Join(daemontest.Root(), "docs", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(uplinkd_[a-z_]+)` \\|").FindAllStringSubmatch(string(design), -1) {
		out = append(out, m[1])
	}
	return out
}

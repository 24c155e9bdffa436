package reliability

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// timeToDown blackholes GW1 and returns how long uplinkd took to call
// isp1 down (polled every 20 ms; a measurement for the report, asserted
// only against a generous multiple of the unspoofed one).
func (r *rig) timeToDown() time.Duration {
	r.t.Helper()
	start := time.Now()
	r.GW1.BlackholeIP(r.t, nstest.GWDownlinkIf)
	r.waitFor(30*time.Second, "isp1 down", func() (bool, string) {
		s := r.state("isp1")
		return s == "down", "isp1 is " + s
	})
	return time.Since(start)
}

var spooferSaw = regexp.MustCompile(`saw (\d+) echo requests, sent (\d+) spoofed replies`)

// Security: echo replies must match identifier, sequence, source and a
// random token. Two spoofers on the host's uplink segment (in the gateway's
// namespace, whose packet tap still sees the probes the black-holed
// gateway drops) answer every probe with its identifier and every
// sequence number around it, "from" the probed address, with a payload of
// the right length but not the prober's token, and flood unsolicited
// replies "from" the target and the gateway at 2,000 per second each.
// The dead gateway is never brought up, and it is declared down as it is
// without the spoofers.
func TestSpoofedRepliesNeverRaiseDeadGateway(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.traffic(90 * time.Second)
	d := r.start(r.policy(polOpts{}))
	r.waitBothUp()

	baseline := r.timeToDown()
	r.GW1.Recover(t)
	r.waitBothUp()

	const spoofFor = 12 * time.Second
	mirror := r.GW1.Start(t, spooferBin, "-iface", nstest.GWDownlinkIf, "-window", "8",
		"-dst", nstest.Host1Addr4.String(), "-src", nstest.TargetAddr4.String(), "-rate", "2000",
		"-duration", spoofFor.String(), "-max", "200000")
	flood := r.GW1.Start(t, spooferBin, "-iface", nstest.GWDownlinkIf, "-window", "0",
		"-dst", nstest.Host1Addr4.String(), "-src", nstest.GW1Addr4.String(), "-rate", "2000",
		"-duration", spoofFor.String(), "-max", "200000")
	spoofStart := time.Now()
	// Healthy gateway under a flood: nothing changes.
	hold(t, time.Second, "isp1 up while replies are spoofed", func() (bool, string) {
		s := r.state("isp1")
		return s == "up", "isp1 is " + s
	})
	spoofed := r.timeToDown()
	down := time.Now()
	// Dead gateway, every recovery probe answered by the spoofer: it
	// must stay down until the spoofers stop.
	hold(t, spoofFor-time.Since(spoofStart)-500*time.Millisecond, "isp1 down while its probes are spoofed", func() (bool, string) {
		s := r.state("isp1")
		return s == "down", "isp1 is " + s
	})
	saw, sent := 0, 0
	for name, cmd := range map[string]*exec.Cmd{"mirror": mirror, "flood": flood} {
		if err := r.GW1.Wait(cmd, 10*time.Second); err != nil {
			t.Fatalf("spoofer %s: %v\n%s", name, err, r.GW1.Output(cmd))
		}
		m := spooferSaw.FindStringSubmatch(r.GW1.Output(cmd))
		if m == nil {
			t.Fatalf("spoofer %s printed no summary: %q", name, r.GW1.Output(cmd))
		}
		a, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		saw += a
		sent += b
	}
	if saw == 0 {
		t.Fatal("the spoofers saw no probe: the test proves nothing")
	}
	for _, l := range strings.Split(d.Output(), "\n") {
		if strings.Contains(l, `msg="gateway up"`) && strings.Contains(l, "gateway=isp1") {
			if ts := logTime(l); !ts.IsZero() && ts.After(down) {
				t.Errorf("spoofed replies brought the dead gateway up: %s", l)
			}
		}
	}
	if limit := 3*baseline + time.Second; spoofed > limit {
		t.Errorf("detection took %v under spoofing, %v without: spoofing slows detection", spoofed, baseline)
	}
	if n := len(r.hookEvents("gateway_up")); n > 2 {
		// one per gateway at start and one for isp1's recovery after the baseline
		t.Errorf("%d gateway_up hooks: %q", n, r.hookEvents("gateway_up"))
	}
	r.GW1.Recover(t)
	r.waitBothUp()
	t.Logf("spoofers saw %d probes and sent %d spoofed replies; isp1 stayed down; time to down %v spoofed vs %v baseline",
		saw, sent, spoofed.Round(time.Millisecond), baseline.Round(time.Millisecond))
}

// logTime reads the time= field of a text log line.
func logTime(line string) time.Time {
	_, rest, ok := strings.Cut(line, "time=")
	if !ok {
		return time.Time{}
	}
	v, _, _ := strings.Cut(rest, " ")
	ts, err := time.Parse(time.RFC3339Nano, strings.Trim(v, `"`))
	if err != nil {
		return time.Time{}
	}
	return ts
}

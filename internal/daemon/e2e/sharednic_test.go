package e2e

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/detector/l2count/l2counttest"
	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/lab/netlab"
)

// sharedLab is uplinkd on the LVS §37.1 realserver: one eth0 on a bridge
// with the gateways (nstest.SharedLAN).
type sharedLab struct {
	*lab
	s *nstest.SharedLAN
}

func newSharedLab(t testing.TB, n int) *sharedLab {
	t.Helper()
	s := nstest.NewSharedLAN(t, n)
	return &sharedLab{lab: newLabOn(t, &nstest.TwoUplinks{Lab: s.Lab, Host: s.Host, Server: s.Server}), s: s}
}

// table is uplinkd's part of one routing table.
func (l *sharedLab) table(id int) string {
	l.t.Helper()
	return strings.TrimSpace(l.Host.MustRun(l.t, "ip", "route", "show", "table", fmt.Sprint(id), "proto", "212"))
}

// directorsPolicy is contrib/examples/realserver-lvs.toml on one shared
// eth0: director i+1 gets table 201+i and the source Source4(i). The
// first fails over when down; the others keep their table. The default
// (gated) profile: no probe while traffic flows normally.
func (l *sharedLab) directorsPolicy(n int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "[daemon]\nlisten = %q\ncontrol_socket = %q\n", listen, filepath.Join(l.dir, "run", "control.sock"))
	var names []string
	for i := 0; i < n; i++ {
		onDown := "keep"
		if i == 0 {
			onDown = "failover"
		}
		name := fmt.Sprintf("director%d", i+1)
		names = append(names, fmt.Sprintf("%q", name))
		fmt.Fprintf(&sb, "\n[gateway.%s]\naddress = %q\ninterface = \"eth0\"\ntable = %d\nsources = [%q]\non_down = %q\n",
			name, l.s.GatewayAddr4(i), 201+i, l.s.Source4(i), onDown)
	}
	fmt.Fprintf(&sb, "\n[group.own]\ngateways = [%s]\n", strings.Join(names, ", "))
	return sb.String()
}

// undamped gives every gateway of pol the default profile without flap
// damping: a benchmark repeats the same fault, which damping would
// (rightly) hold down.
func undamped(pol string) string {
	pol = strings.ReplaceAll(pol, "interface = \"eth0\"\n", "interface = \"eth0\"\nprofile = \"undamped\"\n")
	return pol + "\n[profile.undamped]\ndamping = false\n"
}

// flows pings the Server's target from each of the given sources, every
// 20 ms for at most 40 s (2000 packets): the realserver answering clients
// through every director at once.
func (l *sharedLab) flows(t testing.TB, sources ...string) {
	t.Helper()
	for _, src := range sources {
		p := l.Host.Start(t, "ping", "-q", "-I", src, "-i", "0.02", "-c", "2000", "-w", "40", nstest.TargetAddr4.String())
		t.Cleanup(func() { l.Host.Stop(p) })
	}
}

// kill makes gateway i die silently: IP dropped on both its sides, ARP
// and neighbour discovery still answered.
func (l *sharedLab) kill(t testing.TB, i int) {
	t.Helper()
	l.s.Gateways[i].BlackholeIP(t, l.s.GatewayIf)
	l.s.Gateways[i].BlackholeIP(t, l.s.GatewayUpIf)
}

// waitState waits until the gateway is in state and returns when the
// daemon says it got there (its status's since).
func (l *sharedLab) waitState(name, state string) time.Time {
	l.t.Helper()
	var since time.Time
	l.waitFor(name+" "+state, func() bool {
		g := l.gatewayStatus(name)
		since = g.Since
		return g.State == state
	})
	return since
}

// monitor records the host's route changes until the test ends.
func (l *sharedLab) monitor(t testing.TB) *netlab.RouteMonitor {
	t.Helper()
	m, err := netlab.MonitorRoutes(l.Host.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func tableWrites(m *netlab.RouteMonitor, table int) int {
	n := 0
	for _, e := range m.Events() {
		if e.Table == table && e.Protocol == 212 {
			n++
		}
	}
	return n
}

// The realserver of the LVS HOWTO §37.1 with both directors on one LAN:
// director 1 dies silently under traffic from both sources. The default
// gated profile sees it (per-gateway counters: the replies through
// director 2 no longer hide it), fails table 201 over and leaves table 202
// alone; when director 1 comes back its probes reach it (frames to its
// MAC, whatever table 201 says) and table 201 is repaired.
func TestLVSRealserverSharedNIC(t *testing.T) {
	l := newSharedLab(t, 2)
	l.start(l.directorsPolicy(2))
	via1 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr4(0))
	via2 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr4(1))
	l.waitFor("both directors up, each in its table", func() bool {
		return l.gatewayState("director1") == "up" && l.gatewayState("director2") == "up" &&
			strings.HasPrefix(l.table(201), via1) && strings.HasPrefix(l.table(202), via2)
	})
	mon := l.monitor(t)
	table202 := l.table(202)
	l.flows(t, l.s.Source4(0).String(), l.s.Source4(1).String())
	time.Sleep(500 * time.Millisecond) // both flows established

	faultAt := time.Now()
	l.kill(t, 0)
	downAt := l.waitState("director1", "down")
	l.waitFor("table 201 failed over to director 2", func() bool { return strings.HasPrefix(l.table(201), via2) })
	t.Logf("director 1 detected down %d ms after its silent death", downAt.Sub(faultAt).Milliseconds())
	if st := l.gatewayState("director2"); st != "up" {
		t.Errorf("director2 %s during director 1's fault, want up", st)
	}
	if n := tableWrites(mon, 202); n != 0 || l.table(202) != table202 {
		t.Errorf("table 202 written %d times during director 1's fault, now %q (was %q)", n, l.table(202), table202)
	}

	recoverAt := time.Now()
	l.s.Gateways[0].Recover(t)
	upAt := l.waitState("director1", "up")
	l.waitFor("table 201 back on director 1", func() bool { return strings.HasPrefix(l.table(201), via1) })
	t.Logf("director 1 back up %d ms after its recovery", upAt.Sub(recoverAt).Milliseconds())
	if n := tableWrites(mon, 202); n != 0 {
		t.Errorf("table 202 written %d times through the fault and the recovery, want 0", n)
	}
}

// Three directors on one LAN, the middle one dies: only it goes down, and
// the other two directors' tables are not written.
func TestThreeGatewaysOneInterfaceOneDies(t *testing.T) {
	l := newSharedLab(t, 3)
	l.start(l.directorsPolicy(3))
	for i := 0; i < 3; i++ {
		name, via := fmt.Sprintf("director%d", i+1), fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr4(i))
		l.waitFor(name+" up in its table", func() bool {
			return l.gatewayState(name) == "up" && strings.HasPrefix(l.table(201+i), via)
		})
	}
	mon := l.monitor(t)
	l.flows(t, l.s.Source4(0).String(), l.s.Source4(1).String(), l.s.Source4(2).String())
	time.Sleep(500 * time.Millisecond)
	faultAt := time.Now()
	l.kill(t, 1)
	downAt := l.waitState("director2", "down")
	t.Logf("director 2 of 3 detected down %d ms after its silent death", downAt.Sub(faultAt).Milliseconds())
	time.Sleep(time.Second) // room for a wrong verdict on the others
	for _, other := range []string{"director1", "director3"} {
		if st := l.gatewayState(other); st != "up" {
			t.Errorf("%s is %s while director 2 is dead, want up", other, st)
		}
	}
	for _, table := range []int{201, 203} {
		if n := tableWrites(mon, table); n != 0 {
			t.Errorf("table %d written %d times, want 0", table, n)
		}
	}
}

// isV4 says whether a route event is about an IPv4 route.
func isV4(e netlab.RouteEvent) bool {
	if e.Route.Family != 0 {
		return e.Route.Family == unix.AF_INET
	}
	return e.Route.Gw.To4() != nil || (e.Route.Dst != nil && e.Route.Dst.IP.To4() != nil)
}

// dualStackPolicy is contrib/examples/dual-stack.toml on one shared eth0:
// ISP 1 (gateway 0) carries both families, ISP 2 is the backup tier.
func (l *sharedLab) dualStackPolicy() string {
	return fmt.Sprintf(`[daemon]
listen = %q
control_socket = %q

[gateway.isp1-v4]
address = %q
interface = "eth0"
[gateway.isp1-v6]
address = %q
interface = "eth0"
[gateway.isp2-v4]
address = %q
interface = "eth0"
tier = 2
[gateway.isp2-v6]
address = %q
interface = "eth0"
tier = 2

[group.wan4]
gateways = ["isp1-v4", "isp2-v4"]
[group.wan6]
gateways = ["isp1-v6", "isp2-v6"]
`, listen, filepath.Join(l.dir, "run", "control.sock"), l.s.GatewayAddr4(0), l.s.GatewayAddr6(0), l.s.GatewayAddr4(1), l.s.GatewayAddr6(1))
}

// Dual-stack on one interface: ISP 1's IPv6 dies silently while IPv4 and
// IPv6 flow through it. Its IPv6 gateway is detected down with the default
// gated profile (its IPv4 replies no longer hide it: counts are per
// ethertype), the IPv6 default moves to ISP 2, and the IPv4 routes are not
// written at all.
func TestDualStackIPv6DiesWhileIPv4Flows(t *testing.T) {
	l := newSharedLab(t, 2)
	l.start(l.dualStackPolicy())
	routes6 := func() string { return l.Host.MustRun(t, "ip", "-6", "route", "show", "table", "main", "proto", "212") }
	via1v6 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr6(0))
	via2v6 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr6(1))
	l.waitFor("all four gateways up, both defaults through ISP 1", func() bool {
		for _, g := range []string{"isp1-v4", "isp1-v6", "isp2-v4", "isp2-v6"} {
			if l.gatewayState(g) != "up" {
				return false
			}
		}
		return strings.Contains(routes6(), via1v6) && strings.Contains(l.routes(), fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr4(0)))
	})
	mon := l.monitor(t)
	routes4 := l.routes()
	for _, dst := range []string{nstest.TargetAddr4.String(), nstest.TargetAddr6.String()} {
		p := l.Host.Start(t, "ping", "-q", "-i", "0.02", "-c", "2000", "-w", "40", dst)
		t.Cleanup(func() { l.Host.Stop(p) })
	}
	time.Sleep(500 * time.Millisecond)

	faultAt := time.Now()
	l.s.Gateways[0].BlackholeIP6(t, l.s.GatewayIf)
	l.s.Gateways[0].BlackholeIP6(t, l.s.GatewayUpIf)
	downAt := l.waitState("isp1-v6", "down")
	l.waitFor("the IPv6 default through ISP 2", func() bool { return strings.Contains(routes6(), via2v6) })
	t.Logf("isp1-v6 detected down %d ms after its IPv6 died", downAt.Sub(faultAt).Milliseconds())
	time.Sleep(time.Second)
	if st := l.gatewayState("isp1-v4"); st != "up" {
		t.Errorf("isp1-v4 is %s while only IPv6 died, want up", st)
	}
	n := 0
	for _, e := range mon.Events() {
		if e.Protocol == 212 && isV4(e) {
			n++
		}
	}
	if n != 0 || l.routes() != routes4 {
		t.Errorf("%d writes to IPv4 routes while IPv6 died; routes now\n%s\nwere\n%s", n, l.routes(), routes4)
	}
}

// countedMAC reports whether uplinkd's tcx programs count mac on eth0.
func (l *sharedLab) countedMAC(mac string) bool {
	st, ok := l.tcx()
	if !ok {
		return false
	}
	for _, c := range st.Counted {
		if strings.HasPrefix(c, mac+" ") {
			return true
		}
	}
	return false
}

// tcx is uplinkd's counting on eth0: its programs (with their ids) and
// the MACs its map counts.
func (l *sharedLab) tcx() (l2counttest.TCX, bool) {
	eth0, err := l.Host.Handle.LinkByName("eth0")
	if err != nil {
		return l2counttest.TCX{}, false
	}
	st, err := l2counttest.TCXState(l.Host.Do, eth0.Attrs().Index)
	return st, err == nil
}

// A director's MAC changes under traffic (a replaced box, a failover of
// the address to another machine). Announced by gratuitous ARP, the
// change never takes it down: uplinkd counts the new MAC and probes it
// there. Not announced, the host keeps sending to the old MAC until its
// neighbour entry fails (a real outage, seconds long); uplinkd may call it
// down, and it comes back up on the new MAC with its table repaired.
func TestGatewayMACChange(t *testing.T) {
	l := newSharedLab(t, 2)
	l.start(l.directorsPolicy(2))
	l.waitFor("both directors up", func() bool {
		return l.gatewayState("director1") == "up" && l.gatewayState("director2") == "up"
	})
	l.flows(t, l.s.Source4(0).String(), l.s.Source4(1).String())
	time.Sleep(500 * time.Millisecond)
	l.Host.Sysctl(t, "net/ipv4/neigh/eth0/locktime", "0")

	t.Run("announced", func(t *testing.T) {
		const mac = "02:00:5e:00:01:71"
		// As a box taking over the address does it: the new MAC and its
		// announcement at once (one shell, no test step in between).
		l.s.Gateways[0].MustRun(t, "sh", "-c", fmt.Sprintf("ip link set eth0 address %s && arping -U -c 1 -I eth0 %s", mac, l.s.GatewayAddr4(0)))
		l.waitFor("the new MAC counted", func() bool { return l.countedMAC(mac) })
		time.Sleep(2 * time.Second) // traffic on the new MAC
		seen := transitions(l, "director1")
		t.Logf("director1's transitions through an announced MAC change:\n%s", strings.Join(seen, "\n"))
		for _, tr := range seen {
			if strings.Contains(tr, "to=down") {
				t.Errorf("director1 went down on an announced MAC change: %s", tr)
			}
		}
		if st := l.gatewayState("director1"); st != "up" {
			t.Errorf("director1 is %s after an announced MAC change, want up", st)
		}
	})
	t.Run("unannounced", func(t *testing.T) {
		const mac = "02:00:5e:00:01:72"
		l.s.Gateways[1].MustRun(t, "ip", "link", "set", "eth0", "address", mac)
		via2 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr4(1))
		l.waitFor("the new MAC counted, director2 up in its table", func() bool {
			return l.countedMAC(mac) && l.gatewayState("director2") == "up" && strings.HasPrefix(l.table(202), via2)
		})
		t.Logf("director2's transitions through an unannounced MAC change:\n%s", strings.Join(transitions(l, "director2"), "\n"))
	})
}

// transitions are the daemon's log lines of gw's transitions after start.
func transitions(l *sharedLab, gw string) []string {
	var seen []string
	for _, line := range strings.Split(l.Host.Output(l.cmd), "\n") {
		if strings.Contains(line, "gateway="+gw+" ") && strings.Contains(line, " to=") && !strings.Contains(line, "cause=start") {
			seen = append(seen, line[strings.Index(line, "msg="):])
		}
	}
	return seen
}

func (l *lab) gatewayStatus(name string) daemon.GatewayStatus {
	l.t.Helper()
	for _, g := range l.status().Gateways {
		if g.Name == name {
			return g
		}
	}
	l.t.Fatalf("no gateway %s in the status", name)
	return daemon.GatewayStatus{}
}

// probesSent sums uplinkd_probes_sent_total of a gateway.
func (l *lab) probesSent(gw string) float64 {
	return l.metric("uplinkd_probes_sent_total", map[string]string{"gateway": gw})
}

// probeRate is the probes per second sent to gw over d, and the daemon's
// CPU over d in percent of one core.
func (l *sharedLab) probeRate(gw string, d time.Duration) (probes, cpu float64) {
	l.t.Helper()
	pid := l.cmd.Process.Pid // ip netns exec execs the daemon
	u0, err := netlab.ReadUsage(pid)
	if err != nil {
		l.t.Fatal(err)
	}
	before := l.probesSent(gw)
	time.Sleep(d)
	probes = (l.probesSent(gw) - before) / d.Seconds()
	u1, err := netlab.ReadUsage(pid)
	if err != nil {
		l.t.Fatal(err)
	}
	return probes, 100 * float64(u1.CPU-u0.CPU) / float64(d)
}

// firstWrite is when the first route change of uplinkd's matching which
// was seen after from (the monitor's clock: the kernel's notification).
func firstWrite(m *netlab.RouteMonitor, from time.Time, which func(netlab.RouteEvent) bool) time.Time {
	for _, e := range m.Events() {
		if e.Protocol == 212 && !e.At.Before(from) && which(e) {
			return e.At
		}
	}
	return time.Now()
}

// faultRow is one row of BenchmarkSharedNICFault.
type faultRow struct {
	gw      string                         // the gateway that dies
	traffic func(b *testing.B)             // starts the flows (bounded)
	kill    func(b *testing.B)             // its silent death
	moved   func() bool                    // its routes moved away
	write   func(e netlab.RouteEvent) bool // the route change that moves them
	back    func() bool                    // its routes back after recovery
}

// benchFault measures r: probes and CPU idle and under traffic, then b.N
// times the death, the move and the recovery.
func (l *sharedLab) benchFault(b *testing.B, r faultRow) {
	idle, idleCPU := l.probeRate(r.gw, 5*time.Second)
	r.traffic(b)
	busy, busyCPU := l.probeRate(r.gw, 3*time.Second)
	mon := l.monitor(b)
	var detect, moved time.Duration
	b.ResetTimer()
	for range b.N {
		at := time.Now()
		r.kill(b)
		detect += l.waitState(r.gw, "down").Sub(at)
		l.waitFor(r.gw+"'s routes moved", r.moved)
		moved += firstWrite(mon, at, r.write).Sub(at)
		l.s.Gateways[0].Recover(b)
		l.waitFor(r.gw+"'s routes back", r.back)
	}
	b.ReportMetric(float64(detect.Milliseconds())/float64(b.N), "ms-to-down")
	b.ReportMetric(float64(moved.Milliseconds())/float64(b.N), "ms-to-failover")
	b.ReportMetric(idle, "probes/s-idle")
	b.ReportMetric(busy, "probes/s-traffic")
	b.ReportMetric(idleCPU, "cpu-%-idle")
	b.ReportMetric(busyCPU, "cpu-%-traffic")
}

// BenchmarkSharedNICFault is the make bench row of the shared-NIC faults,
// with the default gated profile (flap damping off, since the fault
// repeats): ms from a silent death to the gateway down (its transition's
// time) and to its table (or default) rewritten (the kernel's route
// notification); probes per second to the gateway that dies and the
// daemon's CPU, idle and under traffic before the fault.
func BenchmarkSharedNICFault(b *testing.B) {
	b.Run("lvs-director", func(b *testing.B) {
		l := newSharedLab(b, 2)
		l.start(undamped(l.directorsPolicy(2)))
		via1 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr4(0))
		via2 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr4(1))
		l.waitFor("both directors up", func() bool {
			return l.gatewayState("director1") == "up" && l.gatewayState("director2") == "up" && strings.HasPrefix(l.table(201), via1)
		})
		l.benchFault(b, faultRow{gw: "director1",
			traffic: func(b *testing.B) { l.flows(b, l.s.Source4(0).String(), l.s.Source4(1).String()) },
			kill:    func(b *testing.B) { l.kill(b, 0) },
			moved:   func() bool { return strings.HasPrefix(l.table(201), via2) },
			write:   func(e netlab.RouteEvent) bool { return e.Table == 201 },
			back:    func() bool { return strings.HasPrefix(l.table(201), via1) },
		})
	})
	b.Run("dual-stack-v6", func(b *testing.B) {
		l := newSharedLab(b, 2)
		l.start(undamped(l.dualStackPolicy()))
		routes6 := func() string { return l.Host.MustRun(b, "ip", "-6", "route", "show", "table", "main", "proto", "212") }
		via1v6 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr6(0))
		via2v6 := fmt.Sprintf("default via %s dev eth0", l.s.GatewayAddr6(1))
		l.waitFor("isp1-v6 up and the IPv6 default", func() bool {
			return l.gatewayState("isp1-v6") == "up" && strings.Contains(routes6(), via1v6)
		})
		l.benchFault(b, faultRow{gw: "isp1-v6",
			traffic: func(b *testing.B) {
				for _, dst := range []string{nstest.TargetAddr4.String(), nstest.TargetAddr6.String()} {
					p := l.Host.Start(b, "ping", "-q", "-i", "0.02", "-c", "3000", "-w", "60", dst)
					b.Cleanup(func() { l.Host.Stop(p) })
				}
			},
			kill: func(b *testing.B) {
				l.s.Gateways[0].BlackholeIP6(b, l.s.GatewayIf)
				l.s.Gateways[0].BlackholeIP6(b, l.s.GatewayUpIf)
			},
			moved: func() bool { return strings.Contains(routes6(), via2v6) },
			write: func(e netlab.RouteEvent) bool { return !isV4(e) },
			back:  func() bool { return strings.Contains(routes6(), via1v6) },
		})
	})
}

// The counting programs are uplinkd's like its routes: a restart with
// on_exit = "leave" adopts them (the same program ids on eth0, the same
// keys, so nothing was re-attached), and on_exit = "withdraw" detaches
// them. No nftables table is made beside them.
func TestCountingProgramsAdoptedAndWithdrawn(t *testing.T) {
	l := newSharedLab(t, 2)
	pol := l.directorsPolicy(2)
	l.start(pol)
	l.flows(t, l.s.Source4(0).String(), l.s.Source4(1).String())
	var before l2counttest.TCX
	l.waitFor("both directors counted on eth0", func() bool {
		var ok bool
		before, ok = l.tcx()
		return ok && len(before.Counted) == 2 && len(before.IDs["rx"]) == 1 && len(before.IDs["tx"]) == 1
	})
	l.signal(syscall.SIGTERM)
	if err := l.Host.Wait(l.cmd, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if after, ok := l.tcx(); !ok || !reflect.DeepEqual(after, before) {
		t.Fatalf("on_exit = leave changed the counting on eth0:\nbefore: %+v\nafter:  %+v", before, after)
	}
	l.start(strings.Replace(pol, "[daemon]\n", "[daemon]\non_exit = \"withdraw\"\n", 1))
	l.waitFor("both directors up again", func() bool {
		return l.gatewayState("director1") == "up" && l.gatewayState("director2") == "up"
	})
	time.Sleep(time.Second) // polls and a resync of the counting
	if after, ok := l.tcx(); !ok || !reflect.DeepEqual(after, before) {
		t.Errorf("a restart re-attached or rewrote the counting:\nbefore: %+v\nafter:  %+v", before, after)
	}
	if v := l.metric("uplinkd_traffic_per_neighbour", nil); v != 1 {
		t.Errorf("uplinkd_traffic_per_neighbour = %v, want 1", v)
	}
	if v := l.metric("uplinkd_traffic_counting_info", map[string]string{"backend": "tcx"}); v != 1 {
		t.Errorf(`uplinkd_traffic_counting_info{backend="tcx"} = %v, want 1`, v)
	}
	if g := l.gatewayStatus("director1"); g.TrafficCounting != "neighbour" {
		t.Errorf("director1 traffic_counting = %q, want neighbour", g.TrafficCounting)
	}
	if out, _ := l.Host.Run("nft", "list", "tables"); strings.Contains(out, "uplinkd") {
		t.Errorf("an nftables table beside the programs:\n%s", out)
	}
	l.signal(syscall.SIGTERM)
	if err := l.Host.Wait(l.cmd, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if after, ok := l.tcx(); !ok || len(after.Programs) != 0 {
		t.Errorf("programs left on eth0 after on_exit = withdraw: %+v", after.Programs)
	}
}

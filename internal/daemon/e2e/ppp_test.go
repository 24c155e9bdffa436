package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// pppLab is the TwoUplinks lab with PPPoE on uplink 1: a real
// pppoe-server on GW1's eth0 and a real pppd (user-mode PPPoE through
// rp-pppoe's pppoe) on the host's eth1, which make ppp0. Their options
// files, pid file and scripts are in the test's directory; pppd's
// compiled-in /run and /etc are throw-away overlays (StartPeer).
type pppLab struct {
	*lab
	dir    string
	server *exec.Cmd
	pppd   *exec.Cmd
}

// kernelHasPPP says whether PPP devices can exist here: the ppp
// character device registered, or its node there for a module to load.
func kernelHasPPP() bool {
	if _, err := os.Stat("/dev/ppp"); err == nil {
		return true
	}
	data, err := os.ReadFile("/proc/devices")
	return err == nil && strings.Contains(string(data), " ppp\n")
}

func newPPPLab(t *testing.T) *pppLab {
	t.Helper()
	if !kernelHasPPP() {
		t.Skip("this kernel has no PPP (CONFIG_PPP unset: no ppp character device in /proc/devices, no /dev/ppp): pppd cannot make ppp0")
	}
	for _, bin := range []string{"/usr/sbin/pppd", "/usr/sbin/pppoe-server", "/usr/sbin/pppoe"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is needed: install Debian's ppp and pppoe (sh scripts/setup.sh): %v", bin, err)
		}
	}
	p := &pppLab{lab: newLab(t), dir: t.TempDir()}
	// The pools are behind GW1; the Server answers them through it.
	p.Server.MustRun(t, "ip", "route", "add", "198.18.9.0/24", "via", nstest.GW1TransitAddr4.String(), "dev", nstest.ServerGW1If)
	p.writeFile("server-options", `noauth
lcp-echo-interval 1
lcp-echo-failure 3
nodefaultroute
noipx
ip-up-script /bin/true
ip-down-script /bin/true
`, 0o644)
	p.startServer("198.18.9.1", "198.18.9.10")
	p.pppd = p.Host.StartPeer(t, "/usr/sbin/pppd", "nodetach", "noauth", "unit", "0",
		"pty", "/usr/sbin/pppoe -I "+nstest.HostUplink1If+" -T 10",
		"persist", "holdoff", "1", "maxfail", "0", "lcp-echo-interval", "1", "lcp-echo-failure", "3",
		// pppd's own default, kept beside uplinkd's on another key (docs/operations.md).
		"defaultroute", "defaultroute-metric", "1000", "noipdefault",
		"noccp", "novj", "ip-up-script", "/bin/true", "ip-down-script", "/bin/true",
		"linkname", "uplinkd-test", "logfd", "2")
	return p
}

// startServer (re)starts pppoe-server on GW1 with the local address and
// the first address of the client pool.
func (p *pppLab) startServer(local, pool string) {
	p.t.Helper()
	if p.server != nil {
		p.GW1.Stop(p.server) // its session's pppd too: one process group
	}
	p.server = p.GW1.StartPeer(p.t, "/usr/sbin/pppoe-server", "-F", "-I", nstest.GWDownlinkIf, "-L", local, "-R", pool, "-N", "4",
		"-O", filepath.Join(p.dir, "server-options"), "-X", filepath.Join(p.dir, "pppoe-server.pid"),
		"-q", "/usr/sbin/pppd", "-Q", "/usr/sbin/pppoe")
}

// peer is ppp0's peer address as ip shows it, "" without ppp0.
func (p *pppLab) peer() string {
	out, err := p.Host.Run("ip", "-4", "-o", "addr", "show", "dev", "ppp0")
	if err != nil {
		return ""
	}
	if _, after, ok := strings.Cut(out, " peer "); ok {
		return strings.Fields(after)[0]
	}
	return ""
}

// Issue 19, scenario 6 with real PPPoE: isp1 is address = "auto" on ppp0,
// which does not exist when uplinkd starts. pppd brings it up and installs
// "default dev ppp0": the gateway is the link, and uplinkd's default goes
// through it. The access concentrator dies (its sessions with it): ppp0
// goes, isp1 is down and the default is isp2's alone. It comes back with
// another local address: pppd reconnects (persist) with a new peer, and
// isp1 rejoins through the new ppp0.
func TestAutoGatewayPPPoE(t *testing.T) {
	p := newPPPLab(t)
	pol := strings.Replace(autoISP1(p.basePolicy(1, "")), `interface = "`+nstest.HostUplink1If+`"`, `interface = "ppp0"`, 1)
	p.start(pol)
	ppp := func(peer string) func() bool {
		return func() bool {
			g := p.gateway("isp1")
			return p.peer() == peer && g.Address == "dev ppp0" && g.State == "up" && strings.Contains(p.routes(), "nexthop dev ppp0")
		}
	}
	p.waitFor("ppp0 up with peer 198.18.9.1, isp1 the link itself, in the default", ppp("198.18.9.1"))
	if src := p.gateway("isp1").AddressSource; !strings.Contains(src, "default dev ppp0") {
		t.Errorf("isp1 learned from %q, want pppd's default dev ppp0", src)
	}
	if err := p.Host.Ping(t, "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping over the multipath default with ppp0: %v", err)
	}

	p.GW1.Stop(p.server)
	p.waitFor("ppp0 gone, isp1 down, the default via isp2 alone", func() bool {
		return p.peer() == "" && p.gatewayState("isp1") == "down" && strings.Contains(p.routes(), "default via 198.18.2.1 dev eth2")
	})
	if err := p.Host.Ping(t, "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping with the PPP link down: %v", err)
	}

	p.startServer("198.18.9.2", "198.18.9.20")
	p.waitFor("ppp0 back with the new peer 198.18.9.2 and isp1 in the default again", ppp("198.18.9.2"))
	if err := p.Host.Ping(t, "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping after the PPP link came back: %v", err)
	}
}

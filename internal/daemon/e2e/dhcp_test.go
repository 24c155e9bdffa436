package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// udhcpcScript is the DHCP client's script: it sets the leased address on
// the interface and nothing else (no route, no resolv.conf: uplinkd owns
// the default, and nothing may reach the host's /etc). $mask is the
// prefix length busybox computes from the subnet option.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface" ;;
bound|renew) ip -4 addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
esac
exit 0
`

// dhcpLab is the TwoUplinks lab with a real DHCP server (dnsmasq) on GW1's
// side of uplink 1 and a real DHCP client (busybox udhcpc) on the host's
// eth1, which starts without an address. Every path either uses is in
// the test's directory; nstest stops both by PID.
//
// busybox udhcpc is the client because every path it uses is on its
// command line (-p pid file, -s script) and it keeps its lease in memory:
// dhcpcd has compiled-in run and database directories (/run/dhcpcd,
// /var/lib/dhcpcd), and dhclient runs /sbin/dhclient-script unless told
// otherwise. SIGUSR2 makes udhcpc release its lease, the exact fault.
type dhcpLab struct {
	*lab
	dir     string
	client  *exec.Cmd
	dnsmasq string
	server  *exec.Cmd
}

// startServer (re)starts dnsmasq on GW1, handing out router as the
// router option. The lease file stays, so a restarted server renews the
// leases it gave.
func (d *dhcpLab) startServer(router string) {
	d.t.Helper()
	if d.server != nil {
		d.GW1.Stop(d.server)
	}
	d.server = d.GW1.StartPeer(d.t, d.dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
		"--port=0", "--bind-interfaces", "--interface="+nstest.GWDownlinkIf, "--except-interface=lo",
		"--dhcp-range=198.18.1.50,198.18.1.59,255.255.255.0,2m", "--dhcp-option=option:router,"+router,
		"--dhcp-authoritative", "--dhcp-leasefile="+filepath.Join(d.dir, "leases"), "--pid-file="+filepath.Join(d.dir, "dnsmasq.pid"),
		"--user=root", "--group=root", "--log-facility=-")
}

func newDHCPLab(t *testing.T) *dhcpLab { return newDHCPLabScript(t, udhcpcScript) }

// newDHCPLabScript is newDHCPLab with another client script.
func newDHCPLabScript(t *testing.T, clientScript string) *dhcpLab {
	t.Helper()
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is needed: install Debian's dnsmasq-base (sh scripts/setup.sh): %v", err)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox (udhcpc) is needed: install Debian's busybox (sh scripts/setup.sh): %v", err)
	}
	d := &dhcpLab{lab: newLab(t), dir: t.TempDir()}
	d.Host.MustRun(t, "ip", "-4", "addr", "flush", "dev", nstest.HostUplink1If)
	d.dnsmasq = dnsmasq
	d.startServer(nstest.GW1Addr4.String())
	script := filepath.Join(d.dir, "udhcpc.script")
	if err := os.WriteFile(script, []byte(clientScript), 0o755); err != nil {
		t.Fatal(err)
	}
	d.client = d.Host.StartPeer(t, busybox, "udhcpc", "-f", "-i", nstest.HostUplink1If, "-s", script,
		"-p", filepath.Join(d.dir, "udhcpc.pid"), "-t", "20", "-T", "1", "-A", "1")
	return d
}

func (d *dhcpLab) leased() bool {
	return strings.Contains(d.Host.MustRun(d.t, "ip", "-4", "addr", "show", "dev", nstest.HostUplink1If), "inet 198.18.1.5")
}

// Issue 19, scenario 4 with real DHCP: uplinkd starts before the lease
// (isp1 is not on-link yet, so down, and the default goes via isp2 only);
// the lease comes and isp1 joins; then the client releases the lease
// while traffic flows: isp1 is down at once, the host keeps a default
// via isp2 (never none) and traffic keeps flowing.
func TestDHCPLeaseLost(t *testing.T) {
	d := newDHCPLab(t)
	d.start(d.basePolicy(1, ""))
	d.waitFor("the lease on eth1", d.leased)
	d.waitBothUp()

	pinger := d.Host.Start(t, "ping", "-q", "-i", "0.05", "-c", "100", "-W", "1", nstest.TargetAddr4.String())
	defer d.Host.Stop(pinger)
	released := time.Now()
	if err := d.Host.ProcOf(d.client).Signal(syscall.SIGUSR2); err != nil { // udhcpc: release the lease
		t.Fatal(err)
	}
	d.waitFor("isp1 down and a default via isp2 alone", func() bool {
		return d.gatewayState("isp1") == "down" && strings.Contains(d.routes(), "default via 198.18.2.1 dev eth2")
	})
	t.Logf("the default left isp1 %v after the release", time.Since(released).Round(10*time.Millisecond))
	if d.leased() {
		t.Fatalf("the client kept its address after SIGUSR2")
	}
	if r := d.gatewayReason("isp1"); !strings.Contains(r, "not on-link on eth1") {
		t.Errorf("isp1 reason %q, want it not on-link", r)
	}
	if err := d.Host.Wait(pinger, 20*time.Second); err != nil {
		t.Logf("ping during the release: %v\n%s", err, d.Host.Output(pinger))
	}
	out := d.Host.Output(pinger)
	if !strings.Contains(out, "100 packets transmitted") {
		t.Fatalf("ping did not finish:\n%s", out)
	}
	if err := d.Host.Ping(t, "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping after the lease was lost: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	t.Logf("ping (every 50 ms) across the release: %s", strings.Join(lines[max(0, len(lines)-2):], "; "))
}

package examples_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

const vip = "198.18.70.1/24"

// The two ways keepalived.conf shows; each subtest keeps one of them.
const (
	trackScriptUse = "    track_script {\n        chk_uplink\n    }\n"
	trackFileUse   = "    track_file {\n        uplink_wan\n    }\n"
)

// startKeepalived runs keepalived's VRRP process in h in the foreground,
// with its pid files in the test's directory.
func startKeepalived(t *testing.T, h *nstest.Host, conf string) *exec.Cmd {
	t.Helper()
	kd, err := exec.LookPath("keepalived")
	if err != nil {
		t.Fatalf("keepalived is needed to prove keepalived.conf: install Debian's keepalived package (sh scripts/setup.sh): %v", err)
	}
	dir := t.TempDir()
	cf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return h.Start(t, kd, "-n", "-l", "-D", "-G", "-P", "-f", cf,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"), "-i", h.Name)
}

// TestKeepalived: router A holds the LAN's VIP while uplinkd says its
// uplink is healthy, gives it to router B when the uplink dies, and takes
// it back when the uplink returns; once with track_script running
// `uplinkd status --check wan`, once with track_file on uplinkd's track
// directory, both exactly as contrib/examples/keepalived.conf writes them.
//
//	[b] eth0 ──LAN 198.18.70.0/24── eth0 [a] eth1 ── eth0 [up] lo: 198.18.100.1
func TestKeepalived(t *testing.T) {
	snippet := example(t, "keepalived.conf")
	for _, use := range []string{trackScriptUse, trackFileUse} {
		if !strings.Contains(snippet, use) {
			t.Fatalf("keepalived.conf no longer contains:\n%s", use)
		}
	}
	for _, tc := range []struct{ name, drop, fault string }{
		{"track_script", trackFileUse, "VRRP_Script(chk_uplink) failed"},
		{"track_file", trackScriptUse, "tracked file uplink_wan now FAULT state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := nstest.New(t)
			a, b, up := lab.Host("a"), lab.Host("b"), lab.Host("up")
			lab.Link(a, "eth1", up, "eth0")
			lab.Link(a, "eth0", b, "eth0")
			a.AddAddr(t, "eth1", "198.18.1.2/24")
			up.AddAddr(t, "eth0", "198.18.1.1/24")
			up.AddAddr(t, "lo", "198.18.100.1/32")
			a.AddAddr(t, "eth0", "198.18.70.2/24")
			b.AddAddr(t, "eth0", "198.18.70.3/24")

			track := filepath.Join(t.TempDir(), "track")
			pol := daemontest.SetDaemonKeys(example(t, "keepalived.toml"), map[string]string{"track_dir": fmt.Sprintf("%q", track)})
			d := daemontest.Start(t, a, bin, pol)

			conf := strings.ReplaceAll(snippet, tc.drop, "")
			for old, repl := range map[string]string{
				"/usr/local/sbin/uplinkd": bin,
				"/run/uplinkd/track/wan":  filepath.Join(track, "wan"),
			} {
				if !strings.Contains(conf, old) {
					t.Fatalf("keepalived.conf no longer mentions %s", old)
				}
				conf = strings.ReplaceAll(conf, old, repl)
			}
			ka := startKeepalived(t, a, conf)
			startKeepalived(t, b, `
vrrp_instance lan {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 1
    virtual_ipaddress {
        198.18.70.1/24 dev eth0
    }
}
`)
			holder := func(want string) func() (bool, string) {
				return func() (bool, string) {
					onA := hasAddr(t, a, "eth0", vip)
					onB := hasAddr(t, b, "eth0", vip)
					got := map[[2]bool]string{{true, false}: "a", {false, true}: "b", {false, false}: "nobody", {true, true}: "both"}[[2]bool{onA, onB}]
					return got == want, "the VIP is on " + got
				}
			}
			daemontest.WaitFor(t, 20*time.Second, "router a to hold the VIP", holder("a"))

			up.BlackholeIP(t, "eth0") // a's uplink dies silently
			daemontest.WaitFor(t, 20*time.Second, "router b to take the VIP", holder("b"))
			if c := d.Check("wan"); c != 1 {
				t.Errorf("status --check wan = %d with the uplink dead, want 1", c)
			}
			if b, err := os.ReadFile(filepath.Join(track, "wan")); err != nil || strings.TrimSpace(string(b)) != "1" {
				t.Errorf("track file wan = %q (%v) with the uplink dead, want 1", b, err)
			}

			up.Recover(t)
			daemontest.WaitFor(t, 30*time.Second, "router a to take the VIP back", holder("a"))
			// keepalived's own log says which mechanism moved the VIP.
			if out := a.Output(ka); !strings.Contains(out, tc.fault) {
				t.Errorf("router a's keepalived never logged %q:\n%s", tc.fault, out)
			}
			if b, err := os.ReadFile(filepath.Join(track, "wan")); err != nil || strings.TrimSpace(string(b)) != "0" {
				t.Errorf("track file wan = %q (%v) with the uplink back, want 0", b, err)
			}
		})
	}
}

func hasAddr(t *testing.T, h *nstest.Host, iface, cidr string) bool {
	t.Helper()
	out := h.MustRun(t, "ip", "-4", "-o", "address", "show", "dev", iface)
	return strings.Contains(out, " "+cidr+" ")
}

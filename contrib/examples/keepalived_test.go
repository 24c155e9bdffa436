package examples_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
	// The age check, used in place of chk_uplink beside track_file.
	trackFreshUse = "    track_script {\n        chk_uplink_fresh\n    }\n"
)

// startKeepalived runs keepalived's VRRP process in h in the foreground,
// with every pid file in the test's directory: even with -P, keepalived
// reads and unlinks its BFD and checker pid files (/run/bfd.pid), so those
// are moved too. StartPeer makes /run private anyway, for whatever path a
// flag does not move.
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
	return h.StartPeer(t, kd, "-n", "-l", "-D", "-G", "-P", "-f", cf,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"),
		"-b", filepath.Join(dir, "bfd.pid"), "-c", filepath.Join(dir, "checkers.pid"), "-i", h.Name)
}

// kaLab is two VRRP routers on a LAN, a with an uplink watched by uplinkd
// and keepalived.conf (with the given replacements), b a plain backup.
//
//	[b] eth0 ──LAN 198.18.70.0/24── eth0 [a] eth1 ── eth0 [up] lo: 198.18.100.1
type kaLab struct {
	a, b, up *nstest.Host
	d        *daemontest.Daemon
	ka       *exec.Cmd // router a's keepalived
	track    string    // uplinkd's track directory
}

func startKaLab(t *testing.T, drop, with string) *kaLab {
	t.Helper()
	lab := nstest.New(t)
	l := &kaLab{a: lab.Host("a"), b: lab.Host("b"), up: lab.Host("up")}
	lab.Link(l.a, "eth1", l.up, "eth0")
	lab.Link(l.a, "eth0", l.b, "eth0")
	l.a.AddAddr(t, "eth1", "198.18.1.2/24")
	l.up.AddAddr(t, "eth0", "198.18.1.1/24")
	l.up.AddAddr(t, "lo", "198.18.100.1/32")
	l.a.AddAddr(t, "eth0", "198.18.70.2/24")
	l.b.AddAddr(t, "eth0", "198.18.70.3/24")

	l.track = filepath.Join(t.TempDir(), "track")
	pol := daemontest.SetDaemonKeys(example(t, "keepalived.toml"), map[string]string{"track_dir": fmt.Sprintf("%q", l.track)})
	l.d = daemontest.Start(t, l.a, bin, pol)

	conf := strings.ReplaceAll(example(t, "keepalived.conf"), drop, with)
	for old, repl := range map[string]string{
		"/usr/local/sbin/uplinkd": bin,
		"/run/uplinkd/track/wan":  filepath.Join(l.track, "wan"),
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("keepalived.conf no longer mentions %s", old)
		}
		conf = strings.ReplaceAll(conf, old, repl)
	}
	l.ka = startKeepalived(t, l.a, conf)
	startKeepalived(t, l.b, `
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
	return l
}

// holder waits for the VIP to be on router want ("a", "b").
func (l *kaLab) holder(t *testing.T, want string) func() (bool, string) {
	return func() (bool, string) {
		onA := hasAddr(t, l.a, "eth0", vip)
		onB := hasAddr(t, l.b, "eth0", vip)
		got := map[[2]bool]string{{true, false}: "a", {false, true}: "b", {false, false}: "nobody", {true, true}: "both"}[[2]bool{onA, onB}]
		return got == want, "the VIP is on " + got
	}
}

func (l *kaLab) trackValue(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.track, "wan"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestKeepalived: router A holds the LAN's VIP while uplinkd says its
// uplink is healthy, gives it to router B when the uplink dies, and takes
// it back when the uplink returns; once with track_script running
// `uplinkd status --check wan`, once with track_file on uplinkd's track
// directory, both exactly as contrib/examples/keepalived.conf writes them.
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
			l := startKaLab(t, tc.drop, "")
			daemontest.WaitFor(t, 20*time.Second, "router a to hold the VIP", l.holder(t, "a"))

			l.up.BlackholeIP(t, "eth0") // a's uplink dies silently
			daemontest.WaitFor(t, 20*time.Second, "router b to take the VIP", l.holder(t, "b"))
			if c := l.d.Check("wan"); c != 1 {
				t.Errorf("status --check wan = %d with the uplink dead, want 1", c)
			}
			if v := l.trackValue(t); v != "1" {
				t.Errorf("track file wan = %q with the uplink dead, want 1", v)
			}

			l.up.Recover(t)
			daemontest.WaitFor(t, 30*time.Second, "router a to take the VIP back", l.holder(t, "a"))
			// keepalived's own log says which mechanism moved the VIP.
			if out := l.a.Output(l.ka); !strings.Contains(out, tc.fault) {
				t.Errorf("router a's keepalived never logged %q:\n%s", tc.fault, out)
			}
			if v := l.trackValue(t); v != "0" {
				t.Errorf("track file wan = %q with the uplink back, want 0", v)
			}
		})
	}
}

// TestKeepalivedNoticesDeadDaemon: with the uplink healthy all along,
// keepalived moves the VIP when uplinkd itself stops watching it. A wedged
// uplinkd (SIGSTOP) stops refreshing the track file, which the age check
// of keepalived.conf's chk_uplink_fresh notices; it takes the VIP back when
// uplinkd resumes. A stopped uplinkd (SIGTERM) marks the file down, which
// track_file notices at once; a killed one (SIGKILL) leaves a file that
// only ages, which chk_uplink_fresh notices.
func TestKeepalivedNoticesDeadDaemon(t *testing.T) {
	if !strings.Contains(example(t, "keepalived.conf"), "vrrp_script chk_uplink_fresh {") {
		t.Fatal("keepalived.conf no longer defines chk_uplink_fresh")
	}
	for _, tc := range []struct {
		name string
		stop syscall.Signal
	}{{"sigterm", syscall.SIGTERM}, {"sigkill", syscall.SIGKILL}} {
		t.Run(tc.name, func(t *testing.T) {
			// track_file and the age check together, as keepalived.conf
			// recommends.
			l := startKaLab(t, trackScriptUse, trackFreshUse)
			daemontest.WaitFor(t, 20*time.Second, "router a to hold the VIP", l.holder(t, "a"))
			if tc.stop == syscall.SIGTERM {
				// Wedged, then back.
				if err := l.d.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				daemontest.WaitFor(t, 20*time.Second, "router b to take the VIP from a wedged uplinkd", l.holder(t, "b"))
				if v := l.trackValue(t); v != "0" {
					t.Errorf("track file wan = %q while uplinkd is wedged: only its age may tell", v)
				}
				if err := l.d.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				daemontest.WaitFor(t, 20*time.Second, "router a to take the VIP back once uplinkd resumes", l.holder(t, "a"))
				if out := l.a.Output(l.ka); !strings.Contains(out, "VRRP_Script(chk_uplink_fresh) failed") {
					t.Errorf("router a's keepalived never logged the age check failing:\n%s", out)
				}
			}
			if err := l.d.Cmd.Process.Signal(tc.stop); err != nil {
				t.Fatal(err)
			}
			_ = l.a.Wait(l.d.Cmd, 15*time.Second)
			daemontest.WaitFor(t, 20*time.Second, "router b to take the VIP from a stopped uplinkd", l.holder(t, "b"))
			want := map[syscall.Signal]string{syscall.SIGTERM: "1", syscall.SIGKILL: "0"}[tc.stop]
			if v := l.trackValue(t); v != want {
				t.Errorf("track file wan = %q after %v, want %s", v, tc.stop, want)
			}
		})
	}
}

func hasAddr(t *testing.T, h *nstest.Host, iface, cidr string) bool {
	t.Helper()
	out := h.MustRun(t, "ip", "-4", "-o", "address", "show", "dev", iface)
	return strings.Contains(out, " "+cidr+" ")
}

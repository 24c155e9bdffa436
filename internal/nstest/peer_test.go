package nstest

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// hostState lists every entry under paths on the host, with mode, size and
// mtime, and "absent" for a path that does not exist.
func hostState(t *testing.T, paths []string) map[string]string {
	t.Helper()
	st := map[string]string{}
	for _, p := range paths {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			st[p] = "absent"
			continue
		}
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st[path] = fmt.Sprintf("%v %d %s", fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
			return nil
		})
		if err != nil {
			t.Fatalf("listing %s: %v", p, err)
		}
	}
	return st
}

// hostMounts is the host's mount table without /run/netns/*: those are the
// namespace handles every lab on this machine (ours included) adds.
func hostMounts(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var ms []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) > 4 && !strings.HasPrefix(f[4], "/run/netns/") {
			ms = append(ms, l)
		}
	}
	sort.Strings(ms)
	return ms
}

func diffState(before, after map[string]string) []string {
	var d []string
	for p, v := range after {
		if before[p] != v {
			d = append(d, fmt.Sprintf("%s: %q -> %q", p, before[p], v))
		}
	}
	for p, v := range before {
		if _, ok := after[p]; !ok {
			d = append(d, fmt.Sprintf("%s: %q -> gone", p, v))
		}
	}
	sort.Strings(d)
	return d
}

// peerCase is one kind of peer: how to start it with its compiled-in
// default paths (no flag moving them, the worst case), the host paths it
// would write, and files it must have written in its private view, which
// prove it wrote where the host would otherwise have seen it.
type peerCase struct {
	name    string
	need    []string // binaries
	host    []string // host paths the peer would write by default
	private []string // paths it must show in its own view
	start   func(t *testing.T, h *Host) []*exec.Cmd
}

var frrDir = "/usr/lib/frr"

func peerCases() []peerCase {
	frrd := []string{"zebra", "ospfd", "bfdd", "staticd"}
	var frrNeed, frrPriv []string
	for _, d := range frrd {
		frrNeed = append(frrNeed, filepath.Join(frrDir, d))
		frrPriv = append(frrPriv, "/run/frr/"+d+".pid")
	}
	return []peerCase{{
		// What no real daemon may do without the helper: write, create and
		// unlink in every tree where the peers we run (and those being added:
		// radvd, pppd, DHCP clients) keep compiled-in paths. It refuses to
		// write unless its /run, /etc and /var/lib are overlays, so a broken
		// helper fails this test instead of dirtying the host.
		name: "flag-ignoring writer",
		need: []string{"sh", "findmnt"},
		host: []string{"/run/frr", "/var/lib/frr", "/etc/frr", "/run/keepalived", "/run/dnsmasq", "/var/lib/misc",
			"/run/radvd", "/run/ppp", "/etc/ppp", "/var/lib/dhcp", "/var/lib/dhcpcd", "/run/dhcpcd",
			"/run/upl-private-probe", "/etc/upl-private-probe", "/var/lib/upl-private-probe", "/var/log/upl-private-probe"},
		private: []string{"/run/frr/ospfd-gr.json", "/var/lib/frr/x", "/etc/frr/x", "/run/keepalived/x", "/var/lib/misc/dnsmasq.leases",
			"/run/radvd/radvd.pid", "/run/ppp/x", "/etc/ppp/x", "/var/lib/dhcp/dhclient.leases", "/var/lib/dhcpcd/x", "/run/dhcpcd/x",
			"/run/upl-private-probe", "/etc/upl-private-probe", "/var/lib/upl-private-probe", "/var/log/upl-private-probe"},
		start: func(t *testing.T, h *Host) []*exec.Cmd {
			script := `set -e
for d in /etc /run /var/lib /var/log; do [ "$(findmnt -n -o FSTYPE -M $d)" = overlay ] || { echo "$d is not private" >&2; exit 1; }; done
for d in /run/frr /var/lib/frr /etc/frr /run/keepalived /run/dnsmasq /var/lib/misc /run/radvd /run/ppp /etc/ppp /var/lib/dhcp /var/lib/dhcpcd /run/dhcpcd; do
	mkdir -p $d; echo x > $d/x; touch $d
done
echo '{}' > /run/frr/ospfd-gr.json; touch /var/lib/misc/dnsmasq.leases /run/radvd/radvd.pid /var/lib/dhcp/dhclient.leases
rm -f /run/frr/x /run/dnsmasq/x /var/lib/misc/x
for d in /run /etc /var/lib /var/log; do echo x > $d/upl-private-probe; done
exec sleep 60`
			return []*exec.Cmd{h.StartPeer(t, "sh", "-c", script)}
		},
	}, {
		name:    "frr",
		need:    frrNeed,
		host:    []string{"/run/frr", "/var/lib/frr", "/etc/frr"},
		private: frrPriv,
		start: func(t *testing.T, h *Host) []*exec.Cmd {
			var cs []*exec.Cmd
			for _, d := range frrd {
				cs = append(cs, h.StartPeer(t, filepath.Join(frrDir, d), "--log", "stdout"))
			}
			return cs
		},
	}, {
		name: "keepalived",
		need: []string{"keepalived"},
		host: []string{"/run/keepalived", "/run/keepalived.pid", "/run/vrrp.pid", "/run/checkers.pid", "/run/bfd.pid",
			"/var/run/keepalived.pid", "/etc/keepalived"},
		private: []string{"/run/keepalived.pid", "/run/vrrp.pid"},
		start: func(t *testing.T, h *Host) []*exec.Cmd {
			cf := filepath.Join(t.TempDir(), "keepalived.conf")
			conf := "vrrp_instance upl {\n state BACKUP\n interface eth0\n virtual_router_id 51\n priority 100\n advert_int 1\n virtual_ipaddress {\n  198.18.99.1/24\n }\n}\n"
			if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			return []*exec.Cmd{h.StartPeer(t, "keepalived", "-n", "-l", "-D", "-f", cf)}
		},
	}, {
		name:    "dnsmasq",
		need:    []string{"dnsmasq"},
		host:    []string{"/run/dnsmasq", "/var/lib/misc", "/run/dnsmasq.pid", "/var/run/dnsmasq.pid"},
		private: []string{"/var/lib/misc/dnsmasq.leases"},
		start: func(t *testing.T, h *Host) []*exec.Cmd {
			return []*exec.Cmd{h.StartPeer(t, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
				"--port=0", "--interface=eth0", "--bind-interfaces", "--dhcp-range=198.18.99.10,198.18.99.20,1h", "--log-facility=-")}
		},
	}}
}

// TestStartPeerKeepsHostPathsPrivate starts each kind of peer through
// StartPeer with its compiled-in default paths and shows that it wrote
// there (in its own view, through /proc/PID/root) while the host's copies
// of those paths and the host's mount table did not change, both while it
// runs and after it is stopped.
func TestStartPeerKeepsHostPathsPrivate(t *testing.T) {
	for _, pc := range peerCases() {
		t.Run(pc.name, func(t *testing.T) {
			for _, b := range pc.need {
				if _, err := exec.LookPath(b); err != nil {
					t.Fatalf("%s is needed (sh scripts/setup.sh installs it): %v", b, err)
				}
			}
			l := New(t)
			h, peer := l.Host("peer"), l.Host("other")
			l.Link(h, "eth0", peer, "eth0")
			h.AddAddr(t, "eth0", "198.18.99.2/24")

			before, mounts := hostState(t, pc.host), hostMounts(t)
			cmds := pc.start(t, h)
			check := func(when string) {
				t.Helper()
				if d := diffState(before, hostState(t, pc.host)); len(d) != 0 {
					t.Errorf("%s: the host saw %s's writes:\n%s", when, pc.name, strings.Join(d, "\n"))
				}
				if got := hostMounts(t); strings.Join(got, "\n") != strings.Join(mounts, "\n") {
					t.Errorf("%s: the host's mount table changed:\nbefore:\n%s\nafter:\n%s", when, strings.Join(mounts, "\n"), strings.Join(got, "\n"))
				}
			}
			for _, want := range pc.private {
				deadline := time.Now().Add(10 * time.Second)
				for {
					found := false
					for _, c := range cmds {
						if _, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", c.Process.Pid, want)); err == nil {
							found = true
						}
					}
					if found {
						break
					}
					if time.Now().After(deadline) {
						for _, c := range cmds {
							t.Logf("output of %s:\n%s", c.Args, h.Output(c))
						}
						t.Fatalf("%s never wrote %s in its private view", pc.name, want)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			check("while running")
			for _, c := range cmds {
				h.Stop(c)
			}
			check("after stopping")
		})
	}
}

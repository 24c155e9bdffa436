package nstest

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// Host is one network namespace of a Lab: a netlab.Host whose fallible
// methods fail the test instead of returning errors. Name, NS, Handle, Run,
// RunInput, Do, NsHandle and FaultRuleset come from netlab.Host unchanged.
type Host struct {
	*netlab.Host

	lab *Lab
}

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// MustRun is Run that fails the test, showing the output, on error.
func (h *Host) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.Run(args...)
	if err != nil {
		t.Fatalf("nstest: [%s] %s: %v\n%s", h.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Start runs args in the background inside the namespace, in its own process
// group, with stdout and stderr captured (see Output). The process is killed
// (SIGKILL to its group) and reaped when t finishes or the lab is closed,
// whichever comes first; if the test failed its output is logged then.
//
// Use Host.Wait, not cmd.Wait, to wait for it: the harness reaps the process
// itself, and exec.Cmd.Wait must not be called twice.
func (h *Host) Start(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	p, err := h.Host.Start(args...)
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	return h.track(t, p, args)
}

// StartPeer is Start for a peer daemon: FRR, keepalived, dnsmasq, radvd,
// pppoe-server/pppd, a DHCP client, anything with compiled-in paths under
// /etc, /run, /var/lib or /var/log. It runs in a private mount namespace
// where those trees are throw-away overlays (netlab.PrivateTrees), so
// nothing it writes there reaches the host, whatever flags it ignores. Give
// it paths in t.TempDir() for what the test must see (config, pid files,
// sockets, leases). Stop, Wait and Output work as for Start.
func (h *Host) StartPeer(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	p, err := h.Host.StartPeer(t.TempDir(), args...)
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	return h.track(t, p, args)
}

// track ties a started process to t when t is not the lab's own test.
func (h *Host) track(t testing.TB, p *netlab.Proc, args []string) *exec.Cmd {
	if t != h.lab.t {
		// t may be a subtest of the lab's test: do not let the process
		// outlive it.
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("nstest: output of %q in %s:\n%s", strings.Join(args, " "), h.NS, netlab.Tail(p.Output(), 4096))
			}
			_ = p.Stop()
		})
	}
	return p.Cmd
}

// Output returns what a process started with Start has written to stdout
// and stderr so far. It is safe to call while the process runs.
func (h *Host) Output(cmd *exec.Cmd) string {
	if p := h.ProcOf(cmd); p != nil {
		return p.Output()
	}
	return ""
}

// Wait waits up to timeout for a process started with Start to exit and
// returns its exit error. On timeout the process group is killed and an
// error is returned.
func (h *Host) Wait(cmd *exec.Cmd, timeout time.Duration) error {
	p := h.ProcOf(cmd)
	if p == nil {
		return errors.New("nstest: Wait: command was not started by this host (or already cleaned up)")
	}
	return p.Wait(timeout)
}

// Stop kills a process started with Start (SIGKILL to its group) and reaps
// it. Safe to call more than once.
func (h *Host) Stop(cmd *exec.Cmd) {
	if p := h.ProcOf(cmd); p != nil {
		_ = p.Stop()
	}
}

// Sysctl sets a net.* sysctl inside the namespace. key uses dots
// ("net.ipv4.ip_forward") or slashes ("net/ipv4/conf/eth0.100/forwarding")
// when a path component itself contains dots.
func (h *Host) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := h.Host.Sysctl(key, value); err != nil {
		t.Fatalf("nstest: [%s] %v", h.Name, err)
	}
}

// SysctlGet reads a net.* sysctl inside the namespace.
func (h *Host) SysctlGet(t testing.TB, key string) string {
	t.Helper()
	v, err := h.Host.SysctlGet(key)
	if err != nil {
		t.Fatalf("nstest: [%s] %v", h.Name, err)
	}
	return v
}

// AddAddr adds cidr ("198.18.1.2/24", "2001:db8:1::2/64") to iface. IPv6
// addresses are added with nodad so they are usable immediately. Addresses
// outside 198.18.0.0/15 and 2001:db8::/32 are refused.
func (h *Host) AddAddr(t testing.TB, iface, cidr string) {
	t.Helper()
	if err := h.Host.AddAddr(iface, cidr); err != nil {
		t.Fatalf("nstest: [%s] %v", h.Name, err)
	}
}

// Ping sends a single echo request (`ping -n -c 1 -W 1 args...`) from inside
// the namespace and returns nil if a reply came back. Extra args come last,
// so "-c", "3" overrides the count; keep it bounded.
func (h *Host) Ping(t testing.TB, args ...string) error {
	t.Helper()
	return h.Host.Ping(args...)
}

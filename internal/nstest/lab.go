package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RequireEnv, when set to a non-empty value, turns New's skip into a fatal
// error. CI sets it so that a misconfigured runner fails loudly instead of
// silently skipping every privileged test.
const RequireEnv = "UPLINKD_NSTEST_REQUIRE"

// runTimeout bounds every command run through Host.Run.
const runTimeout = 30 * time.Second

// Lab is the set of namespaces, links and processes belonging to one test.
type Lab struct {
	// Prefix is unique per Lab; every namespace name starts with Prefix+"-".
	Prefix string

	t testing.TB

	mu     sync.Mutex
	hosts  []*Host
	closed bool
}

var (
	probeOnce   sync.Once
	probeReason string // non-empty: the machine cannot create namespaces
	probeErr    error  // unexpected probe failure: fail, do not skip
)

// New creates a lab for one test and registers its teardown with t.Cleanup.
//
// It skips only when namespaces truly cannot be created here (not root, no
// `ip`, or the kernel refusing unshare(CLONE_NEWNET)); a root machine that can
// create namespaces never skips, so privileged coverage cannot silently
// disappear. Set UPLINKD_NSTEST_REQUIRE=1 to turn even those skips into
// failures.
func New(t testing.TB) *Lab {
	t.Helper()
	probeOnce.Do(probe)
	if probeErr != nil {
		t.Fatalf("nstest: probing namespace support: %v", probeErr)
	}
	if probeReason != "" {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("nstest: %s (and %s is set)", probeReason, RequireEnv)
		}
		t.Skipf("nstest: skipping privileged test: %s", probeReason)
	}
	prefix, err := newPrefix()
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	l := &Lab{Prefix: prefix, t: t}
	t.Cleanup(l.Close)
	return l
}

func probe() {
	if os.Geteuid() != 0 {
		probeReason = "not running as root"
		return
	}
	if _, err := exec.LookPath("ip"); err != nil {
		probeReason = "no `ip` binary (iproute2) in PATH"
		return
	}
	// Try the one syscall everything depends on, on a throwaway thread: the
	// anonymous namespace disappears with the thread, nothing is left behind.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread is terminated when this goroutine
			// exits, instead of going back to the pool in the wrong netns.
			errc <- nil
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	switch err := <-errc; {
	case err == nil:
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		probeReason = "unshare(CLONE_NEWNET) not permitted: " + err.Error()
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		probeReason = "kernel without network namespace support: " + err.Error()
	default:
		probeErr = err
	}
}

// newPrefix returns "upl" + 6 random hex digits + "-" + short host name.
// The random part keeps concurrent runs apart; the host name tells whoever
// finds a leaked namespace where it came from.
func newPrefix() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "upl" + hex.EncodeToString(b[:]) + "-" + shortHostname(), nil
}

func shortHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "x"
	}
	if i := strings.IndexByte(h, '.'); i >= 0 {
		h = h[:i]
	}
	var sb strings.Builder
	for _, r := range strings.ToLower(h) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			sb.WriteRune(r)
		}
		if sb.Len() == 8 {
			break
		}
	}
	if sb.Len() == 0 {
		return "x"
	}
	return sb.String()
}

// Host creates namespace "<prefix>-<name>" with lo up and sysctls set for a
// deterministic lab (see newHost). It fails the test on any error.
func (l *Lab) Host(name string) *Host {
	l.t.Helper()
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		l.t.Fatalf("nstest: invalid host name %q", name)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.t.Fatalf("nstest: Host(%q) on a closed lab", name)
	}
	for _, h := range l.hosts {
		if h.Name == name {
			l.mu.Unlock()
			l.t.Fatalf("nstest: duplicate host name %q", name)
		}
	}
	h := &Host{Name: name, NS: l.Prefix + "-" + name, lab: l}
	// Registered before creation so that Close deletes a half-made namespace.
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()

	if err := h.create(); err != nil {
		l.t.Fatalf("nstest: creating host %q (netns %s): %v", name, h.NS, err)
	}
	return h
}

// Close kills every process started in the lab, then deletes every
// namespace. It is idempotent and is what the t.Cleanup registered by New
// calls. Failures to remove something are reported with t.Errorf, since a
// leak on a shared machine is a real defect.
func (l *Lab) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	hosts := l.hosts
	l.mu.Unlock()

	failed := l.t.Failed()
	// Processes first: a process inside a namespace keeps it alive after
	// `ip netns delete`, invisible to `ip netns list`.
	for _, h := range hosts {
		for _, p := range h.takeProcs() {
			if failed {
				l.t.Logf("nstest: output of %q in %s:\n%s", strings.Join(p.args, " "), h.NS, tail(p.out.String(), 4096))
			}
			if !p.stop(15 * time.Second) {
				l.t.Errorf("nstest: process %d (%q) in %s could not be reaped", p.pid, strings.Join(p.args, " "), h.NS)
			}
		}
	}
	for i := len(hosts) - 1; i >= 0; i-- {
		if err := hosts[i].destroy(); err != nil {
			l.t.Errorf("nstest: cleaning up %s: %v", hosts[i].NS, err)
		}
	}
}

// Namespaces lists the namespace names of the lab's hosts, for tests that
// want to verify cleanup.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.hosts))
	for _, h := range l.hosts {
		out = append(out, h.NS)
	}
	return out
}

// Link creates a veth pair with aIf inside a and bIf inside b and sets both
// ends up. The pair is created from within a's namespace with the peer placed
// straight into b's, so it never exists in the root namespace.
func (l *Lab) Link(a *Host, aIf string, b *Host, bIf string) {
	l.t.Helper()
	if err := link(a, aIf, b, bIf); err != nil {
		l.t.Fatalf("nstest: link %s:%s <-> %s:%s: %v", a.Name, aIf, b.Name, bIf, err)
	}
}

func validIfName(name string) error {
	if name == "" || len(name) > unix.IFNAMSIZ-1 || strings.ContainsAny(name, "/ \t\n:") {
		return fmt.Errorf("invalid interface name %q (1-15 chars, no '/', ':' or spaces)", name)
	}
	return nil
}

// nsExists reports whether /run/netns/<name> is present.
func nsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...[" + strconv.Itoa(len(s)-n) + " bytes cut]...\n" + s[len(s)-n:]
}

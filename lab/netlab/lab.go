package netlab

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
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunTimeout bounds every command run through Host.Run.
const RunTimeout = 30 * time.Second

// Lab is a set of namespaces, the veth links between them and the
// processes started inside them.
type Lab struct {
	// Prefix is unique per Lab; every namespace name starts with Prefix+"-".
	Prefix string

	mu     sync.Mutex
	hosts  []*Host
	closed bool

	closeOnce sync.Once
	closeErr  error
}

var (
	probeOnce   sync.Once
	probeReason string // non-empty: the machine cannot create namespaces
	probeErr    error  // unexpected probe failure
)

// Check reports whether this machine can run a lab. reason is non-empty when
// it plainly cannot (not root, no `ip`, no network namespaces); err is an
// unexpected failure of the check itself.
func Check() (reason string, err error) {
	probeOnce.Do(probe)
	return probeReason, probeErr
}

// New creates an empty lab with a fresh unique prefix. It fails when the
// machine cannot create namespaces (see Check). The caller owns the lab and
// must Close it.
func New() (*Lab, error) {
	reason, err := Check()
	if err != nil {
		return nil, fmt.Errorf("probing namespace support: %w", err)
	}
	if reason != "" {
		return nil, errors.New(reason)
	}
	prefix, err := NewPrefix()
	if err != nil {
		return nil, err
	}
	return &Lab{Prefix: prefix}, nil
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

// NewPrefix returns "upl" + 6 random hex digits + "-" + short host name.
// The random part keeps concurrent runs apart; the host name tells whoever
// finds a leaked namespace where it came from.
func NewPrefix() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random prefix: %w", err)
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

// Host creates namespace "<prefix>-<name>" with lo up and the base sysctls
// set (see baseSysctls). A half-made namespace is still deleted by Close.
func (l *Lab) Host(name string) (*Host, error) {
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("invalid host name %q", name)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("creating host %q on a closed lab", name)
	}
	for _, h := range l.hosts {
		if h.Name == name {
			l.mu.Unlock()
			return nil, fmt.Errorf("duplicate host name %q", name)
		}
	}
	h := &Host{Name: name, NS: l.Prefix + "-" + name, lab: l, ns: -1}
	// Registered before creation so that Close deletes a half-made namespace.
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()

	if err := h.create(); err != nil {
		return nil, fmt.Errorf("creating host %q (netns %s): %w", name, h.NS, err)
	}
	return h, nil
}

// Hosts returns the lab's hosts in creation order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// Close stops flapping links, kills every process started in the lab, then
// deletes every namespace. It is idempotent and safe to call from a signal
// handler goroutine while other goroutines still use the lab. Anything that
// could not be removed is reported in the error, since a leak on a shared
// machine is a real defect.
//
// A concurrent second call waits for the first to finish, so a signal
// handler never exits the process in the middle of a teardown.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.teardown() })
	return l.closeErr
}

func (l *Lab) teardown() error {
	l.mu.Lock()
	l.closed = true
	hosts := l.hosts
	l.mu.Unlock()

	var errs []error
	for _, h := range hosts {
		h.stopFlaps()
	}
	// Processes first: a process inside a namespace keeps it alive after
	// `ip netns delete`, invisible to `ip netns list`.
	for _, h := range hosts {
		for _, p := range h.takeProcs() {
			if err := p.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("in %s: %w", h.NS, err))
			}
		}
	}
	for i := len(hosts) - 1; i >= 0; i-- {
		if err := hosts[i].destroy(); err != nil {
			errs = append(errs, fmt.Errorf("cleaning up %s: %w", hosts[i].NS, err))
		}
	}
	return errors.Join(errs...)
}

// Closed reports whether Close has been called.
func (l *Lab) Closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Namespaces lists the namespace names of the lab's hosts.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.hosts))
	for _, h := range l.hosts {
		out = append(out, h.NS)
	}
	return out
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

// Tail returns the last n bytes of s, saying how much was cut.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...[" + strconv.Itoa(len(s)-n) + " bytes cut]...\n" + s[len(s)-n:]
}

package nstest

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Host is one network namespace of a Lab.
type Host struct {
	Name   string          // short name given to Lab.Host
	NS     string          // netns name, usable with `ip -n` / `ip netns exec`
	Handle *netlink.Handle // netlink handle bound to NS

	lab *Lab
	ns  netns.NsHandle // open fd of NS; -1 before create

	mu      sync.Mutex
	procs   map[*exec.Cmd]*proc
	faults  faultState
	created bool
}

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// NsHandle returns an open handle to the host's namespace. It is owned by the
// Host and closed by Lab.Close; callers must not close it.
func (h *Host) NsHandle() netns.NsHandle { return h.ns }

// baseSysctls make every namespace behave the same regardless of the
// kernel's defaults or devconf_inherit_init_net:
//   - accept_dad=0 so IPv6 addresses are usable at once (no 1-2 s tentative
//     phase that would make the first probes fail randomly);
//   - keep_addr_on_down=1 so LinkDown/LinkUp faults do not silently delete
//     static IPv6 addresses, which would turn a reversible fault into a
//     permanent one;
//   - rp_filter=0 because policy-routing tests legitimately receive replies on
//     an interface that is not the main-table route to the source, which
//     strict reverse-path filtering would drop.
//
// "default" must be set before any interface is created to take effect on it.
var baseSysctls = [][2]string{
	{"net.ipv6.conf.all.accept_dad", "0"},
	{"net.ipv6.conf.default.accept_dad", "0"},
	{"net.ipv6.conf.all.keep_addr_on_down", "1"},
	{"net.ipv6.conf.default.keep_addr_on_down", "1"},
	{"net.ipv4.conf.all.rp_filter", "0"},
	{"net.ipv4.conf.default.rp_filter", "0"},
}

func (h *Host) create() error {
	h.ns = -1
	if err := validNSName(h.NS); err != nil {
		return err
	}
	if out, err := runCmd(nil, runTimeout, "ip", "netns", "add", h.NS); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	h.mu.Lock()
	h.created = true
	h.mu.Unlock()
	ns, err := netns.GetFromName(h.NS)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	h.ns = ns
	h.Handle, err = netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	lo, err := h.Handle.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := h.Handle.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	for _, kv := range baseSysctls {
		if err := h.sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func validNSName(name string) error {
	if len(name) > 64 || strings.ContainsAny(name, "/ \t\n") || name == "." || name == ".." {
		return fmt.Errorf("invalid netns name %q", name)
	}
	return nil
}

func (h *Host) takeProcs() []*proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*proc, 0, len(h.procs))
	for _, p := range h.procs {
		out = append(out, p)
	}
	h.procs = nil
	return out
}

// destroy kills anything left inside the namespace and deletes it.
func (h *Host) destroy() error {
	h.mu.Lock()
	created := h.created
	h.created = false
	h.mu.Unlock()
	var errs []error
	if h.Handle != nil {
		h.Handle.Close()
		h.Handle = nil
	}
	if h.ns >= 0 {
		_ = h.ns.Close()
		h.ns = -1
	}
	if !created {
		return nil
	}
	// Processes we did not start ourselves (e.g. a daemon spawned by code
	// under test via Do, or something that escaped its process group) would
	// keep the namespace alive. Anything listed here is inside our private
	// namespace, so it is ours to kill; never the test binary itself, whose
	// main thread may be inside the namespace only in the middle of a Do.
	if out, err := runCmd(nil, runTimeout, "ip", "netns", "pids", h.NS); err == nil {
		self := os.Getpid()
		for _, f := range strings.Fields(out) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 1 || pid == self {
				continue
			}
			_ = syscallKill(pid)
		}
	}
	if out, err := runCmd(nil, runTimeout, "ip", "netns", "delete", h.NS); err != nil {
		errs = append(errs, fmt.Errorf("ip netns delete: %v: %s", err, out))
	}
	if nsExists(h.NS) {
		errs = append(errs, fmt.Errorf("/run/netns/%s still exists", h.NS))
	}
	return errors.Join(errs...)
}

// runCmd runs args (in the current namespace) with a timeout and returns the
// combined output.
func runCmd(stdin io.Reader, timeout time.Duration, args ...string) (string, error) {
	p, err := startProc(stdin, args)
	if err != nil {
		return "", err
	}
	if p.wait(timeout) {
		return p.out.String(), fmt.Errorf("%q timed out after %v (process group killed)", strings.Join(args, " "), timeout)
	}
	return p.out.String(), p.err
}

func (h *Host) execArgs(args []string) []string {
	return append([]string{"ip", "netns", "exec", h.NS}, args...)
}

// Run runs args inside the namespace via `ip netns exec` and returns the
// combined stdout/stderr. It gives up after 30 s, killing the command's whole
// process group, so a wedged tool cannot hang the test suite.
func (h *Host) Run(args ...string) (string, error) {
	return runCmd(nil, runTimeout, h.execArgs(args)...)
}

// RunInput is Run with stdin (e.g. for `nft -f -`).
func (h *Host) RunInput(stdin string, args ...string) (string, error) {
	return runCmd(strings.NewReader(stdin), runTimeout, h.execArgs(args)...)
}

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
	h.mu.Lock()
	if !h.created {
		h.mu.Unlock()
		t.Fatalf("nstest: Start on host %q which does not exist (lab closed?)", h.Name)
	}
	p, err := startProc(nil, h.execArgs(args))
	if err != nil {
		h.mu.Unlock()
		t.Fatalf("nstest: [%s] start %s: %v", h.Name, strings.Join(args, " "), err)
	}
	if h.procs == nil {
		h.procs = map[*exec.Cmd]*proc{}
	}
	h.procs[p.cmd] = p
	h.mu.Unlock()
	if t != h.lab.t {
		// t may be a subtest of the lab's test: do not let the process
		// outlive it.
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("nstest: output of %q in %s:\n%s", strings.Join(args, " "), h.NS, tail(p.out.String(), 4096))
			}
			p.stop(15 * time.Second)
		})
	}
	return p.cmd
}

func (h *Host) proc(cmd *exec.Cmd) *proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.procs[cmd]
}

// Output returns what a process started with Start has written to stdout
// and stderr so far. It is safe to call while the process runs.
func (h *Host) Output(cmd *exec.Cmd) string {
	if p := h.proc(cmd); p != nil {
		return p.out.String()
	}
	return ""
}

// Wait waits up to timeout for a process started with Start to exit and
// returns its exit error. On timeout the process group is killed and an
// error is returned.
func (h *Host) Wait(cmd *exec.Cmd, timeout time.Duration) error {
	p := h.proc(cmd)
	if p == nil {
		return errors.New("nstest: Wait: command was not started by this host (or already cleaned up)")
	}
	if p.wait(timeout) {
		return fmt.Errorf("nstest: %q did not exit within %v; killed", strings.Join(p.args, " "), timeout)
	}
	return p.err
}

// Stop kills a process started with Start (SIGKILL to its group) and reaps
// it. Safe to call more than once.
func (h *Host) Stop(cmd *exec.Cmd) {
	if p := h.proc(cmd); p != nil {
		p.stop(15 * time.Second)
	}
}

// Do runs fn on an OS thread switched into the host's namespace, so that
// Go code (sockets, netlink without a handle, /proc/sys/net) sees the lab
// instead of the root namespace.
//
// fn runs on a dedicated goroutine so that the calling goroutine's thread is
// never switched. If switching back fails the thread is left locked so the
// runtime destroys it rather than reusing a thread stuck in the lab
// namespace. A panic in fn is re-raised in the caller; t.FailNow/SkipNow in
// fn ends the caller's test as usual.
func (h *Host) Do(fn func() error) error {
	if h.ns < 0 {
		return fmt.Errorf("nstest: Do on host %q whose namespace is not open", h.Name)
	}
	type result struct {
		err      error
		panicked bool
		pval     any
		returned bool
	}
	resc := make(chan result, 1)
	go func() {
		var res result
		defer func() {
			if !res.returned {
				if r := recover(); r != nil {
					res.panicked, res.pval = true, r
				}
			}
			resc <- res
		}()
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res.err, res.returned = fmt.Errorf("nstest: get current netns: %w", err), true
			return
		}
		defer orig.Close()
		if err := netns.Set(h.ns); err != nil {
			// setns failed, so the thread is still where it was.
			runtime.UnlockOSThread()
			res.err, res.returned = fmt.Errorf("nstest: setns %s: %w", h.NS, err), true
			return
		}
		defer func() {
			if err := netns.Set(orig); err != nil {
				// Deliberately no UnlockOSThread: the thread dies with
				// this goroutine instead of running other goroutines in
				// the lab namespace.
				if res.err == nil && res.returned {
					res.err = fmt.Errorf("nstest: restoring netns after Do: %w", err)
				}
				return
			}
			runtime.UnlockOSThread()
		}()
		res.err = fn()
		res.returned = true
	}()
	res := <-resc
	switch {
	case res.panicked:
		panic(res.pval)
	case !res.returned:
		// fn called runtime.Goexit (t.FailNow, t.SkipNow): propagate it to
		// the test goroutine, where it is legal.
		runtime.Goexit()
	}
	return res.err
}

// Sysctl sets a net.* sysctl inside the namespace. key uses dots
// ("net.ipv4.ip_forward") or slashes ("net/ipv4/conf/eth0.100/forwarding")
// when a path component itself contains dots.
func (h *Host) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := h.sysctl(key, value); err != nil {
		t.Fatalf("nstest: [%s] %v", h.Name, err)
	}
}

// SysctlGet reads a net.* sysctl inside the namespace.
func (h *Host) SysctlGet(t testing.TB, key string) string {
	t.Helper()
	path, err := sysctlPath(key)
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	var v []byte
	if err := h.Do(func() (err error) { v, err = os.ReadFile(path); return err }); err != nil {
		t.Fatalf("nstest: [%s] read %s: %v", h.Name, key, err)
	}
	return strings.TrimSpace(string(v))
}

// sysctlPath maps a key to its /proc/sys path, refusing anything outside
// net.*: only the net tree is per-namespace, everything else (kernel.*,
// vm.*, fs.*) is global and would silently change the whole machine.
func sysctlPath(key string) (string, error) {
	rel := key
	if !strings.Contains(rel, "/") {
		rel = strings.ReplaceAll(rel, ".", "/")
	}
	if !strings.HasPrefix(rel, "net/") {
		return "", fmt.Errorf("sysctl %q refused: only net.* sysctls are namespaced", key)
	}
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." || c == ".." {
			return "", fmt.Errorf("sysctl %q refused: bad path", key)
		}
	}
	return "/proc/sys/" + rel, nil
}

func (h *Host) sysctl(key, value string) error {
	path, err := sysctlPath(key)
	if err != nil {
		return err
	}
	// /proc/sys/net resolves against the calling thread's namespace, which
	// inside Do is the lab's.
	return h.Do(func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// AddAddr adds cidr ("198.18.1.2/24", "2001:db8:1::2/64") to iface. IPv6
// addresses are added with nodad so they are usable immediately. Addresses
// outside 198.18.0.0/15 and 2001:db8::/32 are refused.
func (h *Host) AddAddr(t testing.TB, iface, cidr string) {
	t.Helper()
	if err := h.addAddr(iface, cidr); err != nil {
		t.Fatalf("nstest: [%s] %v", h.Name, err)
	}
}

var (
	labNet4 = netip.MustParsePrefix("198.18.0.0/15")
	labNet6 = netip.MustParsePrefix("2001:db8::/32")
)

// checkLabPrefix enforces the address plan: test addresses must never be
// routable on a real network.
func checkLabPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("invalid prefix")
	}
	a := p.Addr()
	if a.Zone() != "" {
		return fmt.Errorf("%v: zoned address not allowed", p)
	}
	if (a.Is4() && labNet4.Contains(a) && p.Bits() >= labNet4.Bits()) ||
		(a.Is6() && !a.Is4In6() && labNet6.Contains(a) && p.Bits() >= labNet6.Bits()) {
		return nil
	}
	return fmt.Errorf("%v is outside the lab ranges %v and %v", p, labNet4, labNet6)
}

func (h *Host) addAddr(iface, cidr string) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("AddAddr %q: %w", cidr, err)
	}
	if err := checkLabPrefix(p); err != nil {
		return fmt.Errorf("AddAddr: %w", err)
	}
	args := []string{"ip", "addr", "add", p.String(), "dev", iface}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	if out, err := h.Run(args...); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Ping sends a single echo request (`ping -n -c 1 -W 1 args...`) from inside
// the namespace and returns nil if a reply came back. Extra args come last,
// so "-c", "3" overrides the count; keep it bounded.
func (h *Host) Ping(t testing.TB, args ...string) error {
	t.Helper()
	out, err := h.Run(append([]string{"ping", "-n", "-c", "1", "-W", "1"}, args...)...)
	if err != nil {
		return fmt.Errorf("[%s] ping %s: %v\n%s", h.Name, strings.Join(args, " "), err, out)
	}
	return nil
}

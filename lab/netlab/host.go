package netlab

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

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Host is one network namespace of a Lab.
type Host struct {
	Name   string          // short name given to Lab.Host
	NS     string          // netns name, usable with `ip -n` / `ip netns exec`
	Handle *netlink.Handle // netlink handle bound to NS

	lab *Lab
	ns  netns.NsHandle // open fd of NS; -1 before create and after destroy

	mu      sync.Mutex
	procs   []*Proc
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
//   - rp_filter=0 because policy-routing setups legitimately receive replies
//     on an interface that is not the main-table route to the source, which
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
	if err := validNSName(h.NS); err != nil {
		return err
	}
	if out, err := RunCmd(nil, RunTimeout, "ip", "netns", "add", h.NS); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	h.mu.Lock()
	h.created = true
	h.mu.Unlock()
	ns, err := netns.GetFromName(h.NS)
	if err != nil {
		return fmt.Errorf("opening netns: %w", err)
	}
	h.ns = ns
	h.Handle, err = netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("opening netlink handle: %w", err)
	}
	lo, err := h.Handle.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	if err := h.Handle.LinkSetUp(lo); err != nil {
		return fmt.Errorf("setting lo up: %w", err)
	}
	for _, kv := range baseSysctls {
		if err := h.Sysctl(kv[0], kv[1]); err != nil {
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

// Procs returns the processes started with Start that have not been
// cleaned up yet.
func (h *Host) Procs() []*Proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Proc(nil), h.procs...)
}

// ProcOf returns the Proc whose exec.Cmd is cmd, or nil.
func (h *Host) ProcOf(cmd *exec.Cmd) *Proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.procs {
		if p.Cmd == cmd {
			return p
		}
	}
	return nil
}

func (h *Host) takeProcs() []*Proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.procs
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
	// namespace, so it is ours to kill; never this process itself, whose
	// main thread may be inside the namespace only in the middle of a Do.
	if out, err := RunCmd(nil, RunTimeout, "ip", "netns", "pids", h.NS); err == nil {
		self := os.Getpid()
		for _, f := range strings.Fields(out) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 1 || pid == self {
				continue
			}
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	if out, err := RunCmd(nil, RunTimeout, "ip", "netns", "delete", h.NS); err != nil {
		errs = append(errs, fmt.Errorf("ip netns delete: %v: %s", err, out))
	}
	if nsExists(h.NS) {
		errs = append(errs, fmt.Errorf("/run/netns/%s still exists", h.NS))
	}
	return errors.Join(errs...)
}

// ExecArgs returns the argv that runs args inside the namespace.
func (h *Host) ExecArgs(args []string) []string {
	return append([]string{"ip", "netns", "exec", h.NS}, args...)
}

// Run runs args inside the namespace via `ip netns exec` and returns the
// combined stdout/stderr. It gives up after RunTimeout, killing the
// command's whole process group, so a wedged tool cannot hang the caller.
func (h *Host) Run(args ...string) (string, error) {
	return RunCmd(nil, RunTimeout, h.ExecArgs(args)...)
}

// RunInput is Run with stdin (e.g. for `nft -f -`).
func (h *Host) RunInput(stdin string, args ...string) (string, error) {
	return RunCmd(strings.NewReader(stdin), RunTimeout, h.ExecArgs(args)...)
}

// MustRun is Run that folds the output into the error, for callers that
// only want to know whether it worked and why not.
func (h *Host) MustRun(args ...string) (string, error) {
	out, err := h.Run(args...)
	if err != nil {
		return out, fmt.Errorf("[%s] %s: %v: %s", h.Name, strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	return out, nil
}

// Start runs args in the background inside the namespace, in its own process
// group, with stdout and stderr captured (Proc.Output). The process is
// killed (SIGKILL to its group) and reaped by Lab.Close at the latest.
func (h *Host) Start(args ...string) (*Proc, error) {
	return h.StartInput(nil, args...)
}

// StartInput is Start with stdin.
func (h *Host) StartInput(stdin io.Reader, args ...string) (*Proc, error) {
	return h.startArgv(stdin, h.ExecArgs(args), args)
}

// startArgv starts argv (which enters the namespace itself) and records it
// for cleanup; args is what the caller asked for, for errors.
func (h *Host) startArgv(stdin io.Reader, argv, args []string) (*Proc, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.created {
		return nil, fmt.Errorf("starting %q on host %q which does not exist (lab closed?)", strings.Join(args, " "), h.Name)
	}
	p, err := startProc(stdin, argv)
	if err != nil {
		return nil, fmt.Errorf("[%s] starting %s: %w", h.Name, strings.Join(args, " "), err)
	}
	h.procs = append(h.procs, p)
	return p, nil
}

// Do runs fn on an OS thread switched into the host's namespace, so that
// Go code (sockets, netlink without a handle, /proc/sys/net) sees the lab
// instead of the root namespace. Sockets created inside fn stay in the
// namespace and may be used from any goroutine afterwards.
//
// fn runs on a dedicated goroutine so that the calling goroutine's thread is
// never switched. If switching back fails the thread is left locked so the
// runtime destroys it rather than reusing a thread stuck in the lab
// namespace. A panic in fn is re-raised in the caller, and runtime.Goexit
// in fn (t.FailNow, t.SkipNow) is propagated to the caller.
func (h *Host) Do(fn func() error) error {
	if h.ns < 0 {
		return fmt.Errorf("running in host %q whose namespace is not open", h.Name)
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
			res.err, res.returned = fmt.Errorf("getting current netns: %w", err), true
			return
		}
		defer orig.Close()
		if err := netns.Set(h.ns); err != nil {
			// setns failed, so the thread is still where it was.
			runtime.UnlockOSThread()
			res.err, res.returned = fmt.Errorf("entering netns %s: %w", h.NS, err), true
			return
		}
		defer func() {
			if err := netns.Set(orig); err != nil {
				// Deliberately no UnlockOSThread: the thread dies with
				// this goroutine instead of running other goroutines in
				// the lab namespace.
				if res.err == nil && res.returned {
					res.err = fmt.Errorf("restoring netns after Do: %w", err)
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
		runtime.Goexit()
	}
	return res.err
}

// SysctlPath maps a key to its /proc/sys path, refusing anything outside
// net.*: only the net tree is per-namespace, everything else (kernel.*,
// vm.*, fs.*) is global and would silently change the whole machine. key
// uses dots ("net.ipv4.ip_forward") or slashes
// ("net/ipv4/conf/eth0.100/forwarding") when a component contains dots.
func SysctlPath(key string) (string, error) {
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

// Sysctl sets a net.* sysctl inside the namespace.
func (h *Host) Sysctl(key, value string) error {
	path, err := SysctlPath(key)
	if err != nil {
		return err
	}
	// /proc/sys/net resolves against the calling thread's namespace, which
	// inside Do is the lab's.
	return h.Do(func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting sysctl %s=%s in %s: %w", key, value, h.NS, err)
		}
		return nil
	})
}

// SysctlGet reads a net.* sysctl inside the namespace.
func (h *Host) SysctlGet(key string) (string, error) {
	path, err := SysctlPath(key)
	if err != nil {
		return "", err
	}
	var v []byte
	if err := h.Do(func() (err error) { v, err = os.ReadFile(path); return err }); err != nil {
		return "", fmt.Errorf("reading sysctl %s in %s: %w", key, h.NS, err)
	}
	return strings.TrimSpace(string(v)), nil
}

var (
	// LabNet4 and LabNet6 are the only address ranges a lab may use: the
	// benchmarking range and the documentation range, never routable on a
	// real network.
	LabNet4 = netip.MustParsePrefix("198.18.0.0/15")
	LabNet6 = netip.MustParsePrefix("2001:db8::/32")
)

// CheckLabPrefix enforces the address plan: lab addresses must never be
// routable on a real network.
func CheckLabPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("invalid prefix")
	}
	a := p.Addr()
	if a.Zone() != "" {
		return fmt.Errorf("%v: zoned address not allowed", p)
	}
	if (a.Is4() && LabNet4.Contains(a) && p.Bits() >= LabNet4.Bits()) ||
		(a.Is6() && !a.Is4In6() && LabNet6.Contains(a) && p.Bits() >= LabNet6.Bits()) {
		return nil
	}
	return fmt.Errorf("%v is outside the lab ranges %v and %v", p, LabNet4, LabNet6)
}

// AddAddr adds cidr ("198.18.1.2/24", "2001:db8:1::2/64") to iface. IPv6
// addresses are added with nodad so they are usable immediately. Addresses
// outside 198.18.0.0/15 and 2001:db8::/32 are refused.
func (h *Host) AddAddr(iface, cidr string) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("adding address %q: %w", cidr, err)
	}
	if err := CheckLabPrefix(p); err != nil {
		return fmt.Errorf("adding address: %w", err)
	}
	args := []string{"ip", "addr", "add", p.String(), "dev", iface}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	if out, err := h.Run(args...); err != nil {
		return fmt.Errorf("[%s] %s: %v: %s", h.Name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Ping sends a single echo request (`ping -n -c 1 -W 1 args...`) from inside
// the namespace and returns nil if a reply came back. Extra args come last,
// so "-c", "3" overrides the count; keep it bounded.
func (h *Host) Ping(args ...string) error {
	out, err := h.Run(append([]string{"ping", "-n", "-c", "1", "-W", "1"}, args...)...)
	if err != nil {
		return fmt.Errorf("[%s] ping %s: %v\n%s", h.Name, strings.Join(args, " "), err, out)
	}
	return nil
}

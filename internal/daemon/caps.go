package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KeptCapabilities are the only capabilities the daemon keeps after start-up:
// routes, rules, neighbour probes and sysctls (NET_ADMIN), and ICMP sockets
// and SO_BINDTODEVICE (NET_RAW).
var KeptCapabilities = []int{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}

// capSets is one snapshot of a task's capability sets, as bit masks.
type capSets struct {
	Effective, Permitted, Inheritable uint64
}

func capGet() (capSets, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capSets{}, fmt.Errorf("reading capabilities: %w", err)
	}
	join := func(lo, hi uint32) uint64 { return uint64(hi)<<32 | uint64(lo) }
	return capSets{
		Effective:   join(data[0].Effective, data[1].Effective),
		Permitted:   join(data[0].Permitted, data[1].Permitted),
		Inheritable: join(data[0].Inheritable, data[1].Inheritable),
	}, nil
}

// HasCapability reports whether the calling thread has c in its effective set.
func HasCapability(c int) (bool, error) {
	s, err := capGet()
	if err != nil {
		return false, err
	}
	return s.Effective&(1<<uint(c)) != 0, nil
}

func capMask(caps []int) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << uint(c)
	}
	return m
}

func lastCap() int {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > 0 && n < 64 {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}

// allThreads runs a syscall on every thread of the process: capabilities
// are per-thread in Linux, and a Go program has many threads, any of which
// may later run the code that execs a hook.
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno == 0 {
		return nil
	}
	if errno == syscall.ENOTSUP {
		return errors.New("the binary was built with cgo, which makes per-thread capability changes impossible; build with CGO_ENABLED=0 (make build does)")
	}
	return errno
}

// DropCapabilities removes every capability but keep from the bounding,
// ambient, inheritable, permitted and effective sets of every thread.
// Capabilities not in the bounding set any more can never come back, not
// even through a setuid or file-capability executable run by a hook.
func DropCapabilities(keep []int) error {
	keepMask := capMask(keep)
	for c := 0; c <= lastCap(); c++ {
		if keepMask&(1<<uint(c)) != 0 {
			continue
		}
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // beyond what this kernel knows
			}
			return fmt.Errorf("dropping capabilities: reading bounding set: %w", err)
		}
		if in == 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return fmt.Errorf("dropping capabilities: removing capability %d from the bounding set: %w", c, err)
		}
	}
	// Ambient capabilities survive execve of unprivileged programs; a hook
	// must get none. EINVAL: kernel older than 4.3, which has none.
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("dropping capabilities: clearing the ambient set: %w", err)
	}
	cur, err := capGet()
	if err != nil {
		return fmt.Errorf("dropping capabilities: %w", err)
	}
	want := cur.Permitted & keepMask
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[1].Effective = uint32(want), uint32(want>>32)
	data[0].Permitted, data[1].Permitted = uint32(want), uint32(want>>32)
	// Inheritable stays empty: the bounding set already gives a root hook
	// exactly the kept capabilities, and nothing else should be inherited.
	if err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("dropping capabilities: setting effective and permitted sets: %w", err)
	}
	return nil
}

// ProcCaps is the capability part of /proc/PID/status.
type ProcCaps struct {
	Inh, Prm, Eff, Bnd, Amb uint64
}

// ReadProcCaps parses /proc/PID/status ("self" for this process).
func ReadProcCaps(pid string) (ProcCaps, error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return ProcCaps{}, err
	}
	return ParseProcCaps(string(data))
}

// ParseProcCaps parses the Cap* lines of a /proc/PID/status text.
func ParseProcCaps(status string) (ProcCaps, error) {
	var pc ProcCaps
	fields := map[string]*uint64{"CapInh": &pc.Inh, "CapPrm": &pc.Prm, "CapEff": &pc.Eff, "CapBnd": &pc.Bnd, "CapAmb": &pc.Amb}
	seen := 0
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if p, want := fields[k]; ok && want {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return pc, fmt.Errorf("parsing %s: %w", k, err)
			}
			*p = n
			seen++
		}
	}
	if seen < 4 { // CapAmb is missing before Linux 4.3
		return pc, errors.New("parsing capabilities: /proc status has no Cap* lines")
	}
	return pc, nil
}

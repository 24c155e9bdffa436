package rtnl

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Caps is what the kernel offers for nexthop objects.
type Caps struct {
	Nexthops  bool   // nexthop objects (Linux 5.3+)
	Resilient bool   // resilient groups (Linux 5.13+)
	Release   string // uname -r
	// Reason says, when a capability is missing, how that was found.
	Reason string
}

// Form is the form a group's default takes, for status and metrics:
// "resilient", "mpath" (a nexthop group without resilience) or "classic"
// (RTA_MULTIPATH, no nexthop objects).
func (c Caps) Form() string {
	switch {
	case c.Resilient:
		return "resilient"
	case c.Nexthops:
		return "mpath"
	}
	return "classic"
}

// Probe finds what the kernel behind c offers without writing anything: a
// restart must adopt with zero writes, so a test object is out. Nexthop
// objects are there if a nexthop dump succeeds; resilient groups are known
// by the kernel release, since a kernel that lacks them accepts a dump and
// rejects only the write (which the caller then treats as a fallback too).
func (c *Conn) Probe() Caps {
	var caps Caps
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		caps.Release = unix.ByteSliceToString(u.Release[:])
	}
	if _, err := c.Nexthops(); err != nil {
		caps.Reason = fmt.Sprintf("kernel %s has no nexthop objects: %v", caps.Release, err)
		return caps
	}
	caps.Nexthops = true
	caps.Resilient = releaseAtLeast(caps.Release, 5, 13)
	if !caps.Resilient {
		caps.Reason = fmt.Sprintf("kernel %s is older than 5.13, which brought resilient nexthop groups", caps.Release)
	}
	return caps
}

// KernelAtLeast reports whether the running kernel's release is at least
// major.minor, for behaviour a capability probe cannot see.
func KernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), major, minor)
}

// releaseAtLeast compares the leading "major.minor" of a kernel release
// string ("6.18.44-fc-v669") with major.minor.
func releaseAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	minStr := parts[1]
	if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minStr = minStr[:i]
	}
	mnr, err2 := strconv.Atoi(minStr)
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || (maj == major && mnr >= minor)
}

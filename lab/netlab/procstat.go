package netlab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture it reports to userspace.
const clockTick = 10 * time.Millisecond

// Usage is a process's resource use so far.
type Usage struct {
	CPU     time.Duration // user + system time
	PeakRSS int64         // VmHWM, bytes
	RSS     int64         // VmRSS, bytes
}

// ReadUsage reads pid's CPU time from /proc/PID/stat and its peak and
// current resident set from /proc/PID/status.
func ReadUsage(pid int) (Usage, error) {
	var u Usage
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return u, fmt.Errorf("reading stat of %d: %w", pid, err)
	}
	// comm (field 2) may contain spaces and parentheses: parse after the
	// last ')'. utime and stime are fields 14 and 15.
	s := string(st)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return u, fmt.Errorf("parsing stat of %d: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return u, fmt.Errorf("parsing stat of %d: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return u, fmt.Errorf("parsing stat of %d: utime %q stime %q", pid, f[11], f[12])
	}
	u.CPU = time.Duration(ut+stime) * clockTick
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return u, fmt.Errorf("reading status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fv := strings.Fields(v)
		if len(fv) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fv[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmHWM":
			u.PeakRSS = n * 1024
		case "VmRSS":
			u.RSS = n * 1024
		}
	}
	return u, nil
}

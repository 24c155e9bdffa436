package nstest

import (
	"io"
	"net/netip"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// The tests of this package were written against its own unexported
// helpers, which now live in netlab; these aliases keep the tests as they
// were.

func checkLabPrefix(p netip.Prefix) error { return netlab.CheckLabPrefix(p) }

func sysctlPath(key string) (string, error) { return netlab.SysctlPath(key) }

func newPrefix() (string, error) { return netlab.NewPrefix() }

func runCmd(stdin io.Reader, timeout time.Duration, args ...string) (string, error) {
	return netlab.RunCmd(stdin, timeout, args...)
}

func (h *Host) sysctl(key, value string) error { return h.Host.Sysctl(key, value) }

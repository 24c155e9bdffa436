package nstest

import (
	"os"
	"strings"
	"testing"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// RequireEnv, when set to a non-empty value, turns New's skip into a fatal
// error. CI sets it so that a misconfigured runner fails loudly instead of
// silently skipping every privileged test.
const RequireEnv = "UPLINKD_NSTEST_REQUIRE"

// Lab is the set of namespaces, links and processes belonging to one test:
// a netlab.Lab bound to the test's lifetime. Prefix, Namespaces and the
// other netlab.Lab fields and methods are available directly.
type Lab struct {
	*netlab.Lab

	t testing.TB
}

// New creates a lab for one test and registers its teardown with t.Cleanup.
//
// It skips only when namespaces truly cannot be created here (not root, no
// `ip`, or the kernel refusing unshare(CLONE_NEWNET)); a root machine that can
// create namespaces never skips, so privileged coverage cannot silently
// disappear. Set UPLINKD_NSTEST_REQUIRE=1 to turn even those skips into
// failures.
func New(t testing.TB) *Lab {
	t.Helper()
	reason, err := netlab.Check()
	if err != nil {
		t.Fatalf("nstest: probing namespace support: %v", err)
	}
	if reason != "" {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("nstest: %s (and %s is set)", reason, RequireEnv)
		}
		t.Skipf("nstest: skipping privileged test: %s", reason)
	}
	nl, err := netlab.New()
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	l := &Lab{Lab: nl, t: t}
	t.Cleanup(l.Close)
	return l
}

func (l *Lab) wrap(h *netlab.Host) *Host { return &Host{Host: h, lab: l} }

// Host creates namespace "<prefix>-<name>" with lo up and sysctls set for a
// deterministic lab. It fails the test on any error.
func (l *Lab) Host(name string) *Host {
	l.t.Helper()
	h, err := l.Lab.Host(name)
	if err != nil {
		l.t.Fatalf("nstest: %v", err)
	}
	return l.wrap(h)
}

// Close kills every process started in the lab, then deletes every
// namespace. It is idempotent and is what the t.Cleanup registered by New
// calls. Failures to remove something are reported with t.Errorf, since a
// leak on a shared machine is a real defect; if the test failed, the output
// of every process still running is logged first.
func (l *Lab) Close() {
	if l.t.Failed() && !l.Closed() {
		for _, h := range l.Hosts() {
			for _, p := range h.Procs() {
				l.t.Logf("nstest: output of %q in %s:\n%s", strings.Join(p.Args, " "), h.NS, netlab.Tail(p.Output(), 4096))
			}
		}
	}
	if err := l.Lab.Close(); err != nil {
		l.t.Errorf("nstest: %v", err)
	}
}

// Link creates a veth pair with aIf inside a and bIf inside b and sets both
// ends up. The pair is created from within a's namespace with the peer placed
// straight into b's, so it never exists in the root namespace.
func (l *Lab) Link(a *Host, aIf string, b *Host, bIf string) {
	l.t.Helper()
	if err := l.Lab.Link(a.Host, aIf, b.Host, bIf); err != nil {
		l.t.Fatalf("nstest: %v", err)
	}
}

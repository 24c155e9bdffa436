package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// v6Group adds an IPv6 group over both uplinks to basePolicy; metric is
// the group's metric line ("" for the default, 1024).
func v6Group(metric string) string {
	return fmt.Sprintf(`
[gateway.isp1-v6]
address = "%s"
interface = "%s"
profile = "fast"
[gateway.isp2-v6]
address = "%s"
interface = "%s"
profile = "fast"
[group.wan6]
gateways = ["isp1-v6", "isp2-v6"]
%s
`, nstest.GW1Addr6, nstest.HostUplink1If, nstest.GW2Addr6, nstest.HostUplink2If, metric)
}

// Issue 19, "RA at the same metric", with a real radvd on GW1 and the
// kernel accepting RAs on the host's eth1 (accept_ra set in the host
// namespace only): the kernel's RA default (proto ra, metric 1024) holds
// the key of an IPv6 group's default at its default metric, which uplinkd
// reports as a conflict and does not write. metric = 512 on the group,
// the documented fix, takes uplinkd's route off that key: after a reload
// it is written, beside the RA route, and the conflict is gone.
func TestRARouteAtTheSameMetric(t *testing.T) {
	radvd, err := exec.LookPath("radvd")
	if err != nil {
		t.Fatalf("radvd is needed: install Debian's radvd (sh scripts/setup.sh): %v", err)
	}
	l := newLab(t)
	l.Host.Sysctl(t, "net.ipv6.conf."+nstest.HostUplink1If+".accept_ra", "2")
	conf := l.writeFile("radvd.conf", fmt.Sprintf(`interface %s {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime 60;
	prefix %s { AdvOnLink on; AdvAutonomous off; };
};
`, nstest.GWDownlinkIf, nstest.Uplink1Net6), 0o600)
	l.GW1.StartPeer(t, radvd, "--nodaemon", "--config="+conf, "--pidfile="+filepath.Join(l.dir, "radvd.pid"),
		"--logmethod=stderr", "--username=root")
	l.waitFor("the kernel's RA default on eth1", func() bool {
		return strings.Contains(l.Host.MustRun(t, "ip", "-6", "route", "show", "default", "proto", "ra"), "dev eth1")
	})

	// Not l.start: /healthz answers 503 (degraded) from the start here.
	l.writeFile("uplinkd.toml", l.basePolicy(1, v6Group("")), 0o600)
	l.cmd = l.Host.Start(t, binary, "run", "--config", l.policy, "--log-level", "info")
	l.waitFor("a degraded /healthz", func() bool {
		_, err := l.get("/healthz")
		return err != nil && strings.Contains(err.Error(), "503")
	})
	l.waitBothUp()
	l.waitFor("the IPv6 default reported as a conflict with the RA route", func() bool {
		for _, c := range l.status().Conflicts {
			if strings.Contains(c, "metric 1024") {
				return true
			}
		}
		return false
	})
	if got := l.Host.MustRun(t, "ip", "-6", "route", "show", "default", "proto", "212"); got != "" {
		t.Errorf("uplinkd wrote an IPv6 default on the RA route's key:\n%s", got)
	}

	l.writeFile("uplinkd.toml", l.basePolicy(1, v6Group("metric = 512")), 0o600)
	l.signal(1) // SIGHUP
	l.waitFor("uplinkd's IPv6 default at metric 512 and no conflict", func() bool {
		got := l.Host.MustRun(t, "ip", "-6", "route", "show", "default", "proto", "212")
		return strings.Contains(got, "metric 512") && len(l.status().Conflicts) == 0
	})
	if got := l.Host.MustRun(t, "ip", "-6", "route", "show", "default", "proto", "ra"); !strings.Contains(got, "dev eth1") {
		t.Errorf("the RA route is gone; uplinkd must leave it:\n%s", got)
	}
}

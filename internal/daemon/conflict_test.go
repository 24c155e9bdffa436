package daemon

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/routing/routingtest"
)

// A foreign route prepended on the key of the group's default (issue
// 11.5) shows in the status document and its table, and makes /healthz
// degraded until it goes.
func TestCoreReportsRouteConflicts(t *testing.T) {
	h := newHarness(t, mustParse(t, twoISPs(2, `"gateway_down"`)))
	foreign := &netlink.Route{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC, Gw: net.ParseIP("198.18.2.1"), LinkIndex: h.kernel.LinkIndex("eth2")}
	if err := h.kernel.RoutePrepend(foreign); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the conflict in status", func() bool { return len(h.core.Status().Conflicts) == 1 })
	if c := h.core.Status().Conflicts[0]; !strings.Contains(c, "proto 4") || !strings.HasPrefix(c, "! default table main proto 212") {
		t.Errorf("conflict line %q", c)
	}
	var table strings.Builder
	if err := WriteTable(&table, h.core.Status()); err != nil || !strings.Contains(table.String(), "route conflicts") {
		t.Errorf("status table lacks the conflict (err %v):\n%s", err, table.String())
	}
	srv := newHTTPServer(h.core, h.reg, slog.New(slog.NewTextHandler(io.Discard, nil)), hostAllow{}, newProgress("http server", time.Now)) // /healthz answers any Host
	get := func() (int, string) {
		rr := httptest.NewRecorder()
		srv.Handler.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rr.Code, rr.Body.String()
	}
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "degraded: 1 route conflicts") {
		t.Errorf("/healthz with a conflict: %d %q", code, body)
	}
	if err := h.kernel.RouteDel(&netlink.Route{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the conflict to clear", func() bool { return len(h.core.Status().Conflicts) == 0 })
	if code, body := get(); code != http.StatusOK {
		t.Errorf("/healthz after the conflict: %d %q", code, body)
	}
}

// Issue 19: a DHCP client's own metric-0 default in main, beside uplinkd's
// (proto dhcp, the key of the group's default), must not leave systemd
// reading "all fine": STATUS says degraded within the loop's beat, and
// says so no more once the client's route is gone.
func TestCoreStatusNotifiesConflicts(t *testing.T) {
	k := routingtest.NewMemKernel("eth1", "eth2")
	r := newLivenessRig(t, mustParse(t, twoISPs(2, `"gateway_down"`)), nil, nil, k)
	notes := func(want string) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.notes) > 0 && strings.Contains(r.notes[len(r.notes)-1], want)
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				r.mu.Lock()
				t.Fatalf("timed out waiting for %s; notes %q", what, r.notes)
			}
		}
	}
	dhcp := &netlink.Route{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_DHCP, Gw: net.ParseIP("198.18.1.1"), LinkIndex: 2}
	if err := k.RoutePrepend(dhcp); err != nil {
		t.Fatal(err)
	}
	wait("STATUS saying degraded", func() bool { return notes("; degraded: 1 route conflicts, not written (uplinkd status)") })
	if err := k.RouteDel(&netlink.Route{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_DHCP}); err != nil {
		t.Fatal(err)
	}
	// The rig's kernel wrapper forwards no route events: a transition
	// makes the reconciler read the kernel again.
	r.det.send("isp1", detector.Up, detector.Down, "3 probes lost")
	wait("STATUS without the conflict", func() bool { return notes("gateways healthy") && !notes("degraded") })
}

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

package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uplinkd/uplinkd/internal/daemon"
)

func statusServer(t *testing.T, st daemon.Status) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestStatusCheckExitCodes(t *testing.T) {
	addr := statusServer(t, daemon.Status{
		Gateways: []daemon.GatewayStatus{
			{Name: "isp1", State: "down", Up: false},
			{Name: "isp2", State: "degraded", Up: true},
			{Name: "isp3", State: "suspect", Up: true},
		},
		Groups: []daemon.GroupStatus{{Name: "wan", Up: true, Healthy: 2}},
	})
	// A port nothing listens on: a daemon that is not running.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--addr", addr, "--check", "isp1"}, exitFailure},
		{[]string{"--addr", addr, "--check", "isp2"}, exitOK},
		{[]string{"--addr", addr, "--check", "isp3"}, exitOK},
		{[]string{"--addr", addr, "--check", "wan"}, exitOK},
		{[]string{"--addr", addr, "--check", "nosuch"}, exitUsage},
		{[]string{"--addr", dead, "--check", "isp1"}, exitUnreachable},
		{[]string{"--addr", addr, "--check", "isp1", "extra"}, exitUsage},
		{[]string{"--bogus"}, exitUsage},
	} {
		var out, errb bytes.Buffer
		if got := runStatus(tc.args, &out, &errb); got != tc.want {
			t.Errorf("status %q = %d, want %d (stderr %q)", tc.args, got, tc.want, errb.String())
		}
		if strings.Contains(strings.Join(tc.args, " "), "--check") && out.Len() != 0 {
			t.Errorf("status %q printed %q on stdout; --check must be silent", tc.args, out.String())
		}
	}
}

func TestStatusOutputs(t *testing.T) {
	st := daemon.Status{
		Gateways: []daemon.GatewayStatus{
			{Name: "isp1", Interface: "eth1", State: "up", Up: true, LastConfirmedAge: -1, LastRxAge: -1, LastTxAge: -1, LastGoodProbeAge: -1,
				Routes: []string{"default via 198.18.1.1 dev eth1 table main proto 212"}},
			{Name: "isp2", Interface: "eth2", State: "down", LastConfirmedAge: -1, LastRxAge: -1, LastTxAge: -1, LastGoodProbeAge: -1},
		},
		Groups: []daemon.GroupStatus{{Name: "wan", Up: true, Healthy: 1, Table: 254, Gateways: []string{"isp1", "isp2"}}},
	}
	addr := statusServer(t, st)
	var out, errb bytes.Buffer
	if code := runStatus([]string{"--addr", addr, "--wide"}, &out, &errb); code != exitOK {
		t.Fatalf("status --wide = %d: %s", code, errb.String())
	}
	var want bytes.Buffer
	daemon.WriteTable(&want, &st)
	if out.String() != want.String() {
		t.Errorf("--wide table:\n%s\nwant:\n%s", out.String(), want.String())
	}

	out.Reset()
	if code := runStatus([]string{"--addr", addr, "--json"}, &out, &errb); code != exitOK {
		t.Fatalf("status --json = %d", code)
	}
	var back daemon.Status
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || len(back.Gateways) != 2 || back.Gateways[0].Routes[0] != st.Gateways[0].Routes[0] {
		t.Errorf("--json round trip: %v %+v", err, back)
	}

	out.Reset()
	if code := runStatus([]string{"--addr", addr, "isp2"}, &out, &errb); code != exitOK {
		t.Fatalf("status isp2 = %d", code)
	}
	if strings.Contains(out.String(), "isp1") || !strings.Contains(out.String(), "isp2") {
		t.Errorf("status isp2 shows other gateways:\n%s", out.String())
	}
}

func TestReloadWithoutDaemon(t *testing.T) {
	var out, errb bytes.Buffer
	code := runReload([]string{"--socket", t.TempDir() + "/none.sock"}, &out, &errb)
	if code != exitUnreachable || !strings.Contains(errb.String(), "connecting to uplinkd control socket") {
		t.Errorf("reload with no daemon = %d, %q; want 4 and the reason", code, errb.String())
	}
}

func TestRunRefusesBadPolicy(t *testing.T) {
	var out, errb bytes.Buffer
	code := runRun([]string{"--config", "../../testdata/invalid-many-errors.toml"}, &out, &errb)
	if code != exitInvalid || !strings.Contains(errb.String(), "refusing to start") || !strings.Contains(errb.String(), "is invalid") {
		t.Errorf("run with an invalid policy = %d, %q; want 3 and the errors", code, errb.String())
	}
	errb.Reset()
	if code := runRun([]string{"--config", "x", "extra"}, &out, &errb); code != exitUsage {
		t.Errorf("run with stray arguments = %d, want 2", code)
	}
	errb.Reset()
	if code := runRun([]string{"--help"}, &out, &errb); code != exitOK || !strings.Contains(errb.String(), "SIGHUP reloads") {
		t.Errorf("run --help = %d:\n%s", code, errb.String())
	}
}

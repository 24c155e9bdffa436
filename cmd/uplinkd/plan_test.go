package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

func TestPlanAssume(t *testing.T) {
	var out, errb bytes.Buffer
	code := mainArgs([]string{"plan", "--desired", "--assume", "dir1=down,dir2=degraded", "../../testdata/realserver-lvs.toml"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := `1000: from 198.18.1.2 lookup 201 proto 212
1001: from 198.18.2.2 lookup 202 proto 212
1050: from all fwmark 0x2/0xff lookup 202 proto 212
default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
default via 198.18.2.1 dev eth2 table main proto 212
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("plan --desired (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"nosuch=down", "dir1=sideways", "dir1"} {
		errb.Reset()
		if code := mainArgs([]string{"plan", "--assume", bad, "../../testdata/realserver-lvs.toml"}, &out, &errb); code != exitUsage {
			t.Errorf("--assume %s: exit %d, want %d", bad, code, exitUsage)
		}
		if !strings.Contains(errb.String(), "--assume") {
			t.Errorf("--assume %s: error %q does not name the flag", bad, errb.String())
		}
	}
}

// A condition is down unless assumed up: the group it gates and the
// announce that tracks it appear only then.
func TestPlanAssumeCondition(t *testing.T) {
	for _, tc := range []struct{ assume, want string }{
		{"", ""},
		{"claim=up", `default via 198.18.1.1 dev eth1 table main proto 212
198.18.0.100/32 dev eth0 table main proto 212
`},
	} {
		var out, errb bytes.Buffer
		args := []string{"plan", "--desired"}
		if tc.assume != "" {
			args = append(args, "--assume", tc.assume+",isp2=down")
		} else {
			args = append(args, "--assume", "isp2=down")
		}
		if code := mainArgs(append(args, "../../testdata/conditions.toml"), &out, &errb); code != exitOK {
			t.Fatalf("--assume %q: exit %d: %s", tc.assume, code, errb.String())
		}
		if diff := cmp.Diff(tc.want, out.String()); diff != "" {
			t.Errorf("--assume %q (-want +got):\n%s", tc.assume, diff)
		}
	}
	var out, errb bytes.Buffer
	if code := mainArgs([]string{"plan", "--assume", "claim=degraded", "../../testdata/conditions.toml"}, &out, &errb); code != exitUsage ||
		!strings.Contains(errb.String(), `state "degraded" of condition claim is not up or down`) {
		t.Errorf("--assume claim=degraded: exit %d, %q", code, errb.String())
	}
}

// plan reads the namespace's kernel and changes nothing.
func TestPlanAgainstKernel(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	dir := t.TempDir()
	file := filepath.Join(dir, "p.toml")
	if err := os.WriteFile(file, []byte(`
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
sources = ["198.18.2.2"]
table = 202
[group.wan]
gateways = ["isp1", "isp2"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	h.MustRun(t, "ip", "route", "add", "default", "proto", "212", "nexthop", "via", "198.18.1.1", "dev", "eth1", "nexthop", "via", "198.18.2.1", "dev", "eth2", "weight", "5")
	h.MustRun(t, "ip", "route", "add", "default", "via", "198.18.1.1", "table", "202", "proto", "static")
	before := h.MustRun(t, "ip", "route", "show", "table", "all") + h.MustRun(t, "ip", "rule")
	code, out, errb := planIn(t, h, "--assume", "isp1=down", file)
	if code != exitFailure {
		t.Errorf("exit %d, want %d (changes pending); stderr: %s", code, exitFailure, errb.String())
	}
	want := `! default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2 (conflict: held by foreign route "default via 198.18.1.1 dev eth1 table 202 proto 4")
- default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 5
+ default via 198.18.2.1 dev eth2 table main proto 212
+ 1000: from 198.18.2.2 lookup 202 proto 212
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	after := h.MustRun(t, "ip", "route", "show", "table", "all") + h.MustRun(t, "ip", "rule")
	if before != after {
		t.Errorf("plan changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// A foreign default prepended beside the owned one in main (same key,
// issue 11.5) is a conflict in the plan, not a replace.
func TestPlanShowsPrependConflict(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	file := filepath.Join(t.TempDir(), "p.toml")
	if err := os.WriteFile(file, []byte(`
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[group.wan]
gateways = ["isp1", "isp2"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	h.MustRun(t, "ip", "route", "add", "default", "proto", "212", "nexthop", "via", "198.18.1.1", "dev", "eth1", "nexthop", "via", "198.18.2.1", "dev", "eth2")
	h.MustRun(t, "ip", "route", "prepend", "default", "via", "198.18.2.1", "dev", "eth2", "proto", "static")
	code, out, errb := planIn(t, h, "--assume", "isp1=down", file)
	if code != exitFailure {
		t.Errorf("exit %d, want %d; stderr: %s", code, exitFailure, errb.String())
	}
	want := `! default via 198.18.2.1 dev eth2 table main proto 212 (conflict: held by foreign route "default via 198.18.2.1 dev eth2 table main proto 4")
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if !strings.Contains(errb.String(), "1 route conflicts") {
		t.Errorf("stderr lacks the conflict count: %q", errb.String())
	}
}

// planIn runs `uplinkd plan args...` inside h's namespace.
func planIn(t *testing.T, h *nstest.Host, args ...string) (code int, out, errb *bytes.Buffer) {
	t.Helper()
	out, errb = &bytes.Buffer{}, &bytes.Buffer{}
	if err := h.Do(func() error {
		code = mainArgs(append([]string{"plan"}, args...), out, errb)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return code, out, errb
}

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// check says where a VRF's group will route: in the VRF device's table,
// read when the daemon runs.
func TestCheckVRF(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := mainArgs([]string{"check", "../../testdata/vrf.toml"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{
		"via 198.18.1.1 dev eth1 weight 1 tier 1 vrf blue",
		"IPv4 default in vrf blue's table (read from the device) over isp1, isp2",
		"IPv4 default in table 254 over mgmt",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// plan reads the VRF as the daemon would: where it is absent, its
// gateways are down with the reason and its group plans nothing, while
// the default VRF's group plans as ever. (The VRF present is the e2e
// TestVRFTwoUplinks, on kernels with VRF devices.)
func TestPlanVRFAbsent(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	file := "../../testdata/vrf.toml"
	code, out, errb := planIn(t, tu.Host, "--desired", file)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if d := cmp.Diff("default via 198.18.3.1 dev eth3 table main proto 212\n", out.String()); d != "" {
		t.Errorf("plan --desired (-want +got):\n%s", d)
	}
	for _, want := range []string{"# gateway isp1: vrf blue absent (down, its groups write nothing there)\n", "# gateway isp2: vrf blue absent"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("plan notes lack %q:\n%s", want, errb.String())
		}
	}
}

package examples_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

const frrDir = "/usr/lib/frr"

// frrSnippet returns the FRR configuration quoted in the comments of
// announce-frr.toml, so that the test runs exactly what the example tells
// operators to write.
func frrSnippet(t *testing.T) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(example(t, "announce-frr.toml")))
	var b strings.Builder
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# FRR (frr.conf on edge):"):
			in = true
		case in && strings.HasPrefix(line, "#   "):
			b.WriteString(strings.TrimPrefix(line, "#   ") + "\n")
		case in && strings.TrimSpace(line) == "#" && b.Len() > 0:
			return b.String()
		}
	}
	t.Fatal("announce-frr.toml no longer quotes an FRR configuration")
	return ""
}

// startFRR runs zebra and ospfd in h, in the foreground (the harness reaps
// them), with every file they write (pid files, vty and zserv sockets)
// under a directory of the test's own: nothing is shared with the host's
// FRR or with other tests.
func startFRR(t *testing.T, h *nstest.Host, conf string) {
	t.Helper()
	for _, d := range []string{"zebra", "ospfd"} {
		if _, err := os.Stat(filepath.Join(frrDir, d)); err != nil {
			t.Fatalf("FRR's %s is needed to prove announce-frr.toml: install Debian's frr package (sh scripts/setup.sh): %v", d, err)
		}
	}
	tmp := t.TempDir() // /tmp/TestName123/001, both 0700
	dir := filepath.Join(tmp, "frr-"+h.Name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// FRR drops to user frr: it must be able to reach dir and write in it.
	for p, mode := range map[string]os.FileMode{dir: 0o777, tmp: 0o755, filepath.Dir(tmp): 0o755} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	cf := filepath.Join(dir, "frr.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	zsock := filepath.Join(dir, "zserv.api")
	common := []string{"-f", cf, "-z", zsock, "--vty_socket", dir, "-P", "0", "--log", "stdout"}
	h.StartPeer(t, append([]string{filepath.Join(frrDir, "zebra"), "-i", filepath.Join(dir, "zebra.pid")}, common...)...)
	daemontest.WaitFor(t, 10*time.Second, "zebra's zserv socket in "+h.NS, func() (bool, string) {
		_, err := os.Stat(zsock)
		return err == nil, "not yet"
	})
	h.StartPeer(t, append([]string{filepath.Join(frrDir, "ospfd"), "-i", filepath.Join(dir, "ospfd.pid")}, common...)...)
}

// ospfIface makes adjacencies form in seconds instead of the default
// 40 s dead interval: test timing only, nothing to do with the example.
const ospfIface = `interface eth0
 ip ospf network point-to-point
 ip ospf hello-interval 1
 ip ospf dead-interval 4
!
`

// TestAnnounceFRR: uplinkd installs the announce route only while its
// uplink is healthy; a real FRR redistributes it over OSPF, and the
// neighbouring router learns it, loses it when the uplink dies, and learns
// it again when it returns.
//
//	[nbr] eth0 ──ospf── eth0 [edge] eth1 ── eth0 [up] lo: 198.18.100.1, .2
func TestAnnounceFRR(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal(err)
	}
	lab := nstest.New(t)
	edge, up, nbr := lab.Host("edge"), lab.Host("up"), lab.Host("nbr")
	lab.Link(edge, "eth1", up, "eth0")
	lab.Link(edge, "eth0", nbr, "eth0")
	edge.AddAddr(t, "eth1", "198.18.1.2/24")
	up.AddAddr(t, "eth0", "198.18.1.1/24")
	up.AddAddr(t, "lo", "198.18.100.1/32")
	up.AddAddr(t, "lo", "198.18.100.2/32")
	up.MustRun(t, "ip", "route", "add", "198.18.30.0/24", "via", "198.18.1.2")
	edge.AddAddr(t, "eth0", "198.18.30.1/24")
	nbr.AddAddr(t, "eth0", "198.18.30.2/24")
	edge.Sysctl(t, "net.ipv4.ip_forward", "1")

	startFRR(t, edge, "hostname edge\n!\n"+ospfIface+frrSnippet(t))
	startFRR(t, nbr, "hostname nbr\n!\n"+ospfIface+"router ospf\n ospf router-id 198.18.30.2\n network 198.18.30.0/24 area 0\n!\n")

	daemontest.Start(t, edge, bin, example(t, "announce-frr.toml"))
	announced := []string{"-4", "route", "show", "198.18.100.0/24", "proto", "212"}
	learned := []string{"-4", "route", "show", "198.18.100.0/24", "proto", "ospf"}
	waitNexthops(t, edge, 10*time.Second, []string{"198.18.1.1"}, announced...)
	waitNexthops(t, nbr, 60*time.Second, []string{"198.18.30.1"}, learned...)
	if err := nbr.Ping(t, "-c", "2", "-i", "0.2", "198.18.100.1"); err != nil {
		t.Errorf("the neighbour learned the route but cannot use it: %v", err)
	}

	up.BlackholeIP(t, "eth0") // the uplink dies silently
	waitNexthops(t, edge, 15*time.Second, nil, announced...)
	waitNexthops(t, nbr, 30*time.Second, nil, learned...)

	up.Recover(t)
	waitNexthops(t, edge, 20*time.Second, []string{"198.18.1.1"}, announced...)
	waitNexthops(t, nbr, 30*time.Second, []string{"198.18.30.1"}, learned...)
}

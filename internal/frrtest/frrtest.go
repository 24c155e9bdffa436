// Package frrtest runs FRR's bfdd (with the zebra it needs) inside a lab
// namespace for privileged tests, with every path under the test's own
// temporary directory.
package frrtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// Dir is where Debian's frr package installs its daemons.
const Dir = "/usr/lib/frr"

// FRR is one FRR instance (zebra and bfdd) in a lab namespace, with every
// file it writes (config, pid files, vty, zserv and bfdd control sockets)
// under a directory of the test's own, so that nothing is shared with the
// host's FRR or another test. Not -N: FRR 8.4 creates /run/frr/<pathspace>
// on the host even when every path is given, and nothing a test runs may
// reach the host's /run.
type FRR struct {
	t     testing.TB
	h     *nstest.Host
	dir   string
	zebra *exec.Cmd
	bfdd  *exec.Cmd
}

// StartBFDD runs zebra and bfdd in h with conf as their configuration,
// until t ends (the harness kills them by PID).
func StartBFDD(t testing.TB, h *nstest.Host, conf string) *FRR {
	t.Helper()
	for _, d := range []string{"zebra", "bfdd"} {
		if _, err := os.Stat(filepath.Join(Dir, d)); err != nil {
			t.Fatalf("FRR's %s is needed: install Debian's frr package (sh scripts/setup.sh): %v", d, err)
		}
	}
	tmp := t.TempDir()
	f := &FRR{t: t, h: h, dir: filepath.Join(tmp, "frr-"+h.Name)}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// FRR drops to user frr: it must reach dir and write in it.
	for p, mode := range map[string]os.FileMode{f.dir: 0o777, tmp: 0o755, filepath.Dir(tmp): 0o755} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.dir, "frr.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	f.zebra = h.StartPeer(t, f.args("zebra")...)
	f.waitFile("zserv.api")
	f.StartBFDD()
	return f
}

func (f *FRR) args(daemon string) []string {
	return []string{filepath.Join(Dir, daemon), "-i", filepath.Join(f.dir, daemon+".pid"),
		"-f", filepath.Join(f.dir, "frr.conf"), "-z", filepath.Join(f.dir, "zserv.api"),
		"--vty_socket", f.dir, "-P", "0", "--log", "stdout"}
}

// StartBFDD starts bfdd (again, after StopBFDD).
func (f *FRR) StartBFDD() {
	f.bfdd = f.h.StartPeer(f.t, append(f.args("bfdd"), "--bfdctl", filepath.Join(f.dir, "bfdd.sock"))...)
	f.waitFile("bfdd.vty")
}

// StopBFDD kills bfdd by its PID (the harness's process group), as a crash.
func (f *FRR) StopBFDD() {
	f.h.Stop(f.bfdd)
	os.Remove(filepath.Join(f.dir, "bfdd.vty"))
}

func (f *FRR) waitFile(name string) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(f.dir, name)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("frrtest: no %s in %s after 10s", name, f.dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Peers returns bfdd's own view of its sessions (show bfd peers json).
func (f *FRR) Peers() []Peer {
	f.t.Helper()
	out, err := f.h.Run("vtysh", "--vty_socket", f.dir, "-c", "show bfd peers json")
	if err != nil {
		f.t.Logf("vtysh: %v\n%s", err, out)
		return nil
	}
	if i := strings.Index(out, "["); i > 0 {
		out = out[i:] // vtysh may warn about its own config first
	}
	var ps []Peer
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		f.t.Logf("vtysh json: %v\n%s", err, out)
	}
	return ps
}

// Peer is one session as bfdd shows it.
type Peer struct {
	Peer         string `json:"peer"`
	Status       string `json:"status"`
	ID           uint32 `json:"id"`
	RemoteID     uint32 `json:"remote-id"`
	Diagnostic   string `json:"diagnostic"`
	RemoteDiag   string `json:"remote-diagnostic"`
	TxInterval   int    `json:"transmit-interval"`
	RxInterval   int    `json:"receive-interval"`
	DetectMult   int    `json:"detect-multiplier"`
	RemoteDemand bool   `json:"remote-demand-mode"`
}

package daemon

import (
	"context"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/bfd"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestWriteTable(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := &Status{
		Now: now, RouteProtocol: 212, LastReloadOK: false, LastReloadError: "policy x is invalid",
		Gateways: []GatewayStatus{
			{Name: "isp1", Interface: "eth1", State: "down", Up: false, Since: now.Add(-90 * time.Second),
				Reason: "3 probes lost after tx without rx for 120ms", RTTLast: 0, RTTAvg: 0.0012345, Loss: 0.25, Samples: 8,
				LastConfirmedAge: 12.5, LastRxAge: 0.3, LastTxAge: 0.01, LastGoodProbeAge: -1, ProbesPerSecond: 10,
				TrafficCounting: "interface"},
			{Name: "isp2", Interface: "eth2", State: "up", Up: true, Standby: true, Since: now.Add(-2 * time.Hour),
				Reason: "neighbour 198.18.2.1 REACHABLE on eth2", RTTLast: 0.000250, RTTAvg: 0.000300, Samples: 0,
				LastConfirmedAge: -1, LastRxAge: -1, LastTxAge: -1, LastGoodProbeAge: 4, ProbesPerSecond: 0.1,
				Routes: []string{"default via 198.18.2.1 dev eth2 table main proto 212"}, TrafficCounting: "neighbour",
				BFD: &bfd.Status{Name: "isp2", Remote: netip.MustParseAddr("198.18.2.1"), Interface: "eth2",
					Info: bfd.Info{State: bfd.Up, Diag: bfd.DiagNone, LocalDiscr: 7, RemoteDiscr: 4242, RemoteState: bfd.Up,
						RemoteDiag: bfd.DiagTimeExpired}, TxIntervalSeconds: 0.05, DetectTimeSeconds: 0.15}},
		},
		Groups:         []GroupStatus{{Name: "wan", Family: 4, Table: 254, Up: true, Healthy: 1, Gateways: []string{"isp1", "isp2"}}},
		Rules:          []string{"1000: from 198.18.1.2 lookup 201 proto 212"},
		TrafficBackend: "nftables", TrafficBackendReason: "loading program: operation not permitted",
		Conditions: []ConditionStatus{
			{Name: "claim", Up: false, Since: now.Add(-5 * time.Second), Pending: true, Until: now.Add(1500 * time.Millisecond),
				Terms: []ConditionTerm{{"address 198.18.0.100 on eth1", true}, {"gateway isp2 up", true}}},
			{Name: "two-uplinks", Up: false, Terms: []ConditionTerm{{"gateway isp1 up", false}, {"gateway isp2 up", true}}},
		},
	}
	var b strings.Builder
	if err := WriteTable(&b, s); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "status-table.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantB, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := string(wantB)
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("table (-want +got):\n%s\ngot:\n%s", d, b.String())
	}
}

func TestStatusCheck(t *testing.T) {
	s := &Status{
		Gateways: []GatewayStatus{{Name: "a", Up: true, State: "degraded"}, {Name: "b", Up: false, State: "down"}},
		Groups:   []GroupStatus{{Name: "g", Up: false}},
	}
	for _, tc := range []struct {
		name      string
		up, found bool
	}{{"a", true, true}, {"b", false, true}, {"g", false, true}, {"zz", false, false}} {
		up, found := s.Check(tc.name)
		if up != tc.up || found != tc.found {
			t.Errorf("Check(%q) = %v, %v; want %v, %v", tc.name, up, found, tc.up, tc.found)
		}
	}
}

func TestParseProcCaps(t *testing.T) {
	status := "Name:\tuplinkd\nCapInh:\t0000000000000000\nCapPrm:\t0000000000003000\nCapEff:\t0000000000003000\nCapBnd:\t0000000000003000\nCapAmb:\t0000000000000000\n"
	got, err := ParseProcCaps(status)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ProcCaps{Prm: 0x3000, Eff: 0x3000, Bnd: 0x3000}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if capMask(KeptCapabilities) != 0x3000 {
		t.Errorf("kept mask %#x, want 0x3000 (NET_ADMIN 12, NET_RAW 13)", capMask(KeptCapabilities))
	}
	if _, err := ParseProcCaps("Name: x\n"); err == nil {
		t.Error("no Cap lines accepted")
	}
}

func TestCheckRootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create files owned by root and by others")
	}
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, 0); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok", 0o755, 0)
	if err := checkRootOnly("policy file", ok); err != nil {
		t.Errorf("root-owned 0755 file refused: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	if err := checkRootOnly("policy file", link); err != nil {
		t.Errorf("symlink to a good file refused: %v", err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{write("gw", 0o664, 0), "is writable by group or others (mode 0664)"},
		{write("ow", 0o646, 0), "is writable by group or others (mode 0646)"},
		{write("user", 0o644, 1000), "is owned by uid 1000, not root"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		err := checkRootOnly("hook \"x\": executable", tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
		}
	}
	// A file in a directory others can write could be swapped out.
	sub := filepath.Join(dir, "open")
	if err := os.Mkdir(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(sub, 0o777)
	p := filepath.Join(sub, "f")
	os.WriteFile(p, nil, 0o644)
	if err := checkRootOnly("policy file", p); err == nil || !strings.Contains(err.Error(), "its directory "+sub) {
		t.Errorf("file in a world-writable directory: %v", err)
	}
	// Sticky (as /tmp) is fine: only the owner can rename the file.
	os.Chmod(sub, 0o777|os.ModeSticky)
	if err := checkRootOnly("policy file", p); err != nil {
		t.Errorf("file in a sticky directory: %v", err)
	}
}

func TestTrackFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "track")
	tf, err := newTrackFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	tf.set("isp1", true)
	tf.set("wan", false)
	if read("isp1") != "0\n" || read("wan") != "1\n" {
		t.Errorf("isp1=%q wan=%q", read("isp1"), read("wan"))
	}
	tf.set("wan", true)
	if read("wan") != "0\n" {
		t.Errorf("wan=%q after recovery", read("wan"))
	}
	tf.prune(map[string]bool{"wan": true})
	if _, err := os.Stat(filepath.Join(dir, "isp1")); !os.IsNotExist(err) {
		t.Errorf("isp1 track file not pruned: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in track dir, want 1 (no temporaries left)", len(entries))
	}
	var nilTF *trackFiles
	if err := nilTF.set("x", true); err != nil {
		t.Errorf("disabled track files: %v", err)
	}
}

func TestControlSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the control socket is root-only; run as root")
	}
	path := filepath.Join(t.TempDir(), "run", "control.sock")
	ln, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	srv := &controlServer{ln: ln, path: path, log: discard(), handle: func(ctx context.Context, cmd string) (string, error) {
		calls = append(calls, cmd)
		if cmd == "status" {
			return "{}\n", nil
		}
		return "", errNo
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx) }()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode %v", di.Mode())
	}
	if out, err := Control(ctx, path, "status"); err != nil || out != "{}\n" {
		t.Errorf("status: %q, %v", out, err)
	}
	if _, err := Control(ctx, path, "reload"); err == nil || err.Error() != "no; really" {
		t.Errorf("reload error = %v, want the handler's error with newlines folded", err)
	}
	// A second daemon must not steal a live socket.
	if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second listen on a live socket: %v", err)
	}
	cancel()
	srv.close()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket not removed on close: %v", err)
	}
	// A stale socket file (daemon killed) is replaced.
	l2, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l2.(*net.UnixListener).SetUnlinkOnClose(false)
	l2.Close()
	ln3, err := listenControl(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln3.Close()
	if d := cmp.Diff([]string{"status", "reload"}, calls); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
}

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/uplinkd/uplinkd/internal/daemon"
)

// TestFlagsAfterArguments: flags work wherever they are written, and "--"
// makes what follows an argument even if it looks like a flag.
func TestFlagsAfterArguments(t *testing.T) {
	valid := "../../testdata/primary-backup.toml"
	var out, errb bytes.Buffer
	if code := mainArgs([]string{"check", valid, "-q"}, &out, &errb); code != exitOK || out.Len() != 0 {
		t.Errorf("check FILE -q = %d, stdout %q, stderr %q; want 0 and nothing printed", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := mainArgs([]string{"check", valid, "--q", valid}, &out, &errb); code != exitOK || out.Len() != 0 {
		t.Errorf("check FILE --q FILE = %d, stdout %q", code, out.String())
	}
	errb.Reset()
	code := mainArgs([]string{"check", "--", "-q"}, &out, &errb)
	if code != exitInvalid || !strings.Contains(errb.String(), "opening -q") {
		t.Errorf("check -- -q = %d, %q; want the file -q to be opened", code, errb.String())
	}
	errb.Reset()
	if code := mainArgs([]string{"check", valid, "--bogus"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "flag provided but not defined: -bogus") {
		t.Errorf("check FILE --bogus = %d, %q; want 2 naming the flag", code, errb.String())
	}

	st := daemon.Status{Gateways: []daemon.GatewayStatus{{Name: "isp1", State: "up", Up: true}, {Name: "isp2", State: "down"}}}
	addr := statusServer(t, st)
	out.Reset()
	if code := mainArgs([]string{"status", "isp2", "--addr", addr, "--json"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), `"name": "isp2"`) || strings.Contains(out.String(), "isp1") {
		t.Errorf("status NAME --addr A --json = %d:\n%s", code, out.String())
	}
}

// fakeControl serves the control socket protocol at path: one line in,
// "ok\n" and the status document out.
func fakeControl(t *testing.T, path string, st daemon.Status) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	doc := fmt.Sprintf("ok\n{\"gateways\":[{\"name\":%q,\"up\":true}]}\n", st.Gateways[0].Name)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			if strings.TrimSpace(line) == daemon.CmdStatus {
				c.Write([]byte(doc))
			} else {
				c.Write([]byte("error: unexpected\n"))
			}
			c.Close()
		}
	}()
}

// TestStatusFindsDaemonFromPolicy: with --config, status asks the
// policy's listen address, and its control socket when the listener is
// off or silent; an unreadable policy is exit 3, no daemon exit 4.
func TestStatusFindsDaemonFromPolicy(t *testing.T) {
	dir := t.TempDir()
	addr := statusServer(t, daemon.Status{Gateways: []daemon.GatewayStatus{{Name: "via-http", Up: true}}})
	sock := filepath.Join(dir, "control.sock")
	fakeControl(t, sock, daemon.Status{Gateways: []daemon.GatewayStatus{{Name: "via-socket"}}})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()

	write := func(name, daemonSection string) string {
		f := filepath.Join(dir, name)
		text := "[daemon]\n" + daemonSection + "\n[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n[group.wan]\ngateways = [\"a\"]\n"
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, tc := range []struct {
		name, daemon string
		code         int
		want         string
	}{
		{"http.toml", fmt.Sprintf("listen = %q\ncontrol_socket = %q", addr, sock), exitOK, "via-http"},
		{"socket.toml", fmt.Sprintf("listen = \"\"\ncontrol_socket = %q", sock), exitOK, "via-socket"},
		{"fallback.toml", fmt.Sprintf("listen = %q\ncontrol_socket = %q", dead, sock), exitOK, "via-socket"},
		{"none.toml", fmt.Sprintf("listen = %q\ncontrol_socket = %q", dead, filepath.Join(dir, "none.sock")), exitUnreachable, ""},
	} {
		var out, errb bytes.Buffer
		code := mainArgs([]string{"status", "--config", write(tc.name, tc.daemon), "--json"}, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d and %q", tc.name, code, out.String(), errb.String(), tc.code, tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := mainArgs([]string{"status", "--config", "../../testdata/invalid-weight.toml"}, &out, &errb); code != exitInvalid {
		t.Errorf("status with an invalid policy = %d, want %d (%s)", code, exitInvalid, errb.String())
	}
}

// TestStatusFits100Columns: the default table cuts nothing an operator
// needs first and fits 100 columns; --wide has every column and whole
// lines.
func TestStatusFits100Columns(t *testing.T) {
	long := strings.Repeat("3 probes lost after tx without rx for 120ms; ", 4)
	st := daemon.Status{
		Gateways: []daemon.GatewayStatus{
			{Name: "isp1-fibre-main", Interface: "enp3s0f0", State: "degraded", Standby: true, Damped: true, Up: true,
				RTTLast: 0.0123, RTTAvg: 0.0111, Samples: 10, Loss: 0.1, LastConfirmedAge: 1.5, LastRxAge: 0.01, LastTxAge: 0.01, LastGoodProbeAge: 2,
				ProbesPerSecond: 50, Reason: long, Routes: []string{"default via 198.18.1.1 dev enp3s0f0 table main proto 212 metric 100 weight 1 " + strings.Repeat("x", 80)}},
			{Name: "isp2", Interface: "eth2", State: "down", LastConfirmedAge: -1, LastRxAge: -1, LastTxAge: -1, LastGoodProbeAge: -1, Reason: "carrier lost on eth2"},
		},
		Groups: []daemon.GroupStatus{{Name: "wan", Up: true, Healthy: 1, Table: 254, Gateways: []string{"isp1-fibre-main", "isp2"}}},
		Rules:  []string{"1000: from 198.18.1.2 lookup 201 proto 212"},
	}
	addr := statusServer(t, st)
	var out, errb bytes.Buffer
	if code := runStatus([]string{"--addr", addr}, &out, &errb); code != exitOK {
		t.Fatalf("status = %d: %s", code, errb.String())
	}
	text := out.String()
	for i, line := range strings.Split(text, "\n") {
		if n := utf8.RuneCountInString(line); n > narrowWidth {
			t.Errorf("line %d is %d columns wide: %q", i+1, n, line)
		}
	}
	for _, want := range []string{"isp1-fibre-main", "degraded (standby) (damped)", "12.3ms/11.1ms", "10.0%", "carrier lost on eth2", "wan", "…"} {
		if !strings.Contains(text, want) {
			t.Errorf("narrow table lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "CONFIRMED") || strings.Contains(text, "PROBES/S") {
		t.Errorf("narrow table has --wide columns:\n%s", text)
	}
	out.Reset()
	if code := runStatus([]string{"--addr", addr, "--wide"}, &out, &errb); code != exitOK {
		t.Fatalf("status --wide = %d", code)
	}
	for _, want := range []string{"CONFIRMED", "PROBES/S", "50.0", long, st.Gateways[0].Routes[0]} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--wide lacks %q", want)
		}
	}
}

// TestHelpAndDocsSpellFlagsAlike: help prints every flag as --flag, and
// the docs never write `uplinkd CMD -flag`.
func TestHelpAndDocsSpellFlagsAlike(t *testing.T) {
	for name := range commands {
		var out, errb bytes.Buffer
		mainArgs([]string{name, "--help"}, &out, &errb)
		for _, line := range strings.Split(errb.String(), "\n") {
			if strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --") {
				t.Errorf("%s --help spells a flag with one dash: %q", name, line)
			}
		}
		if !strings.Contains(errb.String(), "3 invalid policy, 4 daemon unreachable") {
			t.Errorf("%s --help does not document the exit codes", name)
		}
	}
	oneDash := regexp.MustCompile(`uplinkd (check|plan|run|status|reload|version)\b[^` + "`" + `\n#]*\s-[a-z][a-z-]+`)
	docs, _ := filepath.Glob("../../docs/*.md")
	for _, f := range append(docs, "../../README.md") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := oneDash.FindString(line); m != "" {
				t.Errorf("%s:%d spells a flag with one dash: %q", f, i+1, m)
			}
		}
	}
}

// TestVersionWithoutVCS: a test binary has no VCS information, as a build
// from a tarball has none; version still names the module, the Go version
// and platform, and the first line keeps its parseable shape.
func TestVersionWithoutVCS(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainArgs([]string{"version"}, &out, &errb); code != exitOK {
		t.Fatalf("version = %d: %s", code, errb.String())
	}
	text := out.String()
	first := strings.SplitN(text, "\n", 2)[0]
	if !regexp.MustCompile(`^uplinkd \S+ \(commit \S+, go\S+\)$`).MatchString(first) {
		t.Errorf("first line %q", first)
	}
	for _, want := range []string{"module:   github.com/uplinkd/uplinkd", "platform: " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(text, want) {
			t.Errorf("version lacks %q:\n%s", want, text)
		}
	}
	// A module version recorded by `go install module@v1.2.3` is the
	// version when -X main.version was not set.
	var b bytes.Buffer
	writeVersion(&b, build{Version: "v1.2.3", Commit: "unknown", Go: "go1.26.8", Platform: "linux/amd64", Module: "github.com/uplinkd/uplinkd@v1.2.3", Settings: []string{"CGO_ENABLED=0", "-trimpath=true"}})
	want := "uplinkd v1.2.3 (commit unknown, go1.26.8)\n  module:   github.com/uplinkd/uplinkd@v1.2.3\n  platform: linux/amd64\n  settings: CGO_ENABLED=0 -trimpath=true\n"
	if b.String() != want {
		t.Errorf("writeVersion:\n%s\nwant:\n%s", b.String(), want)
	}
	if code := mainArgs([]string{"version", "extra"}, &out, &errb); code != exitUsage {
		t.Errorf("version extra = %d, want 2", code)
	}
}

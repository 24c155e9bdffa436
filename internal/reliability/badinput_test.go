package reliability

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/internal/testcorpus"
	"github.com/uplinkd/uplinkd/policy"
)

type badPolicy struct {
	name       string
	text       string
	mode       os.FileMode // 0: 0644
	positioned bool        // the error names file:line
	want       string      // a substring of the error
	host       bool        // refused for the host (exit 2), not the policy itself (exit 3)
}

// hostilePolicies is the shared hostile corpus (internal/testcorpus, which
// the parser's own tests use too) plus refusals only `run` makes.
func hostilePolicies(dir string) []badPolicy {
	var out []badPolicy
	for _, c := range testcorpus.Hostile(policy.MaxPolicySize) {
		out = append(out, badPolicy{name: c.Name, text: c.Text, positioned: c.Positioned, want: c.Want})
	}
	gw := "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n"
	writable := filepath.Join(dir, "writable-hook")
	_ = os.WriteFile(writable, []byte("#!/bin/sh\n"), 0o777)
	_ = os.Chmod(writable, 0o777)
	// An interface that does not exist is no longer refused: its gateway
	// is held down until it appears (e2e TestInterfaceCreatedAfterStart);
	// `run --require-interfaces` refusing it is in e2e TestRefusesToStart.
	return append(out,
		badPolicy{"world-writable policy", gw + "[group.wan]\ngateways = [\"a\"]\n", 0o666, false, "writable", false},
		badPolicy{"world-writable hook", gw + "[group.wan]\ngateways = [\"a\"]\n[hook.h]\ncommand = [\"" + writable + "\"]\nevents = [\"gateway_down\"]\n", 0, false, "writable", true},
	)
}

var positionRE = regexp.MustCompile(`\.toml:\d+(:\d+)?:`)

// Bad input: `uplinkd run` with each malformed, hostile or huge policy —
// the testdata/invalid-*.toml corpus, the hostile cases of policy's own
// tests, and refusals only `run` makes (a world-writable policy or hook,
// a missing interface) — exits 2 with a clear error, positioned where the
// problem has a position, before it touches the kernel: `ip monitor` in
// its namespace sees nothing and no route or rule has proto 212.
func TestHostilePoliciesRefusedBeforeKernel(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	dir := t.TempDir()
	var cases []badPolicy
	files, err := filepath.Glob(filepath.Join(daemontest.Root(), "testdata", "invalid-*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/invalid-*.toml: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A file-level problem (a policy that manages nothing) has no
		// position; the file's "# want:" line says which it is.
		want, _, _ := strings.Cut(string(data), "\n")
		cases = append(cases, badPolicy{name: filepath.Base(f), text: string(data), positioned: positionRE.MatchString(want)})
	}
	cases = append(cases, hostilePolicies(dir)...)

	mon := tu.Host.Start(t, "ip", "monitor", "all")
	daemontest.WaitFor(t, 10*time.Second, "ip monitor to subscribe", func() (bool, string) {
		tu.Host.MustRun(t, "ip", "route", "replace", "198.19.255.254/32", "dev", "lo", "table", "999")
		tu.Host.MustRun(t, "ip", "route", "del", "198.19.255.254/32", "dev", "lo", "table", "999")
		return strings.Contains(tu.Host.Output(mon), "198.19.255.254"), "no output yet"
	})
	time.Sleep(100 * time.Millisecond)
	var table []string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			faultRun(t) // no daemon may start: nothing of its to measure
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			if !strings.HasSuffix(path, ".toml") {
				path += ".toml"
			}
			mode := c.mode
			if mode == 0 {
				mode = 0o644
			}
			if err := os.WriteFile(path, []byte(c.text), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			before := len(tu.Host.Output(mon))
			cmd := tu.Host.Start(t, uplinkdBin, "run", "--config", path)
			err := tu.Host.Wait(cmd, 30*time.Second)
			out := tu.Host.Output(cmd)
			var ee *exec.ExitError
			code := 3 // invalid policy
			if c.host {
				code = 2
			}
			if !errors.As(err, &ee) || ee.ExitCode() != code {
				t.Fatalf("uplinkd run: %v, want exit status %d\n%s", err, code, tail(out, 2000))
			}
			if c.positioned && !positionRE.MatchString(out) {
				t.Errorf("the error has no file:line position:\n%s", tail(out, 2000))
			}
			if c.want != "" && !strings.Contains(out, c.want) {
				t.Errorf("the error does not mention %q:\n%s", c.want, tail(out, 2000))
			}
			if len(out) > 64<<10 {
				t.Errorf("the refusal is %d bytes long: an operator cannot read that", len(out))
			}
			time.Sleep(100 * time.Millisecond) // let ip monitor print anything pending
			if seen := tu.Host.Output(mon)[before:]; strings.TrimSpace(seen) != "" {
				t.Errorf("the kernel changed while uplinkd refused to start:\n%s", tail(seen, 2000))
			}
			table = append(table, fmt.Sprintf("%-36s exit 2: %.150s", c.name, errorLine(out)))
		})
	}
	for _, fam := range []string{"-4", "-6"} {
		if out := tu.Host.MustRun(t, "ip", fam, "route", "show", "table", "all", "proto", "212"); strings.TrimSpace(out) != "" {
			t.Errorf("routes with proto 212 after the refusals:\n%s", out)
		}
		if out := tu.Host.MustRun(t, "ip", fam, "rule", "show"); strings.Contains(out, "proto 212") {
			t.Errorf("rules with proto 212 after the refusals:\n%s", out)
		}
	}
	t.Logf("%d bad policies refused:\n%s", len(table), strings.Join(table, "\n"))
}

// errorLine is the line of a refusal that says what is wrong: the first
// positioned one, else the first.
func errorLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if positionRE.MatchString(l) {
			l = strings.TrimSpace(l)
			if i := strings.Index(l, ".toml:"); i >= 0 {
				l = l[strings.LastIndex(l[:i], "/")+1:]
			}
			return l
		}
	}
	return firstLine(out)
}

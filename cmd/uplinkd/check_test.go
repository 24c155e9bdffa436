package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/policy"
)

// TestCheckTestdata runs `uplinkd check` exactly as an operator would on
// every policy in testdata: valid ones exit 0 with a summary, invalid ones
// exit 3 printing exactly the messages in their "# want:" lines.
func TestCheckTestdata(t *testing.T) {
	t.Chdir(filepath.Join("..", "..", "testdata"))
	files, err := filepath.Glob("*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := mainArgs([]string{"check", f}, &stdout, &stderr)
			if !strings.HasPrefix(f, "invalid-") {
				if code != exitOK {
					t.Fatalf("exit %d for a valid policy:\n%s", code, stderr.String())
				}
				if !strings.HasPrefix(stdout.String(), f+": OK\n") {
					t.Errorf("summary does not start with %q:\n%s", f+": OK", stdout.String())
				}
				return
			}
			if code != exitInvalid {
				t.Fatalf("exit %d, want %d", code, exitInvalid)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, l := range strings.Split(string(data), "\n") {
				if !strings.HasPrefix(l, "# want: ") {
					break
				}
				want = append(want, strings.TrimPrefix(l, "# want: "))
			}
			got := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(got) > 0 {
				got = got[:len(got)-1] // the "N error(s)" footer
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("uplinkd check output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHelpExplainsEveryCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := mainArgs([]string{"--help"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for name := range commands {
		if !strings.Contains(stdout.String(), "  "+name+" ") {
			t.Errorf("--help does not list %q:\n%s", name, stdout.String())
		}
		var out, errOut bytes.Buffer
		if code := mainArgs([]string{name, "--help"}, &out, &errOut); code != exitOK {
			t.Errorf("%s --help exit %d", name, code)
		}
		if !strings.Contains(errOut.String(), "Usage: uplinkd "+name) {
			t.Errorf("%s --help has no usage line:\n%s", name, errOut.String())
		}
	}
}

// TestCheckRefusesPolicyThatManagesNothing: a policy under which uplinkd
// would install nothing (an empty or comment-only file, settings only,
// gateways in no group and without a table) would withdraw every owned
// route if run or reloaded, so check refuses it with the message run and
// reload give: all three refuse through policy.Parse.
func TestCheckRefusesPolicyThatManagesNothing(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"empty.toml":    "",
		"comments.toml": "# nothing here yet\n\n# [gateway.isp1]\n",
		"daemon.toml":   "[daemon]\non_exit = \"withdraw\"\n",
		"kernel.toml":   "[kernel]\nfib_multipath_hash_policy = \"l4\"\n",
		// Gateways in no group and without a table lead to no route.
		"gateways.toml": "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, name)
			if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := mainArgs([]string{"check", f}, &stdout, &stderr)
			if code != exitInvalid {
				t.Fatalf("exit %d, want %d; stdout %q", code, exitInvalid, stdout.String())
			}
			if want := f + ": policy manages nothing:"; !strings.HasPrefix(stderr.String(), want) {
				t.Errorf("stderr %q does not start with %q", stderr.String(), want)
			}
		})
	}
}

// TestCheckRefusesWhatIsNotARegularFile: check opens the file once, refuses
// anything but a regular file before reading, and reads at most the size
// limit plus one byte, so none of these can exhaust memory or hang.
func TestCheckRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), policy.MaxPolicySize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{"/dev/zero", "/dev/zero is a character device, not a regular file"},
		{"/dev/null", "/dev/null is a character device, not a regular file"},
		{fifo, fifo + " is a FIFO, not a regular file"},
		{dir, dir + " is a directory, not a regular file"},
		{big, big + ": policy is more than the 1048576-byte limit"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			type result struct {
				code           int
				stdout, stderr string
			}
			done := make(chan result, 1)
			go func() {
				var stdout, stderr bytes.Buffer
				code := mainArgs([]string{"check", tc.file}, &stdout, &stderr)
				done <- result{code, stdout.String(), stderr.String()}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("check %s still running after 10s", tc.file)
			}
			if r.code != exitInvalid || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, exitInvalid, tc.want)
			}
		})
	}
}

// An interface that does not exist on this host is a warning, not an
// error: the daemon would start with that gateway down. With
// --require-interfaces it is an error (exit 2) unless the gateway is
// optional.
func TestCheckAbsentInterface(t *testing.T) {
	f := filepath.Join(t.TempDir(), "late.toml")
	if err := os.WriteFile(f, []byte(`
[gateway.late]
address = "198.18.3.1"
interface = "uplnoiface0"
[gateway.modem]
address = "198.18.4.1"
interface = "uplnoiface1"
optional = true
[group.wan]
gateways = ["late", "modem"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"check", "-q", f}, exitOK, []string{
			f + `: warning: gateway "late": interface uplnoiface0 does not exist on this host; the gateway will be down until it appears`,
			f + `: warning: gateway "modem": interface uplnoiface1 does not exist on this host; the gateway will be down until it appears`,
		}},
		{[]string{"check", "-q", "--require-interfaces", f}, exitUsage, []string{
			f + `: gateway "late": interface uplnoiface0 does not exist on this host`,
			f + `: warning: gateway "modem": interface uplnoiface1 does not exist on this host; the gateway will be down until it appears`,
		}},
	} {
		var stdout, stderr bytes.Buffer
		if code := mainArgs(tc.args, &stdout, &stderr); code != tc.code {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, code, tc.code, stderr.String())
		}
		if d := cmp.Diff(tc.want, strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")); d != "" {
			t.Errorf("%v: stderr (-want +got):\n%s", tc.args, d)
		}
	}
}

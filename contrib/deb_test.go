package contrib_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestDebPackage builds the Debian package as `make deb` does and
// inspects it: the files the issue lists are there with sane modes, the
// policy and the iproute2 entry are conffiles, the unit runs the packaged
// binary, the packaged binary accepts the packaged policy, and lintian
// finds no error or warning (the one exception is the shipped override,
// contrib/debian/lintian-overrides, with its reason).
func TestDebPackage(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "lintian"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to build and check the package: sh scripts/setup.sh installs it: %v", tool, err)
		}
	}
	// Built as `make deb` builds it (make build: static, stripped).
	bin := filepath.Join(t.TempDir(), "uplinkd")
	if b, err := exec.Command("make", "-C", "..", "--no-print-directory", "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, b)
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "scripts/deb.sh", out, "1.2.3~test")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "BIN="+bin)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/deb.sh: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b))
	if filepath.Base(deb) != "uplinkd_1.2.3~test_"+debArch(t)+".deb" {
		t.Fatalf("package named %s", deb)
	}

	listing := run(t, "dpkg-deb", "--contents", deb)
	modes := map[string]string{}
	for _, l := range strings.Split(listing, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 {
			modes[strings.TrimPrefix(f[5], "./")] = f[0]
			if f[1] != "root/root" {
				t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
			}
		}
	}
	for path, mode := range map[string]string{
		"usr/sbin/uplinkd":                               "-rwxr-xr-x",
		"lib/systemd/system/uplinkd.service":             "-rw-r--r--",
		"etc/iproute2/rt_protos.d/uplinkd.conf":          "-rw-r--r--",
		"etc/uplinkd/uplinkd.toml":                       "-rw-r--r--",
		"usr/lib/uplinkd/hooks/move-address":             "-rwxr-xr-x",
		"usr/share/doc/uplinkd/copyright":                "-rw-r--r--",
		"usr/share/doc/uplinkd/changelog.gz":             "-rw-r--r--",
		"usr/share/doc/uplinkd/operations.md.gz":         "-rw-r--r--",
		"usr/share/doc/uplinkd/configuration.md.gz":      "-rw-r--r--",
		"usr/share/doc/uplinkd/examples/keepalived.conf": "-rw-r--r--",
		"usr/share/doc/uplinkd/prometheus/alerts.yml":    "-rw-r--r--",
		"usr/share/doc/uplinkd/grafana/uplinkd.json":     "-rw-r--r--",
		"usr/share/man/man8/uplinkd.8.gz":                "-rw-r--r--",
	} {
		if got, ok := modes[path]; !ok {
			t.Errorf("the package has no /%s", path)
		} else if got != mode {
			t.Errorf("/%s has mode %s, want %s", path, got, mode)
		}
	}

	ctl := run(t, "dpkg-deb", "--field", deb, "Package", "Version", "Architecture", "Section", "Recommends")
	for _, want := range []string{"Package: uplinkd", "Version: 1.2.3~test", "Architecture: " + debArch(t), "Section: net", "Recommends: iproute2"} {
		if !strings.Contains(ctl, want) {
			t.Errorf("control lacks %q:\n%s", want, ctl)
		}
	}
	ctrl := t.TempDir()
	run(t, "dpkg-deb", "--control", deb, ctrl)
	conf, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(conf))
	slices.Sort(got)
	if want := []string{"/etc/iproute2/rt_protos.d/uplinkd.conf", "/etc/uplinkd/uplinkd.toml"}; !slices.Equal(got, want) {
		t.Errorf("conffiles %v, want %v", got, want)
	}
	for _, script := range []string{"postinst", "prerm", "postrm", "preinst"} {
		if _, err := os.Stat(filepath.Join(ctrl, script)); err == nil {
			t.Errorf("the package has a %s: it must not start or enable a routing daemon on an example policy", script)
		}
	}

	// The unpacked tree works: the unit names the packaged binary, and
	// that binary (ExecStartPre) accepts the packaged policy.
	root := t.TempDir()
	run(t, "dpkg-deb", "--extract", deb, root)
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/uplinkd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/usr/sbin/uplinkd run --config /etc/uplinkd/uplinkd.toml", "ExecReload=/usr/sbin/uplinkd reload"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the packaged unit lacks %q", want)
		}
	}
	for _, l := range strings.Split(string(unit), "\n") {
		if !strings.HasPrefix(l, "#") && strings.Contains(l, "/usr/local/") {
			t.Errorf("the packaged unit still names /usr/local: %s", l)
		}
	}
	if out, err := exec.Command(filepath.Join(root, "usr/sbin/uplinkd"), "check", "-q", filepath.Join(root, "etc/uplinkd/uplinkd.toml")).CombinedOutput(); err != nil {
		t.Errorf("the packaged uplinkd refuses the packaged policy: %v\n%s", err, out)
	}

	lint := exec.Command("lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", deb)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	} else if tags := lintTags(string(out)); len(tags) > 0 {
		t.Errorf("lintian reports:\n%s", strings.Join(tags, "\n"))
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func debArch(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(run(t, "dpkg", "--print-architecture"))
}

// lintTags keeps lintian's E: and W: lines (it also prints a notice when
// run as root).
func lintTags(out string) []string {
	var tags []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			tags = append(tags, l)
		}
	}
	return tags
}

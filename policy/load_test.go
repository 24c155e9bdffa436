package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minimalPolicy is the smallest policy Parse accepts: one gateway in a
// group, so it installs a default route.
const minimalPolicy = "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n[group.wan]\ngateways = [\"a\"]\n"

// TestLoadTrustedChecksThePathAsWritten: the daemon's policy is read
// through securefile, so a symlink in a directory owned by nobody is
// refused even though its target is a good root-owned file, while Load
// (uplinkd check on a draft) does not care who owns what.
func TestLoadTrustedChecksThePathAsWritten(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a directory to nobody (uid 65534)")
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "uplinkd.toml")
	if err := os.WriteFile(good, []byte(minimalPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTrusted(good); err != nil {
		t.Fatalf("root-owned policy refused: %v", err)
	}
	nobody := filepath.Join(dir, "nobody")
	if err := os.Mkdir(nobody, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(nobody, "uplinkd.toml")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(nobody, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := LoadTrusted(link)
	if want := "its directory " + nobody + " is owned by uid 65534, not root"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadTrusted through nobody's symlink: %v, want %q", err, want)
	}
	if _, err := Load(link); err != nil {
		t.Errorf("Load (no ownership checks): %v", err)
	}
}

package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A policy under which uplinkd would own nothing is refused before it can
// delete what a previous policy installed (issue 11.2). policy.Parse owns
// the rule (ErrManagesNothing); this holds run and reload, which load
// through loadChecked, to it.
func TestLoadCheckedRefusesPolicyThatManagesNothing(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, text string }{
		{"empty", ""},
		{"comments only", "# uplinkd policy\n# (to be written)\n"},
		{"daemon settings only", "[daemon]\non_exit = \"leave\"\n"},
		// Gateways that lead to no route: no group, no table.
		{"gateways in no group and without a table", "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"lo\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".toml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadChecked(path, false)
			if err == nil || !strings.Contains(err.Error(), "manages nothing") {
				t.Fatalf("loadChecked(%q) = %v, want an error saying it manages nothing", tc.text, err)
			}
		})
	}
}

// Issue 11.3: run and reload read the policy through loadChecked, which
// refuses anything but a regular file before reading it: a FIFO with no
// writer would hang a reload inside the daemon, and /dev/zero would read
// until memory ran out.
func TestLoadCheckedRefusesWhatIsNotARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "uplinkd.toml")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero", "/dev/null"} {
		done := make(chan error, 1)
		go func() { _, err := loadChecked(path, false); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("loadChecked(%s) accepted it", path)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("loadChecked(%s) still reading after 10 s", path)
		}
	}
}

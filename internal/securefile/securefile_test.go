package securefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openWithin runs Open in a goroutine and fails the test if it does not
// return in time: a FIFO with no writer must be refused, not waited on.
func openWithin(t *testing.T, path string, mode Mode) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		f, err := Open(path, mode)
		if f != nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("Open(%s) still blocked after 5s", path)
		return nil
	}
}

func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "/dev/zero is a character device, not a regular file"},
		{"/dev/null", "/dev/null is a character device, not a regular file"},
		{fifo, fifo + " is a FIFO, not a regular file"},
		{dir, dir + " is a directory, not a regular file"},
		{"/", "/ is a directory, not a regular file"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{filepath.Join(fifo, "below"), "not a directory"},
	} {
		err := openWithin(t, tc.path, Any)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s) = %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
}

func TestReadFileReadsAtMostLimitPlusOne(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "p.toml")
	if err := os.WriteFile(f, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(f, 10, Any); err != nil || string(got) != "0123456789" {
		t.Fatalf("ReadFile at the limit = %q, %v", got, err)
	}
	_, err := ReadFile(f, 9, Any)
	if _, ok := err.(*TooLargeError); !ok {
		t.Fatalf("ReadFile over the limit = %v, want *TooLargeError", err)
	}
}

func TestOpenFollowsSymlinksItChecked(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(sub, "policy.toml")
	if err := os.WriteFile(target, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Relative, with "..", and absolute links, and a link to a link.
	if err := os.Symlink("../etc/policy.toml", filepath.Join(sub, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("abs", filepath.Join(dir, "chain")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc", filepath.Join(dir, "etclink")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/rel", "abs", "chain", "etclink/policy.toml", "etclink/../etc/rel"} {
		f, err := Open(filepath.Join(dir, p), Trusted)
		if err != nil {
			t.Errorf("Open(%s): %v", p, err)
			continue
		}
		var a, b unix.Stat_t
		unix.Fstat(int(f.Fd()), &a)
		unix.Stat(target, &b)
		if a.Ino != b.Ino {
			t.Errorf("Open(%s) opened inode %d, want %d", p, a.Ino, b.Ino)
		}
		f.Close()
	}
	loop := filepath.Join(dir, "loop")
	os.Symlink("loop", loop)
	if err := openWithin(t, loop, Any); err == nil || !strings.Contains(err.Error(), "too many levels of symbolic links") {
		t.Errorf("symlink loop: %v", err)
	}
}

// TestTrustedRefusesSymlinkInUntrustedDirectory is issue 11 item 4: a link
// to a good root-owned file, sitting in a directory owned by nobody, must
// be refused, because nobody could repoint it. Resolving the link first
// and checking only the target's directories (the old check) passes it.
func TestTrustedRefusesSymlinkInUntrustedDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a directory to nobody (uid 65534)")
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.Mkdir(good, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(good, "hook")
	if err := os.WriteFile(target, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	nobody := filepath.Join(dir, "nobody")
	if err := os.Mkdir(nobody, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(nobody, "hook")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(nobody, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := openWithin(t, link, Trusted)
	want := "its directory " + nobody + " is owned by uid 65534, not root"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open(%s) = %v, want %q", link, err, want)
	}
	// The same link, through a directory symlink in a root-owned
	// directory pointing into nobody's, is refused too.
	via := filepath.Join(dir, "via")
	if err := os.Symlink(nobody, via); err != nil {
		t.Fatal(err)
	}
	if err := openWithin(t, filepath.Join(via, "hook"), Trusted); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("through a directory link: %v, want %q", err, want)
	}
	// Any mode does not care who owns what.
	if err := openWithin(t, link, Any); err != nil {
		t.Fatalf("Any: %v", err)
	}
	// The target itself owned by nobody is refused in Trusted mode.
	if err := os.Chown(target, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := openWithin(t, target, Trusted); err == nil || !strings.Contains(err.Error(), "is owned by uid 65534, not root") {
		t.Fatalf("file owned by nobody: %v", err)
	}
}

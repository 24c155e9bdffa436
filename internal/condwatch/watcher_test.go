package condwatch_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/internal/condition"
	"github.com/uplinkd/uplinkd/internal/condwatch"
	"github.com/uplinkd/uplinkd/internal/condwatch/condwatchtest"
)

// start runs w until the test ends.
func start(t *testing.T, w *condwatch.Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}

// await waits for Changed until ok holds on the facts, or fails after 5s.
func await(t *testing.T, w *condwatch.Watcher, what string, ok func(condwatch.Facts) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if ok(w.Facts()) {
			return
		}
		select {
		case <-w.Changed():
		case <-deadline:
			t.Fatalf("timed out waiting for %s; facts %+v", what, w.Facts())
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Replace by rename, as keepalived's and uplinkd's writers do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestTrackFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "sub", "b")
	w := condwatch.New(condwatch.Config{Kernel: &condwatchtest.Kernel{}, Resync: time.Hour})
	w.Set(nil, []string{a, b})
	start(t, w)
	await(t, w, "both files down while absent", func(f condwatch.Facts) bool {
		return cmp.Equal(f.Files, map[string]bool{a: false, b: false})
	})

	writeFile(t, a, "0\n")
	await(t, w, "a up on 0", func(f condwatch.Facts) bool { return f.Files[a] })
	writeFile(t, a, "1\n")
	await(t, w, "a down on 1", func(f condwatch.Facts) bool { return !f.Files[a] })
	// Written in place, as "echo up > a" does: IN_CLOSE_WRITE.
	if err := os.WriteFile(a, []byte(" UP \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	await(t, w, "a up on UP written in place", func(f condwatch.Facts) bool { return f.Files[a] })
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	await(t, w, "a down once removed", func(f condwatch.Facts) bool { return !f.Files[a] })

	// A FIFO in a file's place must neither hang the watcher nor count as up.
	if err := syscall.Mkfifo(a, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "other"), "0") // an event in the directory
	// b's directory does not exist yet: only Set (or the resync) adds its
	// watch once it does.
	if err := os.Mkdir(filepath.Dir(b), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, b, "up")
	w.Set(nil, []string{a, b})
	await(t, w, "b up after its directory appeared", func(f condwatch.Facts) bool { return f.Files[b] && !f.Files[a] })
	writeFile(t, b, "down")
	await(t, w, "b down, through its new watch", func(f condwatch.Facts) bool { return !f.Files[b] })
}

func TestLinksAndAddressesFollowHintsAndResync(t *testing.T) {
	k := &condwatchtest.Kernel{}
	vip := condition.Addr{Iface: "eth0", IP: netip.MustParseAddr("198.18.0.100")}
	k.SetLink("eth0", true)
	w := condwatch.New(condwatch.Config{Kernel: k, Resync: 200 * time.Millisecond})
	w.Set([]string{"eth0", "eth1"}, nil)
	start(t, w)
	await(t, w, "eth0 up at start", func(f condwatch.Facts) bool { return f.Links["eth0"] && !f.Links["eth1"] })

	k.SetAddr(vip, true)
	await(t, w, "the VIP on a hint", func(f condwatch.Facts) bool { return f.Addrs[vip] })
	k.SetLink("eth1", true)
	await(t, w, "eth1 up on a hint", func(f condwatch.Facts) bool { return f.Links["eth1"] })

	// A lost notification is repaired by the resync.
	k.Quiet = true
	k.SetAddr(vip, false)
	await(t, w, "the VIP gone after a resync", func(f condwatch.Facts) bool { return !f.Addrs[vip] })
	k.Quiet = false

	// ENOBUFS: resubscribe, and re-read at once.
	k.Overflow(errors.New("no buffer space available"))
	k.SetLink("eth0", false)
	await(t, w, "eth0 down after resubscribing", func(f condwatch.Facts) bool { return !f.Links["eth0"] })
}

func TestParseTrack(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content string
		up      bool
	}{{"0", true}, {"0\n", true}, {" up\n", true}, {"Up", true}, {"1", false}, {"-254\n", false},
		{"down", false}, {"", false}, {"zero", false}, {"00", true}} {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := condwatch.ReadTrack(p); got != tc.up {
			t.Errorf("%q: up %v, want %v", tc.content, got, tc.up)
		}
	}
	if condwatch.ReadTrack(filepath.Join(dir, "missing")) {
		t.Errorf("a missing file reads as up")
	}
}

// TestLivenessShowsAWedgedRead: a Read that never returns leaves the
// watcher busy since it started, which the daemon reports as a stall.
func TestLivenessShowsAWedgedRead(t *testing.T) {
	k := &condwatchtest.Kernel{Wedge: make(chan struct{})}
	w := condwatch.New(condwatch.Config{Kernel: k, Resync: time.Hour})
	if p := w.Liveness(); p.Busy {
		t.Fatalf("busy before it ran: %+v", p)
	}
	w.Set([]string{"eth0"}, nil)
	t0 := time.Now()
	start(t, w)
	t.Cleanup(func() { close(k.Wedge) }) // runs before start's cleanup waits for Run
	deadline := time.Now().Add(5 * time.Second)
	for !w.Liveness().Busy {
		if time.Now().After(deadline) {
			t.Fatal("the watcher never showed busy while its Read is wedged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	p := w.Liveness()
	if !p.Busy || p.LastProgress.Before(t0) || time.Since(p.LastProgress) < 50*time.Millisecond {
		t.Errorf("a wedged read: %+v (started %v)", p, t0)
	}
}

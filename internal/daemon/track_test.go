package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readTrack(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// TestTrackFilesLifecycle: values, the heartbeat in the modification time,
// down on exit (never removed), and removal only of objects that left the
// policy.
func TestTrackFilesLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "track")
	tf, err := newTrackFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, ok := range map[string]bool{"isp1": true, "isp2": false, "wan": true} {
		if err := tf.set(name, ok); err != nil {
			t.Fatal(err)
		}
	}
	if d := cmp.Diff(map[string]string{"isp1": "0\n", "isp2": "1\n", "wan": "0\n"}, readTrack(t, dir)); d != "" {
		t.Errorf("after set (-want +got):\n%s", d)
	}

	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := tf.refresh(at); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"isp1", "isp2", "wan"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(at) {
			t.Errorf("%s: mtime %v after refresh, want %v", name, fi.ModTime(), at)
		}
	}

	if err := tf.prune(map[string]bool{"isp1": true, "wan": true}); err != nil {
		t.Fatal(err)
	}
	if err := tf.markDown(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"isp1": "1\n", "wan": "1\n"}, readTrack(t, dir)); d != "" {
		t.Errorf("after prune and markDown (-want +got):\n%s", d)
	}
	// A later set with the old value is a write again: markDown changed it.
	if err := tf.set("wan", true); err != nil {
		t.Fatal(err)
	}
	if got := readTrack(t, dir)["wan"]; got != "0\n" {
		t.Errorf("wan after markDown then set(true) = %q", got)
	}

	var none *trackFiles
	if none.refresh(at) != nil || none.markDown() != nil || none.set("x", true) != nil {
		t.Error("a nil trackFiles (no track_dir) must do nothing")
	}
}

package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// trackFiles writes one file per gateway and group into a directory, for
// keepalived's track_file, which reads an integer: 0 while the object is
// healthy (up or degraded), 1 while it is not. With "weight 0" keepalived
// puts the VRRP instance into FAULT on 1; with a weight it lowers the
// priority. Files are replaced atomically (write, then rename), so
// keepalived's inotify never sees a half-written file.
//
// keepalived cannot tell a stale file from a fresh one, so the daemon's
// own liveness is in the files too: the health loop refreshes their
// modification time every second (a dead or wedged loop stops doing so,
// which a track_script checking the age notices), and a stopping daemon
// marks every file down, so that the value keepalived reads says so.
type trackFiles struct {
	dir  string
	last map[string]bool
}

func newTrackFiles(dir string) (*trackFiles, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating track directory: %w", err)
	}
	return &trackFiles{dir: dir, last: map[string]bool{}}, nil
}

// set writes name's file if its value changed.
func (t *trackFiles) set(name string, healthy bool) error {
	if t == nil {
		return nil
	}
	if v, ok := t.last[name]; ok && v == healthy {
		return nil
	}
	if err := t.write(name, healthy); err != nil {
		return err
	}
	t.last[name] = healthy
	return nil
}

func (t *trackFiles) write(name string, healthy bool) error {
	content := "1\n"
	if healthy {
		content = "0\n"
	}
	final := filepath.Join(t.dir, name)
	tmp := filepath.Join(t.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return fmt.Errorf("writing track file %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing track file %s: %w", final, err)
	}
	return nil
}

// refresh sets every file's modification time to now: the heartbeat a
// track_script reads. It changes no content, so keepalived's inotify
// (which watches writes and renames) is not woken.
func (t *trackFiles) refresh(now time.Time) error {
	if t == nil {
		return nil
	}
	var errs []error
	for name := range t.last {
		if err := os.Chtimes(filepath.Join(t.dir, name), now, now); err != nil {
			errs = append(errs, fmt.Errorf("refreshing track file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// markDown writes 1 into every file, on exit: an uplink nobody watches is
// not one to hold a VIP for. The files stay, holding that verdict, rather
// than leave keepalived with nothing to read.
func (t *trackFiles) markDown() error {
	if t == nil {
		return nil
	}
	var errs []error
	for name := range t.last {
		if err := t.write(name, false); err != nil {
			errs = append(errs, err)
			continue
		}
		t.last[name] = false
	}
	return errors.Join(errs...)
}

// prune removes the files of objects that left the policy, so keepalived
// does not keep tracking a stale value.
func (t *trackFiles) prune(keep map[string]bool) error {
	if t == nil {
		return nil
	}
	for name := range t.last {
		if keep[name] {
			continue
		}
		delete(t.last, name)
		if err := os.Remove(filepath.Join(t.dir, name)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("removing track file: %w", err)
		}
	}
	return nil
}

package condwatch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

func netipFrom(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

// maxTrackFile bounds what is read of a track file: a number or a word.
const maxTrackFile = 64

// ReadTrack reads a track file: true for 0 or "up" (keepalived's track_file
// convention, and what uplinkd's own track_dir holds), false for anything
// else, including no file. It opens non-blocking and refuses anything but
// a regular file, so a FIFO put in its place cannot stall the watcher.
func ReadTrack(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return false
	}
	buf := make([]byte, maxTrackFile)
	n, _ := f.Read(buf)
	return parseTrack(buf[:n])
}

func parseTrack(b []byte) bool {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	if s == "up" {
		return true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && n == 0
}

// inotifyMask is what makes a track file worth re-reading: a writer
// closing it, a rename onto or away from it, its removal.
const inotifyMask = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// inotify watches the directories of track files. golang.org/x/sys/unix
// rather than fsnotify: a handful of directory watches and one reader need
// about as much code either way, x/sys is already a dependency, and the raw
// mask lets us leave IN_MODIFY out (fsnotify's Write op includes it).
type inotify struct {
	f    *os.File // non-blocking, so Close unblocks a Read in the poller
	dirs map[string]int
	wds  map[int]string
}

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating inotify instance: %w", err)
	}
	return &inotify{f: os.NewFile(uintptr(fd), "inotify"), dirs: map[string]int{}, wds: map[int]string{}}, nil
}

// watch makes sure every directory of files is watched; a directory that
// does not exist yet is tried again on the next call (the resync).
func (n *inotify) watch(files []string) error {
	var errs []error
	want := map[string]bool{}
	for _, f := range files {
		want[filepath.Dir(f)] = true
	}
	for dir := range want {
		if _, ok := n.dirs[dir]; ok {
			continue
		}
		wd, err := n.add(dir)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("watching %s: %w", dir, err))
			}
			continue
		}
		n.dirs[dir], n.wds[wd] = wd, dir
	}
	for dir, wd := range n.dirs {
		if !want[dir] {
			n.rm(wd)
			delete(n.dirs, dir)
			delete(n.wds, wd)
		}
	}
	return errors.Join(errs...)
}

func (n *inotify) add(dir string) (int, error) {
	var wd int
	err := n.raw(func(fd int) (err error) {
		wd, err = unix.InotifyAddWatch(fd, dir, inotifyMask)
		return err
	})
	return wd, err
}

func (n *inotify) rm(wd int) {
	_ = n.raw(func(fd int) error { _, err := unix.InotifyRmWatch(fd, uint32(wd)); return err })
}

func (n *inotify) raw(fn func(fd int) error) error {
	rc, err := n.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// event is one inotify record: the directory's watch, the name in it, or
// all set when everything must be re-read (overflow, a lost directory).
type event struct {
	wd   int
	name string
	all  bool
}

// read blocks until events arrive, or the file is closed.
func (n *inotify) read(buf []byte) ([]event, error) {
	k, err := n.f.Read(buf)
	if err != nil {
		return nil, err
	}
	var out []event
	for off := 0; off+unix.SizeofInotifyEvent <= k; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameLen := int(ev.Len)
		end := off + unix.SizeofInotifyEvent + nameLen
		if end > k {
			break
		}
		name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:end]), "\x00")
		e := event{wd: int(ev.Wd), name: name}
		if ev.Mask&(unix.IN_Q_OVERFLOW|unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
			e.all = true
		}
		out = append(out, e)
		off = end
	}
	return out, nil
}

// forget drops a directory whose watch the kernel removed, so the next
// watch call adds it again.
func (n *inotify) forget(wd int) {
	if dir, ok := n.wds[wd]; ok {
		delete(n.wds, wd)
		delete(n.dirs, dir)
	}
}

func (n *inotify) close() error { return n.f.Close() }

package securefile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Mode says how much Open checks beyond "a regular file".
type Mode int

const (
	// Any opens a regular file whoever owns it: `uplinkd check` on an
	// operator's draft.
	Any Mode = iota
	// Trusted also requires the file and every directory walked to reach
	// it, including the directories holding symlinks, to be owned by root
	// (or by the user uplinkd runs as, who could change it anyway) and not
	// writable by group or others. A sticky directory (/tmp) may be
	// writable by others: only an entry's owner can rename or remove it.
	Trusted
)

// maxSymlinks is the kernel's own limit (MAXSYMLINKS).
const maxSymlinks = 40

// Open opens path for reading as described in the package comment. The
// returned file is a regular file, checked through its own descriptor.
func Open(path string, mode Mode) (*os.File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	w := &walker{path: path, mode: mode}
	f, err := w.walk(abs)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// ReadFile reads at most limit bytes of the regular file at path through
// the one descriptor Open checked. A file longer than limit is an error of
// type *TooLargeError; only limit+1 bytes are ever read.
func ReadFile(path string, limit int64, mode Mode) ([]byte, error) {
	f, err := Open(path, mode)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	return data, nil
}

// TooLargeError is a file longer than ReadFile's limit.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is more than the %d-byte limit", e.Path, e.Limit)
}

type walker struct {
	path  string // as the caller wrote it, for messages
	mode  Mode
	links int
}

// walk resolves abs component by component. dirs holds the descriptors of
// the directories from "/" to the current one, so ".." in a link target
// pops one instead of asking the kernel.
func (w *walker) walk(abs string) (*os.File, error) {
	root, err := w.openDir(unix.AT_FDCWD, "/", "/")
	if err != nil {
		return nil, err
	}
	dirs := []int{root}
	names := []string{"/"}
	defer func() {
		for _, fd := range dirs {
			unix.Close(fd)
		}
	}()
	rest := splitPath(abs)
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		cur, curName := dirs[len(dirs)-1], names[len(names)-1]
		switch c {
		case ".":
			continue
		case "..":
			if len(dirs) > 1 {
				unix.Close(cur)
				dirs, names = dirs[:len(dirs)-1], names[:len(names)-1]
			}
			continue
		}
		full := filepath.Join(curName, c)
		var st unix.Stat_t
		if err := unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, w.fail(full, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			// The link's own directory (cur) was checked on the way in,
			// so whoever could repoint this link is trusted.
			if w.links++; w.links > maxSymlinks {
				return nil, w.fail(full, unix.ELOOP)
			}
			target, err := readlinkat(cur, c)
			if err != nil {
				return nil, w.fail(full, err)
			}
			if strings.HasPrefix(target, "/") {
				for _, fd := range dirs[1:] {
					unix.Close(fd)
				}
				dirs, names = dirs[:1], names[:1]
			}
			rest = append(splitPath(target), rest...)
		case unix.S_IFDIR:
			if len(rest) == 0 {
				return nil, fmt.Errorf("opening %s: %s is a directory, not a regular file", w.path, full)
			}
			fd, err := w.openDir(cur, c, full)
			if err != nil {
				return nil, err
			}
			dirs, names = append(dirs, fd), append(names, full)
		default:
			if len(rest) > 0 {
				return nil, w.fail(full, unix.ENOTDIR)
			}
			return w.openFile(cur, c, full)
		}
	}
	return nil, fmt.Errorf("opening %s: %s is a directory, not a regular file", w.path, names[len(names)-1])
}

func (w *walker) openDir(at int, name, full string) (int, error) {
	fd, err := unix.Openat(at, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, w.fail(full, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, w.fail(full, err)
	}
	if w.mode == Trusted {
		if err := trusted(&st, st.Mode&unix.S_ISVTX != 0); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("%s: its directory %s %w, so the file could be replaced (fix: chown root %s && chmod go-w %s)", w.path, full, err, full, full)
		}
	}
	return fd, nil
}

// openFile opens the last component. It is opened O_NONBLOCK so that a
// FIFO swapped in after the fstatat above cannot block the open, and the
// checks run on the opened descriptor, which is what the caller uses.
func (w *walker) openFile(at int, name, full string) (*os.File, error) {
	fd, err := unix.Openat(at, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, w.fail(full, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, w.fail(full, err)
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("opening %s: %s is %s, not a regular file", w.path, full, kind(t))
	}
	if w.mode == Trusted {
		if err := trusted(&st, false); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("%s %w (fix: chown root:root %s && chmod go-w %s)", w.path, err, full, full)
		}
	}
	// Regular files ignore O_NONBLOCK, but the descriptor may be handed to
	// a hook (as /proc/self/fd/N); give it ordinary blocking semantics.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, w.fail(full, err)
	}
	return os.NewFile(uintptr(fd), full), nil
}

func (w *walker) fail(full string, err error) error {
	if full == w.path {
		return fmt.Errorf("opening %s: %w", w.path, err)
	}
	return fmt.Errorf("opening %s: %s: %w", w.path, full, err)
}

// trusted refuses an inode that someone other than root (or uplinkd's own
// user) could change. sticky relaxes the write bits for directories.
func trusted(st *unix.Stat_t, sticky bool) error {
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("is owned by uid %d, not root", st.Uid)
	}
	if perm := st.Mode & 0o7777; perm&0o022 != 0 && !sticky {
		return fmt.Errorf("is writable by group or others (mode %04o)", perm&0o777)
	}
	return nil
}

func kind(t uint32) string {
	switch t {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFDIR:
		return "a directory"
	}
	return "not a file"
}

func readlinkat(dir int, name string) (string, error) {
	for size := 256; size <= 1<<16; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", errors.New("symlink target too long")
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}
